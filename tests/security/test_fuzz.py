"""Fuzzing the two parsers that take untrusted bytes: image intake and the import-archive reader.

Contracts: `load_image` returns an HxWx3 uint8 array or raises an `ImageError`; the archive reader (`parse_label_file`,
`parse_product_csv`, `ImportArchive(...).rows()/read_image()`) raises only `InvalidArchive` or `RowError`.
Anything else fails the test, except the crashes already reported as bugs (KNOWN_ARCHIVE_BUGS): those are counted as
hypothesis events and each has a strict-xfail regression test, so fixing one makes that test fail until its entry
here and its xfail mark are removed.

CI runs 1,500 inputs per test (about 20 s), derandomized (the same inputs every run). For a long random run:
    SHITU_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/security/test_fuzz.py --hypothesis-show-statistics
"""
from __future__ import annotations

import csv
import io
import os
import traceback
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from galleries.archive import ImportArchive, ImportRow, InvalidArchive, RowError, check_row, parse_label_file, parse_product_csv
from recognition.engine.errors import ImageError
from recognition.engine.imageio import load_image
from tests.security.conftest import ACCEPTED_IMAGES, HOSTILE_IMAGES, gif_bomb, jpeg_bytes, png_header_only, webp_bomb

pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning:PIL.*", "ignore::PIL.Image.DecompressionBombWarning", "ignore:Duplicate name:UserWarning"
)

EXAMPLES = int(os.environ.get("SHITU_FUZZ_EXAMPLES", "0")) or None
FUZZ = settings(
    max_examples=EXAMPLES or 1500,
    deadline=None,
    database=None,  # nothing written under the repository
    derandomize=EXAMPLES is None,  # CI: the same inputs every run; SHITU_FUZZ_EXAMPLES: a fresh random run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
FUZZ_MAX_PIXELS = 4_000_000  # the production code path with a smaller pixel budget, so a mutated header costs little


# --- image intake -------------------------------------------------------------------------------------------

def _seed_images() -> list[bytes]:
    from PIL import Image

    def encoded(fmt: str, mode: str = "RGB", size=(24, 20), **options) -> bytes:
        buffer = io.BytesIO()
        image = Image.new(mode, size, (40, 120, 200) if mode == "RGB" else 128)
        image.save(buffer, fmt, **options)
        return buffer.getvalue()

    seeds = [encoded("PNG"), encoded("JPEG", quality=80), encoded("GIF"), encoded("WEBP"), encoded("BMP"),
             encoded("TIFF"), encoded("PNG", "L"), encoded("JPEG", "L"), encoded("TIFF", compression="tiff_lzw"),
             jpeg_bytes((10, 20, 30)), png_header_only(64, 64), gif_bomb(), webp_bomb()]
    seeds += [make() for make, *_ in ACCEPTED_IMAGES.values()]
    seeds += [make() for make, *_ in HOSTILE_IMAGES.values()]
    return [seed for seed in seeds if 0 < len(seed) <= 64 * 1024]


SEED_IMAGES = _seed_images()
MAGIC_PREFIXES = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", b"GIF89a", b"GIF87a", b"RIFF\x00\x00\x00\x00WEBPVP8 ",
                  b"RIFF\x00\x00\x00\x00WEBPVP8X", b"BM", b"II*\x00", b"MM\x00*", b"8BPS", b"%PDF", b"%!PS", b"<svg", b""]
