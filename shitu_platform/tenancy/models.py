"""Tenant, Membership and ApiKey; `TenantOwnedModel` is the base of every tenant-owned row."""
from __future__ import annotations

from functools import lru_cache
from zoneinfo import available_timezones

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


def role_at_least(role: str, required: str) -> bool:
    return ROLE_RANK[Role(role)] >= ROLE_RANK[Role(required)]


@lru_cache(maxsize=1)
def time_zone_names() -> frozenset[str]:
    """IANA names this machine's zoneinfo knows; read once, it scans the tz database."""
    return frozenset(available_timezones())


def validate_time_zone(name: str) -> None:
    if name not in time_zone_names():
        raise ValidationError("%(name)s is not an IANA time zone (e.g. Europe/Berlin, Asia/Shanghai).",
                              code="invalid_time_zone", params={"name": name})


class Tenant(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=64, unique=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Quotas: one tenant's traffic cannot starve another's.
    requests_per_minute = models.PositiveIntegerField(default=600, help_text="all API calls")
    recognitions_per_minute = models.PositiveIntegerField(default=120)
    max_images_per_gallery = models.PositiveIntegerField(default=100_000)
    recognition_retention_days = models.PositiveIntegerField(default=90, help_text="query photos and results are deleted after this")
    time_zone = models.CharField(max_length=64, default="UTC", validators=[validate_time_zone],
                                 help_text="IANA name, e.g. Asia/Shanghai: the dashboard shows times in it")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TenantOwnedQuerySet(models.QuerySet):
    def for_tenant(self, tenant: Tenant) -> "TenantOwnedQuerySet":
        if tenant is None or tenant.pk is None:
            raise ValueError("for_tenant() needs a saved tenant")
        return self.filter(tenant=tenant)


class UnscopedQueryError(RuntimeError):
    """A tenant-owned model was queried through `objects` without naming a tenant."""


class TenantScopedManager(models.Manager):
    """`Model.objects`: fails closed. Reads start at `for_tenant(tenant)`; `create()` needs the tenant.

    Every other entry (`all`, `filter`, `get`, `count`, `update`, `bulk_create`, ...) goes through
    `get_queryset()`, which raises `UnscopedQueryError`, so a hurried query cannot forget the tenant.
    `none()` is allowed: it matches no row (choice fields start from it).
    """

    _queryset_class = TenantOwnedQuerySet

    def get_queryset(self) -> TenantOwnedQuerySet:
        name = self.model.__name__
        raise UnscopedQueryError(
            f"{name}.objects needs a tenant: use {name}.objects.for_tenant(tenant).<query>, or, in worker, "
            f"sweep and staff code that must cross tenants, {name}.unscoped.<query> (listed in the README)."
        )

    def for_tenant(self, tenant: Tenant) -> TenantOwnedQuerySet:
        return super().get_queryset().for_tenant(tenant)

    def create(self, **fields) -> "TenantOwnedModel":
        tenant = fields.get("tenant")
        if (tenant is None or tenant.pk is None) and fields.get("tenant_id") is None:
            raise UnscopedQueryError(f"{self.model.__name__}.objects.create() needs tenant=<a saved Tenant>")
        return super().get_queryset().create(**fields)

    def none(self) -> TenantOwnedQuerySet:
        return super().get_queryset().none()


class TenantOwnedModel(models.Model):
    """Every tenant-owned row carries its tenant; reads go through `objects.for_tenant()` only.

    `unscoped` is declared first, so it is the default and base manager: Django's own machinery (admin,
    model forms, related lookups, deletion cascades, DRF validators) keeps working across rows it was
    handed. Application code names it only in the short list of worker, sweep and staff callers that
    tests/tenancy/test_fail_closed.py pins.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+", editable=False)

    unscoped = TenantOwnedQuerySet.as_manager()
    objects = TenantScopedManager()

    class Meta:
        abstract = True


class Membership(TenantOwnedModel):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_user_per_tenant")]
        ordering = ["tenant_id", "user_id"]

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant} ({self.role})"


class ApiKey(TenantOwnedModel):
    """A tenant's API key: only its SHA-256 is stored; `prefix` finds the row without scanning."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
