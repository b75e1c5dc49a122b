"""Fine-tune pages are open to the whole tenant, but every action on them is an admin's: the server refuses a member's
POST (not only the template hiding the buttons), and a member sees no action forms."""
from __future__ import annotations

import pytest

from galleries.models import Gallery
from modelhub.models import ModelVersion
from training.models import FineTuneJob

pytestmark = pytest.mark.django_db


@pytest.fixture
def ready_job(tenant_a) -> FineTuneJob:
    gallery = Gallery.objects.create(tenant=tenant_a.tenant, name="drinks")
    model = ModelVersion.objects.create(tenant=tenant_a.tenant, kind="extractor", key="ft-roles@1")
    return FineTuneJob.objects.create(tenant=tenant_a.tenant, gallery=gallery, state=FineTuneJob.State.READY,
                                      progress=1.0, result_model=model,
                                      metrics_before={"mAP": 0.7, "recall@1": 0.7, "queries": 6},
                                      metrics_after={"mAP": 0.8, "recall@1": 0.8, "queries": 6})


@pytest.mark.parametrize("path", ["", "jobs/{pk}/cancel/", "jobs/{pk}/promote/", "models/rollback/"])
def test_a_member_cannot_act_on_fine_tunes(tenant_a, ready_job, path):
    response = tenant_a.client("member").post("/dashboard/training/" + path.format(pk=ready_job.pk),
                                              {"gallery": ready_job.gallery_id})
    assert response.status_code == 403
    ready_job.refresh_from_db()
    assert ready_job.state == FineTuneJob.State.READY
    assert FineTuneJob.objects.for_tenant(tenant_a.tenant).count() == 1


def test_a_member_sees_the_jobs_without_action_forms(tenant_a, ready_job):
    member_page = tenant_a.client("member").get(f"/dashboard/training/jobs/{ready_job.pk}/").content.decode()
    admin_page = tenant_a.client("admin").get(f"/dashboard/training/jobs/{ready_job.pk}/").content.decode()
    promote = f"/dashboard/training/jobs/{ready_job.pk}/promote/"
    assert promote in admin_page
    assert promote not in member_page
