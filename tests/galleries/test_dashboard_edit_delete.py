"""Dashboard: rename and delete galleries, edit and delete products, delete images; roles, tenant isolation,
confirmation pages, and the Faiss cache after each write."""
import io
import itertools

import numpy as np
import pytest
from PIL import Image

from galleries.indexing import drift, gallery_index_cache
from galleries.models import Embedding, Gallery, ImportJob, Product, ReferenceImage
from galleries.services import gallery_version_bump, reference_image_upload
from recognition.models import Recognition

pytestmark = pytest.mark.django_db

MODEL = "test-extractor@1"
_serial = itertools.count(1)


def jpeg(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (80, 100), (seed % 256, seed * 7 % 256, seed * 13 % 256)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def make_product(gallery, label, **fields) -> Product:
    return Product.objects.create(tenant=gallery.tenant, gallery=gallery, label=label, **fields)


def add_ready_images(product, count) -> list[ReferenceImage]:
    """Stored images (real objects), each ready with a random vector of MODEL, as if a worker had embedded them."""
    rng = np.random.default_rng(next(_serial))
    images = []
    for _ in range(count):
        image = reference_image_upload(product=product, data=jpeg(next(_serial))).reference_image
        vector = rng.standard_normal(512).astype(np.float32)
        Embedding.objects.create(tenant=product.tenant, gallery=product.gallery, reference_image=image,
                                 model_key=MODEL, vector=(vector / np.linalg.norm(vector)).tolist())
        ReferenceImage.unscoped.filter(pk=image.pk).update(status="ready")
        images.append(image)
    gallery_version_bump(gallery_id=product.gallery_id)
    return images


@pytest.fixture(autouse=True)
def fresh_index_cache():
    gallery_index_cache.forget()
    yield
    gallery_index_cache.wait_for_warming(timeout=30)
    gallery_index_cache.forget()


@pytest.fixture()
def shelf(tenant_a):
    gallery = Gallery.objects.create(tenant=tenant_a.tenant, name="Drinks", description="aisle 3")
    cola = make_product(gallery, "Cola 330 ml", sku="C-1", attributes={"brand": "Acme", "size": 330})
    water = make_product(gallery, "Still Water")
    add_ready_images(cola, 3)
    add_ready_images(water, 2)
    ImportJob.objects.create(tenant=tenant_a.tenant, gallery=gallery, archive_key="k/a.zip", status="done")
    Recognition.objects.create(tenant=tenant_a.tenant, gallery=gallery, image_key="k/photo.jpg", image_width=8, image_height=8)
    return {"gallery": gallery, "cola": cola, "water": water}


@pytest.fixture()
def b_shelf(tenant_b):
    gallery = Gallery.objects.create(tenant=tenant_b.tenant, name="B shelf")
    product = make_product(gallery, "b-cola")
    (image,) = add_ready_images(product, 1)
    return {"gallery": gallery, "product": product, "image": image}


def gallery_url(gallery, action=""):
    return f"/dashboard/galleries/{gallery.pk}/{action}"


def product_url(product, action=""):
    return f"/dashboard/galleries/products/{product.pk}/{action}"


# --- gallery rename ---

def test_member_renames_a_gallery_and_sees_the_new_name(tenant_a, shelf):
    client = tenant_a.client("member")
    gallery = shelf["gallery"]
    version = Gallery.unscoped.get(pk=gallery.pk).index_version
    page = client.get(gallery_url(gallery, "edit/"))
    assert page.status_code == 200 and 'value="Drinks"' in page.content.decode()

    response = client.post(gallery_url(gallery, "edit/"), {"name": "  Cold drinks ", "description": "aisle 4"})
    assert response.status_code == 302 and response["Location"] == gallery_url(gallery)
    gallery.refresh_from_db()
    assert (gallery.name, gallery.description) == ("Cold drinks", "aisle 4")
    assert gallery.index_version == version  # nothing searchable changed
    detail = client.get(gallery_url(gallery)).content.decode()
    assert "Cold drinks" in detail and "renamed" in detail
    assert "Cold drinks" in client.get("/dashboard/galleries/").content.decode()


def test_rename_to_a_taken_or_blank_name_is_a_form_error(tenant_a, shelf):
    Gallery.objects.create(tenant=tenant_a.tenant, name="Snacks")
    client = tenant_a.client("member")
    taken = client.post(gallery_url(shelf["gallery"], "edit/"), {"name": "Snacks"})
    assert taken.status_code == 400 and "already exists" in taken.content.decode()
    blank = client.post(gallery_url(shelf["gallery"], "edit/"), {"name": "   "})
    assert blank.status_code == 400 and 'data-testid="field-error"' in blank.content.decode()
    assert Gallery.unscoped.get(pk=shelf["gallery"].pk).name == "Drinks"


def test_the_same_name_as_another_tenants_gallery_is_fine(tenant_a, shelf, b_shelf):
    response = tenant_a.client("member").post(gallery_url(shelf["gallery"], "edit/"), {"name": "B shelf"})
    assert response.status_code == 302


# --- gallery delete ---

def test_gallery_delete_confirmation_lists_what_goes_and_get_deletes_nothing(tenant_a, shelf):
    client = tenant_a.client("member")
    gallery = shelf["gallery"]
    page = client.get(gallery_url(gallery, "delete/"))
    assert page.status_code == 200
    assert page.context["counts"] == {"products": 2, "images": 5, "imports": 1, "recognitions": 1, "fine_tunes": 0}
    html = page.content.decode()
    assert 'data-testid="count-products">2<' in html and 'data-testid="count-images">5<' in html
    assert 'data-testid="count-recognitions">1<' in html  # they go with the gallery (cascade): say so
    assert 'method="post"' in html
    assert Gallery.unscoped.filter(pk=gallery.pk).exists()
    assert ReferenceImage.unscoped.filter(gallery_id=gallery.pk).count() == 5


def test_member_deletes_a_gallery_rows_now_objects_with_the_sweep(tenant_a, shelf):
    gallery = shelf["gallery"]
    keys = list(ReferenceImage.unscoped.filter(gallery=gallery).values_list("object_key", flat=True))
    client = tenant_a.client("member")
    response = client.post(gallery_url(gallery, "delete/"))
    assert response.status_code == 302 and response["Location"] == "/dashboard/galleries/"
    assert not Gallery.unscoped.filter(pk=gallery.pk).exists()
    assert not Product.unscoped.filter(gallery_id=gallery.pk).exists()
    assert not ReferenceImage.unscoped.filter(gallery_id=gallery.pk).exists()
    assert not Embedding.unscoped.filter(gallery_id=gallery.pk).exists()
    assert not ImportJob.unscoped.filter(gallery_id=gallery.pk).exists()
    from shitu_platform.object_store import object_store

    assert all(object_store().exists(key) for key in keys)  # the house rule: the orphan sweep removes them later
    listing = client.get("/dashboard/galleries/").content.decode()
    assert "deleted" in listing and ">Drinks<" not in listing


# --- product edit ---

def test_member_edits_label_sku_and_attributes(tenant_a, shelf):
    client = tenant_a.client("member")
    cola = shelf["cola"]
    page = client.get(product_url(cola, "edit/")).content.decode()
    assert "brand: Acme" in page and "size: 330" in page and 'value="C-1"' in page

    response = client.post(product_url(cola, "edit/"), {
        "label": "Cola Zero 330 ml", "sku": " CZ-330 ", "display_name": "Cola Zero",
        "attributes": "brand: Acme\nsize: 330 ml\n\nflavour:  zero ",
    })
    assert response.status_code == 302 and response["Location"] == product_url(cola)
    cola.refresh_from_db()
    assert (cola.label, cola.sku, cola.display_name) == ("Cola Zero 330 ml", "CZ-330", "Cola Zero")
    assert cola.attributes == {"brand": "Acme", "size": "330 ml", "flavour": "zero"}
    assert "Cola Zero 330 ml" in client.get(product_url(cola)).content.decode()
    # the gallery's filter finds the new attributes
    found = client.get(gallery_url(shelf["gallery"]), {"q": "flavour:zero"})
    assert [p.label for p in found.context["products"]] == ["Cola Zero 330 ml"]


@pytest.mark.parametrize("data, field, message", [
    ({"label": ""}, "label", "required"),
    ({"label": "   "}, "label", "required"),
    ({"label": "Still Water"}, "label", "already has a product with this label"),
    ({"label": "Cola", "attributes": "no separator here"}, "attributes", "key: value"),
    ({"label": "Cola", "attributes": "a: 1\na: 2"}, "attributes", "given twice"),
])
def test_product_edit_validates_with_form_errors_not_500(tenant_a, shelf, data, field, message):
    cola = shelf["cola"]
    response = tenant_a.client("member").post(product_url(cola, "edit/"), data)
    assert response.status_code == 400
    assert any(message in error for error in response.context["form"].errors[field])
    assert 'data-testid="field-error"' in response.content.decode()
    cola.refresh_from_db()
    assert cola.label == "Cola 330 ml" and cola.attributes == {"brand": "Acme", "size": 330}


def test_relabel_keeps_vectors_and_the_cache_answers_with_the_new_label(tenant_a, shelf):
    from recognition.services import _labels_for

    gallery = shelf["gallery"]
    gallery_index_cache.get(gallery, MODEL)
    version = Gallery.unscoped.get(pk=gallery.pk).index_version
    ids = list(Embedding.unscoped.filter(reference_image__product=shelf["cola"]).values_list("pk", flat=True))
    tenant_a.client("member").post(product_url(shelf["cola"], "edit/"), {"label": "Cola Light"})
    assert Gallery.unscoped.get(pk=gallery.pk).index_version == version
    assert drift(gallery, MODEL).drift == 0
    assert set(_labels_for(tenant_a.tenant, ids).values()) == {"Cola Light"}


# --- product delete ---

def test_product_delete_confirmation_shows_its_images_and_get_deletes_nothing(tenant_a, shelf):
    page = tenant_a.client("member").get(product_url(shelf["cola"], "delete/"))
    assert page.status_code == 200 and page.context["counts"] == {"images": 3}
    assert 'data-testid="count-images">3<' in page.content.decode()
    assert Product.unscoped.filter(pk=shelf["cola"].pk).exists()


def test_member_deletes_a_product_and_the_faiss_cache_drops_its_vectors(tenant_a, shelf):
    gallery, cola = shelf["gallery"], shelf["cola"]
    before = gallery_index_cache.get(gallery, MODEL)
    cola_ids = set(Embedding.unscoped.filter(reference_image__product=cola).values_list("pk", flat=True))
    assert cola_ids <= set(before.index.ids().tolist())
    version = Gallery.unscoped.get(pk=gallery.pk).index_version

    response = tenant_a.client("member").post(product_url(cola, "delete/"))
    assert response.status_code == 302 and response["Location"] == gallery_url(gallery)
    assert not Product.unscoped.filter(pk=cola.pk).exists()
    assert not ReferenceImage.unscoped.filter(product_id=cola.pk).exists()
    assert Gallery.unscoped.get(pk=gallery.pk).index_version > version
    report = drift(gallery, MODEL)  # refreshes the warm cache to the new version
    assert report.drift == 0 and report.in_cache == 2
    assert not cola_ids & set(gallery_index_cache.get(gallery, MODEL).index.ids().tolist())
    assert Product.unscoped.filter(pk=shelf["water"].pk).exists()


# --- image delete (the existing path, reached from the product page) ---

def test_member_deletes_one_image_and_the_cache_follows(tenant_a, shelf):
    gallery, water = shelf["gallery"], shelf["water"]
    gallery_index_cache.get(gallery, MODEL)
    image = water.reference_images.first()
    response = tenant_a.client("member").post(f"/dashboard/galleries/images/{image.pk}/delete/")
    assert response.status_code == 302
    assert not ReferenceImage.unscoped.filter(pk=image.pk).exists()
    assert water.reference_images.count() == 1
    assert drift(gallery, MODEL).drift == 0 and drift(gallery, MODEL).in_cache == 4


# --- roles ---

def test_viewer_gets_403_and_nothing_changes(tenant_a, shelf):
    viewer = tenant_a.client("viewer")
    gallery, cola = shelf["gallery"], shelf["cola"]
    for url in (gallery_url(gallery, "edit/"), gallery_url(gallery, "delete/"), product_url(cola, "edit/"),
                product_url(cola, "delete/")):
        assert viewer.get(url).status_code == 403, url
        assert viewer.post(url, {"name": "pwned", "label": "pwned"}).status_code == 403, url
    image = cola.reference_images.first()
    assert viewer.post(f"/dashboard/galleries/images/{image.pk}/delete/").status_code == 403
    assert Gallery.unscoped.get(pk=gallery.pk).name == "Drinks"
    assert Product.unscoped.get(pk=cola.pk).label == "Cola 330 ml"
    assert ReferenceImage.unscoped.filter(gallery=gallery).count() == 5
    # and the pages offer them no such buttons
    assert 'data-testid="gallery-edit"' not in viewer.get(gallery_url(gallery)).content.decode()
    assert 'data-testid="product-edit"' not in viewer.get(product_url(cola)).content.decode()


def test_member_sees_the_edit_buttons(tenant_a, shelf):
    member = tenant_a.client("member")
    gallery_page = member.get(gallery_url(shelf["gallery"])).content.decode()
    assert gallery_url(shelf["gallery"], "edit/") in gallery_page and gallery_url(shelf["gallery"], "delete/") in gallery_page
    assert product_url(shelf["cola"], "edit/") in member.get(product_url(shelf["cola"])).content.decode()
    assert product_url(shelf["cola"], "delete/") in member.get(product_url(shelf["cola"], "edit/")).content.decode()


# --- another tenant's objects ---

@pytest.mark.parametrize("method", ["get", "post"])
def test_another_tenants_gallery_and_product_are_404(tenant_a, shelf, b_shelf, method):
    owner = tenant_a.client("owner")
    assert owner.get(gallery_url(shelf["gallery"], "edit/")).status_code == 200  # the routes exist: the 404s are scoping
    assert owner.get(product_url(shelf["cola"], "delete/")).status_code == 200
    for url in (gallery_url(b_shelf["gallery"], "edit/"), gallery_url(b_shelf["gallery"], "delete/"),
                product_url(b_shelf["product"], "edit/"), product_url(b_shelf["product"], "delete/"),
                f"/dashboard/galleries/images/{b_shelf['image'].pk}/delete/"):
        if method == "get" and url.startswith("/dashboard/galleries/images/"):
            continue  # POST-only route
        response = getattr(owner, method)(url, {"name": "pwned", "label": "pwned"})
        assert response.status_code == 404, url
    assert Gallery.unscoped.get(pk=b_shelf["gallery"].pk).name == "B shelf"
    assert Product.unscoped.get(pk=b_shelf["product"].pk).label == "b-cola"
    assert ReferenceImage.unscoped.filter(pk=b_shelf["image"].pk).exists()


def test_anonymous_is_sent_to_log_in(shelf):
    from django.test import Client

    response = Client().post(gallery_url(shelf["gallery"], "delete/"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert Gallery.unscoped.filter(pk=shelf["gallery"].pk).exists()


def test_api_product_delete_takes_the_dashboards_path_and_drops_cached_vectors(tenant_a, shelf):
    gallery, cola = shelf["gallery"], shelf["cola"]
    version = Gallery.unscoped.get(pk=gallery.pk).index_version
    response = tenant_a.key_client("member").delete(f"/api/v1/products/{cola.pk}/")
    assert response.status_code == 204, response.content
    assert not Product.unscoped.filter(pk=cola.pk).exists()
    assert Gallery.unscoped.get(pk=gallery.pk).index_version > version  # before: the cache kept the vectors
