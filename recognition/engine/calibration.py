"""Calibrated confidence: the probability that a recognised object's label is right, and the "no match" decision.

Cosine and inlier counts are evidence on different scales, and what a given cosine means depends on the
gallery (how alike its products look). A small logistic model over three features of the object's best match
turns them into one probability:

- ``cosine``: the answered label's best cosine among the searched candidates (`label_cosine`). Verification
  may rank first a reference that shares many keypoints with the photo but shows another side or light; how
  much the photo looks like the *product* is its closest reference (drink-dev held-out: known photos answered
  0.884 -> 0.900, precision 1.000 both, unknown photos rejected 0.974 -> 0.966);
- ``log1p(min(inliers, inlier_cap))`` of the re-ranked best match (0 when it was not verified): geometry saturates, one
  more inlier at 200 says nothing that 50 did not;
- ``margin``: that cosine minus the best cosine of any *other* label among the searched candidates, clipped
  to +-``margin_cap`` (a stranger's best match usually has near-equal rivals; a known product stands out).

All three weights are kept >= 0, so confidence never falls when the cosine, the inliers or the margin grow
(a monotone score is what makes one threshold meaningful). The model is fitted per gallery by
`calibrate_gallery`: a leave-one-out over the gallery's own reference images, where each query is asked once
as a known product (its other photos stay) and once as a stranger (all of its product's photos are left out),
so the fit sees what the best match of an unknown product looks like. Probabilities therefore assume about
as many strangers as known products among the queries. The decision threshold is the lowest confidence at
which the cross-fitted precision of the answered *photos* reaches `PRECISION_TARGET` (never under
`THRESHOLD_FLOOR`), counting a stranger photo as answered when any of the pipeline's candidate objects
(max_det_results boxes + the whole image) passes: a per-object rule let 4 % of unknown photos through on
drink-dev's train half (products split in two, one half as the gallery) while the leave-one-out strangers
passed at 0.8 %. Where no wrong answer of the leave-one-out reached min_inliers, the calibration also
`trust_verified`: the pipeline then answers every verified match, however low its confidence (an easy
gallery's fit leans on cosine and would reject verified off-angle shots); a gallery whose look-alike families
do verify (shared logos) leaves that to the confidence.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from .local_features import LocalFeatures
from .pipeline import PipelineParams, rerank
from .types import Match
from .verify import GeometricVerifier, PhotoMatcher

FEATURES = ("cosine", "log_inliers", "margin")
INLIER_CAP = 60
MARGIN_CAP = 0.3
PRECISION_TARGET = 0.98
THRESHOLD_FLOOR = 0.5
L2 = 1.0  # on standardised features, against a sum (not a mean) of log-losses: a nudge, not a prior
CROSS_FOLDS = 5
# Galleries below either size fall back to DEFAULT_CALIBRATION: too few strangers and look-alikes to fit.
MIN_IMAGES = 20
MIN_PRODUCTS = 3
# What the cosine feature means: 1, the re-ranked best match's own cosine; 2, the answered label's best cosine
# among the candidates (`label_cosine`). A calibration is only read with the features it was fitted on.
EVIDENCE = 2


@dataclass(frozen=True)
class Calibration:
    """Logistic weights over (cosine, log1p(min(inliers, cap)), clipped margin); `threshold` decides "no match".

    `samples` is how many (features, right?) pairs the fit saw (0 for hand-written constants). With
    `trust_verified` the pipeline answers every geometrically verified match (>= min_inliers) whatever its
    confidence: set where the fit's leave-one-out never saw a wrong product verify.
    """

    bias: float
    cosine_weight: float
    inliers_weight: float
    margin_weight: float
    threshold: float
    samples: int = 0
    inlier_cap: int = INLIER_CAP
    margin_cap: float = MARGIN_CAP
    trust_verified: bool = False
    evidence: int = EVIDENCE

    def __post_init__(self) -> None:
        weights = (self.cosine_weight, self.inliers_weight, self.margin_weight)
        if not all(math.isfinite(float(v)) for v in (self.bias, *weights, self.threshold, self.margin_cap)):
            raise ValueError("calibration values must be finite numbers")
        if min(weights) < 0:
            raise ValueError(f"calibration weights must be >= 0 (confidence monotone in the evidence), got {weights}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be within [0, 1], got {self.threshold}")
        if self.samples < 0 or self.inlier_cap < 1 or self.margin_cap <= 0:
            raise ValueError("samples must be >= 0, inlier_cap >= 1 and margin_cap > 0")
        if not isinstance(self.trust_verified, bool):
            raise ValueError(f"trust_verified must be a bool, got {self.trust_verified!r}")
        if self.evidence not in (1, EVIDENCE):
            raise ValueError(f"evidence must be 1 or {EVIDENCE}, got {self.evidence!r}")

    def features(self, cosine: float, inliers: Optional[int], margin: float) -> np.ndarray:
        """The model's inputs for one object (see the module docstring)."""
        return np.array(
            [float(cosine), math.log1p(min(max(int(inliers or 0), 0), self.inlier_cap)),
             min(max(float(margin), -self.margin_cap), self.margin_cap)],
            dtype=np.float64,
        )

    def confidence(self, cosine: float, inliers: Optional[int] = None, margin: float = 0.0) -> float:
        """Probability that the best match's label is right."""
        x = self.features(cosine, inliers, margin)
        z = self.bias + self.cosine_weight * x[0] + self.inliers_weight * x[1] + self.margin_weight * x[2]
        return float(_sigmoid(np.array([z]))[0])

    def confidence_for(self, best: Match, candidates: Sequence[tuple[str, float]]) -> float:
        """Confidence of an object whose ranked best match is `best`; `candidates` are the searched (label, cosine), best first."""
        return self.confidence(*match_evidence(best, candidates, evidence=self.evidence))

    def accepts(self, confidence: float) -> bool:
        """Whether an object this confident is answered (otherwise it is "no match")."""
        return confidence >= self.threshold

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (plain floats, ints and one bool); `from_dict` reads it back exactly."""
        return {key: _plain(key, value) for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Calibration":
        """Inverse of `to_dict`; unknown fields are an error (a newer format must not be half-read)."""
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown calibration fields {sorted(unknown)}")
        if "trust_verified" in data and not isinstance(data["trust_verified"], bool):
            raise ValueError(f"trust_verified must be true or false, got {data['trust_verified']!r}")
        plain = {key: _plain(key, value) for key, value in data.items() if key != "evidence"}
        return cls(**plain, evidence=cls.evidence_of(data))

    @staticmethod
    def evidence_of(data: Mapping[str, Any]) -> int:
        """Which features a stored calibration (`to_dict` form) was fitted on; one written before `evidence`
        existed: 1."""
        return int(data.get("evidence", 1))


def _plain(key: str, value: Any) -> Any:
    if key == "trust_verified":
        return bool(value)
    return int(value) if key in ("samples", "inlier_cap") else float(value)


# Fitted by calibrate_gallery on drink-dev's TRAIN half only (53 products, 266 photos: 265 known + 266 stranger
# samples), shipped extractor shitu-rec-lite0-dd53 on the shipped detector's main-object crops, default
# PipelineParams (6 candidates per photo); the "calibration" of
#   .venv/bin/python -m training.engine.cli eval --pipeline --model models/extractor/shitu-rec-lite0-dd53
#     --gallery ../shared/data/drink-dev/gallery --split training/splits/drink-dev.json --part train --json
# rounded to 4 digits (refitted for evidence 2, and again for the verifier's chunks of 5). The extractor trained
# on those products, so their cosines run high: for a small gallery this errs towards answering. Only meaningful
# for that extractor's cosine scale. No wrong answer of that leave-one-out reached 15 inliers, hence
# trust_verified.
DEFAULT_CALIBRATION = Calibration(
    bias=-8.017,
    cosine_weight=7.991,
    inliers_weight=0.7481,
    margin_weight=18.77,
    threshold=0.5055,
    samples=531,
    trust_verified=True,
)


def label_cosine(label: str, cosine: float, candidates: Sequence[tuple[str, float]]) -> float:
    """The answered label's best cosine among `candidates` (label, cosine), at least `cosine`.

    Verification may put a reference that matched many keypoints but looks little like the photo overall (another
    side, another light) first; how much the photo looks like the *product* is its closest reference's cosine.
    """
    return max([float(cosine), *(float(score) for other, score in candidates if other == label)])


def match_evidence(best: Match, candidates: Sequence[tuple[str, float]], *,
                   evidence: int = EVIDENCE) -> tuple[float, Optional[int], float]:
    """(cosine, inliers, margin) of an object whose ranked best match is `best`, as a calibration fitted on
    `evidence` reads them: the one definition both fitting (`gallery_samples`) and answering use."""
    cosine = label_cosine(best.label, best.score, candidates) if evidence >= 2 else best.score
    return cosine, best.inliers, margin_to_rival(best.label, cosine, candidates)


def margin_to_rival(label: str, cosine: float, candidates: Sequence[tuple[str, float]]) -> float:
    """`cosine` minus the best cosine of another label among `candidates` (label, cosine), best first.

    With no other label among them, the last candidate's cosine bounds any rival's from above (the search
    returned the best ones), so the margin is at least `cosine` minus it; with no candidate at all, 1.0.
    """
    rival = next((score for other, score in candidates if other != label), None)
    if rival is None:
        rival = candidates[-1][1] if candidates else cosine - 1.0
    return float(cosine - rival)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.where(z >= 0, 1.0 / (1.0 + np.exp(-np.abs(z))), np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))))


def _newton(z: np.ndarray, y: np.ndarray, free: list[int], l2: float) -> tuple[float, np.ndarray]:
    """Penalised logistic regression on the `free` standardised columns (others held at 0); intercept unpenalised."""
    design = np.column_stack([np.ones(len(z)), z[:, free]])
    beta = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], l2)
    penalty[0] = 0.0

    def loss(b: np.ndarray) -> float:
        t = design @ b
        return float(np.sum(np.logaddexp(0.0, t) - y * t) + 0.5 * np.sum(penalty * b * b))

    current = loss(beta)
    for _ in range(100):
        p = _sigmoid(design @ beta)
        gradient = design.T @ (p - y) + penalty * beta
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty) + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hessian, gradient)
        size = 1.0
        while size > 1e-6:  # backtracking keeps every step a descent step (separable data, big first steps)
            trial = beta - size * step
            trial_loss = loss(trial)
            if trial_loss <= current:
                break
            size /= 2
        else:
            break
        beta, previous, current = trial, current, trial_loss
        if previous - current < 1e-10 * max(1.0, abs(previous)):
            break
    weights = np.zeros(z.shape[1])
    weights[free] = beta[1:]
    return float(beta[0]), weights


def _fit_weights(x: np.ndarray, y: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
    """Non-negative logistic weights on raw features: an active set over standardised columns, mapped back."""
    mean = x.mean(axis=0)
    spread = x.std(axis=0)
    usable = spread > 1e-9
    z = np.where(usable, (x - mean) / np.where(usable, spread, 1.0), 0.0)
    free = [j for j in range(x.shape[1]) if usable[j]]
    bias, weights = _newton(z, y, free, l2)
    for _ in range(2 * x.shape[1]):
        negative = [j for j in free if weights[j] < 0]
        if negative:
            free.remove(min(negative, key=lambda j: weights[j]))
        else:
            # KKT for the columns held at 0: re-free one whose loss gradient says a positive weight would help.
            p = _sigmoid(bias + z @ weights)
            held = [j for j in range(x.shape[1]) if usable[j] and j not in free and z[:, j] @ (p - y) < -1e-9]
            if not held:
                break
            free.append(held[0])
            free.sort()
        bias, weights = _newton(z, y, free, l2)
    weights = np.maximum(weights, 0.0)
    raw = np.where(usable, weights / np.where(usable, spread, 1.0), 0.0)
    return float(bias - np.sum(raw * mean)), raw


def choose_threshold(confidences: np.ndarray, right: np.ndarray, *, stranger: Optional[np.ndarray] = None,
                     photo_candidates: int = 1, answered_anyway: Optional[np.ndarray] = None,
                     target: float = PRECISION_TARGET, floor: float = THRESHOLD_FLOOR, min_answered: int = 5) -> float:
    """The lowest confidence t >= `floor` at which answered photos are right at least `target` of the time;
    `floor` when no t gets there (a hard gallery: answer when more likely right than wrong).

    Known items (not `stranger`) are answered when their confidence is >= t, right when also `right`. A
    stranger photo is answered when *any* of its `photo_candidates` objects passes (the pipeline decides up to
    max_det_results boxes plus the whole image): with f the share of stranger samples passing, S strangers give
    S * (1 - (1 - f) ** photo_candidates) wrong answers, not S * f. Items flagged `answered_anyway` (verified
    matches a `trust_verified` calibration answers) count as answered at every t. At least `min_answered`
    known items must be answered at t.
    """
    confidences = np.asarray(confidences, dtype=np.float64)
    right = np.asarray(right, dtype=bool)
    stranger = np.zeros(len(right), dtype=bool) if stranger is None else np.asarray(stranger, dtype=bool)
    if answered_anyway is not None:  # as if infinitely confident
        confidences = np.where(np.asarray(answered_anyway, dtype=bool), np.inf, confidences)
    known_conf, known_right = confidences[~stranger], right[~stranger]
    stranger_conf = np.sort(confidences[stranger])
    best = None
    for t in np.unique(known_conf[np.isfinite(known_conf)]):  # ascending; between two known items nothing changes for them
        answered = known_conf >= t
        if answered.sum() < min_answered:
            continue
        passing = (len(stranger_conf) - np.searchsorted(stranger_conf, t, side="left")) / max(len(stranger_conf), 1)
        wrong_strangers = len(stranger_conf) * (1.0 - (1.0 - passing) ** photo_candidates)
        precision = (known_right & answered).sum() / (answered.sum() + wrong_strangers)
        if precision >= target:
            best = float(t)
            break
    return max(floor, best) if best is not None else floor


def fit_calibration(cosine: Sequence[float], inliers: Sequence[Optional[int]], margin: Sequence[float],
                    right: Sequence[bool], *, stranger: Optional[Sequence[bool]] = None, photo_candidates: int = 1,
                    trust_verified_from: Optional[int] = None, l2: float = L2, target: float = PRECISION_TARGET,
                    floor: float = THRESHOLD_FLOOR, inlier_cap: int = INLIER_CAP,
                    margin_cap: float = MARGIN_CAP) -> Calibration:
    """Fit the logistic model on (cosine, inliers, margin) -> right? samples; deterministic, weights >= 0.

    The threshold comes from `choose_threshold` (with `stranger` flags and `photo_candidates`) on cross-fitted
    confidences (each fold scored by a model that did not see it), so it is not chosen on the same predictions
    the fit was optimised for. With `trust_verified_from` (the pipeline's min_inliers) the result trusts
    verified matches when no wrong sample has that many inliers.
    """
    shape = Calibration(0.0, 0.0, 0.0, 0.0, 0.5, inlier_cap=inlier_cap, margin_cap=margin_cap)
    x = np.array([shape.features(c, i, m) for c, i, m in zip(cosine, inliers, margin)], dtype=np.float64).reshape(-1, 3)
    y = np.asarray(right, dtype=np.float64)
    if len(x) != len(y) or len(y) != len(cosine):
        raise ValueError("cosine, inliers, margin and right need one entry per sample")
    if y.sum() == 0 or y.sum() == len(y):
        raise ValueError("a calibration needs both right and wrong samples")
    bias, weights = _fit_weights(x, y, l2)
    folds = np.random.default_rng(0).permutation(len(y)) % CROSS_FOLDS
    crossed = np.empty(len(y))
    for fold in range(CROSS_FOLDS):
        test, train = folds == fold, folds != fold
        if not test.any():
            continue
        if 0 < y[train].sum() < train.sum():
            fold_bias, fold_weights = _fit_weights(x[train], y[train], l2)
        else:
            fold_bias, fold_weights = bias, weights
        crossed[test] = _sigmoid(fold_bias + x[test] @ fold_weights)
    counts = np.array([max(int(i or 0), 0) for i in inliers])
    trust = trust_verified_from is not None and not np.any((y == 0) & (counts >= trust_verified_from))
    threshold = choose_threshold(crossed, y.astype(bool), stranger=None if stranger is None else np.asarray(stranger, bool),
                                 photo_candidates=photo_candidates, target=target, floor=floor,
                                 answered_anyway=(counts >= trust_verified_from) if trust else None)
    return Calibration(bias=bias, cosine_weight=float(weights[0]), inliers_weight=float(weights[1]),
                       margin_weight=float(weights[2]), threshold=threshold, samples=len(y),
                       inlier_cap=inlier_cap, margin_cap=margin_cap, trust_verified=bool(trust))


@dataclass(frozen=True)
class CalibrationSamples:
    """What `calibrate_gallery` fitted on, for reports: one row per (query, known or stranger) case."""

    cosine: np.ndarray
    inliers: np.ndarray
    margin: np.ndarray
    right: np.ndarray
    stranger: np.ndarray


def gallery_samples(vectors: np.ndarray, labels: Sequence[str], local_features: Sequence[Optional[LocalFeatures]], *,
                    params: Optional[PipelineParams] = None, verifier: Optional[GeometricVerifier] = None,
                    max_queries: int = 400, seed: int = 0,
                    progress: Optional[Callable[[int, int], None]] = None) -> CalibrationSamples:
    """Leave-one-out over a gallery's references, as the pipeline decides one box.

    Each query image searches the others by cosine (depth max(top_k, verify_top_k)), its stored local
    features are verified against the candidates' (top verify_top_k, min_matches=min_inliers), the list is
    re-ranked like the pipeline's, and the best match gives one known sample (right if its label is the
    query's). The same query then runs with every image of its product left out: a stranger sample (never
    right). Queries whose product has no other image give only the stranger sample. At most `max_queries`
    queries (a seeded sample of a large gallery).
    """
    params = params or PipelineParams()
    verifier = verifier or GeometricVerifier()
    vectors = np.asarray(vectors, dtype=np.float32)
    names = [str(label) for label in labels]
    if vectors.ndim != 2 or len(vectors) != len(names) or len(local_features) != len(names):
        raise ValueError("one vector, label and local-feature entry per gallery image is required")
    count = len(names)
    queries = np.arange(count)
    if count > max_queries:
        queries = np.sort(np.random.default_rng(seed).choice(count, max_queries, replace=False))
    depth = max(params.top_k, params.verify_top_k)
    verifying = params.verify
    rows: dict[str, list] = {key: [] for key in ("cosine", "inliers", "margin", "right", "stranger")}
    label_array = np.array(names, dtype=object)
    for done, query in enumerate(queries, start=1):
        # The known and stranger cases share most candidates: one matcher computes each pair once.
        features = local_features[query]
        matcher = PhotoMatcher(features) if verifying and features is not None else None
        similarity = vectors @ vectors[query]
        similarity[query] = -np.inf
        same = label_array == names[query]
        cases = [(False, similarity)] if same.sum() > 1 else []
        stranger = similarity.copy()
        stranger[same] = -np.inf
        cases.append((True, stranger))
        for is_stranger, scores in cases:
            allowed = int(np.isfinite(scores).sum())
            if allowed == 0:
                continue
            order = np.argsort(-scores, kind="stable")[: min(depth, allowed)]
            matches = _verified_matches(order, scores, names, local_features, matcher, params, verifier)
            best = rerank(matches, params.min_inliers)[0]
            candidates = [(names[int(i)], float(scores[int(i)])) for i in order]
            cosine, inliers, margin = match_evidence(best, candidates)
            rows["cosine"].append(cosine)
            rows["inliers"].append(inliers or 0)
            rows["margin"].append(margin)
            rows["right"].append(not is_stranger and best.label == names[query])
            rows["stranger"].append(is_stranger)
        if progress is not None:
            progress(done, len(queries))
    return CalibrationSamples(
        cosine=np.asarray(rows["cosine"], dtype=np.float64), inliers=np.asarray(rows["inliers"], dtype=np.int64),
        margin=np.asarray(rows["margin"], dtype=np.float64), right=np.asarray(rows["right"], dtype=bool),
        stranger=np.asarray(rows["stranger"], dtype=bool),
    )


def _verified_matches(order: np.ndarray, scores: np.ndarray, names: list[str],
                      local_features: Sequence[Optional[LocalFeatures]], matcher: Optional[PhotoMatcher],
                      params: PipelineParams, verifier: GeometricVerifier) -> list[Match]:
    """The candidates at `order` as matches, with inliers from `matcher`'s query (None: not verified)."""
    matches = [Match(int(i), names[int(i)], float(scores[int(i)])) for i in order]
    if matcher is None:
        return matches
    top = [int(i) for i in order[: params.verify_top_k]]
    query = matcher.photo
    found = verifier.verify(query, [local_features[i] for i in top], min_matches=params.min_inliers,
                            matcher=matcher, rows=np.arange(len(query)), keys=top)
    inliers = {item: result.inliers for item, result in zip(top, found) if result is not None}
    return [Match(m.item_id, m.label, m.score, inliers.get(m.item_id)) for m in matches]


