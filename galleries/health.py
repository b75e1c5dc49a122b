"""Gallery health: what to fix in a gallery before recognition gets it wrong, computed in a worker after each import.

Four findings, from the serving extractor's vectors (pgvector) and the references' stored RootSIFT features:
- confusable products: two references under different labels that are each other's nearest neighbour;
- near-duplicate photos under different labels (cosine >= NEAR_DUPLICATE_COSINE);
- products with fewer than MIN_REFERENCES ready references;
- references that no sibling of their own product verifies (best homography below the pipeline's min_inliers).

Cost: one Faiss kNN search of every vector (k = NEIGHBOURS + 1, the gallery's index type: exact Flat below 50,000
vectors), so O(n*k) pairs are examined in numpy; each reference is verified against at most VERIFY_SIBLINGS
siblings (its nearest by cosine), so at most O(n*VERIFY_SIBLINGS) homographies, fewer as verified pairs confirm
both photos. Each list keeps its worst MAX_FINDINGS.
"""
from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from galleries.local_features import local_features_for_embeddings
from galleries.models import Embedding, Gallery, GalleryHealth, Product, ReferenceImage
from galleries.pgvector_search import fetch_vectors
from recognition.engine.local_features import LocalFeatures
from recognition.engine.pipeline import PipelineParams
from recognition.engine.search import VectorIndex
from recognition.engine.verify import GeometricVerifier

logger = logging.getLogger(__name__)

NEIGHBOURS = 10
# Measured with the shipped extractor on drink-dev (518 photos, 106 products): a copy of a photo saved again (JPEG q70
# at 0.8x) reaches 0.85 in 95% of cases (median 0.936; 0.97 would find only 13%), while the closest photos of two
# different products stay at or below 0.563, look-alike flavours included. Distinct photos of one product reach it
# 8% of the time: under two labels that is one product filed twice, which is worth a merge too.
NEAR_DUPLICATE_COSINE = 0.85
MIN_REFERENCES = 3
VERIFY_SIBLINGS = 10
MAX_FINDINGS = 500
_SIMILARITY_CHUNK = 256  # rows of a product's sibling cosine matrix computed at once (bounded memory)

KINDS = ("confusable_pairs", "near_duplicates", "few_references", "unverified_references")


@dataclass(frozen=True)
class GalleryVectors:
    """The ready references of one gallery under one model, in one order: row i is embedding `embedding_ids[i]`."""

    embedding_ids: np.ndarray  # int64
    image_ids: np.ndarray  # int64
    product_ids: np.ndarray  # int64
    vectors: np.ndarray  # (n, d) float32, L2-normalised


# --- the computation (numpy + the engine; no rows written) ---


def nearest_neighbours(vectors: np.ndarray, *, k: int, index_type: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows) of each row's k nearest other rows by inner product, best first; padded with -inf / -1."""
    count = len(vectors)
    if count < 2:
        return np.zeros((count, 0), np.float32), np.zeros((count, 0), np.int64)
    index = VectorIndex(dim=vectors.shape[1], index_type=index_type, threads=settings.ENGINE_THREADS)
    index.build(np.arange(count, dtype=np.int64), vectors)
    depth = min(k + 1, count)  # +1: a row finds itself
    scores, rows = index.search(vectors, depth)
    own = rows == np.arange(count)[:, None]
    # drop each row's own hit (wherever an exact duplicate put it) and keep k columns
    scores, rows = np.where(own, -np.inf, scores), np.where(own, -1, rows)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)


