"""`manage.py shitu_tenant`: a tenant with its owner in one command, members added by slug; bad input is a
CommandError that says what to do, never a traceback."""
from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from shitu_platform.tenancy.models import Membership, Tenant

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("shitu_tenant", *args, stdout=out)
    return out.getvalue()


def test_create_makes_the_tenant_with_its_existing_owner():
    owner = get_user_model().objects.create_user("alice", password="x-password-123")
    output = run("create", "Acme Foods", "--owner", "alice", "--time-zone", "Asia/Shanghai")
    tenant = Tenant.objects.get(name="Acme Foods")
    assert tenant.slug == "acme-foods" and tenant.time_zone == "Asia/Shanghai"
    assert Membership.objects.for_tenant(tenant).get(user=owner).role == "owner"
    assert "acme-foods" in output and "alice" in output


def test_create_makes_a_missing_owner_when_given_an_email():
    output = run("create", "Bolt Drinks", "--owner", "bob", "--email", "bob@example.com")
    bob = get_user_model().objects.get(username="bob")
    assert bob.email == "bob@example.com" and not bob.has_usable_password()
    assert Membership.objects.for_tenant(Tenant.objects.get(slug="bolt-drinks")).get(user=bob).role == "owner"
    assert "changepassword bob" in output


@pytest.mark.parametrize("args,message", [
    (["create", "Acme", "--owner", "nobody"], "Pass --email"),
    (["create", "   ", "--owner", "alice"], "1 to 200 characters"),
    (["create", "Acme", "--owner", "alice", "--time-zone", "Mars/Olympus"], "not an IANA time zone"),
    (["create", "Acme", "--owner", "alice", "--slug", "not a slug"], "--slug"),
    (["create", "Acme", "--owner", "new user!", "--email", "x@example.com"], "--owner"),
    (["create", "Acme", "--owner", "carol", "--email", "not-an-email"], "--email"),
    (["create", "Acme", "--owner", "alice", "--email", "other@example.com"], "another e-mail"),
    (["create", "Acme"], "--owner"),
])
def test_create_refuses_bad_input_with_a_clear_error(args, message):
    get_user_model().objects.create_user("alice", email="alice@example.com", password="x-password-123")
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert not Tenant.objects.exists() and not get_user_model().objects.exclude(username="alice").exists()


def test_create_refuses_a_second_tenant_of_the_same_name(tenant_a):
    with pytest.raises(CommandError, match=f"already exists \\(slug {tenant_a.tenant.slug}\\)"):
        run("create", tenant_a.tenant.name.upper(), "--owner", tenant_a.owner.username)
    assert Tenant.objects.count() == 1


def test_add_member_adds_then_changes_the_role(tenant_a):
    dave = get_user_model().objects.create_user("dave", password="x-password-123")
    assert "now viewer" in run("add-member", tenant_a.tenant.slug, "dave", "--role", "viewer")
    assert "now admin" in run("add-member", tenant_a.tenant.name, "dave", "--role", "admin")  # by name too
    assert "nothing changed" in run("add-member", tenant_a.tenant.slug, "dave", "--role", "admin")
    assert Membership.objects.for_tenant(tenant_a.tenant).get(user=dave).role == "admin"
    assert run("add-member", tenant_a.tenant.slug, "dave") and \
        Membership.objects.for_tenant(tenant_a.tenant).get(user=dave).role == "member"  # the default role


@pytest.mark.parametrize("args,message", [
    (["add-member", "no-such-tenant", "dave"], "No tenant"),
    (["add-member", "{slug}", "nobody"], "No user"),
    (["add-member", "{slug}", "dave", "--role", "emperor"], "invalid choice"),
    (["frobnicate"], "invalid choice"),
])
def test_add_member_refuses_bad_input_with_a_clear_error(tenant_a, args, message):
    get_user_model().objects.create_user("dave", password="x-password-123")
    with pytest.raises(CommandError, match=message):
        run(*[arg.format(slug=tenant_a.tenant.slug) for arg in args])
    assert not Membership.unscoped.filter(user__username="dave").exists()
