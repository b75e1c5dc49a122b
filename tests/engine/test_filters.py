"""Attribute filters: the grammar a mobile developer writes, its errors, and the engine's filtered vector search."""
import numpy as np
import pytest

from recognition.engine.filters import InvalidFilter, parse_filter
from recognition.engine.search import VectorIndex


def test_an_and_of_or_groups_reads_like_googles_filter():
    parsed = parse_filter('brand=Acme AND (size=1L OR size=2L) AND 品牌="康师傅 冰红茶"')
    assert parsed.groups == ((("brand", "Acme"),), (("size", "1L"), ("size", "2L")), (("品牌", "康师傅 冰红茶"),))
    assert parsed.matches({"brand": "Acme", "size": "2L", "品牌": "康师傅 冰红茶"})
    assert not parsed.matches({"brand": "Acme", "size": "3L", "品牌": "康师傅 冰红茶"})
    assert not parsed.matches({"brand": "acme", "size": "1L", "品牌": "康师傅 冰红茶"})  # case-sensitive
    assert parse_filter(str(parsed)) == parsed  # the stored text reads back the same


def test_numbers_booleans_and_lists_match_by_their_text():
    parsed = parse_filter("size=500 AND diet=true AND tag=zero")
    assert parsed.matches({"size": 500, "diet": True, "tag": ["cola", "zero"]})
    assert not parsed.matches({"size": 500, "diet": False, "tag": ["cola"]})


def test_quoted_values_keep_spaces_quotes_and_backslashes():
    parsed = parse_filter(r'name="Cola \"Zero\" 1\\2"')
    assert parsed.groups == ((("name", 'Cola "Zero" 1\\2'),),)
    assert parse_filter(str(parsed)) == parsed


@pytest.mark.parametrize("text", ["", "   "])
def test_an_empty_filter_is_no_filter(text):
    assert parse_filter(text) is None


@pytest.mark.parametrize("text, where", [
    ("brand", "character 1"),
    ("brand=a OR size=1", "character 9"),   # OR only inside parentheses
    ("(brand=a", "the end"),
    ("brand=a AND", "the end"),
    ("brand=a size=1", "character 9"),
    ("(a=b AND c=d)", "character 6"),
    ('a="open', "character 1"),
])
def test_a_malformed_filter_says_where_it_stopped(text, where):
    with pytest.raises(InvalidFilter) as caught:
        parse_filter(text)
    assert caught.value.code == "invalid_filter"
    assert where in str(caught.value)


def test_overlong_filters_are_refused():
    with pytest.raises(InvalidFilter, match="at most 1000"):
        parse_filter("a=" + "x" * 1000)
    with pytest.raises(InvalidFilter, match="more than 50 terms"):
        parse_filter(" AND ".join(f"k{i}=v" for i in range(51)))


@pytest.mark.parametrize("kind", ["Flat", "IVF", pytest.param("HNSW32", marks=pytest.mark.slow)])  # HNSW builds take seconds
def test_a_filtered_search_ranks_only_allowed_vectors_exactly(kind):
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((3000, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(1000, 4000, dtype=np.int64)
    allowed = rng.choice(ids, 300, replace=False)
    index = VectorIndex(512, kind)
    index.build(ids, vectors)
    index.remove(allowed[:1])  # a removed vector stays out even when allowed
    assert index.index_type == kind
    queries = vectors[:4] + 0.05

    scores, found = index.search(queries, 10, allowed=allowed)

    live = np.isin(ids, allowed[1:])
    expected = queries @ vectors[live].T
    order = np.argsort(-expected, axis=1)[:, :10]
    assert (found == ids[live][order]).all()
    np.testing.assert_allclose(scores, np.take_along_axis(expected, order, axis=1), rtol=1e-5)
    empty_scores, nothing = index.search(queries, 3, allowed=np.array([], dtype=np.int64))
    assert (nothing == -1).all() and np.isneginf(empty_scores).all()