def confusable_pairs(data: GalleryVectors, scores: np.ndarray, rows: np.ndarray) -> list[dict]:
    """Product pairs with two references that are each other's nearest neighbour, best cosine first; each pair
    keeps its closest two references (shown side by side) and how many such mutual pairs it has."""
    if not rows.size:
        return []
    first = rows[:, 0]
    count = len(first)
    mine = np.arange(count)
    partner = np.where(first >= 0, first, 0)
    mutual = (first >= 0) & (first[partner] == mine) & (mine < partner)
    mutual &= data.product_ids[mine] != data.product_ids[partner]
    pairs: dict[tuple[int, int], dict] = {}
    for a in np.flatnonzero(mutual):
        b = int(partner[a])
        if data.product_ids[a] > data.product_ids[b]:
            a, b = b, int(a)
        key = (int(data.product_ids[a]), int(data.product_ids[b]))
        cosine = float(scores[a, 0] if rows[a, 0] == b else scores[b, 0])
        found = pairs.get(key)
        if found is None:
            pairs[key] = found = {"product_a": key[0], "product_b": key[1], "mutual_pairs": 0, "cosine": -np.inf}
        found["mutual_pairs"] += 1
        if cosine > found["cosine"]:
            found.update(cosine=round(cosine, 4), image_a=int(data.image_ids[a]), image_b=int(data.image_ids[b]))
    return sorted(pairs.values(), key=lambda pair: (-pair["cosine"], pair["product_a"], pair["product_b"]))


def near_duplicates(data: GalleryVectors, scores: np.ndarray, rows: np.ndarray, *,
                    threshold: float = NEAR_DUPLICATE_COSINE) -> list[dict]:
    """Reference pairs under different labels whose cosine reaches `threshold`, highest first (each pair once)."""
    if not rows.size:
        return []
    mine = np.repeat(np.arange(len(rows)), rows.shape[1])
    other, cosine = rows.ravel(), scores.ravel()
    keep = (other >= 0) & (cosine >= threshold)
    mine, other, cosine = mine[keep], other[keep], cosine[keep]
    keep = data.product_ids[mine] != data.product_ids[other]
    found: dict[tuple[int, int], float] = {}
    for a, b, value in zip(mine[keep].tolist(), other[keep].tolist(), cosine[keep].tolist()):
        pair = (min(a, b), max(a, b))
        found[pair] = max(found.get(pair, -np.inf), value)
    out = [{"image_a": int(data.image_ids[a]), "product_a": int(data.product_ids[a]),
            "image_b": int(data.image_ids[b]), "product_b": int(data.product_ids[b]), "cosine": round(value, 4)}
           for (a, b), value in found.items()]
    return sorted(out, key=lambda pair: (-pair["cosine"], pair["image_a"], pair["image_b"]))


def unverified_references(data: GalleryVectors, features_of: Callable[[np.ndarray], dict[int, LocalFeatures]], *,
                          min_inliers: int, verifier: GeometricVerifier | None = None,
                          siblings: int = VERIFY_SIBLINGS) -> list[dict]:
    """References of products with >= 2 references that none of their nearest `siblings` same-product references
    verifies (homography inliers < `min_inliers`), fewest inliers first. `features_of(embedding ids)` loads one
    product's stored features at a time, so memory stays at one product's worth."""
    verifier = verifier or GeometricVerifier()
    out = []
    order = np.argsort(data.product_ids, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(data.product_ids[order]) != 0])
    for group in np.split(order, starts[1:]):
        if len(group) < 2:
            continue
        features = features_of(data.embedding_ids[group])
        local = [features.get(int(embedding_id)) for embedding_id in data.embedding_ids[group]]
        vectors = data.vectors[group]
        depth = min(siblings, len(group) - 1)
        # a pair that verifies one way confirms both photos: a sibling confirmed earlier is not verified again
        confirmed = np.zeros(len(group), dtype=bool)
        for start in range(0, len(group), _SIMILARITY_CHUNK):
            similarity = vectors[start:start + _SIMILARITY_CHUNK] @ vectors.T
            for offset, row in enumerate(similarity):
                position = start + offset
                if confirmed[position]:
                    continue
                row[position] = -np.inf
                nearest = np.argsort(-row, kind="stable")[:depth]
                query = local[position]
                if query is None or len(query) < min_inliers:
                    best, reason = 0, "no_local_features"
                else:
                    found = verifier.verify(query, [local[i] for i in nearest], min_matches=min_inliers)
                    best = max((result.inliers for result in found if result is not None), default=0)
                    reason = "below_min_inliers"
                    for sibling, result in zip(nearest, found):
                        if result is not None and result.inliers >= min_inliers:
                            confirmed[sibling] = True
                if best < min_inliers:
                    out.append({"image": int(data.image_ids[group[position]]),
                                "product": int(data.product_ids[group[position]]), "best_inliers": int(best),
                                "siblings": int(depth), "reason": reason})
    return sorted(out, key=lambda item: (item["best_inliers"], item["product"], item["image"]))


