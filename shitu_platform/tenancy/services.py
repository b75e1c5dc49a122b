"""Writes for tenancy: tenants, memberships, API keys."""
from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from shitu_platform.tenancy import rls
from shitu_platform.tenancy.models import ApiKey, Membership, Role, Tenant

API_KEY_PREFIX = "shitu_"
_PREFIX_LEN = 12
_KEY_CHARACTERS = re.compile(r"[A-Za-z0-9_-]+")  # what token_hex/token_urlsafe produce


def hash_api_key(raw_key: str) -> str:
    """Keys are 256-bit random, so a plain SHA-256 is as strong as a slow KDF and keeps auth fast."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


@transaction.atomic
def tenant_create(*, name: str, owner: AbstractBaseUser, slug: str | None = None, time_zone: str = "UTC") -> Tenant:
    tenant = Tenant.objects.create(name=name, slug=slug or _unique_slug(name), time_zone=time_zone)
    Membership(tenant=tenant, user=owner, role=Role.OWNER).save()
    return tenant


def membership_set(*, tenant: Tenant, user: AbstractBaseUser, role: str) -> Membership:
    membership, _ = Membership.objects.for_tenant(tenant).update_or_create(
        user=user, defaults={"role": Role(role)}, create_defaults={"tenant": tenant, "role": Role(role)}
    )
    return membership


def api_key_create(
    *, tenant: Tenant, name: str, role: str = Role.MEMBER, created_by: AbstractBaseUser | None = None
) -> tuple[ApiKey, str]:
    """Create a key and return it with its plaintext, which is never stored and shown only now."""
    prefix = secrets.token_hex(_PREFIX_LEN // 2)
    raw_key = f"{API_KEY_PREFIX}{prefix}{secrets.token_urlsafe(32)}"
    api_key = ApiKey(
        tenant=tenant, name=name, prefix=prefix, key_hash=hash_api_key(raw_key), role=Role(role), created_by=created_by
    )
    api_key.save()
    return api_key, raw_key


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def api_key_authenticate(raw_key: str) -> ApiKey | None:
    """The active key matching `raw_key`, or None; compares hashes in constant time."""
    if not raw_key.startswith(API_KEY_PREFIX) or len(raw_key) < len(API_KEY_PREFIX) + _PREFIX_LEN + 20:
        return None
    if len(raw_key) > 200 or not _KEY_CHARACTERS.fullmatch(raw_key):
        return None
    prefix = raw_key[len(API_KEY_PREFIX) : len(API_KEY_PREFIX) + _PREFIX_LEN]
    # Lookup by the globally unique prefix is the one unscoped read: the key is what names the tenant, so it is
    # read (and its last use written) in the system scope, before the request is narrowed to that tenant.
    with rls.system_scope():
        api_key = ApiKey.unscoped.select_related("tenant").filter(prefix=prefix).first()
        if api_key is None or not secrets.compare_digest(api_key.key_hash, hash_api_key(raw_key)):
            return None
        if api_key.revoked_at is not None or not api_key.tenant.is_active:
            return None
        _touch_last_used(api_key)
    return api_key


def _touch_last_used(api_key: ApiKey) -> None:
    now = timezone.now()
    resolution = timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION_SECONDS)
    if api_key.last_used_at is None or now - api_key.last_used_at > resolution:
        ApiKey.objects.for_tenant(api_key.tenant).filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "tenant"
    slug, counter = base, 1
    while Tenant.objects.filter(slug=slug).exists():
        counter += 1
        slug = f"{base}-{counter}"
    return slug
