from rest_framework import serializers

from galleries.models import Gallery
from modelhub.models import ActiveModel, ModelVersion
from shitu_platform.tenancy.fields import TenantScopedPrimaryKeyRelatedField
from training.models import FineTuneJob


class ModelVersionSerializer(serializers.ModelSerializer):
    scope = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = ["id", "key", "kind", "scope", "metrics", "parent", "created_at"]
        read_only_fields = fields

    def get_scope(self, version: ModelVersion) -> str:
        return "global" if version.tenant_id is None else "tenant"


class ActiveModelSerializer(serializers.ModelSerializer):
    extractor = ModelVersionSerializer(read_only=True, allow_null=True, help_text="null: the platform's default extractor")
    previous_extractor = ModelVersionSerializer(
        read_only=True, allow_null=True,
        help_text="what a rollback returns to; null: the default (`previous_is_default`) or nothing yet")

    class Meta:
        model = ActiveModel
        fields = ["extractor", "previous_extractor", "previous_is_default", "switched_at"]
        read_only_fields = fields


class FineTuneJobSerializer(serializers.ModelSerializer):
    gallery = TenantScopedPrimaryKeyRelatedField(Gallery)
    epochs = serializers.IntegerField(min_value=1, max_value=500, required=False, allow_null=True, default=None,
                                      help_text="default: 80 in fast mode, 10 in full mode")
    mode = serializers.ChoiceField(choices=FineTuneJob.Mode.choices, required=False, allow_null=True, default=None,
                                   help_text="fast (head only, on cached backbone features; needs a pretrained base "
                                             "model) or full; default: fast where the base model allows it")

    class Meta:
        model = FineTuneJob
        fields = ["id", "gallery", "state", "mode", "progress", "epochs", "current_epoch", "current_step", "total_steps",
                  "loss_history", "base_model", "result_model", "metrics_before", "metrics_after", "log",
                  "failure_reason", "cancel_requested", "created_at", "finished_at"]
        read_only_fields = [f for f in fields if f not in ("gallery", "epochs", "mode")]


class PromoteSerializer(serializers.Serializer):
    force = serializers.BooleanField(default=False, help_text="staff only: promote even if not better (recorded)")
