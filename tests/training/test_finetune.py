"""Fine-tuning jobs: state machine, isolation, a real run through the API, atomic switch, rollback, cancel, resume."""
import io
import os
import signal
import time

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from PIL import Image, ImageDraw

from galleries.models import Embedding, Gallery, Product, ReferenceImage
from recognition.models import Recognition
from modelhub.models import ActiveModel, ModelVersion
from modelhub.services import model_rollback, model_switch
from training import services
from training.models import FineTuneJob
from tests.support.galleries import ready_gallery_without_worker

TINY = {"SHITU_FINETUNE_IMAGE_SIZE": "64", "SHITU_FINETUNE_BACKBONE_SCALE": "0.25", "SHITU_FINETUNE_BACKBONE_DEPTHS": "1,1,1,1",
        "SHITU_FINETUNE_P": "4", "SHITU_FINETUNE_K": "3", "SHITU_FINETUNE_CHECKPOINT_STEPS": "2", "SHITU_ENGINE_THREADS": "1"}
COLOURS = [(200, 40, 40), (40, 160, 60), (40, 70, 200), (220, 190, 30)]


def photo(product: int, shot: int) -> bytes:
    image = Image.new("RGB", (96, 128), (230 - 9 * shot, 230, 225))
    draw = ImageDraw.Draw(image)
    draw.rectangle([14 + shot, 10, 80 - shot, 118], fill=COLOURS[product])
    draw.ellipse([30, 40 + 4 * shot, 66, 76 + 4 * shot], fill=(255, 255, 255) if product % 2 else (20, 20, 20))
    buffer = io.BytesIO()
    image.rotate(7 * shot - 10, fillcolor=(230, 230, 225)).save(buffer, "PNG")
    return buffer.getvalue()


def _file(data: bytes) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = "p.png"
    return handle


