"""In Chromium: the API-keys page (copy button, header example, role table), a ready fine-tune that is not better,
times in the tenant's zone, the styled error pages and the branded admin. Screenshots go to var/screenshots."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import RequestFactory

from galleries.models import Gallery, Product
from shitu_platform import views
from shitu_platform.tenancy.models import Tenant
from tests.support.browser import log_in
from modelhub.models import ModelVersion
from training.models import FineTuneJob

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_api_keys_page_copies_a_new_key(page, live_server, tenant_a, screenshot):
    Tenant.objects.filter(pk=tenant_a.tenant.pk).update(time_zone="Asia/Shanghai")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    log_in(page, live_server.url, tenant_a.users["admin"].username, tenant_a.password)
    page.goto(f"{live_server.url}/dashboard/api-keys/")
    page.fill("input[name=name]", "Shelf scanner app")
    page.click("text=Create key")
    secret = page.inner_text("#new-key-value")
    page.click("[data-testid=copy-key]")
    page.wait_for_selector("[data-testid=copy-key][data-copied='1']")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    assert f"Authorization: Api-Key {secret}" in page.inner_text("[data-testid=curl-example]")
    assert "CST" in page.inner_text("table")
    assert page.locator("[data-testid=role-table] tbody tr").count() >= 5
    screenshot("api-keys-copy-and-roles")


def test_a_not_better_fine_tune_is_not_green(page, live_server, tenant_a, screenshot):
    gallery = Gallery.objects.create(tenant=tenant_a.tenant, name="Drinks")
    Product.objects.create(tenant=tenant_a.tenant, gallery=gallery, label="可口可乐 330ml")
    model = ModelVersion.objects.create(tenant=tenant_a.tenant, kind="extractor", key="ft-drinks@1")
    job = FineTuneJob.objects.create(tenant=tenant_a.tenant, gallery=gallery, state="ready", progress=1.0, epochs=4,
                                     result_model=model, metrics_before={"mAP": 0.812, "recall@1": 0.9, "queries": 8},
                                     metrics_after={"mAP": 0.774, "recall@1": 0.85, "queries": 8}, log="done")
    log_in(page, live_server.url, tenant_a.users["admin"].username, tenant_a.password)
    page.goto(f"{live_server.url}/dashboard/training/jobs/{job.pk}/")
    badge_colour = page.eval_on_selector("[data-testid=job-state]", "node => getComputedStyle(node).color")
    assert badge_colour != "rgb(26, 127, 55)"  # not the --ok green
    assert "not better" in page.inner_text("[data-testid=job-verdict]")
    screenshot("finetune-ready-not-better")
    page.goto(f"{live_server.url}/dashboard/training/")
    screenshot("finetune-list-not-better")
    page.goto(f"{live_server.url}/dashboard/galleries/{gallery.pk}/")
    screenshot("gallery-cjk-label")


def test_error_pages_and_admin_look_like_the_platform(page, live_server, tenant_a, screenshot):
    page.goto(f"{live_server.url}/no/such/page/")
    assert page.inner_text("[data-testid=page-title]") == "Page not found"
    screenshot("error-404-anonymous")
    log_in(page, live_server.url, tenant_a.users["viewer"].username, tenant_a.password)
    page.goto(f"{live_server.url}/dashboard/no-such-page/")
    screenshot("error-404-signed-in")
    page.goto(f"{live_server.url}/dashboard/api-keys/")
    assert page.inner_text("[data-testid=page-title]") == "Not allowed"
    screenshot("error-403")
    page.click("[data-testid=back-to-dashboard]")
    page.wait_for_url(f"{live_server.url}/dashboard/")

    error_page = views.server_error(RequestFactory().get("/dashboard/"))  # what a failing view's request gets
    page.set_content(error_page.content.decode().replace('href="/', f'href="{live_server.url}/'))
    page.wait_for_load_state("load")
    screenshot("error-500")

    get_user_model().objects.create_superuser("root", password=tenant_a.password)
    page.context.clear_cookies()
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", tenant_a.password)
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    assert page.inner_text("#site-name") == "ShiTu Platform staff"
    screenshot("admin-index")
