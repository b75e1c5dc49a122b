"""PostgreSQL row-level security: the second wall behind `Model.objects.for_tenant()`.

Every concrete `TenantOwnedModel` table (found from the app registry, so a new model is covered by the next
`migrate`) gets `ENABLE` and `FORCE ROW LEVEL SECURITY` and one policy, for reads and writes alike: a row is
visible only when the connection's `shitu.tenant_id` is the row's tenant, or its `shitu.scope` is `system`.

FORCE matters: the app connects as the tables' owner (it must, to build and drop pgvector indexes at runtime),
and without FORCE an owner skips every policy. That role has neither SUPERUSER nor BYPASSRLS; a connection
that has either skips RLS whatever the table says, so `connection_created` logs an error for it.

Scopes live on the connection (one per thread in Django) and are set with session-level `set_config`: Django
runs in autocommit, where `SET LOCAL` would end with the statement. Each scope is restored in `finally`. The
wanted scope is also kept per thread, so a connection opened mid-scope starts in it. Outside a request the
scope is `settings.SHITU_DB_DEFAULT_SCOPE` (`system`: workers, sweeps, commands, test fixtures); the request
middleware starts every request in `none` and narrows it to the tenant that `tenant_context()` resolves.
Celery tasks declare their scope (`shitu_platform.celery.ScopedTask`): a tenant task runs in the scope of the
tenant it was queued with (or, when queued without one, of the row it was handed); sweeps, takeovers and
backfills are the written list of system tasks (tests/tenancy/test_rls_tasks.py).
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from django.apps import apps
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.backends.base.base import NO_DB_ALIAS, BaseDatabaseWrapper

logger = logging.getLogger(__name__)

SCOPE_SETTING = "shitu.scope"
TENANT_SETTING = "shitu.tenant_id"
POLICY_NAME = "shitu_tenant_rows_v2"  # a changed policy gets a new name, so `apply_policies` replaces the old one
SYSTEM, TENANT, NONE = "system", "tenant", "none"
# Each setting is read in a scalar subquery: PostgreSQL evaluates it once per query (an InitPlan), not once per
# row, and `tenant_id = <one value>` can use the tenant_id index.
POLICY_CONDITION = (
    f"(SELECT current_setting('{SCOPE_SETTING}', true)) = '{SYSTEM}' "
    f"OR tenant_id = (SELECT NULLIF(current_setting('{TENANT_SETTING}', true), '')::bigint)"
)

Scope = tuple[str, str]  # (scope, tenant id as text; '' unless scope is TENANT)
_wanted = threading.local()


def _default_scope() -> Scope:
    scope = getattr(settings, "SHITU_DB_DEFAULT_SCOPE", SYSTEM)
    if scope not in (SYSTEM, NONE):
        raise ValueError(f"SHITU_DB_DEFAULT_SCOPE must be '{SYSTEM}' or '{NONE}', not {scope!r}")
    return scope, ""


def current_scope() -> Scope:
    """The scope this thread's connection is in (or will start in when it opens)."""
    return getattr(_wanted, "scope", None) or _default_scope()


def _send(connection: BaseDatabaseWrapper, scope: Scope) -> None:
    """Set on the driver's connection, like Django's own session set-up (time zone, role): it is connection
    state, not a query of the page, so query counts and logs do not list it. Driver errors leave as Django's
    (`OperationalError`: a 503 in the API) and mark the connection as erred, as a query's would."""
    with connection.wrap_database_errors, connection.connection.cursor() as cursor:
        cursor.execute("SELECT set_config(%s, %s, false), set_config(%s, %s, false)",
                       [SCOPE_SETTING, scope[0], TENANT_SETTING, scope[1]])


def _switch(scope: Scope) -> Scope:
    """Make `scope` this thread's; returns the one it replaces. An unopened connection gets it when it opens."""
    previous = current_scope()
    _wanted.scope = scope
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor == "postgresql" and connection.connection is not None:
        if connection.in_atomic_block and connection.needs_rollback:
            return previous  # the broken transaction refuses queries; its rollback undoes what it set
        try:
            _send(connection, scope)
        except DatabaseError:
            if connection.in_atomic_block:
                raise  # a transaction cannot move to a new connection: the caller fails (503 in the API)
            _drop(connection)
    return previous


