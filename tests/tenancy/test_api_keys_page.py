"""The API-keys page: a Copy button and a curl line for a new key, the header format the API reads, and a role table
that is read off the views' permissions (and agrees with what keys of each role are actually allowed)."""
from __future__ import annotations

import re

import pytest

from shitu_platform.tenancy.models import ApiKey
from shitu_platform.tenancy.roles import KEY_ROLES, role_capabilities

pytestmark = pytest.mark.django_db


def test_a_new_key_comes_with_a_copy_button_and_a_curl_line(tenant_a):
    page = tenant_a.client("admin").post("/dashboard/api-keys/", {"name": "ios", "role": "member"}).content.decode()
    raw_key = re.search(r'<code class="secret" id="new-key-value">(shitu_[A-Za-z0-9_-]+)</code>', page).group(1)
    assert 'data-copy-target="new-key-value"' in page and "/static/shitu/api_keys.js" in page
    assert f'curl -H "Authorization: Api-Key {raw_key}" http://testserver/api/v1/tenant/' in page


def test_the_header_example_is_what_the_api_accepts(tenant_a, client):
    page = tenant_a.client("admin").get("/dashboard/api-keys/").content.decode()
    header = re.search(r'data-testid="header-example">Authorization: (\S+) shitu_…</pre>', page).group(1)
    assert "X-API-Key: shitu_…" in page
    raw_key = tenant_a.api_key("viewer")
    assert client.get("/api/v1/tenant/", HTTP_AUTHORIZATION=f"{header} {raw_key}").status_code == 200
    assert client.get("/api/v1/tenant/", HTTP_X_API_KEY=raw_key).status_code == 200


def test_the_detail_page_shows_the_keys_own_prefix_in_the_header_example(tenant_a):
    tenant_a.api_key("viewer")
    api_key = ApiKey.objects.for_tenant(tenant_a.tenant).get()
    page = tenant_a.client("admin").get(f"/dashboard/api-keys/{api_key.pk}/").content.decode()
    assert f"Authorization: Api-Key shitu_{api_key.prefix}…" in page and 'data-testid="role-table"' in page


def test_role_table_is_on_the_page_with_one_column_per_key_role(tenant_a):
    page = tenant_a.client("admin").get("/dashboard/api-keys/").content.decode()
    table = page[page.index('data-testid="role-table"'):]
    for role in KEY_ROLES:
        assert f"<th>{role.label}</th>" in table
    for capability in role_capabilities():
        row = table[table.index(capability.description):].split("</tr>")[0]
        assert row.count('class="allowed"') == sum(capability.allowed)


def test_role_table_agrees_with_what_keys_may_do(tenant_a):
    table = {capability.description.split(" ")[0]: capability for capability in role_capabilities()}
    assert [table[word].allowed for word in ("Read", "Recognise", "Create,", "Start,", "List")] == [
        (True, True, True), (False, True, True), (False, True, True), (False, False, True), (False, False, True)]
    clients = {role: tenant_a.key_client(role) for role in KEY_ROLES}
    reads = {role: client.get("/api/v1/galleries/").status_code for role, client in clients.items()}
    creates = {role: client.post("/api/v1/galleries/", {"name": f"g-{role}"}, format="json").status_code
               for role, client in clients.items()}
    members = {role: client.get("/api/v1/members/").status_code for role, client in clients.items()}
    assert reads == {"viewer": 200, "member": 200, "admin": 200}
    assert creates == {"viewer": 403, "member": 201, "admin": 201}
    assert members == {"viewer": 403, "member": 403, "admin": 200}
