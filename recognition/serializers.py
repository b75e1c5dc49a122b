from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from galleries.models import Gallery, Product, ReferenceImage
from recognition.engine.filters import MAX_FILTER_LENGTH, normalized_filter
from recognition.engine.pipeline import PipelineParams
from recognition.models import DetectedObject, MatchReview, Recognition
from recognition.webhooks import check_destination
from shitu_platform.errors import PlatformError
from shitu_platform.tenancy.fields import TenantScopedPrimaryKeyRelatedField

_PIPELINE_DEFAULTS = PipelineParams()


@extend_schema_field(OpenApiTypes.BINARY)
class UploadedFileField(serializers.FileField):
    """A file sent in the request: `string, format: binary` in OpenAPI (a plain FileField reads as a URL there)."""


class RecognitionRequestSerializer(serializers.Serializer):
    image = UploadedFileField(required=False, allow_empty_file=True, help_text="the photo (multipart)")
    image_base64 = serializers.CharField(required=False, help_text="the photo, base64 (JSON bodies)")
    reference_image = TenantScopedPrimaryKeyRelatedField(
        ReferenceImage, required=False,
        help_text="search with the stored photo of one of your reference images (its id) instead of sending one; it "
                  "is recognised exactly like an upload. The image is in its own gallery, so it usually finds itself "
                  "first (score about 1.0): look at the matches after it for its neighbours")
    gallery = TenantScopedPrimaryKeyRelatedField(
        Gallery, required=False,
        help_text="default: the reference image's gallery with `reference_image`, else the tenant's first gallery")
    # Defaults come from PipelineParams; the upper bounds here keep one request's work small and are documented in
    # the schema; PipelineParams' own checks run in `validate` (400 `invalid_params`).
    top_k = serializers.IntegerField(min_value=1, max_value=50, default=_PIPELINE_DEFAULTS.top_k)
    det_threshold = serializers.FloatField(min_value=0, max_value=1, default=_PIPELINE_DEFAULTS.det_threshold)
    score_threshold = serializers.FloatField(min_value=0, max_value=1, default=_PIPELINE_DEFAULTS.score_threshold)
    max_det_results = serializers.IntegerField(min_value=0, max_value=50, default=_PIPELINE_DEFAULTS.max_det_results)
    nms_iou = serializers.FloatField(min_value=0, max_value=1, default=_PIPELINE_DEFAULTS.nms_iou)
    min_confidence = serializers.FloatField(
        min_value=0, max_value=1, required=False, allow_null=True, default=_PIPELINE_DEFAULTS.min_confidence,
        help_text="answer objects whose calibrated confidence is at least this; default: the gallery's own "
                  "threshold (fitted for 98 % precision); 0: never answer \"no match\"")
    add_whole_image = serializers.BooleanField(default=_PIPELINE_DEFAULTS.add_whole_image)
    filter = serializers.CharField(
        required=False, allow_blank=True, max_length=MAX_FILTER_LENGTH, default="",
        help_text="search only products whose attributes pass, e.g. `brand=Acme AND (size=1L OR size=2L)`: "
                  "key=value terms, AND between groups, OR inside parentheses, values with spaces in double "
                  "quotes; exact, case-sensitive. Applied inside the search, so the top-k are all matching "
                  "products. A malformed filter answers 400 `invalid_filter`")
    run_async = serializers.BooleanField(default=False, help_text="true: answer 202 at once with a URL to poll")
    webhook_url = serializers.URLField(required=False, allow_blank=True, max_length=200,
                                       help_text="POSTed the result when done, signed (X-Shitu-Signature); "
                                                 "private/loopback hosts are refused")

    def validate_webhook_url(self, url: str) -> str:
        if url:
            check_destination(url)  # a typed error with its own code, refused before anything is stored
        return url

    def validate_filter(self, text: str) -> str:
        return normalized_filter(text)  # InvalidFilter: 400 with its own code and the position it stopped at

    def validate(self, data: dict) -> dict:
        sources = [field for field in ("image", "image_base64", "reference_image") if data.get(field)]
        if len(sources) != 1:
            raise serializers.ValidationError(
                {"image": "Send exactly one of `image` (file), `image_base64` or `reference_image` (an id)."})
        data["pipeline_params"] = pipeline_params_from(data)
        return data


