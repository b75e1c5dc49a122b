"""A Python client generated from the live schema (openapi-python-client, as a mobile team would) drives the running
stack: create a gallery, import a zip, recognise a photo (synchronously and by polling), send feedback, and read typed
errors."""
from __future__ import annotations

import importlib
import io
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from recognition.models import MatchReview
from tests.support.images import product_photo

GENERATOR = Path(sys.executable).parent / "openapi-python-client"
PACKAGE = "shitu_generated_client"
COLOURS = {"Red Cola 330 ml": (210, 30, 30), "Green Tea": (40, 170, 60), "Blue Water": (30, 70, 200)}


def _catalogue_zip() -> bytes:
    buffer = io.BytesIO()
    lines = []
    with zipfile.ZipFile(buffer, "w") as archive:
        for number, (label, colour) in enumerate(COLOURS.items()):
            for shot, size in enumerate([(120, 160), (140, 150)]):
                path = f"p{number}/{shot}.jpg"
                archive.writestr(path, product_photo(colour, size))
                lines.append(f"{path}\t{label}")
        archive.writestr("labels.txt", "\n".join(lines))
    return buffer.getvalue()


def _generate_client(schema_url: str, api_key: str, workdir: Path):
    """Downloads the schema as any client would and runs the generator's command line on it."""
    answer = httpx.get(schema_url, headers={"Authorization": f"Api-Key {api_key}"}, params={"format": "json"})
    answer.raise_for_status()
    (workdir / "schema.json").write_bytes(answer.content)
    # post_hooks: the generator formats its output with ruff by default, which is not a dependency of ours
    (workdir / "config.yml").write_text(f"package_name_override: {PACKAGE}\npost_hooks: []\n")
    generated = subprocess.run(
        [str(GENERATOR), "generate", "--path", str(workdir / "schema.json"), "--output-path", str(workdir / PACKAGE),
         "--meta", "none", "--config", str(workdir / "config.yml"), "--fail-on-warning"],
        capture_output=True, text=True, timeout=300,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    sys.path.insert(0, str(workdir))
    try:
        return importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(workdir))


@pytest.fixture()
def generated_client(tmp_path, live_server, tenant_a):
    api_key = tenant_a.api_key("member")
    package = _generate_client(f"{live_server.url}/api/v1/schema/", api_key, tmp_path)
    yield package, package.AuthenticatedClient(base_url=live_server.url, token=api_key, prefix="Api-Key",
                                               timeout=httpx.Timeout(60.0))
    for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
        del sys.modules[name]


def _module(package, name: str):
    return importlib.import_module(f"{package.__name__}.{name}")