# --- the Django side: read the gallery, store the report ---


def gallery_vectors(*, gallery: Gallery, model_key: str) -> GalleryVectors:
    """The gallery's ready references with a `model_key` vector, read with binary COPY (no per-row parsing)."""
    ids, vectors = fetch_vectors(gallery, model_key)
    owners = dict(
        (pk, (image_id, product_id)) for pk, image_id, product_id in
        Embedding.objects.for_tenant(gallery.tenant)
        .filter(gallery=gallery, model_key=model_key, reference_image__status=ReferenceImage.Status.READY)
        .values_list("pk", "reference_image_id", "reference_image__product_id")
    )
    keep = np.array([int(pk) in owners for pk in ids], dtype=bool)
    ids, vectors = ids[keep], vectors[keep]
    image_ids = np.array([owners[int(pk)][0] for pk in ids], dtype=np.int64)
    product_ids = np.array([owners[int(pk)][1] for pk in ids], dtype=np.int64)
    return GalleryVectors(ids, image_ids, product_ids, np.ascontiguousarray(vectors, dtype=np.float32))


def few_references(*, gallery: Gallery) -> list[dict]:
    """Products with fewer than MIN_REFERENCES ready references (0 included: nothing can recognise them)."""
    rows = (Product.objects.for_tenant(gallery.tenant).filter(gallery=gallery)
            .annotate(ready=Count("reference_images", filter=Q(reference_images__status=ReferenceImage.Status.READY)))
            .filter(ready__lt=MIN_REFERENCES).order_by("ready", "label", "pk").values_list("pk", "ready"))
    return [{"product": pk, "references": ready} for pk, ready in rows]


def gallery_health_compute(*, gallery: Gallery, model_key: str) -> dict:
    """The report of the gallery as it is now (JSON-ready). Reads only; see the module docstring for its cost."""
    params = PipelineParams()
    started = time.perf_counter()
    version = Gallery.objects.for_tenant(gallery.tenant).values_list("index_version", flat=True).get(pk=gallery.pk)
    data = gallery_vectors(gallery=gallery, model_key=model_key)
    loaded = time.perf_counter()
    scores, rows = nearest_neighbours(data.vectors, k=NEIGHBOURS, index_type=settings.SHITU_INDEX_TYPE)
    searched = time.perf_counter()
    findings = {
        "confusable_pairs": confusable_pairs(data, scores, rows),
        "near_duplicates": near_duplicates(data, scores, rows),
        "few_references": few_references(gallery=gallery),
    }
    tenant = gallery.tenant
    findings["unverified_references"] = unverified_references(
        data, lambda ids: local_features_for_embeddings(tenant=tenant, embedding_ids=ids.tolist()),
        min_inliers=params.min_inliers)
    verified = time.perf_counter()
    return {
        "model_key": model_key, "index_version": version, "images": int(len(data.image_ids)),
        "products": int(len(set(data.product_ids.tolist()))),
        "params": {"neighbours": NEIGHBOURS, "near_duplicate_cosine": NEAR_DUPLICATE_COSINE,
                   "min_references": MIN_REFERENCES, "min_inliers": params.min_inliers, "verify_siblings": VERIFY_SIBLINGS},
        "counts": {kind: len(findings[kind]) for kind in KINDS},
        **{kind: findings[kind][:MAX_FINDINGS] for kind in KINDS},
        "timings_ms": {"load": round((loaded - started) * 1000, 1), "knn": round((searched - loaded) * 1000, 1),
                       "verify": round((verified - searched) * 1000, 1), "total": round((verified - started) * 1000, 1)},
    }


