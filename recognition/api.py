"""`POST /api/v1/recognitions`: recognise the products in a photo (sync with timeout, or async 202)."""
from __future__ import annotations

import base64
import binascii
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from recognition import reviews, selectors, services
from recognition.engine.errors import FileTooLarge, NotAnImage
from recognition.engine.pipeline import PipelineParams
from recognition.models import Recognition
from recognition.reviews import InvalidFeedback
from recognition.serializers import (
    FeedbackSerializer,
    MatchReviewSerializer,
    RecognitionRequestSerializer,
    RecognitionSerializer,
)
from shitu_platform.parsers import SafeJSONParser
from shitu_platform.tenancy.scoping import TenantScopedAPIMixin


class RecognitionViewSet(TenantScopedAPIMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    scoped_model = Recognition
    serializer_class = RecognitionSerializer
    lookup_field = "public_id"
    throttle_tenant_field = "recognitions_per_minute"
    parser_classes = [SafeJSONParser, MultiPartParser, FormParser]

    def safely_get_queryset(self, queryset: QuerySet) -> QuerySet:
        return queryset.prefetch_related("detected_objects")

    @extend_schema(
        request={"multipart/form-data": RecognitionRequestSerializer, "application/json": RecognitionRequestSerializer},
        responses={200: RecognitionSerializer, 202: RecognitionSerializer},
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Synchronous by default: waits for the inference worker up to SHITU_RECOGNITION_TIMEOUT seconds, then
        answers 202 with the URL to poll (the work is never dropped). The photo is an upload (`image`,
        `image_base64`) or one of your reference images (`reference_image`), which usually finds itself first."""
        params = RecognitionRequestSerializer(data=request.data, context={"request": request})
        params.is_valid(raise_exception=True)
        options = params.validated_data
        reference_image = options.get("reference_image")
        recognition = services.recognition_request(
            tenant=self.tenant, gallery=options.get("gallery"), reference_image=reference_image,
            photo=lambda: _image_bytes(options), params=_pipeline_params(options),
            attribute_filter=options.get("filter", ""), webhook_url=options.get("webhook_url", ""),
            source="dashboard" if self.tenant_context.api_key is None else "api", wait=not options["run_async"],
        )
        finished = recognition.status != Recognition.Status.QUEUED
        body = RecognitionSerializer(recognition).data
        headers = {} if finished else {"Location": body["url"], "Retry-After": "1"}
        return Response(body, status=status.HTTP_200_OK if finished else status.HTTP_202_ACCEPTED, headers=headers)


    @extend_schema(request=FeedbackSerializer, responses={201: MatchReviewSerializer, 200: MatchReviewSerializer})
    @action(detail=True, methods=["post"])
    def feedback(self, request: Request, public_id: Any = None) -> Response:
        """Tell us whether an object was recognised right: `correct`, `wrong` (+ the right product) or `not_in_catalogue`.

        Safe to retry: an object holds one review. The first feedback on it answers 201; sending it again answers
        200 with the same review, unchanged; a different verdict replaces the earlier one (200)."""
        recognition = self.get_object()
        params = FeedbackSerializer(data=request.data, context={"request": request})
        params.is_valid(raise_exception=True)
        displayed = list(recognition.detected_objects.order_by("rank").values_list("rank", flat=True))
        index = params.validated_data["object"]
        if index >= len(displayed):
            raise InvalidFeedback(f"this recognition has {len(displayed)} objects", details={"object": index})
        outcome = reviews.feedback_submit(
            recognition=recognition, rank=displayed[index], verdict=params.validated_data["verdict"],
            product=params.validated_data.get("product"), flagged_by=str(request.user),
        )
        return Response(MatchReviewSerializer(outcome.review).data,
                        status=status.HTTP_201_CREATED if outcome.created else status.HTTP_200_OK)


def _image_bytes(options: dict) -> bytes:
    upload = options.get("image")
    if upload is not None:
        if upload.size > settings.SHITU_MAX_IMAGE_BYTES:
            raise FileTooLarge(f"the image is {upload.size} bytes, limit {settings.SHITU_MAX_IMAGE_BYTES}")
        return upload.read()
    encoded = options["image_base64"]
    if len(encoded) > settings.SHITU_MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise FileTooLarge(f"the base64 image is over the {settings.SHITU_MAX_IMAGE_BYTES}-byte limit")
    try:
        return base64.b64decode(encoded.split(",", 1)[-1] if encoded.startswith("data:") else encoded, validate=True)
    except (binascii.Error, ValueError) as error:
        raise NotAnImage(f"image_base64 is not valid base64: {error}") from error


def _pipeline_params(options: dict) -> PipelineParams:
    return options["pipeline_params"]  # built and checked once, by RecognitionRequestSerializer.validate
