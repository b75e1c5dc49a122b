"""Moving a reference image to another product of its gallery (API and dashboard), and the gallery's stored health
report over the API; another tenant's objects are 404s."""
import pytest

from galleries.health import gallery_health_refresh
from galleries.models import Gallery, ImportJob, Product, ReferenceImage
from galleries.services import reference_image_upload, reference_images_embed
from tests.support.images import product_photo

pytestmark = pytest.mark.django_db


def _scene(world, name="Drinks"):
    tenant = world.tenant
    gallery = Gallery.objects.create(tenant=tenant, name=name)
    job = ImportJob.objects.create(tenant=tenant, gallery=gallery, archive_key=f"k/{name}.zip", status="done")
    cola, water = (Product.objects.create(tenant=tenant, gallery=gallery, label=label) for label in ("Cola", "Water"))
    images = [reference_image_upload(product=cola, data=product_photo(colour), import_job=job).reference_image
              for colour in ((200, 30, 40), (40, 110, 210))]
    reference_images_embed(reference_image_ids=[image.pk for image in images])
    return {"gallery": gallery, "cola": cola, "water": water, "images": images}


def test_api_moves_an_image_and_bumps_the_version(tenant_a):
    scene = _scene(tenant_a)
    image = scene["images"][1]
    version = Gallery.objects.for_tenant(tenant_a.tenant).get(pk=scene["gallery"].pk).index_version
    response = tenant_a.key_client("member").post(f"/api/v1/reference-images/{image.pk}/move/",
                                                  {"product": scene["water"].pk}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["product"] == scene["water"].pk
    moved = ReferenceImage.objects.for_tenant(tenant_a.tenant).get(pk=image.pk)
    assert moved.product_id == scene["water"].pk and moved.status == ReferenceImage.Status.READY
    gallery = Gallery.objects.for_tenant(tenant_a.tenant).get(pk=scene["gallery"].pk)
    assert gallery.index_version == version + 1 and gallery.index_updated_at is not None
    products = tenant_a.key_client("viewer").get("/api/v1/products/", {"gallery": gallery.pk}).json()["results"]
    assert {p["label"]: p["image_count"] for p in products} == {"Cola": 1, "Water": 1}


def test_api_refuses_a_product_of_another_gallery_with_a_code(tenant_a):
    scene, other = _scene(tenant_a), _scene(tenant_a, "Snacks")
    image = scene["images"][0]
    response = tenant_a.key_client("member").post(f"/api/v1/reference-images/{image.pk}/move/",
                                                  {"product": other["water"].pk}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "reference_image_not_movable"
    assert ReferenceImage.objects.for_tenant(tenant_a.tenant).get(pk=image.pk).product_id == scene["cola"].pk


def test_api_move_across_tenants_is_a_404_or_refused(tenant_a, tenant_b):
    mine, theirs = _scene(tenant_a), _scene(tenant_b)
    client = tenant_a.key_client("member")
    assert client.post(f"/api/v1/reference-images/{theirs['images'][0].pk}/move/",
                       {"product": mine["water"].pk}, format="json").status_code == 404
    into_theirs = client.post(f"/api/v1/reference-images/{mine['images'][0].pk}/move/",
                              {"product": theirs["water"].pk}, format="json")
    assert into_theirs.status_code == 400  # another tenant's id does not exist for this tenant
    assert ReferenceImage.unscoped.get(pk=mine["images"][0].pk).product_id == mine["cola"].pk
    assert ReferenceImage.unscoped.get(pk=theirs["images"][0].pk).product_id == theirs["cola"].pk
    assert tenant_a.key_client("viewer").post(f"/api/v1/reference-images/{mine['images'][0].pk}/move/",
                                              {"product": mine["water"].pk}, format="json").status_code == 403


def test_dashboard_move_form_moves_and_returns_to_the_page(tenant_a, tenant_b):
    scene = _scene(tenant_a)
    client = tenant_a.client("member")
    page = client.get(f"/dashboard/galleries/products/{scene['cola'].pk}/").content.decode()
    assert page.count('data-testid="image-move"') == 2 and f'<option value="{scene["water"].pk}">Water</option>' in page
    image = scene["images"][0]
    response = client.post(f"/dashboard/galleries/images/{image.pk}/move/", {"product": scene["water"].pk})
    assert response.status_code == 302 and response["Location"] == f"/dashboard/galleries/products/{scene['cola'].pk}/"
    assert ReferenceImage.objects.for_tenant(tenant_a.tenant).get(pk=image.pk).product_id == scene["water"].pk
    other = _scene(tenant_a, "Snacks")
    refused = client.post(f"/dashboard/galleries/images/{image.pk}/move/", {"product": other["cola"].pk}, follow=True)
    assert "own gallery" in refused.content.decode()
    theirs = _scene(tenant_b)
    assert client.post(f"/dashboard/galleries/images/{image.pk}/move/", {"product": theirs["cola"].pk}).status_code == 404
    assert client.post(f"/dashboard/galleries/images/{theirs['images'][0].pk}/move/",
                       {"product": scene["cola"].pk}).status_code == 404
    viewer = tenant_a.client("viewer")
    assert 'data-testid="image-move"' not in viewer.get(f"/dashboard/galleries/products/{scene['cola'].pk}/").content.decode()
    assert viewer.post(f"/dashboard/galleries/images/{image.pk}/move/", {"product": scene["cola"].pk}).status_code == 403


def test_health_api_returns_the_stored_report(tenant_a, tenant_b):
    scene = _scene(tenant_a)
    client = tenant_a.key_client("viewer")
    url = f"/api/v1/galleries/{scene['gallery'].pk}/health/"
    before = client.get(url)
    assert before.status_code == 200 and before.json()["status"] == "not_computed" and before.json()["report"] == {}
    health = gallery_health_refresh(gallery=scene["gallery"])
    body = client.get(url).json()
    assert body["status"] == "done" and body["stale"] is False and body["gallery"] == scene["gallery"].pk
    assert body["report"] == health.report and body["report"]["counts"]["few_references"] == 2
    assert body["index_version"] == health.index_version and body["model_key"] == health.model_key
    theirs = _scene(tenant_b)
    gallery_health_refresh(gallery=theirs["gallery"])
    assert client.get(f"/api/v1/galleries/{theirs['gallery'].pk}/health/").status_code == 404
