"""Dashboard pages for recognition: try a photo, past recognitions, and the admins' review queue.

The Try-it page posts straight to the REST API (session auth + CSRF) and draws the answer in the browser;
these views render pages, serve pictures (query photos, object crops, reference thumbnails, matched-keypoint
evidence) and resolve reviews through `recognition.reviews`. Every row comes through the tenant-scoped mixin
or `Model.objects.for_tenant()`.
"""
from __future__ import annotations

import io
import logging
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.db.models import Count, F, IntegerField, OuterRef, Prefetch, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views import View
from django.views.generic import DetailView, ListView, TemplateView
from django.views.generic.detail import SingleObjectMixin
from PIL import Image, ImageDraw

from galleries.models import Gallery, Product, ReferenceImage
from recognition import reviews
from recognition.admin import jpeg_thumbnail
from recognition.engine.errors import EngineError
from recognition.evidence import stored_evidence_jpeg
from recognition.models import DetectedObject, MatchReview, Recognition
from shitu_platform.errors import PlatformError, error_body
from shitu_platform.object_store import object_store
from shitu_platform.storage.base import ObjectStoreError
from shitu_platform.tenancy.models import Role
from shitu_platform.tenancy.scoping import TenantDashboardMixin, TenantScopedDashboardMixin

logger = logging.getLogger(__name__)

BOX_COLOURS = 8  # recognition.css defines .obj-c0 … .obj-c7; objects cycle through them
QUERY_IMAGE_SIDES = {"full": 1600, "thumb": 240}
CROP_SIDE = 240
REFERENCE_THUMB_SIDE = 200
RECOGNITIONS_PER_PAGE = 50
REVIEWS_PER_PAGE = 50
SCORE_BANDS = {  # key: (label, low inclusive, high exclusive)
    "lt50": ("below 0.50", 0.0, 0.5),
    "50-70": ("0.50 – 0.70", 0.5, 0.7),
    "70-90": ("0.70 – 0.90", 0.7, 0.9),
    "ge90": ("0.90 and up", 0.9, 1.01),
}
TIMING_NAMES = [("queue_ms", "queue"), ("detect_ms", "detect"), ("extract_ms", "extract"), ("search_ms", "search"),
                ("verify_ms", "verify"), ("total_ms", "worker total")]
_ANY_ID = uuid.UUID(int=0)


# --- pictures -------------------------------------------------------------------------------------

def _jpeg_or_none(*, key: str, box: list[float] | None, max_side: int, what: str) -> bytes | None:
    """A JPEG of the stored image (cropped to `box`), or None when it cannot be read or decoded."""
    try:
        return jpeg_thumbnail(object_store().get(key), box, max_side=max_side)
    except (EngineError, ObjectStoreError, OSError, ValueError) as error:
        logger.info("no picture for %s: %s", what, error)
    except Exception:  # noqa: BLE001 - a picture must never turn into a server error page
        logger.exception("unexpected failure drawing %s", what)
    return None


@lru_cache(maxsize=1)
def _placeholder_jpeg() -> bytes:
    """Grey tile with a faint broken-picture mark, served in place of an image that cannot be decoded."""
    image = Image.new("RGB", (160, 160), (222, 225, 231))
    draw = ImageDraw.Draw(image)
    ink = (170, 176, 188)
    draw.rounded_rectangle([42, 48, 118, 112], radius=6, outline=ink, width=3)
    draw.ellipse([54, 60, 68, 74], fill=ink)
    draw.polygon([(48, 106), (74, 80), (86, 92), (96, 84), (112, 106)], fill=ink)
    draw.line([(36, 124), (124, 36)], fill=ink, width=3)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def _picture_response(data: bytes | None) -> HttpResponse:
    if data is None:
        response = HttpResponse(_placeholder_jpeg(), content_type="image/jpeg")
        response["Cache-Control"] = "private, max-age=60"  # may be a passing storage outage: ask again soon
        response["X-Shitu-Placeholder"] = "1"
        return response
    response = HttpResponse(data, content_type="image/jpeg")
    # Stored query photos and reference images never change under their ids.
    response["Cache-Control"] = "private, max-age=86400"
    return response