EXTREME_INTS = [0, 1, 15, 16, 255, 256, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF]


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:
    """A seed with a few mutations, biased towards the header where the parsers decide sizes and formats."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        size = len(data)
        if size == 0:
            break
        position = draw(st.one_of(st.integers(0, min(size, 64) - 1), st.integers(0, size - 1)))
        operation = draw(st.sampled_from(["flip", "byte", "int", "insert", "delete", "truncate", "repeat"]))
        if operation == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif operation == "byte":
            data[position] = draw(st.integers(0, 255))
        elif operation == "int":
            value = draw(st.sampled_from(EXTREME_INTS))
            width, order = draw(st.sampled_from([(2, "big"), (2, "little"), (4, "big"), (4, "little")]))
            data[position: position + width] = (value % (1 << (8 * width))).to_bytes(width, order)
        elif operation == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=32))
        elif operation == "delete":
            del data[position: position + draw(st.integers(1, 32))]
        elif operation == "truncate":
            del data[position:]
        else:
            chunk = bytes(data[position: position + draw(st.integers(1, 256))])
            data[position:position] = chunk * draw(st.integers(1, 8))
    return bytes(data)


def _check_load_image(data: bytes) -> None:
    try:
        pixels = load_image(data, max_pixels=FUZZ_MAX_PIXELS)
    except ImageError as error:
        event(f"refused: {error.code}")
        return
    event("decoded")
    assert isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8
    assert pixels.ndim == 3 and pixels.shape[2] == 3
    assert min(pixels.shape[:2]) >= 16 and pixels.shape[0] * pixels.shape[1] <= FUZZ_MAX_PIXELS


@pytest.mark.slow
@FUZZ
@given(data=mutated(SEED_IMAGES))
def test_fuzz_load_image_on_mutated_images(data):
    _check_load_image(data)


@FUZZ
@given(data=st.one_of(st.binary(max_size=4096), st.builds(lambda magic, tail: magic + tail, st.sampled_from(MAGIC_PREFIXES),
                                                           st.binary(max_size=2048))))
@pytest.mark.slow
def test_fuzz_load_image_on_random_bytes(data):
    _check_load_image(data)


# --- import archives -----------------------------------------------------------------------------------------

LIMITS = {"max_member_bytes": 5_000_000, "max_total_bytes": 50_000_000}

# Crashes already reported (issue 8): (exception type names, archive.py function it escapes from) -> regression test.
KNOWN_ARCHIVE_BUGS: dict = {}  # none open: every crash found by fuzzing is fixed and has a regression test


def _archive_function(error: BaseException) -> str | None:
    """The innermost galleries/archive.py function the exception passed through."""
    names = [frame.name for frame in traceback.extract_tb(error.__traceback__)
             if frame.filename.endswith(os.path.join("galleries", "archive.py")) and not frame.name.startswith("<")]
    return names[-1] if names else None


def _known_bug(error: BaseException) -> str | None:
    function = _archive_function(error)
    for (type_names, where), regression in KNOWN_ARCHIVE_BUGS.items():
        if type(error).__name__ in type_names and function == where:
            return regression
    return None


def _archive_contract(action):
    """Run `action`; only InvalidArchive/RowError may escape (and the crashes already reported as bugs)."""
    try:
        return action()
    except (InvalidArchive, RowError) as error:
        event(f"refused: {getattr(error, 'code', type(error).__name__)}")
    except Exception as error:  # noqa: BLE001 - classified below, re-raised unless it is a known, reported bug
        regression = _known_bug(error)
        if regression is None:
            raise
        event(f"known bug: {type(error).__name__} in {_archive_function(error)}")
    return None


def _check_rows(rows: list[ImportRow]) -> None:
    for row in rows:
        assert isinstance(row, ImportRow) and isinstance(row.image_path, str) and isinstance(row.label, str)
        assert row.label == row.label.strip() and all(isinstance(v, str) for v in row.attributes.values())
        assert row.bbox is None or (len(row.bbox) == 4 and all(isinstance(v, float) for v in row.bbox))
        try:
            check_row(row)
        except RowError as error:
            event(f"row refused: {error.code}")


@pytest.mark.slow
@FUZZ
@given(text=st.text(max_size=2000))
@example(text="a.jpg\tCoca Cola  Zero 330 ml\n# comment\n\n b.jpg 农夫 山泉 \n")
@example(text="\x00\t\x00\n\r\n\u2028x\ty\u2029")
def test_fuzz_parse_label_file(text):
    rows = _archive_contract(lambda: parse_label_file(text))
    if rows is not None:
        _check_rows(rows)
        for row in rows:
            assert "\n" not in row.label and "\n" not in row.image_path


CSV_CELL = st.one_of(
    st.text(max_size=40),
    st.sampled_from(['{"brand": "Acme"}', "{not json", '{"a": {"b": [1, 2]}}', "a=1;b=2", "=cmd|' /C calc'!A0",
                     "1,2,30,40", "nan,nan,inf,-inf", "1e999,0,1,1", "[1, 2]", "null", '{"a": 1e999}', '"', "\r\n"]),
)


@st.composite
def product_csv(draw) -> str:
    columns = draw(st.lists(st.sampled_from(["image", "label", "display_name", "sku", "attributes", "bbox", "other"]),
                            min_size=0, max_size=7))
    rows = draw(st.lists(st.lists(CSV_CELL, min_size=0, max_size=8), max_size=6))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


@pytest.mark.slow
@FUZZ
@given(text=st.one_of(product_csv(), st.text(max_size=2000)))
@example(text="image,label,attributes\na.jpg,x,\"" + '{""a"":' * 3000 + "1" + "}" * 3000 + "\"\n")
@example(text="image,label\na.jpg," + "x" * 140_000 + "\n")
def test_fuzz_parse_product_csv(text):
    rows = _archive_contract(lambda: parse_product_csv(text))
    if rows is not None:
        _check_rows(rows)


def _zip(members: list[tuple[str, bytes]], method: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members:
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    return buffer.getvalue()


def _seed_zips() -> list[bytes]:
    image = jpeg_bytes((1, 2, 3))
    labels = [("labels.txt", b"a.jpg\tRed\nsub/b.jpg\tGreen Tea 500 ml\n"), ("a.jpg", image), ("sub/b.jpg", image + b"x")]
    products = [("products.csv", b'image,label,attributes,bbox\na.jpg,x,"{""k"": ""v""}","1,2,10,10"\n'), ("a.jpg", image)]
    nested = [("gallery/labels.txt", b"a.jpg\tx\n../b.jpg\ty\n"), ("gallery/a.jpg", image), ("b.jpg", image)]
    seeds = []
    for members in (labels, products, nested):
        for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
            seeds.append(_zip(members, method))
    return seeds


SEED_ZIPS = _seed_zips()


def _exercise_archive(data: bytes, extra_paths: list[str]) -> None:
    archive = _archive_contract(lambda: ImportArchive(data, **LIMITS))
    if archive is None:
        return
    rows = _archive_contract(archive.rows)
    paths = [row.image_path for row in rows or []] + extra_paths
    if rows is not None:
        _check_rows(rows)
    for path in paths[:20]:
        image = _archive_contract(lambda: archive.read_image(path))
        if image is not None:
            assert isinstance(image, bytes) and len(image) <= LIMITS["max_member_bytes"]
            event("member read")


PATHS = st.one_of(st.text(max_size=40), st.sampled_from(["a.jpg", "sub/b.jpg", "../b.jpg", "/etc/passwd", "a.jpg/",
                                                          "./a.jpg", "sub//b.jpg", "labels.txt", "", "\x00", "..", "."]))


@pytest.mark.slow
@FUZZ
@given(data=mutated(SEED_ZIPS), paths=st.lists(PATHS, max_size=4))
def test_fuzz_import_archive_on_mutated_zips(data, paths):
    _exercise_archive(data, paths)


@st.composite
def generated_zip(draw) -> bytes:
    names = st.one_of(st.text(min_size=1, max_size=30), st.sampled_from(["labels.txt", "products.csv", "a/labels.txt",
                                                                        "label.txt", "a.jpg", "../x.jpg", "/abs.jpg", "d/"]))
    content = st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
                        st.builds(lambda lines: "\n".join(lines).encode(), st.lists(st.text(max_size=40), max_size=8)))
    members = draw(st.lists(st.tuples(names, content), max_size=8))
    method = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]))
    try:
        return _zip(members, method)
    except (ValueError, UnicodeEncodeError):  # a name zipfile itself cannot write (e.g. lone surrogates)
        return _zip([], method)


@pytest.mark.slow
@FUZZ
@given(data=generated_zip(), paths=st.lists(PATHS, max_size=4))
def test_fuzz_import_archive_on_generated_zips(data, paths):
    _exercise_archive(data, paths)


@FUZZ
@given(data=st.one_of(st.binary(max_size=2048), st.builds(lambda tail: b"PK\x03\x04" + tail, st.binary(max_size=512)),
                      st.builds(lambda tail: b"PK\x05\x06" + tail, st.binary(min_size=18, max_size=64))))
@pytest.mark.slow
def test_fuzz_import_archive_on_random_bytes(data):
    _exercise_archive(data, ["a.jpg"])


def test_only_refusals_pass_the_archive_contract():
    """The harness the fuzz tests rely on: a refusal passes, a crash that is not a listed bug of archive.py fails."""

    def refuse():
        raise InvalidArchive("not an archive")

    def crash():
        raise RuntimeError("boom")

    @given(st.just(None))
    @settings(max_examples=1, database=None)
    def run(_):
        assert _archive_contract(refuse) is None
        with pytest.raises(RuntimeError, match="boom"):
            _archive_contract(crash)

    run()  # inside a hypothesis test, as the contract records events
