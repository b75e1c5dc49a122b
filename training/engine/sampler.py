"""PK sampling: every batch holds P identities x K images, so every anchor has a positive."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable, Sequence

import numpy as np


def _take_distinct(queue: deque, count: int, refill) -> list:
    """Pop ``count`` distinct items from ``queue``, refilling it with ``refill()`` when empty.

    Duplicates met on the way are put back at the front in order, so each refill (a
    permutation of everything) is consumed completely before the next one starts.
    """
    chosen: list = []
    deferred: list = []
    while len(chosen) < count:
        if not queue:
            queue.extend(refill())
        item = queue.popleft()
        (deferred if item in chosen else chosen).append(item)
    queue.extendleft(reversed(deferred))
    return chosen


class PKSampler:
    """Epoch-based, seeded PK batches of dataset indices.

    An epoch has ``max(ceil(ids / P), ceil(images / (P*K)))`` batches. Identities are drawn
    from successive shuffled permutations, so each epoch covers every identity; an identity's
    images come from its own shuffled cycle (no repeats until all were used), and an identity
    with fewer than K images contributes all of them plus draws with replacement. Batches of
    epoch ``e`` depend only on ``(seed, e)``: a resumed run regenerates them and skips ahead.
    """

    def __init__(self, labels: Sequence[Hashable], *, p: int, k: int, seed: int = 0):
        if p < 2 or k < 1:
            raise ValueError(f"need P >= 2 identities and K >= 1 images per batch, got P={p} K={k}")
        by_label: dict = {}
        for index, label in enumerate(labels):
            by_label.setdefault(label, []).append(index)
        if len(by_label) < p:
            raise ValueError(f"P={p} identities per batch, but the data has only {len(by_label)}")
        self.p, self.k, self.seed = int(p), int(k), int(seed)
        self.identities = sorted(by_label, key=repr)
        self.indices_by_identity = {label: np.asarray(by_label[label], dtype=np.int64)
                                    for label in self.identities}
        self.num_images = len(labels)
        self.steps_per_epoch = max(math.ceil(len(self.identities) / self.p),
                                   math.ceil(self.num_images / (self.p * self.k)))

    @property
    def batch_size(self) -> int:
        return self.p * self.k

    def __len__(self) -> int:
        return self.steps_per_epoch

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """All batches of ``epoch`` (lists of ``P*K`` dataset indices, identity-major)."""
        rng = np.random.default_rng([self.seed, int(epoch)])
        identity_count = len(self.identities)
        id_queue: deque = deque()
        image_queues = {label: deque() for label in self.identities}
        batches = []
        for _ in range(self.steps_per_epoch):
            batch: list[int] = []
            for position in _take_distinct(id_queue, self.p, lambda: rng.permutation(identity_count)):
                label = self.identities[int(position)]
                batch.extend(self._images_for(label, image_queues[label], rng))
            batches.append(batch)
        return batches

    def _images_for(self, label: Hashable, queue: deque, rng: np.random.Generator) -> list[int]:
        pool = self.indices_by_identity[label]
        if len(pool) < self.k:
            extra = rng.choice(pool, size=self.k - len(pool), replace=True)
            return [int(i) for i in np.concatenate([rng.permutation(pool), extra])]
        return [int(i) for i in _take_distinct(queue, self.k, lambda: rng.permutation(pool))]


__all__ = ["PKSampler"]