def _wait(predicate, timeout=240, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def _gallery(client, products=4, shots=4) -> int:
    gallery = client.post("/api/v1/galleries/", {"name": "Shelf"}, format="json").json()["id"]
    for number in range(products):
        product = client.post("/api/v1/products/", {"gallery": gallery, "label": f"product {number}"}, format="json").json()["id"]
        files = [_file(photo(number, shot)) for shot in range(shots)]
        client.post(f"/api/v1/products/{product}/images/", {"image": files}, format="multipart")
    _wait(lambda: not ReferenceImage.unscoped.filter(status="pending").exists(), what="embedding")
    return gallery


@pytest.mark.django_db
def test_state_machine_roles_and_isolation(tenant_a, tenant_b, monkeypatch):
    monkeypatch.setattr("training.services._enqueue_run", lambda job_id, tenant_id: None)
    gallery = ready_gallery_without_worker(tenant_a)
    admin = tenant_a.key_client("admin")
    assert tenant_a.key_client("member").post("/api/v1/fine-tune-jobs/", {"gallery": gallery.pk}, format="json").status_code == 403
    started = admin.post("/api/v1/fine-tune-jobs/", {"gallery": gallery.pk, "epochs": 3}, format="json")
    assert started.status_code == 202 and started.json()["state"] == "queued"
    again = admin.post("/api/v1/fine-tune-jobs/", {"gallery": gallery.pk}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_already_running"
    job_url = f"/api/v1/fine-tune-jobs/{started.json()['id']}/"
    early_promote = admin.post(job_url + "promote/", {}, format="json")
    assert early_promote.status_code == 409 and early_promote.json()["error"]["code"] == "invalid_job_state"

    other = tenant_b.key_client("owner")
    assert other.get(job_url).status_code == 404
    assert other.post(job_url + "cancel/").status_code == 404
    assert other.post("/api/v1/fine-tune-jobs/", {"gallery": gallery.pk}, format="json").status_code == 400
    assert other.get("/api/v1/fine-tune-jobs/").json()["results"] == []

    cancelled = admin.post(job_url + "cancel/")
    assert cancelled.json()["state"] == "cancelled"
    assert admin.post(job_url + "cancel/").status_code == 409
    assert admin.post("/api/v1/fine-tune-jobs/", {"gallery": gallery.pk}, format="json").status_code == 202


@pytest.mark.django_db
def test_too_little_data_is_refused(tenant_a):
    gallery = ready_gallery_without_worker(tenant_a, products=1)
    response = tenant_a.key_client("admin").post("/api/v1/fine-tune-jobs/", {"gallery": gallery.pk}, format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "not_enough_data"


@pytest.mark.django_db
def test_switch_is_one_row_and_rollback_restores(tenant_a, tenant_b):
    first = ModelVersion.objects.create(tenant=tenant_a.tenant, kind="extractor", key="a@1")
    second = ModelVersion.objects.create(tenant=tenant_a.tenant, kind="extractor", key="a@2")
    model_switch(tenant=tenant_a.tenant, version=first)
    model_switch(tenant=tenant_a.tenant, version=second)
    assert ActiveModel.objects.for_tenant(tenant_a.tenant).get().extractor == second
    model_rollback(tenant=tenant_a.tenant)
    active = ActiveModel.objects.for_tenant(tenant_a.tenant).get()
    assert active.extractor == first and active.previous_extractor == second
    assert ActiveModel.objects.for_tenant(tenant_b.tenant).count() == 0
    models_seen_by_b = tenant_b.key_client("member").get("/api/v1/models/").json()["results"]
    assert {m["key"] for m in models_seen_by_b}.isdisjoint({"a@1", "a@2"})
    assert tenant_b.key_client("admin").post("/api/v1/models/rollback/").status_code == 409


@pytest.mark.slow
def test_fine_tune_through_the_api_promote_switch_and_rollback(tenant_a, celery_workers):
    celery_workers.start("ft", TINY)
    client = tenant_a.key_client("admin")
    gallery = _gallery(client)
    default_key = Embedding.unscoped.values_list("model_key", flat=True).first()
    job = client.post("/api/v1/fine-tune-jobs/", {"gallery": gallery, "epochs": 4}, format="json").json()
    _wait(lambda: FineTuneJob.unscoped.get(pk=job["id"]).state in ("ready", "failed"), what="fine-tune")
    done = client.get(f"/api/v1/fine-tune-jobs/{job['id']}/").json()
    assert done["state"] == "ready", done["failure_reason"] + done["log"]
    assert done["loss_history"] and done["metrics_before"]["mAP"] is not None and done["metrics_after"]["mAP"] is not None
    assert done["progress"] == 1.0
    assert done["metrics_before"]["recall@1"] >= 0.75, done["metrics_before"]  # distinct colours: the floor finds them

    staff = get_user_model().objects.create_superuser("ops", password="ops-password-123")
    from shitu_platform.tenancy.services import membership_set

    membership_set(tenant=tenant_a.tenant, user=staff, role="admin")
    session = Client()
    session.force_login(staff)
    promoted = session.post(f"/api/v1/fine-tune-jobs/{job['id']}/promote/", {"force": True}, content_type="application/json")
    assert promoted.status_code == 202, promoted.json()
    _wait(lambda: FineTuneJob.unscoped.get(pk=job["id"]).state == "promoted", what="promotion")
    new_key = FineTuneJob.unscoped.get(pk=job["id"]).result_model.key
    ready = ReferenceImage.unscoped.filter(gallery_id=gallery, status="ready").count()
    assert Embedding.unscoped.filter(gallery_id=gallery, model_key=new_key).count() == ready
    assert Embedding.unscoped.filter(gallery_id=gallery, model_key=default_key).count() == ready  # old vectors kept for rollback

    answer = client.post("/api/v1/recognitions/", {"image": _file(photo(2, 1)), "score_threshold": 0}, format="multipart").json()
    assert Recognition.unscoped.get(public_id=answer["id"]).model_key == new_key
    assert client.post("/api/v1/models/rollback/").status_code == 200
    answer = client.post("/api/v1/recognitions/", {"image": _file(photo(2, 1)), "score_threshold": 0}, format="multipart").json()
    assert answer["model_key"] == default_key


@pytest.mark.slow
def test_cancel_stops_a_running_job_within_seconds(tenant_a, celery_workers):
    celery_workers.start("ft", TINY)
    client = tenant_a.key_client("admin")
    gallery = _gallery(client, products=3, shots=3)
    job = client.post("/api/v1/fine-tune-jobs/", {"gallery": gallery, "epochs": 50}, format="json").json()
    _wait(lambda: FineTuneJob.unscoped.get(pk=job["id"]).current_step >= 2, what="training steps")
    asked = time.monotonic()
    client.post(f"/api/v1/fine-tune-jobs/{job['id']}/cancel/")
    _wait(lambda: FineTuneJob.unscoped.get(pk=job["id"]).state == "cancelled", timeout=30, what="cancel")
    assert time.monotonic() - asked < 15


@pytest.mark.slow
def test_killed_training_worker_resumes_from_its_checkpoint(tenant_a, celery_workers):
    victim = celery_workers.start("trainer", TINY)
    client = tenant_a.key_client("admin")
    gallery = _gallery(client, products=3, shots=3)
    job = client.post("/api/v1/fine-tune-jobs/", {"gallery": gallery, "epochs": 12}, format="json").json()
    _wait(lambda: FineTuneJob.unscoped.get(pk=job["id"]).current_step >= 5, what="training steps")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    step_at_kill = FineTuneJob.unscoped.get(pk=job["id"]).current_step
    celery_workers.start("trainer", TINY)  # same node name: it takes over the dead run on start
    _wait(lambda: FineTuneJob.unscoped.get(pk=job["id"]).state in ("ready", "failed"), what="resumed fine-tune")
    finished = FineTuneJob.unscoped.get(pk=job["id"])
    assert finished.state == "ready", finished.failure_reason
    assert "resumed from the checkpoint at step" in finished.log
    resumed_at = int(finished.log.split("checkpoint at step ")[1].split()[0])
    assert 0 < resumed_at <= step_at_kill  # not from scratch, and nothing past what was done


@pytest.mark.django_db
def test_held_out_metrics_compare_labels_by_name_across_splits(tenant_a):
    """The held-out set can lack products the training set has: labels must match by name, not by per-set ids."""
    from recognition.engine.baseline import ColourHistogramExtractor
    from shitu_platform.object_store import object_store

    gallery = Gallery(tenant=tenant_a.tenant, name="split")
    gallery.save()
    rows = {"held": [], "train": []}
    for number, shots in [(0, 2), (1, 4), (2, 4), (3, 4)]:  # product 0 has too few photos to be held out
        product = Product(tenant=tenant_a.tenant, gallery=gallery, label=f"p{number}")
        product.save()
        for shot in range(shots):
            key = f"tenants/{tenant_a.tenant.pk}/test/{number}-{shot}"
            object_store().put(key, photo(number, shot))
            image = ReferenceImage(tenant=tenant_a.tenant, gallery=gallery, product=product, object_key=key,
                                   checksum=key, size_bytes=1, status="ready")
            image.save()
            rows["held" if number and shot == 0 else "train"].append((image, product.label, None))
    metrics = services.held_out_metrics(ColourHistogramExtractor(), rows["train"], rows["held"])
    assert metrics["recall@1"] == 1.0 and metrics["mAP"] > 0.9, metrics


@pytest.mark.slow
def test_fast_fine_tune_of_the_pretrained_default_through_the_api(tenant_a, celery_workers, settings):
    """On the shipped (pretrained) default, a fine-tune picks fast mode: only the head learns, on cached features."""
    settings.SHITU_EXTRACTOR = ""  # web and worker serve the shipped default
    celery_workers.start("ft-fast", {"SHITU_EXTRACTOR": "", "SHITU_FINETUNE_VIEWS": "2"})
    client = tenant_a.key_client("admin")
    gallery = _gallery(client, products=4, shots=4)
    job = client.post("/api/v1/fine-tune-jobs/", {"gallery": gallery, "epochs": 6}, format="json").json()
    assert job["mode"] == "fast"
    _wait(lambda: FineTuneJob.unscoped.get(pk=job["id"]).state in ("ready", "failed"), what="fast fine-tune")
    done = client.get(f"/api/v1/fine-tune-jobs/{job['id']}/").json()
    assert done["state"] == "ready", done["failure_reason"] + done["log"]
    assert "fast fine-tune" in done["log"] and "embedding head" in done["log"]
    assert done["progress"] == 1.0 and done["loss_history"]
    assert done["metrics_after"]["mAP"] is not None
    version = ModelVersion.objects.get(pk=done["result_model"])
    assert version.manifest["extra"]["fine_tune"]["mode"] == "fast"


@pytest.mark.django_db
def test_fast_mode_needs_a_pretrained_base(tenant_a, monkeypatch):
    monkeypatch.setattr("training.services._enqueue_run", lambda job_id, tenant_id: None)
    gallery = ready_gallery_without_worker(tenant_a)
    response = tenant_a.key_client("admin").post("/api/v1/fine-tune-jobs/", {"gallery": gallery.pk, "mode": "fast"},
                                                 format="json")  # the suite's default is the colour histogram
    assert response.status_code == 400 and response.json()["error"]["code"] == "fine_tune_mode_unavailable"
    started = tenant_a.key_client("admin").post("/api/v1/fine-tune-jobs/", {"gallery": gallery.pk}, format="json")
    assert started.status_code == 202 and started.json()["mode"] == "full" and started.json()["epochs"] == 10


@pytest.mark.django_db
def test_the_job_row_never_shows_fewer_steps_than_its_newest_checkpoint(tenant_a, tmp_path):
    """A worker killed right after a checkpoint resumes from that step: the job page must already show it done."""
    from tests.training.test_trainer import SMALL_NET, make_dataset
    from training.engine.checkpoints import latest_checkpoint
    from training.engine.trainer import TrainConfig, train

    gallery = Gallery.objects.create(tenant=tenant_a.tenant, name="checkpoints")
    job = FineTuneJob.objects.create(tenant=tenant_a.tenant, gallery=gallery, state="training", run_token="t1")
    write = services._progress_writer(job, "t1")
    config = TrainConfig(out_dir=str(tmp_path / "run"), epochs=3, p=3, k=2, base_lr=0.02, warmup_epochs=1, seed=3,
                         checkpoint_every_steps=2, **SMALL_NET)
    behind: list[tuple[int, int]] = []

    def progress(fraction, info):
        write(fraction, info)
        saved = latest_checkpoint(config.out_dir)
        shown = FineTuneJob.unscoped.get(pk=job.pk).current_step
        if saved is not None and shown < saved.step:
            behind.append((shown, saved.step))

    result = train(config, make_dataset(per_identity=3, seed=1, identities=4), progress=progress)
    assert result.status == "completed" and result.step >= 6
    assert behind == []  # (row step, checkpoint step) pairs where a kill would resume past what the page showed
