"""Try it (the page posts straight to the REST API and draws the answer in the browser), and past recognitions."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.views.generic import DetailView, ListView, TemplateView

from recognition import selectors
from recognition.dashboard.presentation import (
    ForgivingPaginationMixin,
    best_labels,
    filter_query,
    object_views,
    url_patterns,
)
from recognition.models import Recognition
from shitu_platform.tenancy.models import Role
from shitu_platform.tenancy.scoping import (
    TenantDashboardMixin,
    TenantScopedDashboardMixin,
)

RECOGNITIONS_PER_PAGE = 50
TIMING_NAMES = [("queue_ms", "queue"), ("detect_ms", "detect"), ("extract_ms", "extract"), ("search_ms", "search"),
                ("verify_ms", "verify"), ("total_ms", "worker total")]


class TryItView(TenantDashboardMixin, TemplateView):
    """Upload a photo to the API and see what the gallery recognises; viewers see the page read-only."""

    template_name = "recognition/tryit.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        galleries = list(selectors.galleries_of(tenant=self.tenant, order_by=("created_at", "pk")))
        wanted = self.request.GET.get("gallery", "")
        selected = next((g for g in galleries if str(g.pk) == wanted), galleries[0] if galleries else None)
        return super().get_context_data(
            galleries=galleries, selected_gallery=selected, urls=url_patterns(),
            can_recognise=self.tenant_context.allows(Role.MEMBER),
            max_upload_bytes=settings.SHITU_MAX_IMAGE_BYTES, max_upload_mb=settings.SHITU_MAX_IMAGE_BYTES // (1024 * 1024),
            **kwargs,
        )


class RecognitionListView(TenantScopedDashboardMixin, ForgivingPaginationMixin, ListView):
    scoped_model = Recognition
    template_name = "recognition/recognition_list.html"
    context_object_name = "recognitions"
    paginate_by = RECOGNITIONS_PER_PAGE

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        gallery = self.request.GET.get("gallery", "")
        status = self.request.GET.get("status", "")
        return selectors.recognitions_listed(
            tenant=self.tenant, gallery_id=int(gallery) if gallery.isdigit() else None,
            status=status if status in Recognition.Status.values else None)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        for recognition in context["recognitions"]:
            recognition.best_labels, recognition.more_labels = best_labels(recognition)
        context.update(
            galleries=selectors.galleries_of(tenant=self.tenant), statuses=Recognition.Status.choices,
            gallery_filter=self.request.GET.get("gallery", ""), status_filter=self.request.GET.get("status", ""),
            filter_query=filter_query(self.request, ("gallery", "status")).rstrip("&"),
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
        detected = selectors.detected_objects_of(tenant=self.tenant, recognition=recognition)
        timings = recognition.timings_ms or {}
        return super().get_context_data(
            objects=object_views(recognition, detected), urls=url_patterns(),
            can_give_feedback=self.tenant_context.allows(Role.MEMBER) and recognition.status == Recognition.Status.DONE,
            timings=[(name, timings[key]) for key, name in TIMING_NAMES if isinstance(timings.get(key), (int, float))],
            **kwargs,
        )
