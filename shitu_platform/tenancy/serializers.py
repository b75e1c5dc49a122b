from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from shitu_platform.tenancy.models import ApiKey, Membership, Role, Tenant


class TenantSerializer(serializers.ModelSerializer):
    """The caller's tenant, with the caller's role in it (`context["role"]`)."""

    role = serializers.SerializerMethodField(help_text="the caller's role in this tenant (a key's role for a key)")

    class Meta:
        model = Tenant
        fields = ["id", "name", "slug", "role", "created_at"]

    @extend_schema_field(serializers.ChoiceField(choices=Role.choices))
    def get_role(self, tenant: Tenant) -> str:
        return self.context["role"]


class ApiKeySerializer(serializers.ModelSerializer):
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiKey
        fields = ["id", "name", "prefix", "role", "created_at", "last_used_at", "revoked_at", "is_active"]
        read_only_fields = ["id", "prefix", "created_at", "last_used_at", "revoked_at", "is_active"]


class ApiKeyCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    role = serializers.ChoiceField(choices=[Role.ADMIN, Role.MEMBER, Role.VIEWER], default=Role.MEMBER)


class ApiKeyCreatedSerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The secret key. Shown only in this response.")

    class Meta(ApiKeySerializer.Meta):
        fields = ApiKeySerializer.Meta.fields + ["key"]


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "username", "role", "created_at"]