def gallery_health_refresh(*, gallery: Gallery) -> GalleryHealth:
    """Compute and store the gallery's report with its serving model (worker code); a failure is recorded, not raised."""
    from galleries.selectors import serving_model_key

    health = _health_row(gallery)
    GalleryHealth.objects.for_tenant(gallery.tenant).filter(pk=health.pk).update(status=GalleryHealth.Status.RUNNING)
    try:
        model_key = serving_model_key(gallery=gallery)
        report = gallery_health_compute(gallery=gallery, model_key=model_key)
    except Exception as error:  # noqa: BLE001 - the page says why, and the previous report stays readable
        logger.exception("gallery health of gallery %s failed", gallery.pk)
        GalleryHealth.objects.for_tenant(gallery.tenant).filter(pk=health.pk).update(
            status=GalleryHealth.Status.FAILED, failure_reason=f"{type(error).__name__}: {error}"[:2000])
    else:
        GalleryHealth.objects.for_tenant(gallery.tenant).filter(pk=health.pk).update(
            status=GalleryHealth.Status.DONE, report=report, model_key=model_key, index_version=report["index_version"],
            failure_reason="", computed_at=timezone.now())
    health.refresh_from_db()
    return health


def gallery_health_refresh_later(*, gallery: Gallery) -> GalleryHealth:
    """Mark the report queued and queue its computation (after the commit); one queued run per gallery at a time."""
    health = _health_row(gallery)
    GalleryHealth.objects.for_tenant(gallery.tenant).filter(pk=health.pk).exclude(
        status=GalleryHealth.Status.RUNNING).update(status=GalleryHealth.Status.QUEUED, requested_at=timezone.now())
    health.refresh_from_db()
    if cache.add(_queued_key(gallery.pk), "1", timeout=600):
        from galleries.tasks import compute_gallery_health

        tenant_id, gallery_id = gallery.tenant_id, gallery.pk
        transaction.on_commit(lambda: compute_gallery_health.apply_async(args=[tenant_id, gallery_id], queue="default"))
    return health


def gallery_health_run(*, tenant_id: int, gallery_id: int) -> dict:
    """The task's body: re-read the gallery with its tenant, then refresh its report."""
    from shitu_platform.tenancy.models import Tenant

    cache.delete(_queued_key(gallery_id))  # a change from now on queues another run
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    gallery = Gallery.objects.for_tenant(tenant).filter(pk=gallery_id).first() if tenant is not None else None
    if gallery is None:
        return {"skipped": "the gallery is gone"}
    health = gallery_health_refresh(gallery=gallery)
    return {"status": health.status, **health.report.get("counts", {})}


def _health_row(gallery: Gallery) -> GalleryHealth:
    health = GalleryHealth.objects.for_tenant(gallery.tenant).filter(gallery=gallery).first()
    if health is None:
        health, _ = GalleryHealth.objects.for_tenant(gallery.tenant).get_or_create(
            gallery=gallery, defaults={"tenant": gallery.tenant})
    return health


def _queued_key(gallery_id: int) -> str:
    return f"galleries:health:{gallery_id}"


# --- reading a stored report ---


@dataclass(frozen=True)
class HealthFindings:
    """A stored report resolved against the gallery as it is now: findings about deleted products or images are
    dropped (fixed since), labels are today's, and `stale` says the gallery changed since it was computed."""

    confusable_pairs: list[dict]
    near_duplicates: list[dict]
    few_references: list[dict]
    unverified_references: list[dict]
    stale: bool

    @property
    def total(self) -> int:
        return sum(len(getattr(self, kind)) for kind in KINDS)


