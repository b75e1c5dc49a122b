"""Django admin for platform staff: recognitions, and the review queue of mislabeled or uncertain matches."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from galleries.models import Product
from galleries.thumbnails import jpeg_thumbnail
from recognition import reviews
from recognition.engine.errors import EngineError
from recognition.evidence import stored_evidence_jpeg
from recognition.models import DetectedObject, MatchReview, Recognition
from shitu_platform.errors import PlatformError
from shitu_platform.object_store import object_store
from shitu_platform.storage.base import ObjectStoreError
from shitu_platform.tenancy.scoping import staff_visible


class ScoreBandFilter(admin.SimpleListFilter):
    title = "score band"
    parameter_name = "score_band"
    bands = {"<0.5": (0, 0.5), "0.5-0.7": (0.5, 0.7), "0.7-0.9": (0.7, 0.9), ">=0.9": (0.9, 1.01)}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(band, band) for band in self.bands]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() in self.bands:
            low, high = self.bands[self.value()]
            return queryset.filter(detected_object__score__gte=low, detected_object__score__lt=high)
        return queryset


class QueueStatusFilter(admin.SimpleListFilter):
    """The queue shows open items unless staff ask for another status (or all of them)."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [*MatchReview.Status.choices, ("all", "All")]

    def choices(self, changelist: Any) -> Any:
        current = self.value() or MatchReview.Status.OPEN
        for value, label in self.lookup_choices:
            yield {"selected": current == value, "query_string": changelist.get_query_string({self.parameter_name: value}),
                   "display": label}

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value() or MatchReview.Status.OPEN
        return queryset if value == "all" else queryset.filter(status=value)


class RelabelForm(forms.ModelForm):
    relabel_to = forms.ModelChoiceField(queryset=Product.objects.none(), required=False,
                                        help_text="the right product: the crop becomes one of its reference images")

    class Meta:
        model = MatchReview
        fields: list[str] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["relabel_to"].queryset = Product.objects.for_tenant(self.instance.tenant).filter(gallery_id=self.instance.gallery_id)


