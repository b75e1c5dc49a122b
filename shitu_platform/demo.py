"""The demo tenant and its login, created once and reused on every start."""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
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
