"""Dashboard pages for galleries: counts, coverage, create, delete, thumbnails, roles and tenant isolation."""
import io

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from PIL import Image

from galleries.models import Gallery, Product, ReferenceImage
from galleries.services import reference_image_upload
from galleries.views import parse_product_filter
from shitu_platform.object_store import object_store

pytestmark = pytest.mark.django_db


def jpeg(colour, size=(80, 100), orientation=None) -> bytes:
    buffer = io.BytesIO()
    image = Image.new("RGB", size, colour)
    if orientation is None:
        image.save(buffer, "JPEG", quality=90)
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(buffer, "JPEG", quality=90, exif=exif)
    return buffer.getvalue()


def make_gallery(world, name="Drinks") -> Gallery:
    gallery = Gallery(tenant=world.tenant, name=name)
    gallery.save()
    return gallery


def make_product(gallery, label, **fields) -> Product:
    product = Product(tenant=gallery.tenant, gallery=gallery, label=label, **fields)
    product.save()
    return product


_colour_seed = iter(range(1, 10_000))


def add_images(product, *statuses) -> list[ReferenceImage]:
    """Stored images (real objects, distinct bytes) with the given statuses."""
    images = []
    for status in statuses:
        seed = next(_colour_seed)
        image = reference_image_upload(product=product, data=jpeg((seed % 256, seed * 7 % 256, seed * 13 % 256))).reference_image
        reason = "not_an_image: cannot identify image file" if status == "failed" else ""
        ReferenceImage.unscoped.filter(pk=image.pk).update(status=status, failure_reason=reason)
        images.append(image)
    return images


@pytest.fixture()
def drinks(tenant_a):
    """Tenant A's gallery: cola fully covered, water with one ready and one failed image, juice with none."""
    gallery = make_gallery(tenant_a)
    cola = make_product(gallery, "Cola 330 ml", attributes={"brand": "Acme", "size": "330"})
    water = make_product(gallery, "Still Water", sku="W-1", attributes={"brand": "Spring"})
    juice = make_product(gallery, "Orange Juice", attributes={"brand": "Acme"})
    add_images(cola, "ready", "ready", "ready", "ready", "pending")
    add_images(water, "ready", "failed")
    return {"gallery": gallery, "cola": cola, "water": water, "juice": juice}


@pytest.fixture()
def b_objects(tenant_b):
    gallery = make_gallery(tenant_b, "B shelf")
    product = make_product(gallery, "b-cola")
    (image,) = add_images(product, "ready")
    return {"gallery": gallery, "product": product, "image": image}


# --- list and detail ---

def test_gallery_list_shows_this_tenants_galleries_with_counts(tenant_a, drinks, b_objects):
    make_gallery(tenant_a, "Empty shelf")
    response = tenant_a.client("viewer").get("/dashboard/galleries/")
    assert response.status_code == 200
    rows = {g.name: g for g in response.context["galleries"]}
    assert set(rows) == {"Drinks", "Empty shelf"}  # not "B shelf"
    drinks_row = rows["Drinks"]
    assert (drinks_row.product_count, drinks_row.image_count) == (3, 7)
    assert (drinks_row.ready_count, drinks_row.pending_count, drinks_row.failed_count) == (5, 1, 1)
    assert (rows["Empty shelf"].product_count, rows["Empty shelf"].image_count) == (0, 0)
    assert b"B shelf" not in response.content


def test_gallery_detail_shows_coverage_warnings_and_three_thumbnails(tenant_a, drinks):
    gallery = drinks["gallery"]
    response = tenant_a.client("viewer").get(f"/dashboard/galleries/{gallery.pk}/")
    assert response.status_code == 200
    assert response.context["stats"] == {"products": 3, "images": 7, "ready": 5, "pending": 1, "failed": 1, "attention": 2}
    products = {p.label: p for p in response.context["products"]}
    assert (products["Cola 330 ml"].ready_count, products["Cola 330 ml"].pending_count) == (4, 1)
    assert (products["Still Water"].ready_count, products["Still Water"].failed_count) == (1, 1)
    assert [len(products[label].thumbnails) for label in ("Cola 330 ml", "Still Water", "Orange Juice")] == [3, 2, 0]
    html = response.content.decode()
    assert html.count('data-testid="coverage-warning"') == 2  # water (failed, 1 ready) and juice (0 ready); not cola
    assert html.count("/thumb/") == 5
    assert 'id="import-panel"' not in html  # viewers get no write forms