class RecognitionImageView(TenantScopedDashboardMixin, SingleObjectMixin, View):
    """The query photo, EXIF-upright, scaled down: `?size=thumb` (240 px) or full (1600 px)."""

    scoped_model = Recognition
    slug_field = slug_url_kwarg = "public_id"
    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        recognition = self.get_object()
        max_side = QUERY_IMAGE_SIDES.get(request.GET.get("size", "full"), QUERY_IMAGE_SIDES["full"])
        return _picture_response(
            _jpeg_or_none(key=recognition.image_key, box=None, max_side=max_side, what=f"recognition {recognition.public_id}")
        )


def _object_at(objects: QuerySet, public_id: uuid.UUID, position: int) -> DetectedObject:
    """The object at `position` in the recognition's `objects`, the same index the feedback API takes (stored
    ranks can skip a number when an object lost all its matches); 404 when there is none in `objects`."""
    ranked = objects.filter(recognition__public_id=public_id).select_related("recognition").order_by("rank")
    detected = next(iter(ranked[position:position + 1]), None)
    if detected is None:
        raise Http404("No such object.")
    return detected


class ObjectCropView(TenantScopedDashboardMixin, View):
    """The crop of one detected object, by its position in the recognition (see `_object_at`)."""

    scoped_model = DetectedObject
    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest, public_id: uuid.UUID, position: int) -> HttpResponse:
        detected = _object_at(self.get_queryset(), public_id, position)
        return _picture_response(
            _jpeg_or_none(key=detected.recognition.image_key, box=detected.bbox, max_side=CROP_SIDE,
                          what=f"object {position} of recognition {public_id}")
        )


def _evidence_or_none(detected: DetectedObject, reference_image: ReferenceImage, *, what: str) -> bytes | None:
    """The object's matched-keypoint picture, or None when a stored picture (or the record) cannot be read."""
    try:
        return stored_evidence_jpeg(detected, reference_image)
    except (EngineError, ObjectStoreError, OSError, ValueError) as error:
        logger.info("no evidence picture for %s: %s", what, error)
    except Exception:  # noqa: BLE001 - a picture must never turn into a server error page
        logger.exception("unexpected failure drawing evidence for %s", what)
    return None


class ObjectEvidenceView(TenantScopedDashboardMixin, View):
    """Why an object was matched: its crop beside the best match's reference image, a line per matched keypoint.

    An object of this tenant without geometric evidence (not verified, or its reference image deleted since)
    answers 404 `no_evidence`; another tenant's object is the plain 404 of any missing object."""

    scoped_model = DetectedObject
    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest, public_id: uuid.UUID, position: int) -> HttpResponse:
        detected = _object_at(self.get_queryset(), public_id, position)
        reference_image = (ReferenceImage.objects.for_tenant(self.tenant).filter(pk=detected.reference_image_id).first()
                           if detected.evidence and detected.reference_image_id else None)
        if reference_image is None:
            return JsonResponse(error_body("no_evidence", "This object was not verified geometrically: "
                                                          "there are no matched keypoints to draw."), status=404)
        return _picture_response(_evidence_or_none(detected, reference_image, what=f"object {position} of recognition {public_id}"))


class ReferenceImageThumbView(TenantScopedDashboardMixin, SingleObjectMixin, View):
    """A reference image of a match, cropped to its product box when one is known."""

    scoped_model = ReferenceImage
    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        reference_image = self.get_object()
        return _picture_response(
            _jpeg_or_none(key=reference_image.object_key, box=reference_image.bbox or None, max_side=REFERENCE_THUMB_SIDE,
                          what=f"reference image {reference_image.pk}")
        )


# --- what the templates and the page script draw ---------------------------------------------------

@dataclass
class MatchView:
    label: str
    display_name: str
    score: float
    product_id: int | None
    reference_image_id: int | None
    thumb_url: str | None
    inliers: int | None = None