def _drop(connection: BaseDatabaseWrapper) -> None:
    """A connection that cannot take the scope (the server restarted or went away) is closed: the next query
    opens a new one, which starts in the wanted scope (`on_connection_created`), or fails to connect (503)."""
    try:
        connection.close()
    except DatabaseError:
        pass  # closing a dead connection may complain; Django forgets it either way


def _restore(previous: Scope) -> None:
    try:
        _switch(previous)
    except DatabaseError:  # e.g. the server went away: a new connection starts in the restored scope
        logger.warning("could not restore the row-level-security scope on the open connection", exc_info=True)


@contextmanager
def _scoped(scope: Scope) -> Iterator[None]:
    previous = _switch(scope)
    try:
        yield
    finally:
        _restore(previous)


def tenant_scope(tenant_id: int) -> AbstractContextManager[None]:
    """Inside, raw SQL and the ORM alike see and write only `tenant_id`'s tenant-owned rows."""
    return _scoped((TENANT, str(int(tenant_id))))


def no_scope() -> AbstractContextManager[None]:
    """Inside, no tenant-owned row is visible and none can be written: where every request starts."""
    return _scoped((NONE, ""))


def system_scope() -> AbstractContextManager[None]:
    """Inside, every tenant's rows are visible: for finding a request's tenant and the staff admin.

    Its callers are a written list (tests/tenancy/test_rls.py), like `Model.unscoped`'s.
    """
    return _scoped((SYSTEM, ""))


def narrow_request_to_tenant(tenant_id: int) -> None:
    """Called once the request's tenant is known; `RowLevelSecurityMiddleware` restores the scope after it."""
    _switch((TENANT, str(int(tenant_id))))


# --- policies -----------------------------------------------------------------------------------------------


def tenant_tables() -> list[str]:
    """Tables of the concrete tenant-owned models that hold the `tenant_id` column themselves."""
    from shitu_platform.tenancy.models import TenantOwnedModel

    return sorted({
        model._meta.db_table for model in apps.get_models()
        if issubclass(model, TenantOwnedModel) and model._meta.managed and not model._meta.proxy
        and any(field.name == "tenant" for field in model._meta.local_concrete_fields)
    })


def tables_missing_policy(connection: BaseDatabaseWrapper) -> list[str]:
    """Tenant tables without RLS enabled and forced under the current policy (all of them should have it)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.name FROM unnest(%s::text[]) AS t(name) "
            "LEFT JOIN pg_class c ON c.oid = to_regclass(quote_ident(t.name)) "
            "LEFT JOIN pg_policy p ON p.polrelid = c.oid AND p.polname = %s "
            "WHERE c.oid IS NOT NULL AND NOT (c.relrowsecurity AND c.relforcerowsecurity AND p.oid IS NOT NULL) "
            "ORDER BY 1",
            [tenant_tables(), POLICY_NAME],
        )
        return [row[0] for row in cursor.fetchall()]


def apply_policies(connection: BaseDatabaseWrapper) -> list[str]:
    """Idempotent: enable, force and (re)write the policy where it is missing; returns the tables changed."""
    changed = tables_missing_policy(connection)
    if not changed:
        return []
    with connection.cursor() as cursor:
        for table in changed:
            quoted = connection.ops.quote_name(table)
            cursor.execute(
                "SELECT polname FROM pg_policy WHERE polrelid = to_regclass(%s) AND polname LIKE 'shitu\\_tenant\\_%%'",
                [quoted],
            )
            for (old,) in cursor.fetchall():
                cursor.execute(f"DROP POLICY {connection.ops.quote_name(old)} ON {quoted}")
            cursor.execute(f"ALTER TABLE {quoted} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY")
            cursor.execute(f"CREATE POLICY {POLICY_NAME} ON {quoted} USING ({POLICY_CONDITION}) WITH CHECK ({POLICY_CONDITION})")
    return changed


# --- signal handlers (connected in TenancyConfig.ready) -----------------------------------------------------


def on_connection_created(sender: object, connection: BaseDatabaseWrapper, **kwargs: object) -> None:
    """A new connection starts in this thread's scope, and says so loudly (once) when RLS cannot hold for it."""
    if connection.vendor != "postgresql" or connection.alias == NO_DB_ALIAS:
        return
    with connection.connection.cursor() as cursor:
        cursor.execute(
            "SELECT r.rolsuper OR r.rolbypassrls, set_config(%s, %s, false), set_config(%s, %s, false) "
            "FROM pg_roles r WHERE r.rolname = current_user",
            [SCOPE_SETTING, current_scope()[0], TENANT_SETTING, current_scope()[1]],
        )
        row = cursor.fetchone()
    if row is not None and row[0] and not getattr(on_connection_created, "warned", False):
        on_connection_created.warned = True  # type: ignore[attr-defined]  # once per process, not per connection
        logger.error("database role %r is a superuser or has BYPASSRLS: row-level security does not apply to it; "
                     "connect as a role without either (see README, Tenant scoping)", connection.settings_dict.get("USER"))


