"""Tenant isolation over every URL pattern, found by walking the URL resolver rather than from a hand-picked list.

For each route that names an object (`<int:pk>`, `(?P<pk>...)`, `<uuid:public_id>`, ...) tenant A asks for tenant B's
object with every HTTP method: 404 where the route has the method, 405 where it has not, never 200/403/500, and
none of B's rows or stored objects change. A new object route the factories do not cover fails
`test_every_object_route_is_covered` until it is mapped (or allow-listed with a reason).
"""
from __future__ import annotations

import io
import uuid
import zipfile
from dataclasses import dataclass
from functools import cached_property

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from galleries.models import Gallery, ImportJob, Product, ReferenceImage
from recognition.models import DetectedObject, MatchReview, Recognition
from shitu_platform.tenancy.models import ApiKey, Membership
from tests.security.conftest import A_MARKER, B_MARKER, SafeClient, jpeg_bytes, staff_client, tenant_snapshot, upload
from training.models import FineTuneJob

pytestmark = pytest.mark.django_db


def _with_evidence(objects):
    """Give the tenant's detected object matched keypoints, so its evidence picture answers its owner (and another
    tenant's 404 comes from scoping, not from a missing drawing)."""
    corners = [[4, 4], [60, 4], [60, 76], [4, 76], [32, 40]]
    DetectedObject.unscoped.filter(pk=objects.detected_object.pk).update(evidence={
        "inliers": len(corners), "query": corners, "reference": corners, "reference_size": [64, 80], "reference_box": None})
    objects.detected_object.refresh_from_db()
    return objects


@pytest.fixture()
def a_objects(a_objects):
    return _with_evidence(a_objects)


@pytest.fixture()
def b_objects(b_objects):
    return _with_evidence(b_objects)

# Routes outside tenant data, with the reason. Everything else that takes an object id must be covered below.
NOT_TENANT_DATA_PREFIXES = {
    "admin/": "Django admin: platform staff only; its tenant filtering is tested in test_admin_* below",
    "static/": "static files",
    "media/": "no media route is served (presigned filesystem URLs are verified by the store itself)",
}
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class Route:
    path: str  # the concatenated pattern, e.g. "api/v1/^galleries/(?P<pk>[^/.]+)/$"
    name: str  # reversible name, namespaced ("dashboard:gallery") when included in a namespace
    callback: object
    kwargs: tuple[str, ...]

    @property
    def view_class(self) -> type | None:
        return getattr(self.callback, "cls", None) or getattr(self.callback, "view_class", None)

    @property
    def is_api(self) -> bool:
        return self.path.startswith("api/")

    @property
    def in_scope(self) -> bool:
        return self.path.startswith(("api/v1/", "dashboard/"))

    @cached_property
    def methods(self) -> frozenset[str]:
        """The HTTP methods this route answers (other than HEAD/OPTIONS)."""
        actions = getattr(self.callback, "actions", None)
        if actions:
            return frozenset(actions)
        view_class = self.view_class
        if view_class is None:
            return frozenset({"get"})
        return frozenset(m for m in view_class.http_method_names if m in HTTP_METHODS and hasattr(view_class, m))

    @property
    def model(self) -> type | None:
        view_class = self.view_class
        model = getattr(view_class, "scoped_model", None)
        if model is None and getattr(view_class, "queryset", None) is not None:
            model = view_class.queryset.model
        return model or getattr(view_class, "model", None)

    def __str__(self) -> str:
        return self.name or self.path


def _walk(patterns, prefix: str = "", namespace: str = "", kwargs: tuple[str, ...] = ()):
    for pattern in patterns:
        groups = tuple(pattern.pattern.regex.groupindex)
        if isinstance(pattern, URLResolver):
            inner_namespace = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern), inner_namespace, kwargs + groups)
        elif isinstance(pattern, URLPattern):
            name = f"{namespace}{pattern.name}" if pattern.name else ""
            yield Route(prefix + str(pattern.pattern), name, pattern.callback, kwargs + groups)


