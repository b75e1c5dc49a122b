"""`manage.py shitu_tenant create NAME --owner USER [--email E]` and `shitu_tenant add-member TENANT USER --role ROLE`:
a tenant with its owner in one step, instead of three admin pages."""
from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email, validate_slug
from django.db import transaction

from shitu_platform.tenancy.models import Membership, Role, Tenant, validate_time_zone
from shitu_platform.tenancy.services import membership_set, tenant_create

NAME_MAX = Tenant._meta.get_field("name").max_length
SLUG_MAX = Tenant._meta.get_field("slug").max_length


class Command(BaseCommand):
    help = "Create a tenant with its owner, or add a member to a tenant (or change a member's role)."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="a new tenant, owned by USER")
        create.add_argument("name", help="the tenant's display name, e.g. \"Acme Foods\"")
        create.add_argument("--owner", required=True, help="username of the owner; created when missing if --email is given")
        create.add_argument("--email", help="the owner's e-mail, to create the owner's account")
        create.add_argument("--slug", help="URL name (default: from NAME)")
        create.add_argument("--time-zone", default="UTC", help="IANA zone the dashboard shows times in (default UTC)")
        member = actions.add_parser("add-member", help="make USER a member of TENANT (or change their role)")
        member.add_argument("tenant", help="the tenant's slug (or its exact name)")
        member.add_argument("user", help="username")
        member.add_argument("--role", default=Role.MEMBER, choices=Role.values, help="default: member")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "create":
            self._create(**options)
        else:
            self._add_member(**options)

    def _create(self, *, name: str, owner: str, email: str | None, slug: str | None, time_zone: str, **_: Any) -> None:
        name = name.strip()
        if not name or len(name) > NAME_MAX:
            raise CommandError(f"The tenant name must have 1 to {NAME_MAX} characters.")
        clash = Tenant.objects.filter(name__iexact=name).first()
        if clash is not None:
            raise CommandError(f"A tenant named \"{clash.name}\" already exists (slug {clash.slug}); "
                               f"add members with: shitu_tenant add-member {clash.slug} USER --role ROLE")
        if slug is not None:
            _check(validate_slug, slug, "--slug")
            if len(slug) > SLUG_MAX or Tenant.objects.filter(slug=slug).exists():
                raise CommandError(f"The slug \"{slug}\" is taken or longer than {SLUG_MAX} characters.")
        _check(validate_time_zone, time_zone, "--time-zone")
        if email is not None:
            _check(validate_email, email, "--email")
        with transaction.atomic():
            user, created = _owner(owner, email)
            tenant = tenant_create(name=name, owner=user, slug=slug, time_zone=time_zone)
        self.stdout.write(self.style.SUCCESS(f"Created tenant \"{tenant.name}\" (slug {tenant.slug}, times in {tenant.time_zone}), "
                                             f"owned by {user.get_username()}."))
        if created:
            self.stdout.write(f"Created the user {user.get_username()} without a password: set one with "
                              f"`manage.py changepassword {user.get_username()}`.")

    def _add_member(self, *, tenant: str, user: str, role: str, **_: Any) -> None:
        found_tenant = _tenant(tenant)
        found_user = get_user_model().objects.filter(username=user).first()
        if found_user is None:
            raise CommandError(f"No user \"{user}\". Create one first (manage.py createsuperuser, or the admin).")
        before = Membership.objects.for_tenant(found_tenant).filter(user=found_user).values_list("role", flat=True).first()
        membership_set(tenant=found_tenant, user=found_user, role=role)
        if before is None:
            self.stdout.write(self.style.SUCCESS(f"{user} is now {role} of \"{found_tenant.name}\"."))
        elif before == role:
            self.stdout.write(f"{user} already was {role} of \"{found_tenant.name}\"; nothing changed.")
        else:
            self.stdout.write(self.style.SUCCESS(f"{user} is now {role} of \"{found_tenant.name}\" (was {before})."))


def _check(validator: Any, value: str, option: str) -> None:
    try:
        validator(value)
    except ValidationError as error:
        raise CommandError(f"{option}: {' '.join(error.messages)}") from error


def _owner(username: str, email: str | None) -> tuple[AbstractBaseUser, bool]:
    """The named user; created (without a usable password) only when missing and an e-mail is given."""
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    if user is not None:
        if email is not None and user.email and user.email.lower() != email.lower():
            raise CommandError(f"The user {username} exists with another e-mail ({user.email}); leave out --email.")
        return user, False
    if email is None:
        raise CommandError(f"No user \"{username}\". Pass --email to create the owner's account, or create it first.")
    _check(user_model.username_validator, username, "--owner")
    user = user_model(username=username, email=email)
    user.set_unusable_password()
    user.save()
    return user, True


def _tenant(slug_or_name: str) -> Tenant:
    tenant = Tenant.objects.filter(slug=slug_or_name).first()
    if tenant is not None:
        return tenant
    named = list(Tenant.objects.filter(name__iexact=slug_or_name)[:2])
    if len(named) == 1:
        return named[0]
    if named:
        raise CommandError(f"Several tenants are named \"{slug_or_name}\": name it by its slug.")
    raise CommandError(f"No tenant \"{slug_or_name}\" (by slug or name). List them in the admin, or create one with "
                       "`shitu_tenant create NAME --owner USER`.")