def test_gallery_detail_queries_do_not_grow_with_products(tenant_a, drinks):
    client = tenant_a.client("member")
    url = f"/dashboard/galleries/{drinks['gallery'].pk}/"
    client.get(url)  # warm the session and tenant lookups

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return len(captured)

    before = queries()
    for index in range(12):
        add_images(make_product(drinks["gallery"], f"Extra {index}"), "ready", "ready")
    assert queries() == before
    assert before <= 15  # a page's worth, not a query per row


@pytest.mark.parametrize(
    "query, expected",
    [
        ("cola", {"Cola 330 ml"}),
        ("brand:Acme", {"Cola 330 ml", "Orange Juice"}),
        ("brand:Acme juice", {"Orange Juice"}),
        ('"still water"', {"Still Water"}),
        ("brand__contains:A", set()),  # not turned into an ORM lookup: it is label text, which matches nothing
    ],
)
def test_product_filter_by_label_and_attributes(tenant_a, drinks, query, expected):
    response = tenant_a.client("viewer").get(f"/dashboard/galleries/{drinks['gallery'].pk}/", {"q": query})
    assert {p.label for p in response.context["products"]} == expected


def test_needs_attention_filter(tenant_a, drinks):
    response = tenant_a.client("viewer").get(f"/dashboard/galleries/{drinks['gallery'].pk}/", {"attention": "1"})
    assert {p.label for p in response.context["products"]} == {"Still Water", "Orange Juice"}


def test_parse_product_filter_splits_attributes_from_label_words():
    assert parse_product_filter('brand:Acme "cola zero" size:330') == ("cola zero", {"brand": "Acme", "size": "330"})
    assert parse_product_filter('unbalanced "quote') == ('unbalanced "quote', {})
    assert parse_product_filter("") == ("", {})