def all_routes() -> list[Route]:
    return list(_walk(get_resolver().url_patterns))


def _not_tenant_data(route: Route) -> bool:
    return route.path.startswith(tuple(NOT_TENANT_DATA_PREFIXES))


OBJECT_ROUTES = [r for r in all_routes() if r.kwargs and not _not_tenant_data(r)]
LIST_ROUTES = [r for r in all_routes() if r.in_scope and not r.kwargs and "get" in r.methods]
WRITABLE_LIST_ROUTES = [r for r in all_routes() if r.in_scope and not r.kwargs and r.methods - {"get"}]

# How each URL keyword names a tenant's row: (model of the view, keyword) -> value from that tenant's objects.
# Only models with a factory in conftest.make_tenant_objects can appear here.
URL_KWARG_VALUES = {
    "pk": lambda objects, model: objects.of(model).pk,
    "id": lambda objects, model: objects.of(model).pk,
    "public_id": lambda objects, model: (objects.recognition if model in (Recognition, DetectedObject) else objects.of(model)).public_id,
    "position": lambda objects, model: 0 if model is DetectedObject else None,  # index of the object in its recognition
}
MISSING_KWARG_VALUES = {"pk": 10**9, "id": 10**9, "public_id": uuid.UUID(int=7), "position": 0}
FACTORY_MODELS = {Gallery, Product, ReferenceImage, ImportJob, Recognition, DetectedObject, MatchReview, FineTuneJob,
                  ApiKey, Membership}


def url_kwargs(route: Route, objects) -> dict | None:
    """The URL keywords that point `route` at `objects`' row, or None when the route is not covered."""
    model = route.model
    if model not in FACTORY_MODELS or objects.of(model) is None:
        return None
    values = {}
    for name in route.kwargs:
        resolver = URL_KWARG_VALUES.get(name)
        value = resolver(objects, model) if resolver else None
        if value is None:
            return None
        values[name] = value
    return values


def _valid_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("p/1.jpg", jpeg_bytes((1, 99, 1)))
        archive.writestr("labels.txt", "p/1.jpg\tpwned\n")
    return buffer.getvalue()


def write_body(route: Route, objects) -> tuple[str, dict]:
    """A body that would change B's row if the request got through: ("json"|"multipart"|"form", data)."""
    bodies = {
        "gallery-detail": ("json", {"name": "pwned", "description": "pwned"}),
        "product-detail": ("json", {"label": "pwned", "gallery": objects.gallery.pk, "attributes": {"pwned": "1"}}),
        "product-upload-images": ("multipart", {"image": upload(jpeg_bytes((7, 8, 9)))}),
        "gallery-start-import": ("multipart", {"archive": upload(_valid_zip(), "pwned.zip")}),
        "recognition-feedback": ("json", {"object": 0, "verdict": "wrong", "product": objects.product.pk}),
        "fine-tune-job-promote": ("json", {"force": True}),
        "dashboard:review-relabel": ("form", {"product": objects.product.pk}),
        "dashboard:gallery-image-box": ("form", {"bbox": "[0, 0, 32, 40]"}),
        "dashboard:gallery-settings": ("form", {"detect_references": "on"}),
        "dashboard:gallery-edit": ("form", {"name": "pwned", "description": "pwned"}),
        "dashboard:gallery-product-edit": ("form", {"label": "pwned", "sku": "pwned", "attributes": "pwned: 1"}),
    }
    return bodies.get(route.name, ("json", {}) if route.is_api else ("form", {}))


def send(client, method: str, url: str, body: tuple[str, dict] | None = None, **extra):
    kind, data = body or ("json", {})
    if method == "get":
        return client.get(url, **extra)
    if kind == "json" or method != "post":
        return getattr(client, method)(url, data=data if kind == "json" else {}, content_type="application/json", **extra)
    return client.post(url, data=data, **extra)  # multipart (files) or an HTML form


def session_client(world, role: str = "owner") -> SafeClient:
    client = APIClient()
    client.force_login(world.users[role])
    return SafeClient(client)


