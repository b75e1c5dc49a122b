"""PK sampler invariants: P ids x K images, positives for every anchor, coverage, determinism."""

from __future__ import annotations

from collections import Counter

import pytest

from training.engine.sampler import PKSampler

# 7 identities with 1..9 images (ids 0 and 1 have fewer than K = 4)
LABELS = [label for label, count in enumerate([1, 3, 4, 5, 6, 8, 9]) for _ in range(count)]


def test_every_batch_is_p_ids_by_k_images():
    sampler = PKSampler(LABELS, p=3, k=4, seed=0)
    for epoch in range(3):
        batches = sampler.epoch_batches(epoch)
        assert len(batches) == len(sampler) == max(-(-7 // 3), -(-36 // 12))
        for batch in batches:
            counts = Counter(LABELS[i] for i in batch)
            assert len(batch) == 12 and len(counts) == 3
            assert set(counts.values()) == {4}  # every anchor has K - 1 >= 1 positives
            for label in counts:  # no repeats unless the identity has fewer than K images
                members = [i for i in batch if LABELS[i] == label]
                if LABELS.count(label) >= 4:
                    assert len(set(members)) == 4
                else:
                    assert set(members) == {i for i, y in enumerate(LABELS) if y == label}


def test_each_epoch_covers_every_identity():
    sampler = PKSampler(LABELS, p=3, k=4, seed=5)
    for epoch in range(4):
        seen = {LABELS[i] for batch in sampler.epoch_batches(epoch) for i in batch}
        assert seen == set(LABELS)


def test_deterministic_by_seed_and_epoch():
    first = PKSampler(LABELS, p=2, k=2, seed=1)
    again = PKSampler(LABELS, p=2, k=2, seed=1)
    other = PKSampler(LABELS, p=2, k=2, seed=2)
    assert first.epoch_batches(3) == again.epoch_batches(3)   # a resumed run regenerates the same batches
    assert first.epoch_batches(0) != first.epoch_batches(1)
    assert first.epoch_batches(0) != other.epoch_batches(0)


def test_refuses_impossible_batches():
    with pytest.raises(ValueError):
        PKSampler([0, 0, 1, 1], p=3, k=2)
    with pytest.raises(ValueError):
        PKSampler([0, 0, 1, 1], p=1, k=2)
