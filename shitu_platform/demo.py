"""The demo tenant and its login, created once and reused on every start."""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from shitu_platform.tenancy.models import Tenant
from shitu_platform.tenancy.services import tenant_create

DEMO_USERNAME = "demo"
DEMO_TENANT_SLUG = "demo-retail"


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    tenant: Tenant


def _credentials_file() -> Path:
    return Path(settings.VAR_DIR) / "demo-credentials.json"


@transaction.atomic
def demo_tenant_ensure() -> DemoLogin:
    """Create the demo user (tenant owner and platform staff, for the admin) and tenant unless they exist."""
    credentials_file = _credentials_file()
    user_model = get_user_model()
    user = user_model.objects.filter(username=DEMO_USERNAME).first()
    if user is None or not credentials_file.exists():
        password = secrets.token_urlsafe(12)
        if user is None:
            user = user_model.objects.create_user(DEMO_USERNAME, password=password, is_staff=True, is_superuser=True)
        else:
            user.set_password(password)
            user.save(update_fields=["password"])
        credentials_file.parent.mkdir(parents=True, exist_ok=True)
        credentials_file.write_text(json.dumps({"username": DEMO_USERNAME, "password": password}))
        credentials_file.chmod(0o600)
    password = json.loads(credentials_file.read_text())["password"]
    tenant = Tenant.objects.filter(slug=DEMO_TENANT_SLUG).first()
    if tenant is None:
        tenant = tenant_create(name="Demo Retail", owner=user, slug=DEMO_TENANT_SLUG)
    return DemoLogin(username=DEMO_USERNAME, password=password, tenant=tenant)


DEMO_GALLERY_NAME = "Demo drinks"


def demo_api_key(login: DemoLogin) -> str:
    """The demo's API key, kept (0600) beside the demo password so every start can call the API as the demo tenant."""
    from shitu_platform.tenancy.services import api_key_authenticate, api_key_create

    credentials_file = _credentials_file()
    credentials = json.loads(credentials_file.read_text())
    if credentials.get("api_key") and api_key_authenticate(credentials["api_key"]) is not None:
        return credentials["api_key"]
    _, raw_key = api_key_create(tenant=login.tenant, name="demo script", role="admin")
    credentials["api_key"] = raw_key
    credentials_file.write_text(json.dumps(credentials))
    return raw_key


def _samples_file() -> Path:
    return Path(settings.VAR_DIR) / "demo-samples.json"


def _gallery_key(gallery: dict) -> str:
    # id and creation time: a database started afresh may give a new gallery an old id
    return f"{gallery['id']}@{gallery['created_at']}"


def demo_samples_posted(gallery: dict) -> dict | None:
    """What the first start recorded after posting the sample photos to this gallery (None: not posted yet)."""
    try:
        recorded = json.loads(_samples_file().read_text())
    except (OSError, ValueError):
        return None
    return recorded.get(_gallery_key(gallery))


def demo_samples_record(gallery: dict, *, summary: str) -> None:
    """Remember that this gallery got its sample recognitions, so later starts do not post them again."""
    samples_file = _samples_file()
    try:
        recorded = json.loads(samples_file.read_text())
    except (OSError, ValueError):
        recorded = {}
    recorded[_gallery_key(gallery)] = {"gallery": gallery["name"], "summary": summary,
                                       "posted_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    samples_file.write_text(json.dumps(recorded, indent=1))


def demo_archive_name(folder: Path | None) -> str:
    return "demo-drinks.zip" if folder is None else f"{folder.name}.zip"


def demo_gallery_archive(folder: Path | None) -> tuple[str, bytes]:
    """The zip to import: a folder with labels.txt (e.g. drink-dev), or the generated demo products."""
    import io
    import zipfile

    from shitu_platform.demo_data import demo_gallery_photos, demo_gallery_zip

    if folder is None:
        return demo_archive_name(None), demo_gallery_zip(demo_gallery_photos())
    if not (folder / "labels.txt").exists():
        raise FileNotFoundError(f"{folder} has no labels.txt (lines: relative/path<TAB>label)")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, str(path.relative_to(folder)))
    return demo_archive_name(folder), buffer.getvalue()
