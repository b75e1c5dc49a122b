"""In Chromium with a real worker: a phone photo stored sideways with EXIF orientation 6 is shown upright on Try-it
and on the recognition's page, and every drawn box lies on the displayed photo."""
import io
import time

import pytest
from PIL import Image, ImageDraw

from galleries.models import ReferenceImage
from tests.support.browser import log_in, wait_for_images
from shitu_platform.demo_data import demo_query_photos
from tests.support.demo import import_demo_gallery
from tests.support.images import product_photo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RED = (210, 30, 30)
UPRIGHT_SIZE = (500, 542)  # as a person holds the phone: portrait
RED_CORNER = (40, 40, 200, 240)  # where the red product sits in the upright photo (top left)


def red_can_photo() -> Image.Image:
    upright = Image.new("RGB", UPRIGHT_SIZE, (235, 235, 235))
    ImageDraw.Draw(upright).rectangle(RED_CORNER, fill=RED)
    return upright


def _sideways(upright: Image.Image) -> bytes:
    """The upright picture as a phone held upright stores it: turned on its side (here 542 x 500 pixels for a
    500 x 542 photo), with Orientation = 6 ("rotate 90° clockwise to view")."""
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what exif_transpose turns back with ROTATE_270
    assert stored.size == (upright.height, upright.width)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    stored.save(buffer, "JPEG", quality=92, exif=exif)
    return buffer.getvalue()


def _gallery(world) -> None:
    client = world.key_client("member")
    gallery = client.post("/api/v1/galleries/", {"name": "Phone shots"}, format="json").json()["id"]
    product = client.post("/api/v1/products/", {"gallery": gallery, "label": "Red Cola"}, format="json").json()["id"]
    photo = io.BytesIO(product_photo(RED, (160, 200)))
    photo.name = "red.jpg"
    client.post(f"/api/v1/products/{product}/images/", {"image": [photo]}, format="multipart")
    deadline = time.monotonic() + 90
    while not ReferenceImage.objects.for_tenant(world.tenant).filter(status="ready").exists():
        assert time.monotonic() < deadline, "the reference image was not embedded"
        time.sleep(0.2)


def _boxes_on_photo(page, stage_selector: str) -> list[dict]:
    """The displayed photo's rectangle and each drawn box's, in CSS pixels; and the photo's upright pixels."""
    wait_for_images(page, f"{stage_selector} img.rec-photo")
    return page.evaluate(
        """selector => {
             const stage = document.querySelector(selector);
             const photo = stage.querySelector("img.rec-photo");
             const rect = (node) => { const r = node.getBoundingClientRect(); return {left: r.left, top: r.top, right: r.right, bottom: r.bottom}; };
             const canvas = document.createElement("canvas");
             canvas.width = photo.naturalWidth; canvas.height = photo.naturalHeight;
             const context = canvas.getContext("2d");
             context.drawImage(photo, 0, 0);
             const at = (x, y) => Array.from(context.getImageData(Math.round(x * photo.naturalWidth), Math.round(y * photo.naturalHeight), 1, 1).data.slice(0, 3));
             return {photo: rect(photo), natural: [photo.naturalWidth, photo.naturalHeight],
                     boxes: [...stage.querySelectorAll(".rec-box")].map(rect),
                     topLeft: at(0.24, 0.26), bottomRight: at(0.8, 0.8)};
           }""",
        stage_selector,
    )


def _assert_upright_with_boxes_inside(drawn: dict, upright_size: tuple[int, int]) -> None:
    photo = drawn["photo"]
    width, height = photo["right"] - photo["left"], photo["bottom"] - photo["top"]
    assert height > width, f"the photo is not shown portrait: {drawn}"
    assert abs(width / height - upright_size[0] / upright_size[1]) < 0.01, drawn
    assert drawn["natural"][0] < drawn["natural"][1], f"the served picture is not upright: {drawn}"
    assert drawn["boxes"], "no box drawn"
    for box in drawn["boxes"]:
        for side in ("left", "top"):
            assert box[side] >= photo[side] - 1, (side, box, photo)
        for side in ("right", "bottom"):
            assert box[side] <= photo[side] + 1, (side, box, photo)


def _try_sideways(page, live_server, world, upright: Image.Image, screenshot, name: str) -> dict:
    """Recognise the photo on Try-it, check the drawing there and on the recognition's page; the Try-it drawing."""
    log_in(page, live_server.url, world.users["member"].username, world.password)
    page.goto(f"{live_server.url}/dashboard/recognition/try/")
    page.fill("[data-testid=score-threshold]", "0.3")
    photo = _sideways(upright)
    page.set_input_files("[data-testid=photo-input]", files=[{"name": f"{name}.jpg", "mimeType": "image/jpeg", "buffer": photo}])
    page.wait_for_function(
        "name => (document.querySelector('[data-testid=result-title]') || {}).textContent?.includes(name)"
        " && document.querySelector('[data-testid=busy]').hidden", arg=f"{name}.jpg", timeout=90_000,
    )
    tryit = _boxes_on_photo(page, "#rec-result [data-testid=stage]")
    _assert_upright_with_boxes_inside(tryit, upright.size)
    screenshot(f"{name}-01-tryit")

    # The recognition's own page draws the same photo and boxes on the server.
    page.goto(live_server.url + page.get_attribute("#rec-result [data-testid=open-recognition]", "href"))
    page.wait_for_selector("[data-testid=stage]")
    detail = _boxes_on_photo(page, "[data-testid=stage]")
    _assert_upright_with_boxes_inside(detail, upright.size)
    screenshot(f"{name}-02-recognition-page")
    return tryit


@pytest.mark.slow
def test_exif_rotated_photo_is_upright_and_its_box_stays_on_it(page, live_server, tenant_a, celery_worker, screenshot):
    _gallery(tenant_a)
    drawn = _try_sideways(page, live_server, tenant_a, red_can_photo(), screenshot, "exif-whole")
    red, grey = drawn["topLeft"], drawn["bottomRight"]
    assert red[0] > 150 and red[1] < 90, f"the red product is not top left of the shown photo: {drawn}"
    assert min(grey) > 200, drawn
    assert page.inner_text("[data-testid=object-label]") == "Red Cola"


@pytest.mark.slow
def test_detected_box_on_an_exif_rotated_photo_frames_the_product(page, live_server, tenant_a, celery_workers, screenshot):
    """The shipped detector finds the can in the top part of the upright photo: its box is drawn there, not where
    the same numbers would fall on the sideways pixels."""
    celery_workers.start("detector", {"SHITU_DETECTOR": ""})  # the platform's default detector
    import_demo_gallery(tenant_a.key_client("member"))
    can = demo_query_photos()[0]
    upright = Image.new("RGB", (500, 900), (228, 226, 222))
    upright.paste(Image.open(io.BytesIO(can.data)).convert("RGB"), (10, 10))  # 480 x 560: the top 63 %
    tryit = _try_sideways(page, live_server, tenant_a, upright, screenshot, "exif-detected")
    photo = tryit["photo"]
    height = photo["bottom"] - photo["top"]
    framed = [box for box in tryit["boxes"] if box["bottom"] <= photo["top"] + 0.66 * height
              and box["bottom"] - box["top"] >= 0.3 * height]
    assert framed, f"no box around the can: {tryit}"