def test_product_detail_lists_images_with_status_and_failure_reason(tenant_a, drinks):
    water = drinks["water"]
    response = tenant_a.client("member").get(f"/dashboard/galleries/products/{water.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('data-testid="image-card"') == 2
    assert "not_an_image: cannot identify image file" in html
    assert 'id="upload-panel"' in html and f"/api/v1/products/{water.pk}/images/" in html
    assert html.count("/delete/") == 2
    assert response.context["needs_attention"] is True


# --- writes ---

def test_member_creates_a_gallery_and_lands_on_it(tenant_a):
    response = tenant_a.client("member").post("/dashboard/galleries/", {"name": "  Snacks  ", "description": "aisle 4"})
    gallery = Gallery.unscoped.get(tenant=tenant_a.tenant, name="Snacks")
    assert response.status_code == 302 and response["Location"] == f"/dashboard/galleries/{gallery.pk}/"
    assert gallery.description == "aisle 4"


def test_duplicate_or_blank_gallery_name_is_refused_with_a_message(tenant_a, drinks):
    client = tenant_a.client("member")
    duplicate = client.post("/dashboard/galleries/", {"name": "Drinks"})
    assert duplicate.status_code == 400 and "already exists" in duplicate.content.decode()
    blank = client.post("/dashboard/galleries/", {"name": "   "})
    assert blank.status_code == 400
    assert Gallery.unscoped.filter(tenant=tenant_a.tenant).count() == 1


def test_same_gallery_name_in_another_tenant_is_fine(tenant_a, tenant_b, b_objects):
    response = tenant_a.client("member").post("/dashboard/galleries/", {"name": "B shelf"})
    assert response.status_code == 302
    assert Gallery.unscoped.filter(name="B shelf").count() == 2


def test_member_deletes_an_image(tenant_a, drinks):
    image = drinks["water"].reference_images.get(status="failed")
    response = tenant_a.client("member").post(f"/dashboard/galleries/images/{image.pk}/delete/")
    assert response.status_code == 302 and response["Location"] == f"/dashboard/galleries/products/{drinks['water'].pk}/"
    assert not ReferenceImage.unscoped.filter(pk=image.pk).exists()
    assert tenant_a.client("member").get(f"/dashboard/galleries/images/{image.pk}/delete/").status_code in (404, 405)


def test_viewer_sees_pages_but_writes_are_403(tenant_a, drinks):
    viewer = tenant_a.client("viewer")
    listing = viewer.get("/dashboard/galleries/").content.decode()
    assert 'data-testid="create-gallery"' not in listing and "read-only" in listing
    product_page = viewer.get(f"/dashboard/galleries/products/{drinks['water'].pk}/").content.decode()
    assert 'id="upload-panel"' not in product_page and "/delete/" not in product_page

    assert viewer.post("/dashboard/galleries/", {"name": "Nope"}).status_code == 403
    assert not Gallery.unscoped.filter(name="Nope").exists()
    image = drinks["water"].reference_images.first()
    assert viewer.post(f"/dashboard/galleries/images/{image.pk}/delete/").status_code == 403
    assert ReferenceImage.unscoped.filter(pk=image.pk).exists()


def test_anonymous_is_sent_to_log_in(drinks):
    from django.test import Client

    response = Client().get(f"/dashboard/galleries/{drinks['gallery'].pk}/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- another tenant's objects ---

@pytest.mark.parametrize("role", ["owner", "viewer"])
def test_other_tenants_objects_are_404(tenant_a, b_objects, role):
    client = tenant_a.client(role)
    assert client.get(f"/dashboard/galleries/{b_objects['gallery'].pk}/").status_code == 404
    assert client.get(f"/dashboard/galleries/products/{b_objects['product'].pk}/").status_code == 404
    assert client.get(f"/dashboard/galleries/images/{b_objects['image'].pk}/thumb/").status_code == 404
    delete = client.post(f"/dashboard/galleries/images/{b_objects['image'].pk}/delete/")
    assert delete.status_code == (404 if role == "owner" else 403)  # the role check comes first and reveals nothing
    assert ReferenceImage.unscoped.filter(pk=b_objects["image"].pk).exists()


# --- thumbnails ---

def test_thumbnail_is_an_upright_jpeg_of_at_most_256_px(tenant_a, drinks):
    # Stored landscape with EXIF "rotate 90°": shown portrait, as the camera held it.
    image = reference_image_upload(product=drinks["juice"], data=jpeg((250, 120, 0), size=(600, 400), orientation=6)).reference_image
    client = tenant_a.client("viewer")
    response = client.get(f"/dashboard/galleries/images/{image.pk}/thumb/")
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    assert response["Cache-Control"] == "private, max-age=3600"
    thumbnail = Image.open(io.BytesIO(response.content))
    assert thumbnail.format == "JPEG" and thumbnail.size == (171, 256)

    again = client.get(f"/dashboard/galleries/images/{image.pk}/thumb/", HTTP_IF_NONE_MATCH=response["ETag"])
    assert again.status_code == 304


def test_small_images_are_not_enlarged(tenant_a, drinks):
    image = drinks["cola"].reference_images.first()
    response = tenant_a.client("viewer").get(f"/dashboard/galleries/images/{image.pk}/thumb/")
    assert Image.open(io.BytesIO(response.content)).size == (80, 100)


@pytest.mark.parametrize("damage", ["garbage", "missing"])
def test_undecodable_or_missing_object_gives_a_grey_placeholder(tenant_a, drinks, damage):
    image = drinks["cola"].reference_images.first()
    if damage == "garbage":
        object_store().put(image.object_key, b"definitely not an image", content_type="image/jpeg")
    else:
        object_store().delete(image.object_key)
    response = tenant_a.client("viewer").get(f"/dashboard/galleries/images/{image.pk}/thumb/")
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    placeholder = Image.open(io.BytesIO(response.content)).convert("RGB")
    red, green, blue = placeholder.getpixel((10, 10))
    assert abs(red - green) < 12 and abs(green - blue) < 12  # grey
    assert "max-age=60" in response["Cache-Control"]
