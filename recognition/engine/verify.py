"""Geometric verification of global-search candidates: RootSIFT matching plus a MAGSAC homography per candidate.

A global embedding confuses look-alike products (same brand, another flavour); a planar homography between the
query box and a reference photo with many inliers does not happen by chance, so the inlier count is a far more
reliable ranking signal than cosine whenever it is large.

Matching is vectorised per candidate: one product of the query's descriptors with the candidate's, then for
every query keypoint the best and second-best reference keypoint *of that candidate*, so Lowe's ratio test is
decided within one reference image (a neighbour from another image of the same product must not veto a good
match). One product per candidate measured faster than one over the padded union of a chunk of candidates
(no padding, no per-chunk copy and normalisation of the references), and again faster than one product over the
unpadded union of a chunk's new candidates split after (the split's strided views cost more than they saved).
The products run in numpy on one BLAS thread (`_one_blas_thread`): 2.3x less verification time than cv2.gemm
in `bench/pipeline_stages.py --candidate cv2-gemm-matching`.

Those nearest neighbours depend only on the photo's keypoint and the candidate, not on the box, so a
`PhotoMatcher` keeps them for the photo: the boxes of one photo overlap (the whole image holds them all) and
share most candidates, and each (keypoint, candidate) pair is computed once instead of once per box.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Hashable, Optional, Sequence

import cv2
import numpy as np
from threadpoolctl import ThreadpoolController

from .local_features import LocalFeatures
from .types import Evidence

MIN_MATCHES = 8  # fewer ratio-test survivors cannot support a meaningful homography


@dataclass(frozen=True, eq=False)
class Verification:
    """One candidate's evidence: `matches` ratio-test survivors, `inliers` of them agreeing with `homography`.

    `query_xy` / `reference_xy` are the inlier pairs, (inliers, 2) float32 in original pixels of the query
    and reference images, for drawing evidence; `homography` maps reference pixels to query pixels;
    `reference_size` is the reference image's (width, height), None where no homography was fitted.
    """

    inliers: int
    matches: int
    query_xy: np.ndarray
    reference_xy: np.ndarray
    homography: Optional[np.ndarray] = None
    reference_size: Optional[tuple[int, int]] = None

    def evidence(self, item_id: int) -> Optional[Evidence]:
        """The inlier pairs as the pipeline hands them on for candidate `item_id`; None without a homography."""
        if self.homography is None or self.reference_size is None:
            return None
        return Evidence(item_id, self.query_xy, self.reference_xy, self.reference_size)


@lru_cache(maxsize=1)
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()


def _one_blas_thread() -> Any:
    """numpy's products on one BLAS thread. OpenBLAS's own threads busy-wait after each product and took the cores
    from the Paddle predictors running next (the next photo's detector ran 2-3x slower; bench/pipeline_stages.py);
    on one thread its kernels still run 2-4x faster than cv2.gemm on these (keypoints x 128) x (128 x keypoints)
    shapes. The limit is process-wide while it lasts; threads that overlap it at worst leave BLAS on one thread."""
    return _blas_controller().limit(limits=1, user_api="blas")


def _unit_rows(descriptors: np.ndarray) -> np.ndarray:
    """uint8 RootSIFT -> float32 unit rows (quantisation leaves norms within ~0.1% of 1; re-normalising makes cos exact)."""
    values = descriptors.astype(np.float32)
    values *= (1.0 / np.sqrt(np.maximum(np.einsum("ij,ij->i", values, values), 1e-12)))[:, None]
    return values


class _Neighbours:
    """For one candidate: its unit descriptors and, per photo keypoint, the nearest reference keypoint, its cosine
    and the second cosine (valid where `done`)."""

    def __init__(self, rows: int, reference: LocalFeatures) -> None:
        self.unit_t = _unit_rows(reference.descriptors).T  # (128, reference keypoints); BLAS reads it transposed, no copy
        self.done = np.zeros(rows, dtype=bool)
        self.best = np.zeros(rows, dtype=np.int64)
        self.best_sim = np.zeros(rows, dtype=np.float32)
        self.second_sim = np.zeros(rows, dtype=np.float32)

    def compute(self, query: np.ndarray, rows: np.ndarray) -> None:
        self.take(rows, query[rows] @ self.unit_t)  # one BLAS thread, see PhotoMatcher.neighbours

    def take(self, rows: np.ndarray, sims: np.ndarray) -> None:
        """Keep the nearest two of `sims` (rows, reference keypoints): photo keypoints `rows` against this reference."""
        best = np.argmax(sims, axis=1)
        picked = np.arange(len(rows))
        self.best[rows] = best
        self.best_sim[rows] = sims[picked, best]
        sims[picked, best] = -np.inf
        self.second_sim[rows] = sims.max(axis=1)
        self.done[rows] = True


class PhotoMatcher:
    """A photo's keypoints matched against reference images on demand, kept for every box of the photo.

    `neighbours` computes only the (keypoint, candidate) pairs no earlier call has. Candidates are known by a
    caller's key (the pipeline's vector ids), which must name one reference's features for the matcher's life
    (one photo).
    """

    def __init__(self, photo: LocalFeatures) -> None:
        self.photo = photo
        self._descriptors = _unit_rows(photo.descriptors)
        self._known: dict[Hashable, _Neighbours] = {}

    def neighbours(
        self, rows: np.ndarray, keys: Sequence[Hashable], references: Sequence[LocalFeatures]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(best reference index, best cosine, second cosine), each (len(rows), len(keys)), for photo keypoints `rows`."""
        entries = []
        with _one_blas_thread():
            for key, reference in zip(keys, references):
                entry = self._known.get(key)
                if entry is None:
                    entry = self._known[key] = _Neighbours(len(self._descriptors), reference)
                todo = rows[~entry.done[rows]]
                if len(todo):
                    entry.compute(self._descriptors, todo)
                entries.append(entry)
        return (
            np.stack([entry.best[rows] for entry in entries], axis=1),
            np.stack([entry.best_sim[rows] for entry in entries], axis=1),
            np.stack([entry.second_sim[rows] for entry in entries], axis=1),
        )