# The request fields that are PipelineParams fields, by the same names; the rest keep PipelineParams' defaults.
REQUEST_PIPELINE_FIELDS = ("top_k", "det_threshold", "score_threshold", "max_det_results", "nms_iou", "min_confidence",
                           "add_whole_image")


class InvalidPipelineParams(PlatformError):
    code = "invalid_params"
    http_status = 400


def pipeline_params_from(options: dict) -> PipelineParams:
    """The PipelineParams of a request's validated fields; PipelineParams' own checks answer 400 `invalid_params`."""
    try:
        return PipelineParams(**{name: options[name] for name in REQUEST_PIPELINE_FIELDS if name in options})
    except ValueError as error:
        raise InvalidPipelineParams(str(error)) from error


class MatchSerializer(serializers.Serializer):
    """One candidate of an object's top-k (for the schema; the rows are the stored JSON plus `accepted`)."""

    product_id = serializers.IntegerField()
    label = serializers.CharField()
    display_name = serializers.CharField()
    score = serializers.FloatField(help_text="cosine similarity to the reference image")
    reference_image_id = serializers.IntegerField()
    inliers = serializers.IntegerField(allow_null=True, help_text="geometric-verification inliers; null when not verified")
    accepted = serializers.BooleanField(
        help_text="true when this candidate's product is the object's answer (the best match, which passed the decision: "
                  "the gallery's calibrated confidence, geometric verification, or `score_threshold` without a "
                  "calibration); false for the other candidates, which did not, and are listed for context only")


# Timings are worker durations in ms, shown to one decimal; `queued_at` is the enqueue clock the worker reads.
TIMING_DECIMALS = 1
_INTERNAL_TIMINGS = frozenset({"queued_at"})


@extend_schema_field({"type": "object", "additionalProperties": {"oneOf": [{"type": "number"}, {"type": "string"}]},
                      "example": {"queue_ms": 4.2, "detect_ms": 41.0, "extract_ms": 63.5, "search_ms": 0.6,
                                  "verify_ms": 12.3, "total_ms": 118.4, "search_source": "faiss"}})
class TimingsField(serializers.ReadOnlyField):
    """Stage durations in milliseconds, each rounded to one decimal (the worker stores raw floats)."""

    def to_representation(self, timings: dict) -> dict:
        return {name: round(value, TIMING_DECIMALS) if _is_number(value) else value
                for name, value in (timings or {}).items() if name not in _INTERNAL_TIMINGS}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class DetectedObjectSerializer(serializers.ModelSerializer):
    matches = serializers.SerializerMethodField(help_text="the top-k candidates, best first; only `accepted` ones "
                                                          "are the answer")
    label = serializers.SerializerMethodField()
    display_name = serializers.SerializerMethodField()
    inliers = serializers.SerializerMethodField(help_text="geometric-verification inliers of the best match "
                                                          "(>= min_inliers: verified); null when not verified")

    class Meta:
        model = DetectedObject
        fields = ["bbox", "whole_image", "det_score", "product", "label", "display_name", "score", "confidence",
                  "inliers", "margin", "reference_image", "matches"]

    @extend_schema_field(serializers.CharField())
    def get_label(self, obj: DetectedObject) -> str:
        return obj.matches[0]["label"] if obj.matches else ""

    @extend_schema_field(serializers.CharField())
    def get_display_name(self, obj: DetectedObject) -> str:
        return obj.matches[0].get("display_name", "") if obj.matches else ""

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_inliers(self, obj: DetectedObject) -> int | None:
        return obj.matches[0].get("inliers") if obj.matches else None

    @extend_schema_field(MatchSerializer(many=True))
    def get_matches(self, obj: DetectedObject) -> list[dict]:
        # `product` is the answer (the best match's product); stored rows only ever hold answered objects
        return [{**match, "accepted": obj.product_id is not None and match.get("product_id") == obj.product_id}
                for match in obj.matches]


