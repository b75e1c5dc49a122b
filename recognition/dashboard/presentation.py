"""What the recognition templates and the page script draw: objects as boxes over the photo with their matches,
the URL patterns the script fills in, and the filter query strings pages keep across page links."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, QueryDict
from django.urls import reverse

from recognition.models import DetectedObject, MatchReview, Recognition

BOX_COLOURS = 8  # recognition.css defines .obj-c0 … .obj-c7; objects cycle through them
_ANY_ID = uuid.UUID(int=0)


@dataclass
class MatchView:
    label: str
    display_name: str
    score: float
    product_id: int | None
    reference_image_id: int | None
    thumb_url: str | None
    inliers: int | None = None


@dataclass
class ObjectView:
    """One detected object as the pages draw it: box position in percent of the photo, colour, matches."""

    position: int
    public_id: uuid.UUID  # of the recognition: with `position`, names the object's pictures
    detected: DetectedObject
    colour: str
    box_style: str
    tag_inside: bool
    matches: list[MatchView] = field(default_factory=list)
    review: MatchReview | None = None

    @property
    def crop_url(self) -> str:
        return crop_url(self.public_id, self.position)

    @property
    def evidence_url(self) -> str | None:
        """The matched-keypoint picture, where the object has geometric evidence to draw."""
        if not (self.detected.evidence and self.detected.reference_image_id):
            return None
        return reverse("dashboard:recognition-evidence", args=[self.public_id, self.position])

    @property
    def best(self) -> MatchView | None:
        return self.matches[0] if self.matches else None

    @property
    def runner_up(self) -> MatchView | None:
        best = self.best
        return next((m for m in self.matches[1:] if best and m.product_id != best.product_id), None)


def box_style(bbox: list[float], width: int, height: int) -> tuple[str, bool]:
    """CSS placing a box over the photo in percent (so it follows any displayed size); True when the tag
    goes inside the box because there is no room above it."""
    try:
        xmin, ymin, xmax, ymax = (float(v) for v in bbox)
    except (TypeError, ValueError):  # a malformed stored box is not drawn rather than breaking the page
        return "display:none", False
    width, height = max(width, 1), max(height, 1)
    left, top = max(0.0, xmin / width * 100), max(0.0, ymin / height * 100)
    right, bottom = min(100.0, xmax / width * 100), min(100.0, ymax / height * 100)
    style = f"left:{left:.3f}%;top:{top:.3f}%;width:{max(right - left, 0.5):.3f}%;height:{max(bottom - top, 0.5):.3f}%"
    return style, top < 7


def reference_thumb_url(reference_image_id: int) -> str:
    return reverse("dashboard:recognition-reference-thumb", args=[reference_image_id])


def crop_url(public_id: uuid.UUID, position: int) -> str:
    return reverse("dashboard:recognition-crop", args=[public_id, position])


def object_views(recognition: Recognition, detected_objects: list[DetectedObject]) -> list[ObjectView]:
    views = []
    for position, detected in enumerate(sorted(detected_objects, key=lambda d: d.rank)):
        style, tag_inside = box_style(detected.bbox, recognition.image_width, recognition.image_height)
        views.append(ObjectView(
            position=position, public_id=recognition.public_id, detected=detected, colour=f"obj-c{position % BOX_COLOURS}",
            box_style=style, tag_inside=tag_inside or detected.whole_image,
            matches=[
                MatchView(label=m.get("label", ""), display_name=m.get("display_name", ""), score=float(m.get("score", 0)),
                          product_id=m.get("product_id"), reference_image_id=m.get("reference_image_id"),
                          thumb_url=reference_thumb_url(m["reference_image_id"]) if m.get("reference_image_id") else None,
                          inliers=m.get("inliers"))
                for m in detected.matches or []
            ],
            review=_review_of(detected),
        ))
    return views


def _review_of(detected: DetectedObject) -> MatchReview | None:
    try:
        return detected.review
    except MatchReview.DoesNotExist:
        return None


def url_patterns() -> dict[str, str]:
    """URL templates for the page script: `{id}`, `{index}` and `{pk}` are filled in the browser."""
    return {
        "api": reverse("recognition-list"),
        "products_api": reverse("product-list"),
        "detail": reverse("dashboard:recognition", args=[_ANY_ID]).replace(str(_ANY_ID), "{id}"),
        "image": reverse("dashboard:recognition-image", args=[_ANY_ID]).replace(str(_ANY_ID), "{id}"),
        "crop": reverse("dashboard:recognition-crop", args=[_ANY_ID, 0]).replace(str(_ANY_ID), "{id}").replace("/0/crop/", "/{index}/crop/"),
        "evidence": reverse("dashboard:recognition-evidence", args=[_ANY_ID, 0]).replace(str(_ANY_ID), "{id}")
                    .replace("/0/evidence/", "/{index}/evidence/"),
        "thumb": reverse("dashboard:recognition-reference-thumb", args=[0]).replace("/0/", "/{pk}/"),
    }


class ForgivingPaginationMixin:
    """A page number past the end (the last row of the last page was just resolved) shows the last page, not a 404."""

    def paginate_queryset(self, queryset: QuerySet, page_size: int) -> tuple:
        paginator = self.get_paginator(queryset, page_size)  # type: ignore[attr-defined]
        page = paginator.get_page(self.request.GET.get("page"))  # type: ignore[attr-defined]
        return paginator, page, page.object_list, page.has_other_pages()


def filter_query(request: HttpRequest, names: tuple[str, ...]) -> str:
    """The request's filters (not the page) as `a=1&b=2&`, ready to prefix a page parameter."""
    kept = QueryDict(mutable=True)
    for name in names:
        if request.GET.get(name):
            kept[name] = request.GET[name][:40]
    return f"{kept.urlencode()}&" if kept else ""


def best_labels(recognition: Any) -> tuple[list[tuple[str, float]], int]:
    """Up to three distinct best-match labels of a listed recognition's objects (with their scores), and how many more."""
    labels: list[tuple[str, float]] = []
    for detected in recognition.detected_objects.all():
        label = detected.matches[0].get("label", "") if detected.matches else ""
        if label and label not in {known for known, _ in labels}:
            labels.append((label, detected.score))
    return labels[:3], max(0, len(labels) - 3)
