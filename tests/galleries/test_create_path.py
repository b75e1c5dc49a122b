"""One create path: the dashboard and the API create galleries and products through galleries.services, and a
name or label in use is refused the same way by both (the API's 400 invalid_request, details by field)."""
import pytest

from galleries import services
from galleries.models import Gallery, Product

pytestmark = pytest.mark.django_db


def test_gallery_create_service_refuses_a_name_in_use(tenant_a, tenant_b):
    gallery = services.gallery_create(tenant=tenant_a.tenant, name="Drinks", description="aisle 1")
    assert gallery.description == "aisle 1" and gallery.tenant_id == tenant_a.tenant.pk
    with pytest.raises(services.GalleryNameTaken):
        services.gallery_create(tenant=tenant_a.tenant, name="Drinks")
    assert services.gallery_create(tenant=tenant_b.tenant, name="Drinks").pk != gallery.pk  # per tenant


def test_product_create_service_refuses_a_label_in_use(tenant_a):
    gallery = services.gallery_create(tenant=tenant_a.tenant, name="Drinks")
    product = services.product_create(gallery=gallery, label="Cola", attributes={"brand": "Acme"})
    assert product.attributes == {"brand": "Acme"} and product.tenant_id == tenant_a.tenant.pk
    with pytest.raises(services.ProductLabelTaken):
        services.product_create(gallery=gallery, label="Cola")


def test_api_gallery_name_clash_answers_as_before(tenant_a):
    client = tenant_a.key_client("member")
    assert client.post("/api/v1/galleries/", {"name": "Dup"}, format="json").status_code == 201
    response = client.post("/api/v1/galleries/", {"name": "Dup"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"error": {"code": "invalid_request", "message": "The request is invalid.",
                                         "details": {"name": ["This tenant already has a gallery with this name."]}}}
    other = client.post("/api/v1/galleries/", {"name": "Other"}, format="json").json()
    renamed = client.patch(f"/api/v1/galleries/{other['id']}/", {"name": "Dup"}, format="json")
    assert renamed.status_code == 400 and renamed.json()["error"]["details"] == {
        "name": ["This tenant already has a gallery with this name."]}
    same = client.patch(f"/api/v1/galleries/{other['id']}/", {"name": "Other", "detect_references": True}, format="json")
    assert same.status_code == 200 and same.json()["detect_references"] is True and "product_count" in same.json()


def test_api_product_label_clash_answers_as_before(tenant_a):
    client = tenant_a.key_client("member")
    gallery = client.post("/api/v1/galleries/", {"name": "G"}, format="json").json()["id"]
    first = client.post("/api/v1/products/", {"gallery": gallery, "label": "x"}, format="json")
    assert first.status_code == 201 and first.json()["image_count"] == 0
    second = client.post("/api/v1/products/", {"gallery": gallery, "label": "y"}, format="json").json()
    clash = client.patch(f"/api/v1/products/{second['id']}/", {"label": "x"}, format="json")
    assert clash.status_code == 400 and clash.json()["error"]["code"] == "invalid_request"
    assert "label" in str(clash.json()["error"]["details"])
    edited = client.patch(f"/api/v1/products/{second['id']}/", {"sku": "S-1"}, format="json")
    assert edited.status_code == 200 and edited.json()["sku"] == "S-1" and edited.json()["label"] == "y"


def test_dashboard_and_api_create_the_same_gallery(tenant_a):
    response = tenant_a.client("member").post("/dashboard/galleries/", {"name": "Shelf", "description": "d"})
    assert response.status_code == 302
    api = tenant_a.key_client("member").post("/api/v1/galleries/", {"name": "Shelf"}, format="json")
    assert api.status_code == 400 and api.json()["error"]["details"]["name"]
    again = tenant_a.client("member").post("/dashboard/galleries/", {"name": "Shelf"})
    assert again.status_code == 400 and "already exists" in again.content.decode()
    assert Gallery.objects.for_tenant(tenant_a.tenant).filter(name="Shelf").count() == 1
    assert not Product.objects.for_tenant(tenant_a.tenant).exists()
