"""A ready fine-tune's badge follows the evaluation verdict: never green beside "not better … could make recognition
worse", on the job page and in the job list."""
from __future__ import annotations

import re

import pytest

from galleries.models import Gallery
from modelhub.models import ModelVersion
from training.models import FineTuneJob

pytestmark = pytest.mark.django_db


def _ready_job(world, before: float, after: float) -> FineTuneJob:
    gallery = Gallery.objects.create(tenant=world.tenant, name=f"drinks {before}-{after}")
    model = ModelVersion.objects.create(tenant=world.tenant, kind="extractor", key=f"ft-{before}-{after}@1")
    return FineTuneJob.objects.create(
        tenant=world.tenant, gallery=gallery, state=FineTuneJob.State.READY, progress=1.0, result_model=model,
        metrics_before={"mAP": before, "recall@1": before, "queries": 6},
        metrics_after={"mAP": after, "recall@1": after, "queries": 6},
    )


def _badge(page: str, testid: str) -> tuple[str, str]:
    found = re.search(rf'<span class="([^"]+)" data-testid="{testid}"[^>]*>([^<]+)</span>', page)
    assert found, f"no {testid} badge"
    return found.group(1), found.group(2).strip()


def test_a_ready_job_that_is_not_better_has_no_green_badge(tenant_a):
    job = _ready_job(tenant_a, before=0.80, after=0.70)
    page = tenant_a.client("admin").get(f"/dashboard/training/jobs/{job.pk}/").content.decode()
    assert "could make recognition worse" in page
    state_classes, state_text = _badge(page, "job-state")
    verdict_classes, verdict_text = _badge(page, "job-verdict")
    assert "verdict-not-better" in state_classes and state_text == "Ready to promote"
    assert "verdict-not-better" in verdict_classes and verdict_text == "not better than the current model"
    assert "verdict-better" not in page and "ft-badge-large state-ready\"" not in page


def test_a_ready_job_that_is_better_is_green_and_says_so(tenant_a):
    job = _ready_job(tenant_a, before=0.70, after=0.80)
    page = tenant_a.client("admin").get(f"/dashboard/training/jobs/{job.pk}/").content.decode()
    state_classes, _ = _badge(page, "job-state")
    verdict_classes, verdict_text = _badge(page, "job-verdict")
    assert state_classes == "ft-badge ft-badge-large state-ready" and "verdict-better" in verdict_classes
    assert verdict_text == "better than the current model" and "could make recognition worse" not in page


def test_the_job_list_badges_follow_the_same_rule(tenant_a):
    worse, better = _ready_job(tenant_a, 0.80, 0.70), _ready_job(tenant_a, 0.70, 0.80)
    page = tenant_a.client("member").get("/dashboard/training/").content.decode()

    def row(job: FineTuneJob) -> str:
        return page[page.index(f'data-job-row="{job.pk}"'):].split("</tr>")[0]

    assert "verdict-not-better" in row(worse) and "not better" in row(worse)
    assert "verdict-not-better" not in row(better) and 'class="ft-badge state-ready"' in row(better)
