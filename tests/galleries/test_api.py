"""Galleries and products over the API: CRUD, filters, and tenant isolation."""
import pytest

from galleries.models import Gallery, Product

pytestmark = pytest.mark.django_db


@pytest.fixture()
def b_gallery(tenant_b):
    gallery = Gallery(tenant=tenant_b.tenant, name="B shelf")
    gallery.save()
    product = Product(tenant=tenant_b.tenant, gallery=gallery, label="b-cola")
    product.save()
    return gallery, product


def test_create_gallery_and_products_with_unicode_labels(tenant_a):
    client = tenant_a.key_client("member")
    gallery = client.post("/api/v1/galleries/", {"name": "Drinks"}, format="json").json()
    label = "Nongfu Spring 农夫山泉 550 ml"
    created = client.post(
        "/api/v1/products/",
        {"gallery": gallery["id"], "label": label, "sku": "NF-550", "attributes": {"brand": "Nongfu", "size": "550"}},
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["label"] == label  # kept whole: the reference truncates labels at the first space
    listed = client.get(f"/api/v1/galleries/{gallery['id']}/").json()
    assert listed["product_count"] == 1 and listed["image_count"] == 0


def test_product_filters_by_label_and_attribute(tenant_a):
    client = tenant_a.key_client("member")
    gallery = client.post("/api/v1/galleries/", {"name": "Snacks"}, format="json").json()["id"]
    for label, brand in [("Lays Classic", "Lays"), ("Lays Paprika", "Lays"), ("Pringles Original", "Pringles")]:
        client.post("/api/v1/products/", {"gallery": gallery, "label": label, "attributes": {"brand": brand}}, format="json")
    by_label = client.get("/api/v1/products/", {"gallery": gallery, "label": "lays"}).json()["results"]
    assert sorted(p["label"] for p in by_label) == ["Lays Classic", "Lays Paprika"]
    by_attr = client.get("/api/v1/products/", {"attr": "brand:Pringles"}).json()["results"]
    assert [p["label"] for p in by_attr] == ["Pringles Original"]


def test_duplicate_label_in_a_gallery_is_a_400_with_code(tenant_a):
    client = tenant_a.key_client("member")
    gallery = client.post("/api/v1/galleries/", {"name": "Dup"}, format="json").json()["id"]
    assert client.post("/api/v1/products/", {"gallery": gallery, "label": "x"}, format="json").status_code == 201
    response = client.post("/api/v1/products/", {"gallery": gallery, "label": "x"}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"


def test_viewer_reads_but_cannot_write(tenant_a):
    viewer = tenant_a.key_client("viewer")
    assert viewer.get("/api/v1/galleries/").status_code == 200
    assert viewer.post("/api/v1/galleries/", {"name": "nope"}, format="json").status_code == 403


@pytest.mark.parametrize("path", ["galleries/{g}/", "products/{p}/"])
@pytest.mark.parametrize("method", ["get", "patch", "delete"])
def test_b_objects_are_404_for_a(tenant_a, b_gallery, path, method):
    gallery, product = b_gallery
    url = "/api/v1/" + path.format(g=gallery.pk, p=product.pk)
    response = getattr(tenant_a.key_client("owner"), method)(url, {"name": "stolen"}, format="json")
    assert response.status_code == 404
    assert Gallery.unscoped.get(pk=gallery.pk).name == "B shelf"


def test_a_cannot_create_a_product_in_bs_gallery(tenant_a, b_gallery):
    gallery, _ = b_gallery
    response = tenant_a.key_client("member").post("/api/v1/products/", {"gallery": gallery.pk, "label": "sneaky"}, format="json")
    assert response.status_code == 400
    assert not Product.unscoped.filter(label="sneaky").exists()


def test_lists_hold_only_own_rows(tenant_a, b_gallery):
    client = tenant_a.key_client("member")
    client.post("/api/v1/galleries/", {"name": "Mine"}, format="json")
    assert [g["name"] for g in client.get("/api/v1/galleries/").json()["results"]] == ["Mine"]
    assert client.get("/api/v1/products/").json()["results"] == []
    assert client.get("/api/v1/reference-images/").json()["results"] == []