@dataclass
class ObjectView:
    """One detected object as the pages draw it: box position in percent of the photo, colour, matches."""

    position: int
    public_id: uuid.UUID  # of the recognition: with `position`, names the object's pictures
    detected: DetectedObject
    colour: str
    box_style: str
    tag_inside: bool
    matches: list[MatchView] = field(default_factory=list)
    review: MatchReview | None = None

    @property
    def crop_url(self) -> str:
        return crop_url(self.public_id, self.position)

    @property
    def evidence_url(self) -> str | None:
        """The matched-keypoint picture, where the object has geometric evidence to draw."""
        if not (self.detected.evidence and self.detected.reference_image_id):
            return None
        return reverse("dashboard:recognition-evidence", args=[self.public_id, self.position])

    @property
    def best(self) -> MatchView | None:
        return self.matches[0] if self.matches else None

    @property
    def runner_up(self) -> MatchView | None:
        best = self.best
        return next((m for m in self.matches[1:] if best and m.product_id != best.product_id), None)


def box_style(bbox: list[float], width: int, height: int) -> tuple[str, bool]:
    """CSS placing a box over the photo in percent (so it follows any displayed size); True when the tag
    goes inside the box because there is no room above it."""
    try:
        xmin, ymin, xmax, ymax = (float(v) for v in bbox)
    except (TypeError, ValueError):  # a malformed stored box is not drawn rather than breaking the page
        return "display:none", False
    width, height = max(width, 1), max(height, 1)
    left, top = max(0.0, xmin / width * 100), max(0.0, ymin / height * 100)
    right, bottom = min(100.0, xmax / width * 100), min(100.0, ymax / height * 100)
    style = f"left:{left:.3f}%;top:{top:.3f}%;width:{max(right - left, 0.5):.3f}%;height:{max(bottom - top, 0.5):.3f}%"
    return style, top < 7


def reference_thumb_url(reference_image_id: int) -> str:
    return reverse("dashboard:recognition-reference-thumb", args=[reference_image_id])


def crop_url(public_id: uuid.UUID, position: int) -> str:
    return reverse("dashboard:recognition-crop", args=[public_id, position])


def object_views(recognition: Recognition, detected_objects: list[DetectedObject]) -> list[ObjectView]:
    views = []
    for position, detected in enumerate(sorted(detected_objects, key=lambda d: d.rank)):
        style, tag_inside = box_style(detected.bbox, recognition.image_width, recognition.image_height)
        views.append(ObjectView(
            position=position, public_id=recognition.public_id, detected=detected, colour=f"obj-c{position % BOX_COLOURS}",
            box_style=style, tag_inside=tag_inside or detected.whole_image,
            matches=[
                MatchView(label=m.get("label", ""), display_name=m.get("display_name", ""), score=float(m.get("score", 0)),
                          product_id=m.get("product_id"), reference_image_id=m.get("reference_image_id"),
                          thumb_url=reference_thumb_url(m["reference_image_id"]) if m.get("reference_image_id") else None,
                          inliers=m.get("inliers"))
                for m in detected.matches or []
            ],
            review=_review_of(detected),
        ))
    return views


def _review_of(detected: DetectedObject) -> MatchReview | None:
    try:
        return detected.review
    except MatchReview.DoesNotExist:
        return None


def _url_patterns() -> dict[str, str]:
    """URL templates for the page script: `{id}`, `{index}` and `{pk}` are filled in the browser."""
    return {
        "api": reverse("recognition-list"),
        "products_api": reverse("product-list"),
        "detail": reverse("dashboard:recognition", args=[_ANY_ID]).replace(str(_ANY_ID), "{id}"),
        "image": reverse("dashboard:recognition-image", args=[_ANY_ID]).replace(str(_ANY_ID), "{id}"),
        "crop": reverse("dashboard:recognition-crop", args=[_ANY_ID, 0]).replace(str(_ANY_ID), "{id}").replace("/0/crop/", "/{index}/crop/"),
        "evidence": reverse("dashboard:recognition-evidence", args=[_ANY_ID, 0]).replace(str(_ANY_ID), "{id}")
                    .replace("/0/evidence/", "/{index}/evidence/"),
        "thumb": reverse("dashboard:recognition-reference-thumb", args=[0]).replace("/0/", "/{pk}/"),
    }


# --- pages ----------------------------------------------------------------------------------------

