"""Staff admin over fine-tuning: jobs (with their before/after verdict) and the held-out photos (model versions and
each tenant's active extractor: modelhub.admin). Read-only: start, promote and roll back go through the dashboard or
the API, where the services re-embed galleries and switch models safely."""
from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.utils.safestring import SafeString

from shitu_platform.admin import TenantOwnedAdmin, admin_link
from training.models import FineTuneJob, GalleryHoldout

TENANT_FILTER = ("tenant", admin.RelatedOnlyFieldListFilter)


def _map_text(metrics: dict) -> str:
    value = metrics.get("mAP")
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


@admin.register(FineTuneJob)
class FineTuneJobAdmin(TenantOwnedAdmin):
    list_display = ["id", "gallery_link", "state", "mode", "percent", "map_change", "verdict", "tenant_link", "created_at",
                    "finished_at"]
    list_filter = ["state", "mode", TENANT_FILTER]
    search_fields = ["gallery__name", "tenant__name", "failure_reason"]
    list_select_related = ["tenant", "gallery", "base_model", "result_model"]
    date_hierarchy = "created_at"
    fields = ["gallery_link", "tenant_link", "state", "mode", "percent", "epochs", "current_epoch", "current_step",
              "total_steps", "base_model_link", "result_model_link", "map_change", "verdict", "metrics_before",
              "metrics_after", "failure_reason", "cancel_requested", "forced_promotion_by", "created_by", "created_at",
              "finished_at", "log"]
    readonly_fields = ["gallery_link", "tenant_link", "percent", "base_model_link", "result_model_link", "map_change",
                       "verdict"]

    @admin.display(description="gallery", ordering="gallery__name")
    def gallery_link(self, job: FineTuneJob) -> SafeString | str:
        return admin_link(job.gallery)

    @admin.display(description="progress")
    def percent(self, job: FineTuneJob) -> str:
        return f"{job.progress:.0%}"

    @admin.display(description="held-out mAP")
    def map_change(self, job: FineTuneJob) -> str:
        return f"{_map_text(job.metrics_before)} → {_map_text(job.metrics_after)}"

    @admin.display(description="verdict")
    def verdict(self, job: FineTuneJob) -> str:
        """The promotion rule (training.services): better only when held-out mAP rose."""
        if not (job.metrics_before or job.metrics_after):
            return "-"
        better = (job.metrics_after.get("mAP") or 0) > (job.metrics_before.get("mAP") or 0)
        return "better" if better else "not better"

    @admin.display(description="started from")
    def base_model_link(self, job: FineTuneJob) -> SafeString | str:
        return admin_link(job.base_model) if job.base_model_id else "platform default"

    @admin.display(description="result")
    def result_model_link(self, job: FineTuneJob) -> SafeString | str:
        return admin_link(job.result_model)


@admin.register(GalleryHoldout)
class GalleryHoldoutAdmin(TenantOwnedAdmin):
    list_display = ["gallery_link", "held_out", "seed", "tenant_link", "created_at"]
    search_fields = ["gallery__name", "tenant__name"]
    list_select_related = ["tenant", "gallery"]
    fields = ["gallery_link", "tenant_link", "held_out", "reference_image_ids", "seed", "created_at"]
    readonly_fields = ["gallery_link", "tenant_link", "held_out"]

    @admin.display(description="gallery", ordering="gallery__name")
    def gallery_link(self, holdout: GalleryHoldout) -> SafeString | str:
        return admin_link(holdout.gallery)

    @admin.display(description="held-out images")
    def held_out(self, holdout: GalleryHoldout) -> Any:
        return len(holdout.reference_image_ids)
