"""The second wall: PostgreSQL row-level security on every tenant-owned table.

These queries go through the app's own connection and skip the ORM's tenant filter on purpose (raw SQL,
`Model.unscoped`): what they still cannot see is what PostgreSQL itself withholds.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.apps import apps
from django.db import DatabaseError, connection, transaction

from galleries.models import Gallery
from modelhub.models import ModelVersion
from shitu_platform.tenancy import rls
from shitu_platform.tenancy.models import TenantOwnedModel

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_DIRS = ("galleries", "recognition", "training", "modelhub", "shitu_platform")

# Every function that opens the system scope (all tenants' rows visible). Adding one is a reviewed decision.
SYSTEM_SCOPE_CALLERS = {
    "shitu_platform/middleware.py: RowLevelSecurityMiddleware.__call__",  # the staff admin under /admin/
    "shitu_platform/tenancy/selectors.py: memberships_for_user",  # how a signed-in user's request finds its tenant
    "shitu_platform/tenancy/services.py: api_key_authenticate",  # how an API-key request finds its tenant
    "shitu_platform/tenancy/rls.py: _row_tenant",  # the tenant of the row a task was handed (tests/tenancy/test_rls_tasks.py)
    "shitu_platform/tenancy/rls.py: task_system_scope",  # the written list of system tasks (same file)
}


def _raw(sql: str, params: list | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall() if cursor.description else []


def _raw_rowcount(sql: str, params: list | None = None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.rowcount


@pytest.fixture()
def two_galleries(tenant_a, tenant_b) -> tuple[Gallery, Gallery]:
    return (Gallery.objects.create(tenant=tenant_a.tenant, name="Acme shelf"),
            Gallery.objects.create(tenant=tenant_b.tenant, name="Bolt shelf"))


@pytest.mark.django_db
def test_the_app_connects_as_a_role_that_row_level_security_applies_to():
    rows = _raw("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
    assert rows == [(False, False)]


def test_without_a_tenant_raw_sql_sees_and_writes_no_tenant_row(tenant_a, two_galleries):
    assert _raw("SELECT count(*) FROM galleries_gallery") == [(2,)]  # fixtures run in the system scope
    with rls.no_scope():
        assert _raw("SELECT count(*) FROM galleries_gallery") == [(0,)]
        assert _raw("SELECT count(*) FROM tenancy_membership") == [(0,)]
        assert _raw_rowcount("UPDATE galleries_gallery SET name = 'taken'") == 0
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            Gallery.objects.create(tenant=tenant_a.tenant, name="smuggled")
    assert sorted(name for (name,) in _raw("SELECT name FROM galleries_gallery")) == ["Acme shelf", "Bolt shelf"]


def test_one_tenants_scope_cannot_see_or_change_anothers_rows(tenant_a, tenant_b, two_galleries):
    mine, theirs = two_galleries
    with rls.tenant_scope(tenant_a.tenant.pk):
        assert _raw("SELECT id FROM galleries_gallery") == [(mine.pk,)]
        assert _raw("SELECT id FROM galleries_gallery WHERE id = %s", [theirs.pk]) == []
        assert not Gallery.unscoped.filter(pk=theirs.pk).exists()
        assert _raw_rowcount("UPDATE galleries_gallery SET name = 'taken' WHERE id = %s", [theirs.pk]) == 0
        assert _raw_rowcount("DELETE FROM galleries_gallery WHERE id = %s", [theirs.pk]) == 0
        with pytest.raises(DatabaseError, match="row-level security"), transaction.atomic():
            Gallery.objects.create(tenant=tenant_b.tenant, name="planted")
    theirs.refresh_from_db()
    assert theirs.name == "Bolt shelf"


@pytest.mark.django_db
def test_every_tenant_owned_table_has_the_policy_and_global_tables_do_not():
    owned = [m for m in apps.get_models() if issubclass(m, TenantOwnedModel)]
    assert len(owned) >= 15 and set(rls.tenant_tables()) == {m._meta.db_table for m in owned}
    assert rls.tables_missing_policy(connection) == []
    forced = dict(_raw("SELECT relname, relrowsecurity AND relforcerowsecurity FROM pg_class WHERE relname = ANY(%s)",
                       [[m._meta.db_table for m in owned] + [ModelVersion._meta.db_table]]))
    assert forced.pop(ModelVersion._meta.db_table) is False  # global model versions have tenant NULL: no policy
    assert set(forced.values()) == {True}


@pytest.mark.django_db
def test_a_table_that_lost_its_policy_gets_it_back_on_migrate():
    _raw("ALTER TABLE galleries_gallery NO FORCE ROW LEVEL SECURITY")
    assert rls.tables_missing_policy(connection) == ["galleries_gallery"]
    assert rls.apply_policies(connection) == ["galleries_gallery"]
    assert rls.tables_missing_policy(connection) == []


@pytest.mark.parametrize("how", ["session", "api_key"])
def test_a_request_runs_in_its_tenants_scope_and_restores_the_scope_after(how, tenant_a, two_galleries):
    """What raw SQL sees at the moment a request first reads galleries: only the request's tenant."""
    seen: list[set[int]] = []

    def spy(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if "galleries_gallery" in sql and not seen:
            seen.append(set())
            seen[0] |= {tenant for (tenant,) in _raw("SELECT tenant_id FROM galleries_gallery")}
        return result

    client = tenant_a.client() if how == "session" else tenant_a.key_client("viewer")
    with connection.execute_wrapper(spy):
        response = client.get("/api/v1/galleries/")
    assert response.status_code == 200
    assert [g["name"] for g in response.json()["results"]] == ["Acme shelf"]
    assert seen == [{tenant_a.tenant.pk}]
    assert _raw("SELECT count(*) FROM galleries_gallery") == [(2,)]  # back in the fixtures' system scope


def test_a_request_with_no_tenant_sees_no_tenant_rows(two_galleries, django_user_model):
    """A signed-in user who belongs to no tenant: the request stays in the empty scope."""
    seen: list[int] = []

    def spy(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not seen and "auth_user" in sql:  # the session's user is loaded: the request is under way
            seen.append(_raw("SELECT count(*) FROM galleries_gallery")[0][0])
        return result

    from django.test import Client

    client = Client()
    client.force_login(django_user_model.objects.create_user("drifter", password="x-correct-horse"))
    with connection.execute_wrapper(spy):
        response = client.get("/api/v1/galleries/")
    assert response.status_code == 403
    assert seen == [0]


def test_system_scope_callers_are_the_written_list():
    callers: set[str] = set()
    for directory in APP_DIRS:
        for path in sorted((REPO_ROOT / directory).rglob("*.py")):
            relative = path.relative_to(REPO_ROOT).as_posix()
            tree = ast.parse(path.read_text(), filename=relative)
            for scope, node in _walk(tree, []):
                if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "system_scope":
                    callers.add(f"{relative}: {'.'.join(scope)}")
    assert callers == SYSTEM_SCOPE_CALLERS


def _walk(node: ast.AST, scope: list[str]):
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield from _walk(child, [*scope, child.name])
        else:
            yield scope, child
            yield from _walk(child, scope)


def _terminate_the_apps_connection() -> None:
    """What a PostgreSQL restart does to an idle pooled connection: the server ends it; Django does not know yet."""
    import psycopg

    pid = _raw("SELECT pg_backend_pid()")[0][0]
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    with psycopg.connect(**params, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.mark.django_db(transaction=True)
def test_a_connection_the_server_dropped_is_replaced_in_the_requests_scope(tenant_a, tenant_b):
    """After a database restart the first request is answered (a new connection, in its tenant's scope), not a 500."""
    Gallery.objects.create(tenant=tenant_a.tenant, name="Acme shelf")
    Gallery.objects.create(tenant=tenant_b.tenant, name="Bolt shelf")
    client = tenant_a.key_client("viewer")
    _terminate_the_apps_connection()
    response = client.get("/api/v1/galleries/")
    assert response.status_code == 200, response.content
    assert [g["name"] for g in response.json()["results"]] == ["Acme shelf"]
    _terminate_the_apps_connection()
    with rls.tenant_scope(tenant_b.tenant.pk):
        assert _raw("SELECT name FROM galleries_gallery") == [("Bolt shelf",)]
