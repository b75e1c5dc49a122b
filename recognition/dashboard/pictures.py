"""Pictures behind the dashboard pages: query photos, object crops, reference thumbnails, matched-keypoint evidence.

A picture that cannot be read is the placeholder (never an error page); another tenant's row is a 404."""
from __future__ import annotations

import uuid
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import View
from django.views.generic.detail import SingleObjectMixin

from galleries.models import ReferenceImage
from recognition import selectors
from recognition.drawing import (
    evidence_jpeg_or_none,
    placeholder_jpeg,
    stored_jpeg_or_none,
)
from recognition.models import DetectedObject, Recognition
from shitu_platform.errors import error_body
from shitu_platform.tenancy.scoping import TenantScopedDashboardMixin

QUERY_IMAGE_SIDES = {"full": 1600, "thumb": 240}
CROP_SIDE = 240
REFERENCE_THUMB_SIDE = 200


def _picture_response(data: bytes | None) -> HttpResponse:
    if data is None:
        response = HttpResponse(placeholder_jpeg(), content_type="image/jpeg")
        response["Cache-Control"] = "private, max-age=60"  # may be a passing storage outage: ask again soon
        response["X-Shitu-Placeholder"] = "1"
        return response
    response = HttpResponse(data, content_type="image/jpeg")
    # Stored query photos and reference images never change under their ids.
    response["Cache-Control"] = "private, max-age=86400"
    return response


class RecognitionImageView(TenantScopedDashboardMixin, SingleObjectMixin, View):
    """The query photo, EXIF-upright, scaled down: `?size=thumb` (240 px) or full (1600 px)."""

    scoped_model = Recognition
    slug_field = slug_url_kwarg = "public_id"
    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        recognition = self.get_object()
        max_side = QUERY_IMAGE_SIDES.get(request.GET.get("size", "full"), QUERY_IMAGE_SIDES["full"])
        return _picture_response(stored_jpeg_or_none(
            key=recognition.image_key, box=None, max_side=max_side, what=f"recognition {recognition.public_id}"))


class _ObjectPictureView(TenantScopedDashboardMixin, View):
    scoped_model = DetectedObject
    http_method_names = ["get", "head"]

    def detected_object(self, public_id: uuid.UUID, position: int) -> DetectedObject:
        """The object at `position` in the recognition's `objects` (see `selectors.detected_object_at`), else 404."""
        detected = selectors.detected_object_at(tenant=self.tenant, public_id=public_id, position=position)
        if detected is None:
            raise Http404("No such object.")
        return detected


class ObjectCropView(_ObjectPictureView):
    """The crop of one detected object, by its position in the recognition."""

    def get(self, request: HttpRequest, public_id: uuid.UUID, position: int) -> HttpResponse:
        detected = self.detected_object(public_id, position)
        return _picture_response(stored_jpeg_or_none(
            key=detected.recognition.image_key, box=detected.bbox, max_side=CROP_SIDE,
            what=f"object {position} of recognition {public_id}"))


class ObjectEvidenceView(_ObjectPictureView):
    """Why an object was matched: its crop beside the best match's reference image, a line per matched keypoint.

    An object of this tenant without geometric evidence (not verified, or its reference image deleted since)
    answers 404 `no_evidence`; another tenant's object is the plain 404 of any missing object."""

    def get(self, request: HttpRequest, public_id: uuid.UUID, position: int) -> HttpResponse:
        detected = self.detected_object(public_id, position)
        reference_image = selectors.evidence_reference_image(tenant=self.tenant, detected=detected)
        if reference_image is None:
            return JsonResponse(error_body("no_evidence", "This object was not verified geometrically: "
                                                          "there are no matched keypoints to draw."), status=404)
        return _picture_response(evidence_jpeg_or_none(
            detected=detected, reference_image=reference_image, what=f"object {position} of recognition {public_id}"))


class ReferenceImageThumbView(TenantScopedDashboardMixin, SingleObjectMixin, View):
    """A reference image of a match, cropped to its product box when one is known."""

    scoped_model = ReferenceImage
    http_method_names = ["get", "head"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        reference_image = self.get_object()
        return _picture_response(stored_jpeg_or_none(
            key=reference_image.object_key, box=reference_image.bbox or None, max_side=REFERENCE_THUMB_SIDE,
            what=f"reference image {reference_image.pk}"))