def test_request_bodies_are_ones_a_generated_client_can_send():
    """The schema shapes the generated client depends on, checked without generating one."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    schemas = schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            assert len(content) <= 1, (method, path, sorted(content))  # one body class per media type
            for media_type, media in content.items():
                body = schemas[media["schema"]["$ref"].rsplit("/", 1)[-1]]
                assert not [name for name, prop in body.get("properties", {}).items() if prop.get("readOnly")], (method, path)
                files = [name for name, prop in body.get("properties", {}).items()
                         if "binary" in (prop.get("format"), prop.get("items", {}).get("format"))]
                assert (media_type == "multipart/form-data") == bool(files), (method, path, media_type)
    assert schemas["ImportStartRequest"]["properties"]["archive"]["format"] == "binary"
    assert not [name for name in schemas if name.endswith("RequestRequest")]


@pytest.mark.slow
def test_generated_client_creates_imports_recognises_and_sends_feedback(generated_client, celery_worker):
    package, client = generated_client
    models = _module(package, "models")
    types = _module(package, "types")

    # a gallery: the request body holds only what a client may write
    gallery = _module(package, "api.galleries.galleries_create").sync(
        client=client, body=models.GalleryRequest(name="Drinks", description="fridge"))
    assert isinstance(gallery, models.Gallery), gallery
    assert (gallery.name, gallery.product_count, gallery.image_count) == ("Drinks", 0, 0)

    # an import: the archive is a file upload, answered 202 with the job to poll
    started = _module(package, "api.galleries.galleries_imports_create").sync_detailed(
        gallery.id, client=client,
        body=models.ImportStartRequest(archive=types.File(payload=io.BytesIO(_catalogue_zip()), file_name="catalogue.zip",
                                                          mime_type="application/zip")))
    assert started.status_code == 202, started.content
    job = started.parsed
    assert isinstance(job, models.ImportJob)
    retrieve_import = _module(package, "api.imports.imports_retrieve")
    deadline = time.monotonic() + 120
    while job.status not in (models.ImportJobStatusEnum.DONE, models.ImportJobStatusEnum.FAILED):
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
        job = retrieve_import.sync(job.id, client=client)
    assert (job.status, job.imported, job.failed) == (models.ImportJobStatusEnum.DONE, 6, 0), job

    # a recognition of an uploaded photo: synchronous, typed objects and matches
    photo = product_photo((222, 42, 42), size=(200, 260))
    recognised = _module(package, "api.recognitions.recognitions_create").sync_detailed(
        client=client,
        body=models.RecognitionRequest(image=types.File(payload=io.BytesIO(photo), file_name="shelf.jpg",
                                                              mime_type="image/jpeg"),
                                             gallery=gallery.id, top_k=3))
    assert recognised.status_code == 200, recognised.content
    recognition = recognised.parsed
    assert isinstance(recognition, models.Recognition)
    assert recognition.status == models.RecognitionStatusEnum.DONE and recognition.objects
    best = recognition.objects[0]
    assert best.label == "Red Cola 330 ml" and best.matches[0].accepted is True
    assert best.matches[0].label == "Red Cola 330 ml" and isinstance(best.matches[0].score, float)

    # the same recognition read back by id
    retrieve_recognition = _module(package, "api.recognitions.recognitions_retrieve")
    again = retrieve_recognition.sync(recognition.id, client=client)
    assert isinstance(again, models.Recognition) and again.id == recognition.id

    # asynchronous: 202 with a typed, queued recognition to poll until the worker is done
    queued = _module(package, "api.recognitions.recognitions_create").sync_detailed(
        client=client,
        body=models.RecognitionRequest(image=types.File(payload=io.BytesIO(product_photo((45, 175, 65), size=(200, 260))),
                                                        file_name="tea.jpg", mime_type="image/jpeg"),
                                       gallery=gallery.id, run_async=True))
    assert queued.status_code == 202 and isinstance(queued.parsed, models.Recognition), queued.content
    polled, deadline = queued.parsed, time.monotonic() + 60
    while polled.status not in (models.RecognitionStatusEnum.DONE, models.RecognitionStatusEnum.FAILED):
        assert time.monotonic() < deadline, polled
        time.sleep(0.2)
        polled = retrieve_recognition.sync(polled.id, client=client)
    assert polled.status == models.RecognitionStatusEnum.DONE and polled.objects[0].label == "Green Tea"

    # feedback: 201 the first time, 200 with the same review when repeated
    feedback = _module(package, "api.recognitions.recognitions_feedback_create")
    body = models.FeedbackRequest(object_=0, verdict=models.VerdictEnum.CORRECT)
    first = feedback.sync_detailed(recognition.id, client=client, body=body)
    assert first.status_code == 201, first.content
    assert isinstance(first.parsed, models.MatchReview) and first.parsed.verdict == models.VerdictEnum.CORRECT
    repeated = feedback.sync_detailed(recognition.id, client=client, body=body)
    assert repeated.status_code == 200 and repeated.parsed.id == first.parsed.id
    assert MatchReview.unscoped.get(pk=first.parsed.id).verdict == "correct"

    # errors arrive typed, as the one envelope
    missing = _module(package, "api.galleries.galleries_retrieve").sync_detailed(gallery.id + 10_000, client=client)
    assert missing.status_code == 404
    assert isinstance(missing.parsed, models.ErrorEnvelope) and missing.parsed.error.code == "not_found"
    invalid = feedback.sync_detailed(recognition.id, client=client,
                                     body=models.FeedbackRequest(object_=99, verdict=models.VerdictEnum.CORRECT))
    assert invalid.status_code == 400
    assert isinstance(invalid.parsed, models.ErrorEnvelope) and invalid.parsed.error.code
