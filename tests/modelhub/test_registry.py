"""modelhub's answers: which extractor serves a tenant (its switch decides, read without loading a model), and a
model named by key loads only for a tenant that may use it."""
from __future__ import annotations

import pytest

from modelhub import registry
from modelhub.models import ModelVersion
from modelhub.registry import BASELINE_EXTRACTOR_KEY, extractor_by_key, extractor_for, serving_extractor_key
from modelhub.services import model_rollback, model_switch

pytestmark = pytest.mark.django_db


def test_the_switch_decides_the_serving_key_and_nothing_loads_to_say_so(tenant_a, tenant_b, monkeypatch):
    monkeypatch.setattr(registry, "_loaded", {})
    own = ModelVersion.objects.create(tenant=tenant_a.tenant, kind="extractor", key="ft-a@1")
    assert serving_extractor_key(tenant=tenant_a.tenant) == BASELINE_EXTRACTOR_KEY  # the suite's platform default
    model_switch(tenant=tenant_a.tenant, version=own)
    assert serving_extractor_key(tenant=tenant_a.tenant) == "ft-a@1"
    assert serving_extractor_key(tenant=tenant_b.tenant) == BASELINE_EXTRACTOR_KEY  # B's answer is its own
    assert registry._loaded == {}
    model_rollback(tenant=tenant_a.tenant)
    assert serving_extractor_key(tenant=tenant_a.tenant) == extractor_for(tenant=tenant_a.tenant).key == BASELINE_EXTRACTOR_KEY


def test_another_tenants_model_is_not_loadable_by_its_key(tenant_a, tenant_b):
    ModelVersion.objects.create(tenant=tenant_a.tenant, kind="extractor", key="ft-a@1",
                                storage_prefix=f"tenants/{tenant_a.tenant.pk}/models/ft-a_at_1")
    with pytest.raises(LookupError):
        extractor_by_key(key="ft-a@1", tenant=tenant_b.tenant)
    assert extractor_by_key(key=BASELINE_EXTRACTOR_KEY, tenant=tenant_b.tenant).key == BASELINE_EXTRACTOR_KEY
