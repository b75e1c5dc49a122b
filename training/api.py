"""REST endpoints for fine-tuning jobs and the tenant's models."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from modelhub.models import ActiveModel, ModelVersion
from modelhub.selectors import active_model, model_versions_visible
from modelhub.services import NoPreviousModel, model_rollback
from shitu_platform.openapi import error_responses
from shitu_platform.tenancy.context import tenant_context
from shitu_platform.tenancy.models import Role
from shitu_platform.tenancy.scoping import TenantScopedAPIMixin
from training import services
from training.models import FineTuneJob
from training.serializers import ActiveModelSerializer, FineTuneJobSerializer, ModelVersionSerializer, PromoteSerializer


class FineTuneJobViewSet(TenantScopedAPIMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Start (admin), watch, cancel, promote fine-tuning jobs of the caller's tenant."""

    scoped_model = FineTuneJob
    serializer_class = FineTuneJobSerializer
    write_role = Role.ADMIN

    @extend_schema(request=FineTuneJobSerializer,
                   responses={202: FineTuneJobSerializer, **error_responses(services.JobAlreadyRunning)})
    def create(self, request: Request) -> Response:
        """Fine-tune the tenant's current extractor on the gallery's photos (admin); answers 202 with the queued job
        to poll. It trains on part of the photos; the photos held out compare the old and the new model."""
        params = FineTuneJobSerializer(data=request.data, context={"request": request})
        params.is_valid(raise_exception=True)
        epochs = params.validated_data.get("epochs")
        epochs = min(epochs, settings.SHITU_FINETUNE_MAX_EPOCHS) if epochs else None
        user = request.user if getattr(request.user, "pk", None) else None
        job = services.finetune_start(gallery=params.validated_data["gallery"], epochs=epochs,
                                      mode=params.validated_data.get("mode"), created_by=user)
        return Response(FineTuneJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={200: FineTuneJobSerializer, **error_responses(services.InvalidJobState)})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: Any = None) -> Response:
        """Stop a job: a queued one is `cancelled` at once, a running one at its next step (`cancel_requested` until
        then). A finished job answers 409 `invalid_job_state`."""
        return Response(FineTuneJobSerializer(services.finetune_cancel(job=self.get_object())).data)

    @extend_schema(request=PromoteSerializer,
                   responses={202: FineTuneJobSerializer, **error_responses(services.InvalidJobState)})
    @action(detail=True, methods=["post"])
    def promote(self, request: Request, pk: Any = None) -> Response:
        """Make a ready job's model the tenant's extractor if it beat the current one on the held-out photos (202):
        the galleries are re-embedded with it in the background (`reembedding`), then it serves (`promoted`)."""
        params = PromoteSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        user = request.user if getattr(request.user, "pk", None) else None
        job = services.finetune_promote(job=self.get_object(), force=params.validated_data["force"], by=user)
        return Response(FineTuneJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class ModelVersionViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Models this tenant may use: the global ones and its own fine-tunes."""

    serializer_class = ModelVersionSerializer

    def get_queryset(self):  # not tenant-owned (global rows have no tenant): scoped by visible_to
        context = tenant_context(self.request)
        if getattr(self, "swagger_fake_view", False) or context is None:
            return ModelVersion.objects.none()
        return model_versions_visible(tenant=context.tenant)


class ActiveModelView(APIView):
    @extend_schema(responses=ActiveModelSerializer)
    def get(self, request: Request) -> Response:
        """The extractor serving the tenant's recognitions now, the one a rollback returns to, and when it switched."""
        active = active_model(tenant=tenant_context(request).tenant)
        return Response(ActiveModelSerializer(active or ActiveModel()).data)  # no row yet: the default, never switched


class RollbackView(APIView):
    write_role = Role.ADMIN

    @extend_schema(request=None, responses={200: ActiveModelSerializer, **error_responses(NoPreviousModel)})
    def post(self, request: Request) -> Response:
        """Switch back to the extractor used before the last switch (admin); its vectors are still stored, so it serves
        at once. With nothing to return to: 409 `invalid_job_state`."""
        return Response(ActiveModelSerializer(model_rollback(tenant=tenant_context(request).tenant)).data)
