from rest_framework import serializers

from galleries.models import Gallery, ImportJob, Product, ReferenceImage
from galleries.archive import has_control_characters
from recognition.engine.filters import MAX_FILTER_LENGTH, AttributeFilter, parse_filter
from shitu_platform.tenancy.fields import TenantScopedPrimaryKeyRelatedField


def _strings_in(value: object, depth: int = 0) -> list[str]:
    """Every key and string value of a JSON value (nesting past 20 levels counts as one bad string)."""
    if depth > 20:
        return ["\x00"]
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [*value.keys(), *(s for v in value.values() for s in _strings_in(v, depth + 1))]
    if isinstance(value, list):
        return [s for v in value for s in _strings_in(v, depth + 1)]
    return []


class GallerySerializer(serializers.ModelSerializer):
    product_count = serializers.IntegerField(read_only=True)
    image_count = serializers.IntegerField(read_only=True)
    index_updated_at = serializers.DateTimeField(
        read_only=True, allow_null=True,
        help_text="when the gallery's searchable content last changed (a reference image embedded, re-embedded or "
                  "removed; a product deleted), as Google Product Search's indexTime: recognitions made after it see "
                  "that change. Renames and label edits do not move it. null until the first change")

    class Meta:
        model = Gallery
        fields = ["id", "name", "description", "detect_references", "index_version", "index_updated_at",
                  "product_count", "image_count", "created_at"]
        read_only_fields = ["id", "index_version", "index_updated_at", "created_at"]

    # The name's uniqueness is checked where galleries are written (services.gallery_create / gallery_update).


class ProductSerializer(serializers.ModelSerializer):
    gallery = TenantScopedPrimaryKeyRelatedField(Gallery)
    image_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Product
        fields = ["id", "gallery", "label", "sku", "display_name", "attributes", "image_count", "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate_label(self, label: str) -> str:
        if not label.strip():
            raise serializers.ValidationError("A label needs at least one visible character.")
        return label.strip()

    def validate_attributes(self, attributes: object) -> dict:
        if not isinstance(attributes, dict) or not all(isinstance(k, str) for k in attributes):
            raise serializers.ValidationError("Attributes are an object of string keys.")
        if any(has_control_characters(text) for text in _strings_in(attributes)):
            raise serializers.ValidationError("Attributes may not contain control characters (e.g. NUL).")
        return attributes

    def validate(self, data: dict) -> dict:
        # The label's uniqueness is checked where products are written (services.product_create / product_update).
        if self.instance is not None and "gallery" in data and data["gallery"] != self.instance.gallery:
            raise serializers.ValidationError({"gallery": "A product cannot move to another gallery."})
        return data


class GalleryHealthSerializer(serializers.Serializer):
    """The gallery's stored health report (galleries.health), as the dashboard's health page reads it."""

    gallery = serializers.IntegerField()
    status = serializers.ChoiceField(
        choices=["not_computed", "queued", "running", "done", "failed"],
        help_text="not_computed until the first computation (it runs after each import, or from the dashboard)")
    stale = serializers.BooleanField(help_text="the gallery's searchable content changed since the report was computed")
    model_key = serializers.CharField(help_text="the extractor whose vectors were compared")
    index_version = serializers.IntegerField(allow_null=True, help_text="the gallery index_version the report reflects")
    requested_at = serializers.DateTimeField(allow_null=True)
    computed_at = serializers.DateTimeField(allow_null=True)
    failure_reason = serializers.CharField(allow_blank=True)
    report = serializers.JSONField(
        help_text="findings of the last finished computation: `counts`, and up to 500 of each of `confusable_pairs`, "
                  "`near_duplicates`, `few_references` and `unverified_references` (ids of products and images), "
                  "`params`, `timings_ms`; {} before the first")


class ReferenceImageSerializer(serializers.ModelSerializer):
    class Meta:
        model = ReferenceImage
        fields = ["id", "gallery", "product", "checksum", "size_bytes", "width", "height", "bbox", "status",
                  "failure_reason", "created_at"]
        read_only_fields = fields


class ReferenceImageMoveSerializer(serializers.Serializer):
    product = TenantScopedPrimaryKeyRelatedField(Product, help_text="the product of the same gallery to file the image under")


class ImageUploadSerializer(serializers.Serializer):
    image = serializers.ListField(child=serializers.FileField(allow_empty_file=True), required=False, help_text="one or more image files")
    bbox = serializers.JSONField(required=False, help_text="[xmin, ymin, xmax, ymax] of the product in the image(s)")

    def validate_bbox(self, bbox: object) -> list[float]:
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise serializers.ValidationError("bbox is a JSON list [xmin, ymin, xmax, ymax].")
        return [float(v) for v in bbox]


class ImportJobSerializer(serializers.ModelSerializer):
    progress = serializers.FloatField(read_only=True)

    class Meta:
        model = ImportJob
        fields = ["id", "gallery", "archive_name", "status", "progress", "total_rows", "next_row", "imported", "skipped",
                  "failed", "row_errors", "failure_reason", "attempts", "created_at", "finished_at"]
        read_only_fields = fields


class ImportStartSerializer(serializers.Serializer):
    archive = serializers.FileField(allow_empty_file=True, help_text="a zip of images with labels.txt (`path<TAB>label`) or products.csv")


class PurgeSerializer(serializers.Serializer):
    filter = serializers.CharField(
        max_length=MAX_FILTER_LENGTH,
        help_text="which products go: the recognition filter syntax, e.g. `brand=Acme AND (season=2023 OR season=2024)`")
    force = serializers.BooleanField(default=False, help_text="false (default): a dry run that only counts what would go")

    def validate_filter(self, text: str) -> AttributeFilter:
        parsed = parse_filter(text)  # InvalidFilter: 400 invalid_filter
        if parsed is None:
            raise serializers.ValidationError("A purge needs a filter; to remove everything, delete the gallery.")
        return parsed


class PurgeResultSerializer(serializers.Serializer):
    filter = serializers.CharField()
    products = serializers.IntegerField(help_text="products matched (deleted when `deleted`)")
    images = serializers.IntegerField(help_text="their reference images")
    deleted = serializers.BooleanField(help_text="false for a dry run")
