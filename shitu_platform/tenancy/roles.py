"""What each role may do through the API, read off the views' own declared roles (`read_role`, `write_role`,
`action_roles`), so the table on the API-keys page follows the permission code instead of restating it."""
from __future__ import annotations

from dataclasses import dataclass

from django.utils.module_loading import import_string

from shitu_platform.tenancy.models import ROLE_RANK, Role, role_at_least
from shitu_platform.tenancy.permissions import required_role_for

KEY_ROLES = (Role.VIEWER, Role.MEMBER, Role.ADMIN)  # what a key may be given: never owner

# What a person reads, and the (view, action, HTTP method) calls it stands for; the row needs the highest of their roles.
_CAPABILITIES: tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...] = (
    ("Read galleries, products, recognitions and fine-tuning jobs", (
        ("galleries.api.GalleryViewSet", "list", "GET"), ("galleries.api.ProductViewSet", "list", "GET"),
        ("recognition.api.RecognitionViewSet", "list", "GET"), ("training.api.FineTuneJobViewSet", "list", "GET"),
    )),
    ("Recognise photos and send feedback on the answers", (
        ("recognition.api.RecognitionViewSet", "create", "POST"), ("recognition.api.RecognitionViewSet", "feedback", "POST"),
    )),
    ("Create, edit and delete galleries and products; upload and import reference images", (
        ("galleries.api.GalleryViewSet", "create", "POST"), ("galleries.api.GalleryViewSet", "start_import", "POST"),
        ("galleries.api.ProductViewSet", "partial_update", "PATCH"), ("galleries.api.ProductViewSet", "upload_images", "POST"),
        ("galleries.api.GalleryViewSet", "destroy", "DELETE"),
    )),
    ("Start, cancel and promote fine-tuning; roll back the active model", (
        ("training.api.FineTuneJobViewSet", "create", "POST"), ("training.api.FineTuneJobViewSet", "promote", "POST"),
        ("training.api.RollbackView", "", "POST"),
    )),
    ("List members; create and revoke API keys", (
        ("shitu_platform.tenancy.api.MembershipViewSet", "list", "GET"), ("shitu_platform.tenancy.api.ApiKeyViewSet", "create", "POST"),
        ("shitu_platform.tenancy.api.ApiKeyViewSet", "revoke", "POST"),
    )),
)


@dataclass(frozen=True)
class Capability:
    description: str
    required_role: str
    allowed: tuple[bool, ...]  # one per KEY_ROLES, in that order


def role_capabilities() -> list[Capability]:
    """Each capability with the least role that has it (views are imported here, not at load: they import tenancy)."""
    table = []
    for description, calls in _CAPABILITIES:
        required = max((_required_role(*call) for call in calls), key=lambda role: ROLE_RANK[Role(role)])
        table.append(Capability(description, required, tuple(role_at_least(role, required) for role in KEY_ROLES)))
    return table


def _required_role(view_path: str, action: str, method: str) -> str:
    view = import_string(view_path)()
    view.action = action or None
    return required_role_for(view, method)