class WebhookAttemptSerializer(serializers.Serializer):
    """One delivery attempt, as the worker recorded it."""

    attempt = serializers.IntegerField(help_text="1 for the first try")
    at = serializers.DateTimeField(help_text="when the attempt ended")
    status_code = serializers.IntegerField(allow_null=True, help_text="the receiver's HTTP status; null when none came "
                                                                      "(refused address, DNS, timeout, connection error)")
    outcome = serializers.ChoiceField(choices=["delivered", "retry", "failed"],
                                      help_text="delivered (2xx), retry (5xx, 408, 425, 429 or a network error, retried "
                                                "with backoff) or failed (refused, other 4xx, or the last retry)")
    error = serializers.CharField(allow_blank=True)


class WebhookDeliverySerializer(serializers.ModelSerializer):
    url = serializers.URLField(source="webhook_url", read_only=True)
    status = serializers.SerializerMethodField(help_text="pending until delivered (2xx) or failed (refused, 4xx, retries spent)")
    attempts = serializers.IntegerField(source="webhook_attempts", read_only=True)
    last_error = serializers.CharField(source="webhook_last_error", read_only=True)
    delivered_at = serializers.DateTimeField(source="webhook_delivered_at", read_only=True, allow_null=True)
    log = WebhookAttemptSerializer(source="webhook_log", many=True, read_only=True,
                                   help_text="every delivery attempt so far, oldest first")

    class Meta:
        model = Recognition
        fields = ["url", "status", "attempts", "last_error", "delivered_at", "log"]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=Recognition.WebhookStatus.choices))
    def get_status(self, recognition: Recognition) -> str:
        # not yet claimed by the worker (the recognition itself is still queued) is pending too
        return recognition.webhook_status or Recognition.WebhookStatus.PENDING


class RecognitionSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    objects = DetectedObjectSerializer(many=True, read_only=True, source="detected_objects")
    url = serializers.SerializerMethodField()
    webhook = serializers.SerializerMethodField(help_text="delivery of the result to `webhook_url`; null without one")
    timings_ms = TimingsField(help_text="queue wait and worker stages in milliseconds, one decimal")
    no_match = serializers.SerializerMethodField(
        help_text="true when the recognition is done and no object reached the gallery's calibrated confidence: "
                  "the product is not in the gallery (or not recognisable in this photo)")

    class Meta:
        model = Recognition
        fields = ["id", "url", "status", "gallery", "image_width", "image_height", "params", "filter", "no_match", "objects", "failure_code",
                  "failure_reason", "model_key", "index_version", "timings_ms", "created_at", "finished_at", "webhook"]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField())
    def get_url(self, recognition: Recognition) -> str:
        return f"/api/v1/recognitions/{recognition.public_id}/"

    @extend_schema_field(serializers.BooleanField())
    def get_no_match(self, recognition: Recognition) -> bool:
        return recognition.status == Recognition.Status.DONE and not recognition.detected_objects.all()

    @extend_schema_field(WebhookDeliverySerializer(allow_null=True))
    def get_webhook(self, recognition: Recognition) -> dict | None:
        return WebhookDeliverySerializer(recognition).data if recognition.webhook_url else None


class FeedbackSerializer(serializers.Serializer):
    object = serializers.IntegerField(min_value=0, help_text="index of the object in the recognition's `objects`")
    verdict = serializers.ChoiceField(choices=MatchReview.Verdict.choices)
    product = TenantScopedPrimaryKeyRelatedField(Product, required=False, allow_null=True, help_text="the right product, for 'wrong'")


class MatchReviewSerializer(serializers.ModelSerializer):
    class Meta:
        model = MatchReview
        fields = ["id", "reason", "verdict", "suggested_product", "status", "resolved_product", "new_reference_image", "created_at", "reviewed_at"]
        read_only_fields = fields
