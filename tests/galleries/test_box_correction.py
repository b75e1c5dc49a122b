"""A person corrects the product box of a reference image: the box is checked and saved, and a worker re-embeds the
image from it (new vector rows for every model, local features, index version and caches); the dashboard shows
the box each image's serving vector came from and lets members, not viewers, change it."""
import io
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from galleries.errors import InvalidBoundingBox, ReferenceImageNotReady
from galleries.indexing import gallery_index_cache
from galleries.models import Embedding, Gallery, Product, ReferenceImage
from galleries.selectors import serving_model_key
from galleries.services import (gallery_settings_update, gallery_version_bump, reference_image_box_set,
                                reference_image_reembed, reference_image_upload, reference_images_embed)
from modelhub import registry
from recognition.engine.local_features import LocalFeatures
from modelhub.registry import BASELINE_EXTRACTOR_KEY, extractor_for
from shitu_platform.object_store import object_store
from tests.support.images import encoded

PRODUCT_BOX = [220.0, 110.0, 420.0, 370.0]


def shelf_photo() -> bytes:
    """A textured product (the target) beside a neighbour, on a grey shelf: 640 x 480."""
    rng = np.random.default_rng(7)
    scene = Image.new("RGB", (640, 480), (70, 70, 70))
    target = Image.fromarray(rng.integers(0, 255, (260, 200, 3), dtype=np.uint8)).resize((200, 260))
    draw = ImageDraw.Draw(target)
    draw.rectangle([20, 90, 180, 150], fill=(250, 250, 250))
    draw.text((40, 110), "COLA", fill=(200, 20, 20), font_size=32)
    scene.paste(target, (220, 110))
    ImageDraw.Draw(scene).rectangle([20, 60, 180, 420], fill=(30, 90, 200))
    return encoded(scene, "PNG")


def embedded_image(world, *, name="Shelf", detect_references=False) -> ReferenceImage:
    gallery = Gallery.objects.create(tenant=world.tenant, name=name, detect_references=detect_references)
    product = Product.objects.create(tenant=world.tenant, gallery=gallery, label="cola")
    image = reference_image_upload(product=product, data=shelf_photo()).reference_image
    assert reference_images_embed(reference_image_ids=[image.pk]).ready == 1
    return ReferenceImage.unscoped.select_related("gallery").get(pk=image.pk)


@pytest.fixture()
def queued(monkeypatch):
    """Re-embeddings the services hand to the worker, recorded instead of sent to the broker."""
    sent = []
    monkeypatch.setattr("galleries.tasks.reembed_reference_image.apply_async",
                        lambda args, kwargs, queue: sent.append((args[0], queue)))
    return sent


@pytest.fixture()
def shipped_extractor(settings, monkeypatch):
    settings.SHITU_EXTRACTOR = ""  # the platform's real default extractor (the test settings use the baseline)
    monkeypatch.setattr(registry, "_loaded", {})


# --- services ------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.django_db
def test_a_corrected_box_reembeds_the_image_for_every_model(tenant_a, shipped_extractor, queued,
                                                            django_capture_on_commit_callbacks):
    image = embedded_image(tenant_a)
    default = extractor_for(tenant=None)
    assert default.key != BASELINE_EXTRACTOR_KEY
    # a previous default's vector (kept for a rollback) and one of a model that is no longer installed
    for key in (BASELINE_EXTRACTOR_KEY, "retired-extractor@1"):
        Embedding.objects.create(tenant=image.tenant, gallery=image.gallery, reference_image=image, model_key=key,
                                 vector=[1.0] + [0.0] * 511, box=None)
    before = Embedding.unscoped.get(reference_image=image, model_key=default.key)
    assert before.box is None  # the gallery embeds whole photos
    features_before = object_store().get(image.local_features_key)
    cache_before = gallery_index_cache.get(image.gallery, default.key)
    assert before.pk in set(cache_before.index.ids().tolist())
    version_before = Gallery.unscoped.get(pk=image.gallery_id).index_version

    with django_capture_on_commit_callbacks(execute=True):
        saved = reference_image_box_set(reference_image=image, bbox=PRODUCT_BOX)
    assert saved.bbox == PRODUCT_BOX and ReferenceImage.unscoped.get(pk=image.pk).bbox == PRODUCT_BOX
    assert queued == [(image.pk, "default")]
    assert Embedding.unscoped.get(pk=before.pk).box is None  # nothing changes until the worker runs

    written = reference_image_reembed(reference_image_id=image.pk)

    assert sorted(written) == sorted([default.key, BASELINE_EXTRACTOR_KEY])
    rows = {row.model_key: row for row in Embedding.unscoped.filter(reference_image=image)}
    assert set(rows) == {default.key, BASELINE_EXTRACTOR_KEY}  # the retired model's stale vector is gone
    after = rows[default.key]
    assert after.box == PRODUCT_BOX and rows[BASELINE_EXTRACTOR_KEY].box == PRODUCT_BOX
    assert after.pk != before.pk  # a new row: caches that follow row ids drop the old vector
    assert not np.allclose(np.asarray(after.vector), np.asarray(before.vector), atol=1e-3)
    assert Gallery.unscoped.get(pk=image.gallery_id).index_version > version_before
    cached_ids = set(gallery_index_cache.get(image.gallery, default.key).index.ids().tolist())
    assert after.pk in cached_ids and before.pk not in cached_ids

    image.refresh_from_db()
    assert image.status == ReferenceImage.Status.READY
    features_after = object_store().get(image.local_features_key)  # replaced in place: no second object to sweep
    assert features_after != features_before
    assert LocalFeatures.from_bytes(features_after).image_size == (200, 260)  # the crop, not the 640 x 480 photo


