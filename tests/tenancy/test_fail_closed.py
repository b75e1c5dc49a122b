"""`TenantOwnedModel.objects` fails closed, and application code keeps to two spellings.

Reads start at `Model.objects.for_tenant(tenant)`; the few worker, sweep and staff paths that must cross
tenants name `Model.unscoped`. The AST scan below fails on the next `Gallery.objects.filter(...)` a hurried
route adds, and pins the list of `.unscoped` callers, so a new one is a reviewed change of that list.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.apps import apps

from galleries.models import Gallery, Product
from shitu_platform.tenancy.models import TenantOwnedModel, UnscopedQueryError

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_DIRS = ("galleries", "recognition", "training", "modelhub", "shitu_platform")
ALLOWED_ON_OBJECTS = {"for_tenant", "create", "none"}  # none() matches no row: choice fields start from it

# Every function (module: qualified name) that reads or writes tenant-owned rows across tenants.
# Adding one is a decision: it belongs in the README's list too.
UNSCOPED_CALLERS = {
    # platform staff (Django admin): superusers see every tenant, other staff the tenants they administer
    "shitu_platform/tenancy/scoping.py: staff_visible",
    "shitu_platform/admin.py: TenantOwnedAdmin.get_queryset",
    "shitu_platform/tenancy/admin.py: ApiKeyAdmin.get_queryset",
    "shitu_platform/tenancy/admin.py: MembershipAdmin.get_queryset",
    "recognition/admin.py: MatchReviewAdmin.get_queryset",
    "recognition/admin.py: RecognitionAdmin.get_queryset",
    # finding the tenant: an API key by its prefix, a user's memberships (the tenant switcher)
    "shitu_platform/tenancy/services.py: api_key_authenticate",
    "shitu_platform/tenancy/selectors.py: memberships_for_user",
    # long-job ownership by job id (imports and fine-tunes alike)
    "shitu_platform/jobs.py: claim",
    "shitu_platform/jobs.py: holds",
    # worker tasks handed row ids by a tenant-scoped request: they load those rows, then work in the row's tenant
    "galleries/imports.py: import_run",
    "galleries/services.py: reference_images_embed",
    "galleries/services.py: _store_embeddings",
    "galleries/services.py: gallery_indexes_refresh",
    "galleries/services.py: gallery_version_bump",
    "galleries/services.py: reference_image_reembed",
    "galleries/local_features.py: local_features_store",
    "galleries/indexing.py: GalleryIndexCache._warm",
    "galleries/indexing.py: gallery_index_version",
    "galleries/tasks.py: refit_calibration",
    "galleries/local_feature_pack.py: local_feature_pack_rebuild",
    "recognition/services.py: recognition_run",
    "recognition/reviews.py: _wait_until_embedded",
    "recognition/webhooks.py: _log_attempt",
    "recognition/webhooks.py: webhook_attempt",
    "recognition/webhooks.py: webhook_mark_pending",
    "recognition/webhooks.py: webhook_record_failure",
    "training/services.py: finetune_run",
    "training/services.py: finetune_promote_run",
    # a task's tenant, from the row it was handed (checked against the tenant it was queued with)
    "shitu_platform/tenancy/rls.py: _row_tenant",
    # sweeps and takeovers over every tenant: stale jobs, orphaned objects, indexes, backfills
    "galleries/imports.py: stale_imports",
    "training/tasks.py: resume_stale_finetunes",
    "galleries/sweeps.py: reference_image_objects_sweep",
    "recognition/sweeps.py: recognition_photos_sweep",
    "galleries/pgvector_search.py: prune_pgvector_indexes",
    "galleries/services.py: default_model_backfill",
    "galleries/services.py: reference_local_features_backfill",
    # operator commands over all galleries
    "galleries/management/commands/shitu_index.py: Command._targets",
    "galleries/management/commands/shitu_local_features.py: Command.handle",
}


def tenant_owned_names() -> set[str]:
    return {m.__name__ for m in apps.get_models() if issubclass(m, TenantOwnedModel)}


class _Scan(ast.NodeVisitor):
    def __init__(self, path: str, owned: set[str]) -> None:
        self.path, self.owned, self.scope = path, owned, []
        self.violations: list[str] = []
        self.unscoped_callers: set[str] = set()

    def _visit_scope(self, node: ast.AST) -> None:
        self.scope.append(node.name)  # type: ignore[attr-defined]
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _visit_scope

    def _where(self) -> str:
        return f"{self.path}: {'.'.join(self.scope) or '<module>'}"

    def visit_Attribute(self, node: ast.Attribute) -> None:
        inner = node.value
        if (isinstance(inner, ast.Attribute) and inner.attr == "objects" and isinstance(inner.value, ast.Name)
                and inner.value.id in self.owned and node.attr not in ALLOWED_ON_OBJECTS):
            self.violations.append(f"{self.path}:{node.lineno} {inner.value.id}.objects.{node.attr}")
        if node.attr == "unscoped":
            self.unscoped_callers.add(self._where())
        self.generic_visit(node)


def scan() -> _Scan:
    owned = tenant_owned_names()
    total = _Scan("", owned)
    for directory in APP_DIRS:
        for path in sorted((REPO_ROOT / directory).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            relative = path.relative_to(REPO_ROOT).as_posix()
            one = _Scan(relative, owned)
            one.visit(ast.parse(path.read_text(), filename=relative))
            total.violations += one.violations
            total.unscoped_callers |= one.unscoped_callers
    return total


@pytest.mark.slow
def test_no_tenant_owned_objects_query_outside_for_tenant_and_create():
    assert scan().violations == []


@pytest.mark.slow
def test_unscoped_callers_are_the_written_list():
    assert scan().unscoped_callers == UNSCOPED_CALLERS


def test_scan_catches_a_hurried_route(tmp_path):
    one = _Scan("views.py", tenant_owned_names())
    one.visit(ast.parse("def detail(request, pk):\n    return Gallery.objects.get(pk=pk)\n"
                        "def staff(request):\n    return Gallery.unscoped.all()\n"))
    assert one.violations == ["views.py:2 Gallery.objects.get"]
    assert one.unscoped_callers == {"views.py: staff"}


@pytest.mark.parametrize("entry", [
    lambda m: m.objects.all(),
    lambda m: m.objects.filter(pk=1),
    lambda m: m.objects.exclude(pk=1),
    lambda m: m.objects.get(pk=1),
    lambda m: m.objects.first(),
    lambda m: m.objects.count(),
    lambda m: m.objects.exists(),
    lambda m: m.objects.values_list("pk"),
    lambda m: m.objects.select_related("tenant"),
    lambda m: m.objects.get_or_create(name="x"),
    lambda m: m.objects.update_or_create(name="x"),
    lambda m: m.objects.update(name="x"),
    lambda m: m.objects.bulk_create([]),
    lambda m: m.objects.in_bulk([1]),
    lambda m: list(m.objects.iterator()),
    lambda m: [row for row in m.objects.all()],
    lambda m: m.objects.create(name="no tenant"),
], ids=["all", "filter", "exclude", "get", "first", "count", "exists", "values_list", "select_related",
        "get_or_create", "update_or_create", "update", "bulk_create", "in_bulk", "iterator", "iteration",
        "create-without-tenant"])
def test_objects_without_a_tenant_raises_the_named_error(entry):
    with pytest.raises(UnscopedQueryError, match=r"Gallery\.objects.* needs (a )?tenant"):
        entry(Gallery)


def test_the_error_tells_the_fix():
    with pytest.raises(UnscopedQueryError) as raised:
        Product.objects.filter(label="cola")
    assert "Product.objects.for_tenant(tenant)" in str(raised.value)
    assert "Product.unscoped" in str(raised.value)


@pytest.mark.django_db
def test_create_with_a_tenant_and_scoped_reads_work(tenant_a, tenant_b):
    gallery = Gallery.objects.create(tenant=tenant_a.tenant, name="Shelf")
    assert list(Gallery.objects.for_tenant(tenant_a.tenant).filter(name="Shelf")) == [gallery]
    assert not Gallery.objects.for_tenant(tenant_b.tenant).filter(pk=gallery.pk).exists()
    assert list(Gallery.objects.none()) == []
    # Django's own machinery goes through the default manager, which is `unscoped`
    assert Gallery._default_manager is Gallery.unscoped
    product = gallery.products.create(tenant=tenant_a.tenant, label="cola")
    assert product.gallery == gallery and list(gallery.products.all()) == [product]
    gallery.delete()  # cascades through the base manager
    assert not Product.unscoped.filter(pk=product.pk).exists()
