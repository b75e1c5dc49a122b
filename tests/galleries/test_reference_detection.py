"""Gallery-time detection is a per-gallery setting: off (the measured default) embeds whole reference photos,
on crops each photo without its own box to its main object; a given bbox always wins."""
import io

import pytest
from PIL import Image

from galleries.models import Embedding, Gallery, Product
from galleries.services import reference_image_upload, reference_images_embed
from recognition.engine.imageio import load_image
from recognition.engine.main_object import main_object_box
from modelhub import registry
from modelhub.registry import active_detector, extractor_for
from tests.support.images import encoded, product_photo


@pytest.fixture(autouse=True)
def shipped_detector(settings, monkeypatch):
    """The platform's default detector (the test settings run without one), loaded afresh for these tests."""
    settings.SHITU_DETECTOR = ""
    monkeypatch.setattr(registry, "_loaded", {})


def _product_on_a_dark_shelf() -> bytes:
    """A product at ~17 % of the frame, centred: the shipped detector finds it as the main object."""
    scene = Image.new("RGB", (640, 480), (60, 60, 60))
    scene.paste(Image.open(io.BytesIO(product_photo((200, 30, 30), size=(200, 260)))), (220, 110))
    return encoded(scene, "PNG")


def _embedded_box(tenant, *, detect_references: bool, bbox=None):
    gallery = Gallery.objects.create(tenant=tenant, name=f"shelf {detect_references} {bbox}",
                                     detect_references=detect_references)
    product = Product.objects.create(tenant=tenant, gallery=gallery, label="red can")
    image = reference_image_upload(product=product, data=_product_on_a_dark_shelf(), bbox=bbox).reference_image
    outcome = reference_images_embed(reference_image_ids=[image.pk])
    assert outcome.ready == 1
    return Embedding.unscoped.get(reference_image=image, model_key=extractor_for(tenant=None).key).box


@pytest.mark.django_db
def test_new_galleries_embed_whole_reference_photos(tenant_a):
    assert Gallery(tenant=tenant_a.tenant, name="x").detect_references is False
    assert _embedded_box(tenant_a.tenant, detect_references=False) is None


@pytest.mark.slow
@pytest.mark.django_db
def test_a_detecting_gallery_embeds_the_main_object(tenant_a):
    expected = main_object_box(active_detector().model, load_image(_product_on_a_dark_shelf()))
    assert expected is not None and 200 <= expected.xmin < expected.xmax <= 440  # the product, not the frame
    box = _embedded_box(tenant_a.tenant, detect_references=True)
    assert box == pytest.approx(expected.as_list(), abs=0.5)


@pytest.mark.django_db
def test_a_given_box_wins_whatever_the_setting(tenant_a):
    given = [100.0, 50.0, 300.0, 400.0]
    assert _embedded_box(tenant_a.tenant, detect_references=True, bbox=given) == given
    assert _embedded_box(tenant_a.tenant, detect_references=False, bbox=given) == given


@pytest.mark.django_db
def test_the_setting_is_part_of_the_gallery_api(tenant_a):
    client = tenant_a.key_client("admin")
    created = client.post("/api/v1/galleries/", {"name": "Aisle 3"}, format="json").json()
    assert created["detect_references"] is False
    changed = client.patch(f"/api/v1/galleries/{created['id']}/", {"detect_references": True}, format="json")
    assert changed.status_code == 200 and changed.json()["detect_references"] is True
    assert Gallery.unscoped.get(pk=created["id"]).detect_references is True
    bad = client.patch(f"/api/v1/galleries/{created['id']}/", {"detect_references": "sometimes"}, format="json")
    assert bad.status_code == 400
