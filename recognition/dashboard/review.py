"""The admins' review queue: open reviews with their pictures, filters, and the actions that resolve them through
`recognition.reviews`."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    QueryDict,
)
from django.urls import reverse
from django.views import View
from django.views.generic import ListView
from django.views.generic.detail import SingleObjectMixin

from galleries.models import Gallery
from recognition import reviews, selectors
from recognition.dashboard.presentation import (
    ForgivingPaginationMixin,
    filter_query,
    object_views,
)
from recognition.engine.errors import EngineError
from recognition.models import MatchReview
from shitu_platform.errors import PlatformError
from shitu_platform.storage.base import ObjectStoreError
from shitu_platform.tenancy.models import Role
from shitu_platform.tenancy.scoping import TenantScopedDashboardMixin

REVIEWS_PER_PAGE = 50
SCORE_BANDS = {  # key: (label, low inclusive, high exclusive)
    "lt50": ("below 0.50", 0.0, 0.5),
    "50-70": ("0.50 – 0.70", 0.5, 0.7),
    "70-90": ("0.70 – 0.90", 0.7, 0.9),
    "ge90": ("0.90 and up", 0.9, 1.01),
}
FILTER_PARAMS = ("gallery", "reason", "score", "since", "until", "page")


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
        self.fields["gallery"].queryset = selectors.galleries_of(tenant=tenant)

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


def _queue_url(query: str = "") -> str:
    """The queue with the filters the action came from (only known filter names, so no open redirect)."""
    params = QueryDict(query)
    kept = QueryDict(mutable=True)
    for name in FILTER_PARAMS:
        if params.get(name):
            kept[name] = params[name][:40]
    return reverse("dashboard:review-queue") + (f"?{kept.urlencode()}" if kept else "")


class ReviewQueueView(TenantScopedDashboardMixin, ForgivingPaginationMixin, ListView):
    """Open reviews of the tenant with their pictures, and each gallery's precision over resolved reviews."""

    scoped_model = MatchReview
    required_role = Role.ADMIN
    template_name = "recognition/review_queue.html"
    context_object_name = "reviews"
    paginate_by = REVIEWS_PER_PAGE

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        self.filter_form = ReviewFilterForm(self.request.GET or None, tenant=self.tenant)
        return self.filter_form.filter(selectors.open_reviews(tenant=self.tenant))

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        page_reviews = list(context["reviews"])
        products_by_gallery = selectors.products_by_gallery(tenant=self.tenant, gallery_ids={r.gallery_id for r in page_reviews})
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
        context.update(rows=rows, filter_form=self.filter_form, precision=selectors.review_precision_by_gallery(tenant=self.tenant),
                       query=self.request.GET.urlencode(), page_query=filter_query(self.request, FILTER_PARAMS[:-1]),
                       filtered=any(self.request.GET.get(n) for n in FILTER_PARAMS[:-1]))
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
        product = selectors.product_of(tenant=self.tenant, product_id=int(product_id))
        if product is None:  # another tenant's product, or none
            raise Http404("No such product.")
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
