"""In Chromium with a real training worker: start a fine-tune, watch it, see the curve and the comparison,
promote it (forced by staff: a tiny net does not beat the default), then roll back."""
import pytest
from django.contrib.auth import get_user_model

from shitu_platform.tenancy.services import membership_set
from tests.support.browser import log_in
from tests.training.test_finetune import TINY, _gallery, _wait
from training.models import FineTuneJob

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.slow
def test_start_watch_promote_and_roll_back_a_fine_tune(page, live_server, tenant_a, celery_workers, screenshot):
    celery_workers.start("ft", TINY)
    gallery_id = _gallery(tenant_a.key_client("admin"))
    staff = get_user_model().objects.create_user("ops-lead", password=tenant_a.password, is_staff=True)
    membership_set(tenant=tenant_a.tenant, user=staff, role="admin")
    page.on("dialog", lambda dialog: dialog.accept())

    log_in(page, live_server.url, staff.username, tenant_a.password)
    page.click("nav.sidebar >> text=Fine-tuning")
    assert page.inner_text("[data-testid=page-title]") == "Fine-tuning"
    assert "Platform default" in page.inner_text("[data-testid=active-model-key]")
    assert page.locator("[data-testid=rollback]").count() == 0
    screenshot("finetune-01-empty")

    page.select_option("[data-testid=start-form] select[name=gallery]", str(gallery_id))
    page.fill("[data-testid=start-form] input[name=epochs]", "4")
    page.click("[data-testid=start-form] button[type=submit]")
    page.wait_for_selector("[data-testid=job-state]")
    job = FineTuneJob.unscoped.get(gallery_id=gallery_id)
    assert page.url.endswith(f"/dashboard/training/jobs/{job.pk}/")

    # The page follows the job by itself: progress moves, the loss curve fills, the comparison appears.
    _wait(lambda: FineTuneJob.unscoped.get(pk=job.pk).state in ("ready", "failed"), what="the fine-tune")
    job.refresh_from_db()
    assert job.state == "ready", job.failure_reason + job.log
    # without a reload: the page polls the job and redraws its sections when the state changes
    page.wait_for_function("document.querySelector('[data-testid=job-state]').textContent.trim() === 'Ready to promote'",
                           timeout=20_000)
    page.wait_for_selector("[data-testid=metrics-table]")
    assert page.get_attribute("[data-testid=job-progress]", "aria-valuenow") == "100"
    job.refresh_from_db()
    assert int(page.get_attribute("[data-testid=loss-chart]", "data-points")) == len(job.loss_history) == job.total_steps
    rows = page.locator("[data-testid=metrics-table] tbody tr")
    assert [rows.nth(i).get_attribute("data-metric") for i in range(rows.count())] == ["recall@1", "recall@5", "mAP"]
    before, after = job.metrics_before["mAP"], job.metrics_after["mAP"]
    assert f"{before:.3f}" in page.inner_text("[data-testid=metrics-table] tr[data-metric=mAP]")
    assert f"step {job.total_steps} of {job.total_steps} · epoch 4 of 4" in page.inner_text("[data-testid=job-steps]")
    screenshot("finetune-02-ready")

    # Not better than the default here, so Promote is disabled and staff get a recorded Force.
    if after <= before:
        assert page.is_disabled("[data-testid=promote]")
        assert "not better" in page.inner_text("[data-testid=promote-panel]")
        page.click("[data-testid=force-promote]")
    else:
        page.click("[data-testid=promote]")
    page.wait_for_function("document.querySelector('[data-testid=job-state]').textContent.trim() === 'Promoted'",
                           timeout=120_000)
    page.wait_for_selector("[data-testid=promoted-note] >> text=Roll back from")  # the sections were redrawn
    job.refresh_from_db()
    assert job.result_model.key in page.inner_text("[data-testid=active-model-key]")
    screenshot("finetune-03-promoted")

    page.click("nav.sidebar >> text=Fine-tuning")
    assert job.result_model.key in page.inner_text("[data-testid=active-model-key]")
    page.click("[data-testid=rollback]")
    page.wait_for_selector("text=Rolled back")
    assert "Platform default" in page.inner_text("[data-testid=active-model-key]")
    row = page.locator(f"[data-job-row='{job.pk}']")
    assert row.get_attribute("data-state") == "promoted" and "→" in row.inner_text()
    screenshot("finetune-04-rolled-back")


def test_a_member_sees_jobs_but_cannot_start_one(page, live_server, tenant_a):
    log_in(page, live_server.url, tenant_a.users["member"].username, tenant_a.password)
    page.goto(f"{live_server.url}/dashboard/training/")
    assert page.inner_text("[data-testid=page-title]") == "Fine-tuning"
    assert page.locator("[data-testid=start-form]").count() == 0
    assert "Only tenant admins" in page.inner_text("#ft-start")
