"""Reads for tenancy."""
from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from shitu_platform.tenancy.models import Membership


def memberships_for_user(*, user: AbstractBaseUser) -> QuerySet[Membership]:
    """The user's memberships in active tenants: the list a tenant switcher offers."""
    return Membership.unscoped.filter(user=user, tenant__is_active=True).select_related("tenant").order_by("tenant__name")