def _unverified(matches: int) -> Verification:
    empty = np.zeros((0, 2), dtype=np.float32)
    return Verification(0, matches, empty, empty, None)


class GeometricVerifier:
    """Counts homography inliers between a query (box) and each candidate, best-cosine candidates first.

    Deterministic: OpenCV's RNG is re-seeded with `seed` before every homography, so a candidate's result
    does not depend on the chunking, order, or what ran before on this thread.

    Defaults from drink-dev leave-one-out (held-out products): ratio 0.75-0.85 and a 2.5-6 px tolerance (at
    the detection resolution) gave the same recall; stopping once a candidate reaches 30 inliers (chunks of 10)
    lost nothing against verifying all 50; chunks of 5 decisive at 20 cut the matching work a further third with
    the same figures but one shelf photo's recall@5 (README, *Where a recognition's time goes*). The decisive
    count never falls below the caller's `min_matches` floor (`PipelineParams.min_inliers`).
    """

    def __init__(
        self,
        *,
        ratio: float = 0.8,
        min_matches: int = MIN_MATCHES,
        reprojection_px: float = 4.0,
        max_iters: int = 1000,
        confidence: float = 0.999,
        seed: int = 0,
        decisive_inliers: Optional[int] = 20,
        chunk_size: int = 5,
    ) -> None:
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"ratio must be within (0, 1], got {ratio}")
        if min_matches < 4:
            raise ValueError(f"a homography needs at least 4 matches, got min_matches={min_matches}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.ratio = float(ratio)
        self.min_matches = int(min_matches)
        self.reprojection_px = float(reprojection_px)
        self.max_iters = int(max_iters)
        self.confidence = float(confidence)
        self.seed = int(seed)
        self.decisive_inliers = decisive_inliers
        self.chunk_size = int(chunk_size)

    def verify(
        self,
        query: LocalFeatures,
        candidates: Sequence[Optional[LocalFeatures]],
        *,
        min_matches: Optional[int] = None,
        early_stop: bool = True,
        matcher: Optional[PhotoMatcher] = None,
        rows: Optional[np.ndarray] = None,
        keys: Optional[Sequence[Hashable]] = None,
    ) -> list[Optional[Verification]]:
        """One result per candidate (given best first); None where a candidate has no features or was skipped.

        `matcher` shares nearest neighbours between the boxes of one photo: `query` is then the subset of the
        matcher's photo at `rows` (see LocalFeatures.rows_in_box) and `keys` name the candidates (one key, one
        reference). Without it the call matches on its own.

        With `early_stop`, candidates are verified in chunks of `chunk_size` and the rest are skipped once one
        reaches `decisive_inliers`: a homography that strong is not overturned by lower-cosine candidates, and
        skipping them keeps the cost near K=chunk_size for the common, easy photo.
        `min_matches` raises the floor below which no homography is tried (a caller that ignores inlier counts
        under some threshold can pass it to save MAGSAC calls).
        """
        floor = max(self.min_matches, int(min_matches or 0))
        results: list[Optional[Verification]] = [None] * len(candidates)
        usable = [i for i, features in enumerate(candidates) if features is not None and len(features) >= 2]
        if len(query) < floor or not usable:
            for i in usable:
                results[i] = _unverified(0)
            return results
        if matcher is None:
            matcher, rows, keys = PhotoMatcher(query), np.arange(len(query)), range(len(candidates))
        elif rows is None or keys is None or len(rows) != len(query) or len(keys) != len(candidates):
            raise ValueError("with a matcher, give the query's rows in its photo and one key per candidate")
        rows = np.asarray(rows, dtype=np.int64)
        step = self.chunk_size if early_stop else len(usable)
        for start in range(0, len(usable), step):
            chunk = usable[start : start + step]
            neighbours = matcher.neighbours(rows, [keys[i] for i in chunk], [candidates[i] for i in chunk])  # type: ignore[misc, index]
            matched = self._pairs(*neighbours)
            for position, (query_idx, ref_idx) in zip(chunk, matched):
                results[position] = self._fit(query, candidates[position], query_idx, ref_idx, floor)  # type: ignore[arg-type]
            best = max(result.inliers for result in results if result is not None)
            if early_stop and self.decisive_inliers is not None and best >= max(self.decisive_inliers, floor):
                break
        return results

    def _pairs(self, best: np.ndarray, best_sim: np.ndarray, second_sim: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Ratio-test survivors per reference as (query indices, reference indices), one-to-one on the reference side."""
        references = best.shape[1]
        # Unit vectors: d^2 = 2 - 2 cos, and d1 < ratio * d2  <=>  d1^2 < ratio^2 * d2^2.
        passed = (1.0 - best_sim) < (self.ratio**2) * (1.0 - second_sim)
        query_idx, ref_row = np.nonzero(passed)
        ref_idx = best[query_idx, ref_row]
        closeness = best_sim[query_idx, ref_row]
        # One-to-one: where several query keypoints pick the same reference keypoint, keep the closest.
        order = np.lexsort((-closeness, ref_idx, ref_row))
        query_idx, ref_row, ref_idx = query_idx[order], ref_row[order], ref_idx[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = (ref_row[1:] != ref_row[:-1]) | (ref_idx[1:] != ref_idx[:-1])
        query_idx, ref_row, ref_idx = query_idx[first], ref_row[first], ref_idx[first]
        bounds = np.searchsorted(ref_row, np.arange(references + 1))
        return [(query_idx[a:b], ref_idx[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]

    def _fit(self, query: LocalFeatures, reference: LocalFeatures, query_idx: np.ndarray, ref_idx: np.ndarray, floor: int) -> Verification:
        if len(query_idx) < floor:
            return _unverified(len(query_idx))
        query_xy = query.keypoints[query_idx].astype(np.float32)
        ref_xy = reference.keypoints[ref_idx].astype(np.float32)
        # Fit at the detection resolutions, where the pixel tolerance means what it says.
        cv2.setRNGSeed(self.seed)
        homography, mask = cv2.findHomography(
            ref_xy * reference.scale,
            query_xy * query.scale,
            cv2.USAC_MAGSAC,
            self.reprojection_px,
            maxIters=self.max_iters,
            confidence=self.confidence,
        )
        if homography is None or mask is None:
            return _unverified(len(query_idx))
        keep = mask.ravel().astype(bool)
        # Back to original pixels on both sides: H_orig = S_q^-1 H S_r.
        to_original = np.diag([1.0 / query.scale, 1.0 / query.scale, 1.0]) @ homography @ np.diag([reference.scale, reference.scale, 1.0])
        return Verification(int(keep.sum()), len(query_idx), query_xy[keep], ref_xy[keep], to_original, reference.image_size)


__all__ = ["GeometricVerifier", "MIN_MATCHES", "PhotoMatcher", "Verification"]
