"""The review loop: user feedback and low-margin matches become review items; staff confirm or relabel them.

A relabel turns the query's crop into a new reference image of the right product, so the same photo is
answered correctly on the next request; resolved reviews give each gallery a precision figure.
"""
from __future__ import annotations

import io
import time
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone
from PIL import Image

from galleries.models import Gallery, Product, ReferenceImage
from galleries.services import reference_image_upload
from recognition.engine.boxes import crop
from recognition.engine.imageio import load_image
from recognition.models import MatchReview, Recognition
from shitu_platform.errors import PlatformError
from shitu_platform.object_store import object_store


class InvalidFeedback(PlatformError):
    code = "invalid_feedback"
    http_status = 400


@dataclass(frozen=True)
class FeedbackOutcome:
    review: MatchReview
    created: bool  # False: the object already had user feedback (kept when the same, replaced when not)


def feedback_submit(
    *, recognition: Recognition, rank: int, verdict: str, product: Product | None = None, flagged_by: str = ""
) -> FeedbackOutcome:
    """Record a user's verdict on one object of a recognition; `correct` confirms it, the others open a review.

    Idempotent, since mobile clients retry: one review per object, and the same verdict again changes nothing (a
    staff decision on it stands); a different verdict replaces the earlier one."""
    detected = recognition.detected_objects.filter(rank=rank).first()
    if detected is None:
        raise InvalidFeedback(f"this recognition has no object {rank}", details={"object": rank})
    if verdict == MatchReview.Verdict.WRONG and product is None:
        raise InvalidFeedback("a 'wrong' verdict needs the right product", details={"product": "required"})
    if product is not None and product.gallery_id != recognition.gallery_id:
        raise InvalidFeedback("the product is not in the recognition's gallery", details={"product": product.pk})
    status = MatchReview.Status.CONFIRMED if verdict == MatchReview.Verdict.CORRECT else MatchReview.Status.OPEN
    fields = {"reason": MatchReview.Reason.FLAGGED, "verdict": verdict, "suggested_product": product,
              "flagged_by": flagged_by[:150], "status": status}
    reviews = MatchReview.objects.for_tenant(recognition.tenant)
    review, created = reviews.get_or_create(  # get_or_create: two racing first sends still make one row
        detected_object=detected, defaults={"tenant": recognition.tenant, "gallery_id": recognition.gallery_id, **fields}
    )
    if created:
        return FeedbackOutcome(review, created=True)
    first_from_user = review.reason != MatchReview.Reason.FLAGGED  # a low-margin review the user now speaks to
    if first_from_user or (review.verdict, review.suggested_product_id) != (verdict, product.pk if product else None):
        for name, value in fields.items():
            setattr(review, name, value)
        review.save(update_fields=list(fields))
    return FeedbackOutcome(review, created=first_from_user)


def low_margin_reviews_open(*, recognition: Recognition) -> int:
    """Queue objects whose best product beat the runner-up product by less than SHITU_REVIEW_MARGIN."""
    thin = recognition.detected_objects.filter(margin__lt=settings.SHITU_REVIEW_MARGIN, review__isnull=True)
    created = 0
    for detected in thin:
        MatchReview(tenant_id=recognition.tenant_id, detected_object=detected, gallery_id=recognition.gallery_id,
                    reason=MatchReview.Reason.LOW_MARGIN).save()
        created += 1
    return created


def review_confirm(*, review: MatchReview, reviewer=None) -> MatchReview:
    return _resolve(review, MatchReview.Status.CONFIRMED, reviewer, resolved_product=review.detected_object.product)


def review_mark_unknown(*, review: MatchReview, reviewer=None) -> MatchReview:
    return _resolve(review, MatchReview.Status.UNKNOWN_PRODUCT, reviewer)