class TryItView(TenantDashboardMixin, TemplateView):
    """Upload a photo to the API and see what the gallery recognises; viewers see the page read-only."""

    template_name = "recognition/tryit.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        galleries = list(Gallery.objects.for_tenant(self.tenant).order_by("created_at", "pk"))
        wanted = self.request.GET.get("gallery", "")
        selected = next((g for g in galleries if str(g.pk) == wanted), galleries[0] if galleries else None)
        return super().get_context_data(
            galleries=galleries, selected_gallery=selected, urls=_url_patterns(),
            can_recognise=self.tenant_context.allows(Role.MEMBER),
            max_upload_bytes=settings.SHITU_MAX_IMAGE_BYTES, max_upload_mb=settings.SHITU_MAX_IMAGE_BYTES // (1024 * 1024),
            **kwargs,
        )


class _ForgivingPaginationMixin:
    """A page number past the end (the last row of the last page was just resolved) shows the last page, not a 404."""

    def paginate_queryset(self, queryset: QuerySet, page_size: int) -> tuple:
        paginator = self.get_paginator(queryset, page_size)  # type: ignore[attr-defined]
        page = paginator.get_page(self.request.GET.get("page"))  # type: ignore[attr-defined]
        return paginator, page, page.object_list, page.has_other_pages()


def _filter_query(request: HttpRequest, names: tuple[str, ...]) -> str:
    """The request's filters (not the page) as `a=1&b=2&`, ready to prefix a page parameter."""
    kept = QueryDict(mutable=True)
    for name in names:
        if request.GET.get(name):
            kept[name] = request.GET[name][:40]
    return f"{kept.urlencode()}&" if kept else ""


class RecognitionListView(TenantScopedDashboardMixin, _ForgivingPaginationMixin, ListView):
    scoped_model = Recognition
    template_name = "recognition/recognition_list.html"
    context_object_name = "recognitions"
    paginate_by = RECOGNITIONS_PER_PAGE

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = queryset.select_related("gallery").annotate(object_count=Count("detected_objects")).prefetch_related(
            Prefetch("detected_objects", queryset=DetectedObject.objects.for_tenant(self.tenant).order_by("rank").only("recognition_id", "rank", "matches", "score"))
        )
        gallery = self.request.GET.get("gallery", "")
        if gallery.isdigit():
            queryset = queryset.filter(gallery_id=int(gallery))
        status = self.request.GET.get("status", "")
        if status in Recognition.Status.values:
            queryset = queryset.filter(status=status)
        return queryset.order_by("-created_at", "-pk")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        for recognition in context["recognitions"]:
            labels: list[tuple[str, float]] = []
            for detected in recognition.detected_objects.all():
                label = detected.matches[0].get("label", "") if detected.matches else ""
                if label and label not in {known for known, _ in labels}:
                    labels.append((label, detected.score))
            recognition.best_labels = labels[:3]
            recognition.more_labels = max(0, len(labels) - 3)
        context.update(
            galleries=Gallery.objects.for_tenant(self.tenant).order_by("name"), statuses=Recognition.Status.choices,
            gallery_filter=self.request.GET.get("gallery", ""), status_filter=self.request.GET.get("status", ""),
            filter_query=_filter_query(self.request, ("gallery", "status")).rstrip("&"),
        )
        return context


class RecognitionDetailView(TenantScopedDashboardMixin, DetailView):
    scoped_model = Recognition
    template_name = "recognition/recognition_detail.html"
    context_object_name = "recognition"
    slug_field = slug_url_kwarg = "public_id"

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.select_related("gallery")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        recognition: Recognition = self.object
        detected = list(DetectedObject.objects.for_tenant(self.tenant).filter(recognition=recognition).select_related(
            "review", "review__suggested_product", "review__resolved_product"))
        timings = recognition.timings_ms or {}
        return super().get_context_data(
            objects=object_views(recognition, detected), urls=_url_patterns(),
            can_give_feedback=self.tenant_context.allows(Role.MEMBER) and recognition.status == Recognition.Status.DONE,
            timings=[(name, timings[key]) for key, name in TIMING_NAMES if isinstance(timings.get(key), (int, float))],
            **kwargs,
        )


# --- review queue ---------------------------------------------------------------------------------