@pytest.mark.slow
@pytest.mark.django_db
def test_the_dashboard_knows_the_serving_model_without_loading_it(tenant_a, shipped_extractor):
    image = embedded_image(tenant_a)
    registry._loaded.clear()
    key = serving_model_key(gallery=image.gallery)
    assert registry._loaded == {}  # nothing was loaded to answer
    assert key == extractor_for(tenant=image.tenant, gallery=image.gallery).key
    # a gallery the new default has not reached yet is still answered by the previous default that covers it
    Embedding.unscoped.filter(reference_image=image).update(model_key=BASELINE_EXTRACTOR_KEY)
    gallery_version_bump(gallery_id=image.gallery_id)
    gallery = Gallery.unscoped.get(pk=image.gallery_id)
    assert serving_model_key(gallery=gallery) == extractor_for(tenant=gallery.tenant, gallery=gallery).key == BASELINE_EXTRACTOR_KEY


@pytest.mark.django_db
def test_whole_image_is_the_full_frame_and_wins_over_detection(tenant_a, queued):
    image = embedded_image(tenant_a, detect_references=True)
    reference_image_box_set(reference_image=image, bbox=None)
    assert ReferenceImage.unscoped.get(pk=image.pk).bbox == [0.0, 0.0, 640.0, 480.0]
    reference_image_reembed(reference_image_id=image.pk)
    assert Embedding.unscoped.get(reference_image=image).box == [0.0, 0.0, 640.0, 480.0]


@pytest.mark.django_db
@pytest.mark.parametrize("bbox", [[0, 0, 700, 100], [10, 10, 5, 50], [0, 0, 4, 4], [1, 2, 3], [float("nan"), 0, 50, 50]])
def test_a_bad_box_is_refused_and_nothing_changes(tenant_a, queued, bbox):
    image = embedded_image(tenant_a)
    with pytest.raises(InvalidBoundingBox):
        reference_image_box_set(reference_image=image, bbox=bbox)
    assert ReferenceImage.unscoped.get(pk=image.pk).bbox is None and queued == []


@pytest.mark.django_db
def test_only_ready_images_take_a_box(tenant_a, queued):
    image = embedded_image(tenant_a)
    ReferenceImage.unscoped.filter(pk=image.pk).update(status=ReferenceImage.Status.PENDING)
    image.refresh_from_db()
    with pytest.raises(ReferenceImageNotReady):
        reference_image_box_set(reference_image=image, bbox=PRODUCT_BOX)
    assert reference_image_reembed(reference_image_id=image.pk) == []  # and the worker leaves it to its embed


@pytest.mark.django_db
def test_gallery_settings_update_changes_only_how_new_photos_are_cropped(tenant_a):
    image = embedded_image(tenant_a)
    version = Gallery.unscoped.get(pk=image.gallery_id).index_version
    gallery_settings_update(gallery=image.gallery, detect_references=True)
    gallery = Gallery.unscoped.get(pk=image.gallery_id)
    assert gallery.detect_references is True and gallery.index_version == version
    assert Embedding.unscoped.get(reference_image=image).box is None


# --- dashboard views -----------------------------------------------------------------------------

def box_url(image) -> str:
    return f"/dashboard/galleries/images/{image.pk}/box/"


@pytest.mark.django_db
def test_a_member_saves_a_box_and_the_worker_is_asked(tenant_a, queued, django_capture_on_commit_callbacks):
    image = embedded_image(tenant_a)
    with django_capture_on_commit_callbacks(execute=True):
        response = tenant_a.client("member").post(box_url(image), {"bbox": json.dumps(PRODUCT_BOX)})
    assert response.status_code == 202, response.content
    assert response.json() == {"id": image.pk, "bbox": PRODUCT_BOX, "reembedding": True}
    assert ReferenceImage.unscoped.get(pk=image.pk).bbox == PRODUCT_BOX and queued == [(image.pk, "default")]
    whole = tenant_a.client("member").post(box_url(image), {"bbox": ""})
    assert whole.status_code == 202 and whole.json()["bbox"] == [0.0, 0.0, 640.0, 480.0]


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["[1, 2]", "not json", "[0, 0, 5, 5]", "[0, 0, 1e999, 10]", '["a", 1, 2, 3]',
                                   "[true, 0, 100, 100]", '{"xmin": 0}', "[0, 0, 700, 100]", "x" * 300])