def health_findings(*, health: GalleryHealth | None) -> HealthFindings:
    if health is None or not health.report:
        return HealthFindings([], [], [], [], stale=False)
    report, tenant = health.report, health.tenant
    product_ids = {item[field] for kind in KINDS for item in report.get(kind, [])
                   for field in ("product", "product_a", "product_b") if field in item}
    image_ids = {item[field] for kind in KINDS for item in report.get(kind, [])
                 for field in ("image", "image_a", "image_b") if field in item}
    products = {row["pk"]: row for row in Product.objects.for_tenant(tenant).filter(
        gallery_id=health.gallery_id, pk__in=product_ids).values("pk", "label", "display_name")}
    images = dict(ReferenceImage.objects.for_tenant(tenant).filter(
        gallery_id=health.gallery_id, pk__in=image_ids).values_list("pk", "product_id"))
    ready = dict(Product.objects.for_tenant(tenant).filter(pk__in=product_ids).annotate(
        ready=Count("reference_images", filter=Q(reference_images__status=ReferenceImage.Status.READY)))
        .values_list("pk", "ready"))

    def resolved(item: dict) -> dict | None:
        out = dict(item)
        for suffix in ("", "_a", "_b"):
            product_id, image_id = item.get(f"product{suffix}"), item.get(f"image{suffix}")
            if product_id is not None:
                if product_id not in products:
                    return None
                out[f"label{suffix}"] = products[product_id]["label"]
            if image_id is not None and images.get(image_id) != product_id:
                return None  # deleted, or moved to another product (merged) since
        return out

    kept = {kind: [found for found in map(resolved, report.get(kind, [])) if found is not None] for kind in KINDS}
    # a product since given enough photos is fixed; show the count as it is now
    kept["few_references"] = [dict(item, references=ready.get(item["product"], 0)) for item in kept["few_references"]
                              if ready.get(item["product"], 0) < report.get("params", {}).get("min_references", MIN_REFERENCES)]
    current = Gallery.objects.for_tenant(tenant).values_list("index_version", flat=True).get(pk=health.gallery_id)
    return HealthFindings(**kept, stale=health.index_version is not None and health.index_version != current)


CSV_COLUMNS = ["finding", "product_id", "label", "other_product_id", "other_label", "image_id", "other_image_id",
               "cosine", "references", "best_inliers", "detail"]


def health_csv(findings: HealthFindings) -> str:
    """One row per finding; cells a spreadsheet would run as a formula are prefixed with an apostrophe."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for pair in findings.confusable_pairs:
        writer.writerow(_cells("confusable_pair", pair["product_a"], pair["label_a"], pair["product_b"], pair["label_b"],
                               pair["image_a"], pair["image_b"], pair["cosine"], "", "",
                               f"{pair['mutual_pairs']} mutual nearest-neighbour pair(s)"))
    for pair in findings.near_duplicates:
        writer.writerow(_cells("near_duplicate", pair["product_a"], pair["label_a"], pair["product_b"], pair["label_b"],
                               pair["image_a"], pair["image_b"], pair["cosine"], "", "", ""))
    for item in findings.few_references:
        writer.writerow(_cells("few_references", item["product"], item["label"], "", "", "", "", "",
                               item["references"], "", f"fewer than {MIN_REFERENCES} ready references"))
    for item in findings.unverified_references:
        writer.writerow(_cells("unverified_reference", item["product"], item["label"], "", "", item["image"], "", "",
                               "", item["best_inliers"], item["reason"]))
    return buffer.getvalue()


def _cells(*values: object) -> list[str]:
    """Labels are free text: one starting like a formula is quoted; numbers (a negative cosine) are left alone."""
    return [f"'{value}" if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") else str(value)
            for value in values]