class ReviewFilterForm(forms.Form):
    gallery = forms.ModelChoiceField(queryset=Gallery.objects.none(), required=False, empty_label="All galleries",
                                     widget=forms.Select(attrs={"aria-label": "Gallery"}))
    reason = forms.ChoiceField(choices=[("", "Any reason"), *MatchReview.Reason.choices], required=False,
                               widget=forms.Select(attrs={"aria-label": "Reason"}))
    score = forms.ChoiceField(choices=[("", "Any score"), *((key, label) for key, (label, _, _) in SCORE_BANDS.items())],
                              required=False, widget=forms.Select(attrs={"aria-label": "Score band"}))
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date", "aria-label": "From date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date", "aria-label": "To date"}))

    def __init__(self, *args: Any, tenant: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["gallery"].queryset = Gallery.objects.for_tenant(tenant).order_by("name")

    def filter(self, queryset: QuerySet) -> QuerySet:
        """Apply the filters that are valid; an invalid one (another tenant's gallery, a bad date) is ignored."""
        self.is_valid()
        data = getattr(self, "cleaned_data", {})
        if data.get("gallery") is not None:
            queryset = queryset.filter(gallery=data["gallery"])
        if data.get("reason"):
            queryset = queryset.filter(reason=data["reason"])
        if data.get("score"):
            _, low, high = SCORE_BANDS[data["score"]]
            queryset = queryset.filter(detected_object__score__gte=low, detected_object__score__lt=high)
        if data.get("since"):
            queryset = queryset.filter(created_at__date__gte=data["since"])
        if data.get("until"):
            queryset = queryset.filter(created_at__date__lte=data["until"])
        return queryset


FILTER_PARAMS = ("gallery", "reason", "score", "since", "until", "page")


def _queue_url(query: str = "") -> str:
    """The queue with the filters the action came from (only known filter names, so no open redirect)."""
    params = QueryDict(query)
    kept = QueryDict(mutable=True)
    for name in FILTER_PARAMS:
        if params.get(name):
            kept[name] = params[name][:40]
    return reverse("dashboard:review-queue") + (f"?{kept.urlencode()}" if kept else "")


class ReviewQueueView(TenantScopedDashboardMixin, _ForgivingPaginationMixin, ListView):
    """Open reviews of the tenant with their pictures, and each gallery's precision over resolved reviews."""

    scoped_model = MatchReview
    required_role = Role.ADMIN
    template_name = "recognition/review_queue.html"
    context_object_name = "reviews"
    paginate_by = REVIEWS_PER_PAGE

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        self.filter_form = ReviewFilterForm(self.request.GET or None, tenant=self.tenant)
        # The object's index in its recognition's `objects` (crop URLs use it); ranks can skip numbers.
        earlier = (DetectedObject.objects.for_tenant(self.tenant)
                   .filter(recognition_id=OuterRef("detected_object__recognition_id"), rank__lt=OuterRef("detected_object__rank"))
                   .order_by().values("recognition_id").annotate(n=Count("pk")).values("n"))
        queryset = queryset.filter(status=MatchReview.Status.OPEN).select_related(
            "gallery", "suggested_product", "detected_object__recognition", "detected_object__product",
        ).annotate(object_position=Coalesce(Subquery(earlier, output_field=IntegerField()), Value(0)))
        # least confident first: where a person's look changes the most answers
        return self.filter_form.filter(queryset).order_by(
            F("detected_object__confidence").asc(nulls_last=True), "-created_at", "-pk")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        page_reviews = list(context["reviews"])
        products_by_gallery: dict[int, list[Product]] = {}
        for product in Product.objects.for_tenant(self.tenant).filter(gallery_id__in={r.gallery_id for r in page_reviews}).order_by("label", "pk"):
            products_by_gallery.setdefault(product.gallery_id, []).append(product)
        rows = []
        for review in page_reviews:
            detected = review.detected_object
            recognition = detected.recognition
            view = object_views(recognition, [detected])[0]
            view.position = review.object_position
            candidates = {m.product_id for m in view.matches}
            if review.suggested_product_id:
                candidates.add(review.suggested_product_id)
            products = products_by_gallery.get(review.gallery_id, [])
            rows.append({
                "review": review, "object": view, "recognition": recognition,
                "candidates": [p for p in products if p.pk in candidates],
                "others": [p for p in products if p.pk not in candidates],
                "preselected": review.suggested_product_id,
            })
        precision = []
        for gallery in Gallery.objects.for_tenant(self.tenant).order_by("name"):
            figures = reviews.gallery_review_precision(gallery=gallery)
            if figures["confirmed"] or figures["wrong"] or figures["open"]:
                precision.append({"gallery": gallery, **figures,
                                  "percent": None if figures["precision"] is None else round(figures["precision"] * 100, 1)})
        context.update(rows=rows, filter_form=self.filter_form, precision=precision,
                       query=self.request.GET.urlencode(), page_query=_filter_query(self.request, FILTER_PARAMS[:-1]), filtered=any(self.request.GET.get(n) for n in FILTER_PARAMS[:-1]))
        return context


class _ReviewActionView(TenantScopedDashboardMixin, SingleObjectMixin, View):
    """POST-only actions on one review; another tenant's review is a 404, a resolved one is left alone."""

    scoped_model = MatchReview
    required_role = Role.ADMIN
    http_method_names = ["post"]

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.select_related("detected_object__recognition", "detected_object__product")

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        review = self.get_object()
        if review.status != MatchReview.Status.OPEN:
            messages.info(request, f"Review {review.pk} was already resolved ({review.get_status_display().lower()}).")
        else:
            self.act(request, review)
        return HttpResponseRedirect(_queue_url(request.POST.get("query", "")))

    def act(self, request: HttpRequest, review: MatchReview) -> None:
        raise NotImplementedError


def _predicted_label(review: MatchReview) -> str:
    matches = review.detected_object.matches or []
    return matches[0]["label"] if matches else "no product"


class ReviewConfirmView(_ReviewActionView):
    def act(self, request: HttpRequest, review: MatchReview) -> None:
        reviews.review_confirm(review=review, reviewer=request.user)
        messages.success(request, f"Confirmed “{_predicted_label(review)}”.")


class ReviewUnknownView(_ReviewActionView):
    def act(self, request: HttpRequest, review: MatchReview) -> None:
        reviews.review_mark_unknown(review=review, reviewer=request.user)
        messages.success(request, "Marked as a product that is not in the catalogue.")


class ReviewRelabelView(_ReviewActionView):
    def act(self, request: HttpRequest, review: MatchReview) -> None:
        product_id = request.POST.get("product", "")
        if not product_id.isdigit():
            messages.error(request, "Choose the right product to relabel to.")
            return
        product = get_object_or_404(Product.objects.for_tenant(self.tenant), pk=int(product_id))  # another tenant's product: 404
        try:
            reviews.review_relabel(review=review, product=product, reviewer=request.user)
        except reviews.InvalidFeedback as error:
            messages.error(request, f"Not relabelled: {error.message}.")
        except (EngineError, ObjectStoreError, PlatformError) as error:
            # The query photo is gone or unreadable: there is no crop to add as a reference image.
            messages.error(request, f"Not relabelled: the query photo cannot be read ({getattr(error, 'code', 'error')}).")
        else:
            messages.success(request, f"Relabelled to “{product.label}”: the crop is now one of its reference images.")


class ReviewBulkConfirmView(TenantScopedDashboardMixin, View):
    """Confirm the ticked reviews; any id outside the tenant makes the whole request a 404."""

    scoped_model = MatchReview
    required_role = Role.ADMIN
    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        ids = {int(value) for value in request.POST.getlist("review") if value.isdigit()}
        if not ids:
            messages.error(request, "Tick the reviews to confirm first.")
            return HttpResponseRedirect(_queue_url(request.POST.get("query", "")))
        found = list(self.get_queryset().filter(pk__in=ids).select_related("detected_object__product"))
        if len(found) != len(ids):
            raise Http404("Some of those reviews do not exist.")
        confirmed = 0
        for review in found:
            if review.status == MatchReview.Status.OPEN:
                reviews.review_confirm(review=review, reviewer=request.user)
                confirmed += 1
        skipped = len(found) - confirmed
        messages.success(request, f"{confirmed} confirmed" + (f"; {skipped} were already resolved." if skipped else "."))
        return HttpResponseRedirect(_queue_url(request.POST.get("query", "")))

