"""The fine-tunes' part of the tenant overview (registered in TrainingConfig.ready): the latest jobs and their states."""
from __future__ import annotations

from django.urls import reverse

from shitu_platform.overview import Figure, OverviewPart, Panel
from shitu_platform.tenancy.models import Tenant
from training.models import FineTuneJob

RECENT_JOBS = 5


def recent_fine_tunes(*, tenant: Tenant, limit: int = RECENT_JOBS) -> list[FineTuneJob]:
    return list(FineTuneJob.objects.for_tenant(tenant).select_related("gallery").order_by("-created_at")[:limit])


def tenant_overview_part(*, tenant: Tenant) -> OverviewPart:
    jobs = recent_fine_tunes(tenant=tenant)
    active = FineTuneJob.objects.for_tenant(tenant).filter(state__in=FineTuneJob.ACTIVE_STATES).count()
    detail = f"{active} running" if active else (f"latest: {jobs[0].get_state_display().lower()}" if jobs else "none yet")
    figure = Figure(label="Fine-tune jobs", value=f"{FineTuneJob.objects.for_tenant(tenant).count():,}", detail=detail,
                    url=reverse("dashboard:finetune-jobs"), order=30, key="figure-finetunes")
    return OverviewPart(figures=[figure], panels=[Panel(template="overview/_fine_tunes.html", context={"jobs": jobs}, order=41)])