@admin.register(MatchReview)
class MatchReviewAdmin(admin.ModelAdmin):
    form = RelabelForm
    list_display = ["id", "certainty", "crop_thumb", "query_thumb", "predicted", "tenant", "gallery", "reference_thumb",
                    "evidence_thumb", "runner_up", "score", "reason", "verdict", "status", "created_at"]
    list_filter = [QueueStatusFilter, ("tenant", admin.RelatedOnlyFieldListFilter), "reason", "verdict", ScoreBandFilter,
                   ("gallery", admin.RelatedOnlyFieldListFilter), "created_at"]
    date_hierarchy = "created_at"
    list_select_related = ["detected_object__recognition", "detected_object__product", "detected_object__reference_image", "gallery"]
    readonly_fields = ["crop_thumb", "query_thumb", "predicted", "reference_thumb", "evidence_picture", "runner_up", "score", "reason",
                       "verdict", "suggested_product", "flagged_by", "status", "resolved_product", "reviewed_by", "reviewed_at"]
    actions = ["confirm_selected", "mark_unknown_selected", "relabel_to_suggested", "relabel_selected", "dismiss_selected"]
    list_per_page = 50

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        """One queue across the tenants this staff member may see, least certain first."""
        return reviews.review_queue(reviews=staff_visible(MatchReview.unscoped.all(), request).select_related("tenant"))

    def get_ordering(self, request: HttpRequest) -> list[str]:
        return ["certainty", "created_at"]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return super().changelist_view(request, {"title": "Review queue: least confident first", **(extra_context or {})})

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    # --- pictures ---
    def get_urls(self) -> list:
        return [path("<int:review_id>/picture/<str:kind>.jpg", self.admin_site.admin_view(self.picture), name="review-picture"), *super().get_urls()]

    def picture(self, request: HttpRequest, review_id: int, kind: str) -> HttpResponse:
        review = get_object_or_404(self.get_queryset(request), pk=review_id)
        detected = review.detected_object
        if kind == "evidence":
            if not self._has_evidence(review):
                raise Http404("This object was not verified geometrically.")
            try:
                return HttpResponse(stored_evidence_jpeg(detected, detected.reference_image), content_type="image/jpeg")
            except (EngineError, ObjectStoreError, OSError, ValueError) as error:
                raise Http404(f"The matched keypoints cannot be drawn: {error}") from error
        if kind == "reference" and detected.reference_image is not None:
            data, box = object_store().get(detected.reference_image.object_key), detected.reference_image.bbox
        else:
            data, box = object_store().get(detected.recognition.image_key), (detected.bbox if kind == "crop" else None)
        return HttpResponse(jpeg_thumbnail(data, box, max_side=160), content_type="image/jpeg")

    def _img(self, review: MatchReview, kind: str, style: str = "max-height:96px;max-width:120px") -> str:
        url = reverse("admin:review-picture", args=[review.pk, kind])
        return format_html('<img src="{}" style="{};border-radius:4px" alt="{}">', url, style, kind)

    @staticmethod
    def _has_evidence(review: MatchReview) -> bool:
        """Matched keypoints to draw: the object was verified and its best match's reference image still exists."""
        detected = review.detected_object
        return bool(detected.evidence) and detected.reference_image is not None

    @admin.display(description="crop")
    def crop_thumb(self, review: MatchReview) -> str:
        return self._img(review, "crop")

    @admin.display(description="query")
    def query_thumb(self, review: MatchReview) -> str:
        return self._img(review, "query")

    @admin.display(description="its reference")
    def reference_thumb(self, review: MatchReview) -> str:
        return self._img(review, "reference") if review.detected_object.reference_image_id else "-"

    @admin.display(description="matched keypoints")
    def evidence_thumb(self, review: MatchReview) -> str:
        return self._img(review, "evidence", "max-height:96px;max-width:240px") if self._has_evidence(review) else "not verified"

    @admin.display(description="matched keypoints")
    def evidence_picture(self, review: MatchReview) -> str:
        """The crop beside its reference image with a line per matched keypoint, large enough to follow the lines."""
        if not self._has_evidence(review):
            return "not verified geometrically"
        inliers = review.detected_object.evidence.get("inliers")
        return format_html('{}<div class="help">{} keypoints agree between the photo (left) and the reference image (right)</div>',
                           self._img(review, "evidence", "max-width:720px;width:100%"), inliers)

    @admin.display(description="predicted")
    def predicted(self, review: MatchReview) -> str:
        matches = review.detected_object.matches
        return matches[0]["label"] if matches else "-"

    @admin.display(description="runner-up")
    def runner_up(self, review: MatchReview) -> str:
        matches = review.detected_object.matches
        best = matches[0]["product_id"] if matches else None
        rival = next((m for m in matches[1:] if m["product_id"] != best), None)
        return f"{rival['label']} ({rival['score']:.3f})" if rival else "-"

    @admin.display(description="confidence", ordering="certainty")
    def certainty(self, review: MatchReview) -> str:
        """The calibrated confidence; a gallery without a calibration has only the score, which orders the queue."""
        confidence = review.detected_object.confidence
        return f"{confidence:.0%}" if confidence is not None else "uncalibrated"

    @admin.display(description="score", ordering="detected_object__score")
    def score(self, review: MatchReview) -> str:
        margin = review.detected_object.margin
        return f"{review.detected_object.score:.3f}" + (f" (±{margin:.3f})" if margin is not None else "")

    # --- actions ---
    def save_model(self, request: HttpRequest, review: MatchReview, form: Any, change: bool) -> None:
        product = form.cleaned_data.get("relabel_to")
        if product is not None:
            reviews.review_relabel(review=review, product=product, reviewer=request.user)
            messages.success(request, f"Relabelled to {product.label}; the crop is now a reference image of it.")

    @admin.action(description="Confirm: the predicted product is right")
    def confirm_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        for review in queryset:
            reviews.review_confirm(review=review, reviewer=request.user)
        messages.success(request, f"{queryset.count()} confirmed")

    @admin.action(description="Mark as a product not in the catalogue")
    def mark_unknown_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        for review in queryset:
            reviews.review_mark_unknown(review=review, reviewer=request.user)
        messages.success(request, f"{queryset.count()} marked unknown")

    @admin.action(description="Relabel to the product the user suggested")
    def relabel_to_suggested(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = 0
        for review in queryset.filter(suggested_product__isnull=False):
            reviews.review_relabel(review=review, product=review.suggested_product, reviewer=request.user, wait_seconds=0)
            done += 1
        messages.success(request, f"{done} relabelled (searchable within seconds)")

    @admin.action(description="Relabel to a product of their gallery…", permissions=["change"])
    def relabel_selected(self, request: HttpRequest, queryset: QuerySet) -> TemplateResponse | None:
        """Asks for the product (one page), then relabels every selected item to it; all must share a gallery."""
        selected = list(queryset.select_related("gallery", "detected_object"))
        if len({review.gallery_id for review in selected}) != 1:
            messages.error(request, "Relabel items of one gallery at a time: filter the queue by gallery first.")
            return None
        gallery = selected[0].gallery
        products = Product.objects.for_tenant(gallery.tenant).filter(gallery=gallery).order_by("label")
        if request.POST.get("apply"):
            product = products.filter(pk=request.POST.get("product") or None).first()
            if product is not None:
                try:
                    reviews.reviews_relabel(reviews=selected, product=product, reviewer=request.user)
                except (EngineError, ObjectStoreError, PlatformError) as error:  # e.g. a photo already swept away
                    done = sum(review.resolved_product_id == product.pk for review in selected)
                    messages.error(request, f"Relabel stopped after {done} of {len(selected)}: {error}")
                    return None
                messages.success(request, f"{len(selected)} relabelled to {product.label}; their crops are now its "
                                          "reference images (searchable within seconds)")
                return None
            messages.error(request, "Choose the product the selected items show.")
        return TemplateResponse(request, "admin/recognition/matchreview/relabel_selected.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": "Relabel the selected items",
            "reviews": selected, "gallery": gallery, "products": products,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME, "action": "relabel_selected",
            "items": [(review, reverse("admin:review-picture", args=[review.pk, "crop"])) for review in selected],
        })

    @admin.action(description="Dismiss: low-margin items not worth a verdict", permissions=["change"])
    def dismiss_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        dismissed = reviews.reviews_dismiss(reviews=queryset)
        kept = queryset.count()
        messages.success(request, f"{dismissed} dismissed" + (f"; {kept} flagged by users or already resolved kept" if kept else ""))


class DetectedObjectInline(admin.TabularInline):
    model = DetectedObject
    extra = 0
    fields = ["rank", "bbox", "whole_image", "det_score", "product", "score", "margin"]
    readonly_fields = fields
    can_delete = False


@admin.register(Recognition)
class RecognitionAdmin(admin.ModelAdmin):
    list_display = ["public_id", "tenant", "gallery", "status", "source", "created_at"]
    list_filter = ["status", "source", ("tenant", admin.RelatedOnlyFieldListFilter)]
    readonly_fields = [f.name for f in Recognition._meta.fields]
    inlines = [DetectedObjectInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return staff_visible(Recognition.unscoped.all(), request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