def calibrate_gallery(vectors: np.ndarray, labels: Sequence[str], local_features: Sequence[Optional[LocalFeatures]], *,
                      params: Optional[PipelineParams] = None, verifier: Optional[GeometricVerifier] = None,
                      max_queries: int = 400, seed: int = 0, target: float = PRECISION_TARGET,
                      progress: Optional[Callable[[int, int], None]] = None) -> Calibration:
    """A tenant gallery's own calibration (see `gallery_samples`); DEFAULT_CALIBRATION when it is too small
    (< MIN_IMAGES images or < MIN_PRODUCTS products) or its leave-one-out has no right (or no wrong) answer."""
    if len(labels) < MIN_IMAGES or len(set(map(str, labels))) < MIN_PRODUCTS:
        return DEFAULT_CALIBRATION
    samples = gallery_samples(vectors, labels, local_features, params=params, verifier=verifier,
                              max_queries=max_queries, seed=seed, progress=progress)
    if not 0 < samples.right.sum() < len(samples.right):
        return DEFAULT_CALIBRATION
    params = params or PipelineParams()
    return fit_calibration(samples.cosine, samples.inliers, samples.margin, samples.right, stranger=samples.stranger,
                           photo_candidates=params.max_det_results + int(params.add_whole_image),
                           trust_verified_from=params.min_inliers if params.verify else None, target=target)


__all__ = [
    "Calibration",
    "CalibrationSamples",
    "DEFAULT_CALIBRATION",
    "EVIDENCE",
    "FEATURES",
    "INLIER_CAP",
    "MARGIN_CAP",
    "MIN_IMAGES",
    "MIN_PRODUCTS",
    "PRECISION_TARGET",
    "THRESHOLD_FLOOR",
    "calibrate_gallery",
    "choose_threshold",
    "fit_calibration",
    "gallery_samples",
    "label_cosine",
    "margin_to_rival",
    "match_evidence",
]