def on_pre_migrate(sender: object, using: str = DEFAULT_DB_ALIAS, **kwargs: object) -> None:
    """Data migrations read and write every tenant's rows: the migrating connection is in the system scope."""
    connection = connections[using]
    if connection.vendor == "postgresql":
        _switch((SYSTEM, ""))


def on_post_migrate(sender: object, using: str = DEFAULT_DB_ALIAS, **kwargs: object) -> None:
    connection = connections[using]
    if connection.vendor != "postgresql" or getattr(sender, "label", None) != "tenancy":
        return  # post_migrate is sent once per app: act once, after the app that every tenant table depends on
    changed = apply_policies(connection)
    if changed:
        logger.debug("row-level security applied to %s", ", ".join(changed))


# --- Celery tasks (the base task class in shitu_platform/celery.py) -----------------------------------------


class TaskTenantMismatch(Exception):
    """A tenant task was handed a row of another tenant than the one it was queued for: it refuses the row."""


def _row_tenant(model_label: str, ids: list[int]) -> set[int]:
    """The tenants of the rows a task was handed, read once in the system scope (rows gone since: none)."""
    model = apps.get_model(model_label)
    with system_scope():
        return set(model.unscoped.filter(pk__in=ids).values_list("tenant_id", flat=True).distinct())


def task_tenant_scope(task_name: str, *, tenant_id: int | None, model_label: str, row_ids: list[int]) -> AbstractContextManager[None]:
    """The scope a tenant task runs in: the tenant it was queued with, else the one of the row it was handed.

    A queued tenant that is not the row's tenant fails the task with the reason; RLS would hide the row anyway,
    and the task would report it gone. Rows gone since queueing leave the task in the queued tenant's scope (or
    in none), where it finds nothing, as it did before.
    """
    row_tenants = _row_tenant(model_label, row_ids) if row_ids else set()
    if tenant_id is not None and row_tenants - {int(tenant_id)}:
        raise TaskTenantMismatch(f"{task_name} was queued for tenant {tenant_id} but handed {model_label} rows "
                                 f"{row_ids} of tenant(s) {sorted(row_tenants)}: refused")
    if tenant_id is None and len(row_tenants) > 1:
        raise TaskTenantMismatch(f"{task_name} was handed {model_label} rows {row_ids} of several tenants: refused")
    tenant = tenant_id if tenant_id is not None else next(iter(row_tenants), None)
    return tenant_scope(tenant) if tenant is not None else no_scope()


def task_system_scope() -> AbstractContextManager[None]:
    """The scope of a task over every tenant (sweeps, takeovers, backfills): named per task, never the default."""
    return system_scope()
