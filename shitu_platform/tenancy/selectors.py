"""Reads for tenancy."""
from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from shitu_platform.tenancy import rls
from shitu_platform.tenancy.models import Membership


def memberships_for_user(*, user: AbstractBaseUser) -> list[Membership]:
    """The user's memberships in active tenants: the list a tenant switcher offers.

    Read in the system scope: they span tenants, and they are how a request finds its tenant.
    """
    with rls.system_scope():
        return list(Membership.unscoped.filter(user=user, tenant__is_active=True).select_related("tenant")
                    .order_by("tenant__name"))