def review_relabel(*, review: MatchReview, product: Product, reviewer=None, wait_seconds: float | None = None) -> MatchReview:
    """Add the object's crop as a reference image of `product` and wait (briefly) until it is searchable."""
    if product.gallery_id != review.gallery_id or product.tenant_id != review.tenant_id:
        raise InvalidFeedback("the product is not in the review's gallery")
    detected = review.detected_object
    query = load_image(object_store().get(detected.recognition.image_key), max_pixels=settings.SHITU_MAX_IMAGE_PIXELS)
    buffer = io.BytesIO()
    Image.fromarray(crop(query, detected.bbox)).save(buffer, "PNG")  # lossless: the next identical query matches exactly
    with transaction.atomic():
        outcome = reference_image_upload(product=product, data=buffer.getvalue())
        review = _resolve(review, MatchReview.Status.RELABELLED, reviewer, resolved_product=product,
                          new_reference_image=outcome.reference_image)
    if not transaction.get_connection().in_atomic_block:
        # inside a caller's transaction (the admin's save) the embed is queued only when it commits: waiting
        # here could only run out the timeout
        _wait_until_embedded(outcome.reference_image.pk,
                             settings.SHITU_RECOGNITION_TIMEOUT if wait_seconds is None else wait_seconds)
    return review


def gallery_review_precision(*, gallery: Gallery) -> dict[str, float | int | None]:
    """Of the reviewed objects, the share whose predicted product was right."""
    counts = MatchReview.objects.for_tenant(gallery.tenant).filter(gallery=gallery).aggregate(
        confirmed=Count("pk", filter=Q(status=MatchReview.Status.CONFIRMED)),
        wrong=Count("pk", filter=Q(status__in=[MatchReview.Status.RELABELLED, MatchReview.Status.UNKNOWN_PRODUCT])),
        open=Count("pk", filter=Q(status=MatchReview.Status.OPEN)),
    )
    resolved = counts["confirmed"] + counts["wrong"]
    return {**counts, "precision": round(counts["confirmed"] / resolved, 4) if resolved else None}


def review_queue(*, reviews: QuerySet) -> QuerySet:
    """Staff's queue: least certain first (the calibrated confidence where the gallery has one, else the score)."""
    return reviews.annotate(certainty=Coalesce("detected_object__confidence", "detected_object__score")).order_by(
        "certainty", "created_at", "pk")


def reviews_relabel(*, reviews: Sequence[MatchReview], product: Product, reviewer=None) -> list[MatchReview]:
    """Relabel several reviews to one product: each crop becomes a reference image of it, as a single relabel does.
    All of them must be in the product's gallery; nothing is changed otherwise."""
    strays = [review.pk for review in reviews if review.gallery_id != product.gallery_id or review.tenant_id != product.tenant_id]
    if strays:
        raise InvalidFeedback("the reviews are not all in the product's gallery", details={"reviews": strays})
    return [review_relabel(review=review, product=product, reviewer=reviewer, wait_seconds=0) for review in reviews]


def reviews_dismiss(*, reviews: QuerySet) -> int:
    """Drop open low-margin items from the queue: the platform queued them, so a person's "not worth a verdict" ends
    them. What a user flagged stays, since it is their word on the match; answers how many were dropped."""
    _, deleted = reviews.filter(reason=MatchReview.Reason.LOW_MARGIN, status=MatchReview.Status.OPEN).delete()
    return deleted.get(MatchReview._meta.label, 0)


def _resolve(review: MatchReview, status: str, reviewer, **fields) -> MatchReview:
    for name, value in fields.items():
        setattr(review, name, value)
    review.status = status
    review.reviewed_by = reviewer if getattr(reviewer, "pk", None) else None
    review.reviewed_at = timezone.now()
    review.save()
    return review


def _wait_until_embedded(reference_image_id: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = ReferenceImage.unscoped.filter(pk=reference_image_id).values_list("status", flat=True).first()
        if status != ReferenceImage.Status.PENDING:
            return True
        time.sleep(0.1)
    return False