def key_client(world, role: str = "admin") -> SafeClient:
    """The strongest key a tenant can make through the API (keys cannot be owners)."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {world.api_key(role)}")
    return SafeClient(client)


def _route_id(route: Route) -> str:
    return str(route)


# --- discovery --------------------------------------------------------------------------------

def test_the_walk_finds_the_known_object_routes():
    """Guards the walker itself: if it stopped seeing routes, every test below would pass vacuously."""
    names = {r.name for r in OBJECT_ROUTES}
    known = {"gallery-detail", "product-upload-images", "recognition-feedback", "fine-tune-job-promote", "member-detail",
             "dashboard:gallery", "dashboard:recognition-crop", "dashboard:recognition-evidence", "dashboard:review-relabel",
             "dashboard:api-key-revoke", "dashboard:gallery-image-box", "dashboard:gallery-settings"}
    assert known <= names, known - names
    assert len(OBJECT_ROUTES) >= 27
    assert any(r.path.startswith("admin/") and r.kwargs for r in all_routes())  # allow-listed, not missing


def test_every_object_route_is_covered(b_objects):
    """A route with an object id must map to a factory (by the view's scoped_model / queryset.model) and its
    URL keywords must be known; otherwise tenant isolation of that route is untested."""
    uncovered = []
    for route in OBJECT_ROUTES:
        if not route.name:
            uncovered.append(f"{route.path}: unnamed, cannot be reversed")
        elif url_kwargs(route, b_objects) is None:
            model = route.model.__name__ if route.model else None
            uncovered.append(f"{route} ({route.path}): model {model}, keywords {route.kwargs}")
    assert not uncovered, "object routes without an isolation factory (add one in conftest.make_tenant_objects and " \
                          "URL_KWARG_VALUES, or allow-list in NOT_TENANT_DATA_PREFIXES with a reason):\n" + "\n".join(uncovered)


# --- object routes ----------------------------------------------------------------------------

@pytest.mark.parametrize("route", OBJECT_ROUTES, ids=_route_id)
def test_b_object_is_404_for_a_with_every_method(route, tenant_a, b_objects):
    kwargs = url_kwargs(route, b_objects)
    if kwargs is None:
        pytest.fail(f"{route} is not covered by a factory: see test_every_object_route_is_covered")
    url = reverse(route.name, kwargs=kwargs)
    before = tenant_snapshot(b_objects.tenant)
    clients = {"session": session_client(tenant_a), "api-key": key_client(tenant_a)}
    problems = []
    for client_name, client in clients.items():
        for method in HTTP_METHODS:
            response = send(client, method, url, write_body(route, b_objects))
            status = response.status_code
            if not route.is_api and client_name == "api-key":
                expected = {302}  # API keys do not open dashboard sessions: off to the login page
                if status == 302 and "/accounts/login/" not in response["Location"]:
                    problems.append(f"{client_name} {method.upper()} {url}: redirected to {response['Location']}")
            else:
                expected = {404} if method in route.methods else {405}
            if status not in expected:
                problems.append(f"{client_name} {method.upper()} {url}: {status}, expected {sorted(expected)}: "
                                f"{response.content[:200]!r}")
            elif status == 404 and route.is_api and response.json().get("error", {}).get("code") != "not_found":
                problems.append(f"{client_name} {method.upper()} {url}: 404 without the not_found error body")
    assert not problems, "\n".join(problems)
    assert tenant_snapshot(b_objects.tenant) == before, f"tenant B's data changed after tenant A's requests to {url}"


@pytest.mark.parametrize("route", [r for r in OBJECT_ROUTES if r.is_api and "get" in r.methods], ids=_route_id)
def test_b_object_is_indistinguishable_from_a_missing_one(route, tenant_a, b_objects):
    """Same status and body for B's id as for an id that exists nowhere: no existence oracle across tenants."""
    client = key_client(tenant_a)
    of_b = client.get(reverse(route.name, kwargs=url_kwargs(route, b_objects)))
    missing = client.get(reverse(route.name, kwargs={k: MISSING_KWARG_VALUES[k] for k in route.kwargs}))
    assert (of_b.status_code, of_b.json()) == (missing.status_code, missing.json())


@pytest.mark.parametrize("route", [r for r in OBJECT_ROUTES if "get" in r.methods], ids=_route_id)
def test_a_reaches_its_own_object_through_the_same_route(route, a_objects, b_objects):
    """The 404s above come from tenant scoping, not from a broken URL: A's own object answers 200 to a GET."""
    kwargs = url_kwargs(route, a_objects)
    if kwargs is None:
        pytest.fail(f"{route} is not covered by a factory")
    response = session_client(a_objects.world).get(reverse(route.name, kwargs=kwargs))
    assert response.status_code == 200, f"{response.status_code}: {response.content[:300]!r}"


# --- list routes ------------------------------------------------------------------------------

def _listed_ids(body) -> set[str]:
    results = body.get("results", body) if isinstance(body, dict) else body
    if not isinstance(results, list):
        return set()
    return {str(row.get("id")) for row in results if isinstance(row, dict)}


def _own_id(route: Route, objects) -> str | None:
    model = route.model
    if model is None or objects.of(model) is None:
        return None
    return str(objects.recognition.public_id) if model is Recognition else str(objects.of(model).pk)


def _foreign_filters(objects) -> str:
    ids = {"gallery": objects.gallery.pk, "product": objects.product.pk, "recognition": objects.recognition.pk,
           "tenant": objects.tenant.pk, "tenant_id": objects.tenant.pk, "status": "", "reason": "", "q": ""}
    return "?" + "&".join(f"{name}={value}" for name, value in ids.items())


# Dashboard lists whose page shows the tenant's own rows (so an empty page cannot pass for isolation).
DASHBOARD_PAGES_SHOWING_OWN_ROWS = {"dashboard:galleries", "dashboard:api-keys", "dashboard:review-queue",
                                    "dashboard:tryit", "dashboard:recognitions"}


LIST_CASES = [
    pytest.param(route, client_name, id=f"{route}-{client_name}")
    for route in LIST_ROUTES for client_name in (("session", "api-key") if route.is_api else ("session",))
]


@pytest.mark.parametrize("route,client_name", LIST_CASES)
def test_lists_hold_none_of_bs_rows(route, client_name, a_objects, b_objects):
    url = reverse(route.name)
    client = session_client(a_objects.world) if client_name == "session" else key_client(a_objects.world)
    b_markers = b_objects.leak_markers()
    for query in ("", _foreign_filters(b_objects)):
        response = client.get(url + query)
        assert response.status_code == 200, f"GET {url}{query}: {response.status_code}"
        text = response.content.decode("utf-8", "replace")
        leaked = [marker for marker in b_markers if marker in text]
        assert not leaked, f"GET {url}{query} shows tenant B's {leaked}"
        if route.is_api and response.get("Content-Type", "").startswith("application/json"):
            model = route.model
            if model is not None and objects_id_set(b_objects, model) & _listed_ids(response.json()):
                pytest.fail(f"GET {url}{query} lists B's {model.__name__} id")
            own = _own_id(route, a_objects)
            if own is not None and not query:
                assert own in _listed_ids(response.json()), f"{url}: A's own {model.__name__} is not listed"
    if route.name in DASHBOARD_PAGES_SHOWING_OWN_ROWS:
        assert A_MARKER in client.get(url).content.decode(), f"{url} does not show A's own rows"


def objects_id_set(objects, model) -> set[str]:
    row = objects.of(model)
    return {str(objects.recognition.public_id)} if model is Recognition else {str(row.pk)}


# --- writes to list routes that carry another tenant's ids ----------------------------------------

# Every list route that takes writes: how a write naming B's rows looks, and what A must get; None: takes no tenant ids.
FOREIGN_WRITES = {
    "api-key-list": None,
    "gallery-list": None,
    "model-rollback": None,  # acts on the caller's own tenant; B's ActiveModel is in the snapshot
    "dashboard:api-keys": None,
    "dashboard:galleries": None,
    "product-list": (lambda b: ("json", {"gallery": b.gallery.pk, "label": "pwned"}), 400),
    "recognition-list": (lambda b: ("multipart", {"image": upload(jpeg_bytes((3, 4, 5))), "gallery": b.gallery.pk}), 400),
    "fine-tune-job-list": (lambda b: ("json", {"gallery": b.gallery.pk, "epochs": 1}), 400),
    "dashboard:switch-tenant": (lambda b: ("form", {"tenant_id": b.tenant.pk}), 302),
    "dashboard:review-bulk-confirm": (lambda b: ("form", {"review": [b.match_review.pk]}), 404),
    "dashboard:finetune-jobs": (lambda b: ("form", {"gallery": b.gallery.pk, "epochs": 1}), 400),
    "dashboard:finetune-model-rollback": None,  # the caller's own tenant, like model-rollback
}


def test_every_writable_list_route_is_in_the_foreign_id_table():
    missing = [f"{r} ({sorted(r.methods)})" for r in WRITABLE_LIST_ROUTES if r.name not in FOREIGN_WRITES]
    assert not missing, f"list routes taking writes with no foreign-id case in FOREIGN_WRITES: {missing}"


@pytest.mark.parametrize("route", [r for r in WRITABLE_LIST_ROUTES if FOREIGN_WRITES.get(r.name)], ids=_route_id)
def test_writes_naming_bs_rows_are_refused(route, tenant_a, b_objects, no_inference_worker):
    make_body, expected = FOREIGN_WRITES[route.name]
    before = tenant_snapshot(b_objects.tenant)
    clients = {"session": session_client(tenant_a)}
    if route.is_api:
        clients["api-key"] = key_client(tenant_a)
    for client_name, client in clients.items():
        response = send(client, "post", reverse(route.name), make_body(b_objects))
        assert response.status_code == expected, f"{client_name}: {response.status_code} {response.content[:300]!r}"
        if route.is_api:
            assert "gallery" in response.json()["error"]["details"]
        elif route.name == "dashboard:finetune-jobs":
            assert b"gallery" in response.content.lower()
    if route.name == "dashboard:switch-tenant":
        assert clients["session"].get("/api/v1/tenant/").json()["slug"] == tenant_a.tenant.slug
    assert tenant_snapshot(b_objects.tenant) == before


def test_bulk_confirm_with_one_foreign_review_changes_none(a_objects, b_objects):
    client = session_client(a_objects.world)
    response = client.post(reverse("dashboard:review-bulk-confirm"),
                           {"review": [a_objects.match_review.pk, b_objects.match_review.pk]})
    assert response.status_code == 404
    assert MatchReview.unscoped.get(pk=a_objects.match_review.pk).status == MatchReview.Status.OPEN
    assert MatchReview.unscoped.get(pk=b_objects.match_review.pk).status == MatchReview.Status.OPEN


def test_relabel_own_review_to_bs_product_is_refused(a_objects, b_objects):
    client = session_client(a_objects.world)
    response = client.post(reverse("dashboard:review-relabel", args=[a_objects.match_review.pk]),
                           {"product": b_objects.product.pk})
    assert response.status_code == 404
    assert MatchReview.unscoped.get(pk=a_objects.match_review.pk).status == MatchReview.Status.OPEN


# --- the Django admin: staff who are not superusers see only their tenants ----------------------------

def test_admin_recognition_rows_and_pictures_of_b_are_hidden_from_a_staff(a_objects, b_objects):
    client = staff_client(a_objects.world, ["view_recognition", "view_matchreview", "change_matchreview"])
    assert client.get(f"/admin/recognition/recognition/{a_objects.recognition.pk}/change/").status_code == 200
    assert client.get(f"/admin/recognition/recognition/{b_objects.recognition.pk}/change/").status_code == 302
    assert client.get(f"/admin/recognition/matchreview/{b_objects.match_review.pk}/change/").status_code == 302
    assert client.get(f"/admin/recognition/matchreview/{a_objects.match_review.pk}/picture/evidence.jpg").status_code == 200
    for kind in ("crop", "query", "reference", "evidence"):
        picture = client.get(f"/admin/recognition/matchreview/{b_objects.match_review.pk}/picture/{kind}.jpg")
        assert picture.status_code == 404, kind
    listing = client.get("/admin/recognition/recognition/").content.decode()
    assert str(a_objects.recognition.public_id) in listing and str(b_objects.recognition.public_id) not in listing


def test_admin_list_filters_name_no_other_tenant(a_objects, b_objects):
    client = staff_client(a_objects.world, ["view_recognition", "view_matchreview"])
    recognitions = client.get("/admin/recognition/recognition/").content.decode()
    reviews = client.get("/admin/recognition/matchreview/").content.decode()
    problems = []
    if b_objects.tenant.name in recognitions:
        problems.append("GET /admin/recognition/recognition/ names tenant B in its `tenant` filter")
    if B_MARKER in reviews:
        problems.append("GET /admin/recognition/matchreview/ names B's gallery in its `gallery` filter")
    assert not problems, "\n".join(problems)


def test_admin_tenancy_rows_of_b_are_hidden_from_a_staff(a_objects, b_objects):
    client = staff_client(a_objects.world, ["view_tenant", "view_membership", "view_apikey", "change_apikey"])
    problems = []
    for path, own, foreign in [
        ("tenant", a_objects.tenant.pk, b_objects.tenant.pk),
        ("membership", a_objects.membership.pk, b_objects.membership.pk),
        ("apikey", a_objects.api_key.pk, b_objects.api_key.pk),
    ]:
        assert client.get(f"/admin/tenancy/{path}/{own}/change/").status_code == 200, path
        if client.get(f"/admin/tenancy/{path}/{foreign}/change/").status_code != 302:
            problems.append(f"GET /admin/tenancy/{path}/{foreign}/change/ (tenant B's) is shown to tenant A's staff")
        listing = client.get(f"/admin/tenancy/{path}/").content.decode()
        if b_objects.tenant.name in listing or B_MARKER in listing:
            problems.append(f"GET /admin/tenancy/{path}/ lists tenant B's rows")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_admin_gallery_and_training_rows_of_b_are_hidden_from_a_staff(a_objects, b_objects):
    """Every galleries/training admin (each goes through staff_visible): B's rows are neither listed, nor shown, nor
    named in a filter, nor found by a search for B's marker."""
    from django.apps import apps
    from django.contrib import admin as django_admin

    models = [m for label in ("galleries", "training") for m in apps.get_app_config(label).get_models()]
    assert all(django_admin.site.is_registered(model) for model in models)
    client = staff_client(a_objects.world, [f"view_{model._meta.model_name}" for model in models])
    problems = []
    for model in models:
        base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        own, foreign = a_objects.of(model), b_objects.of(model)
        if own is not None:
            assert client.get(f"{base}{own.pk}/change/").status_code == 200, model
        if foreign is not None and client.get(f"{base}{foreign.pk}/change/").status_code != 302:
            problems.append(f"GET {base}{foreign.pk}/change/ (tenant B's) is shown to tenant A's staff")
        for query in ("", f"?q={B_MARKER}", f"?tenant__id__exact={b_objects.tenant.pk}"):
            listing = client.get(base + query).content.decode()
            # a search echoes its term, so there only B's tenant name and B's row links count
            leaked = [b_objects.tenant.name, *((B_MARKER, B_MARKER.lower()) if "q=" not in query else ())]
            if foreign is not None:
                leaked.append(f"{base}{foreign.pk}/change/")
            if any(text in listing for text in leaked):
                problems.append(f"GET {base}{query} shows tenant B's rows or names B")
    assert not problems, "\n".join(problems)