def test_a_bad_box_is_a_400_with_a_code(tenant_a, queued, value):
    image = embedded_image(tenant_a)
    response = tenant_a.client("member").post(box_url(image), {"bbox": value})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_bbox"
    assert ReferenceImage.unscoped.get(pk=image.pk).bbox is None and queued == []


@pytest.mark.django_db
def test_a_pending_image_is_a_409(tenant_a, queued):
    image = embedded_image(tenant_a)
    ReferenceImage.unscoped.filter(pk=image.pk).update(status=ReferenceImage.Status.PENDING)
    response = tenant_a.client("member").post(box_url(image), {"bbox": json.dumps(PRODUCT_BOX)})
    assert response.status_code == 409 and response.json()["error"]["code"] == "image_not_ready"


@pytest.mark.django_db
def test_viewers_cannot_change_boxes_or_settings(tenant_a, queued):
    image = embedded_image(tenant_a)
    viewer = tenant_a.client("viewer")
    assert viewer.post(box_url(image), {"bbox": json.dumps(PRODUCT_BOX)}).status_code == 403
    assert viewer.post(f"/dashboard/galleries/{image.gallery_id}/settings/", {"detect_references": "on"}).status_code == 403
    assert ReferenceImage.unscoped.get(pk=image.pk).bbox is None and queued == []
    assert Gallery.unscoped.get(pk=image.gallery_id).detect_references is False
    page = viewer.get(f"/dashboard/galleries/products/{image.product_id}/").content.decode()
    assert 'data-testid="box-label"' in page and 'data-testid="box-edit"' not in page


@pytest.mark.django_db
def test_another_tenants_image_and_gallery_are_404(tenant_a, tenant_b, queued):
    image = embedded_image(tenant_b)
    member_of_a = tenant_a.client("member")
    assert member_of_a.post(box_url(image), {"bbox": json.dumps(PRODUCT_BOX)}).status_code == 404
    assert member_of_a.post(f"/dashboard/galleries/{image.gallery_id}/settings/", {"detect_references": "on"}).status_code == 404
    assert member_of_a.get(f"/dashboard/galleries/images/{image.pk}/preview/").status_code == 404
    assert ReferenceImage.unscoped.get(pk=image.pk).bbox is None and queued == []
    assert Gallery.unscoped.get(pk=image.gallery_id).detect_references is False


@pytest.mark.django_db
def test_the_product_page_draws_the_box_in_use(tenant_a, queued):
    image = embedded_image(tenant_a)
    url = f"/dashboard/galleries/products/{image.product_id}/"
    page = tenant_a.client("member").get(url).content.decode()
    assert '<span class="muted">Box:</span> whole image' in page and 'data-testid="box-overlay"' not in page and 'data-box=""' in page

    reference_image_box_set(reference_image=image, bbox=PRODUCT_BOX)
    page = tenant_a.client("member").get(url).content.decode()
    assert 'data-testid="box-saved"' in page and "re-embedding" in page  # saved, the worker has not run yet
    assert 'data-pending="1"' in page  # so the page polls until it has

    reference_image_reembed(reference_image_id=image.pk)
    response = tenant_a.client("member").get(url)
    page = response.content.decode()
    assert 'data-pending="0"' in page and "re-embedding" not in page
    assert 'style="left:34.375%;top:22.917%;width:31.250%;height:54.167%"' in page  # PRODUCT_BOX of 640 x 480
    assert 'title="220,110 – 420,370 px"' in page and "200 × 260 px" in page and 'data-box="220,110,420,370"' in page


@pytest.mark.django_db
def test_the_gallery_setting_is_saved_from_its_page(tenant_a):
    image = embedded_image(tenant_a)
    url = f"/dashboard/galleries/{image.gallery_id}/settings/"
    client = tenant_a.client("member")
    assert 'data-testid="detect-references"' in client.get(f"/dashboard/galleries/{image.gallery_id}/").content.decode()
    response = client.post(url, {"detect_references": "on"})
    assert response.status_code == 302 and response["Location"] == f"/dashboard/galleries/{image.gallery_id}/"
    assert Gallery.unscoped.get(pk=image.gallery_id).detect_references is True
    assert client.post(url, {}).status_code == 302  # an unticked checkbox sends nothing
    assert Gallery.unscoped.get(pk=image.gallery_id).detect_references is False


@pytest.mark.django_db
def test_the_preview_is_a_larger_picture(tenant_a):
    image = embedded_image(tenant_a)
    response = tenant_a.client("viewer").get(f"/dashboard/galleries/images/{image.pk}/preview/")
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(response.content)).size == (640, 480)  # under 1024: not scaled
