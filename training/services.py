"""Per-tenant fine-tuning: start, run (resumable, cancellable), evaluate before/after, promote with a shadow
index and an atomic switch, roll back."""
from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from galleries.models import Gallery, ReferenceImage
from galleries.services import gallery_index_refresh, reference_images_embed_with
from modelhub.models import ModelVersion
from modelhub.registry import extractor_by_key, extractor_for, model_directory
from modelhub.selectors import active_model
from modelhub.services import model_switch, model_version_store
from recognition.engine.inference import PaddleExtractor
from shitu_platform import jobs
from shitu_platform.errors import PlatformError
from shitu_platform.object_store import object_store
from training.engine.dataset import ImageDataset
from training.engine.evaluate import extract_features, retrieval_metrics
from training.engine.network_files import (HEAD_ARCHITECTURE, NETWORK_KEYS, TRAIN_CONFIG_NAME, TRAIN_WEIGHTS_NAME,
                                          is_head_trained, network_config)
from training.models import FineTuneJob, GalleryHoldout

State = FineTuneJob.State
FINISHED = (State.READY, State.PROMOTED, State.FAILED, State.CANCELLED)


class JobAlreadyRunning(PlatformError):
    code = "job_already_running"
    http_status = 409


class NotEnoughData(PlatformError):
    code = "not_enough_data"
    http_status = 400


class InvalidJobState(PlatformError):
    code = "invalid_job_state"
    http_status = 409


class FineTuneCancelled(Exception):
    pass


# --- start / cancel -----------------------------------------------------------------


class ModeUnavailable(PlatformError):
    code = "fine_tune_mode_unavailable"
    http_status = 400


DEFAULT_EPOCHS = {FineTuneJob.Mode.FAST: 80, FineTuneJob.Mode.FULL: 10}
# Full mode of a pretrained (head-trained) base also trains its last block and head convolution.
FULL_MODE_TRAIN_FROM = 15


def finetune_start(*, gallery: Gallery, epochs: int | None = None, mode: str | None = None,
                   created_by: Any = None) -> FineTuneJob:
    """Queue a fine-tune of the tenant's current extractor on this gallery; one running job per tenant.

    ``mode`` None picks fast where the base model is pretrained (its head learns on cached backbone features),
    else full; ``epochs`` None picks the mode's default."""
    samples, _ = _split(gallery)
    labels = {label for _, label, _ in samples}
    if len(labels) < 2:
        raise NotEnoughData("fine-tuning needs at least 2 products with ready reference images outside the held-out set")
    active = active_model(tenant=gallery.tenant)
    base = active.extractor if active is not None else None
    pretrained = _base_is_head_trained(base)
    if mode == FineTuneJob.Mode.FAST and not pretrained:
        raise ModeUnavailable("fast mode needs a pretrained base model (the current extractor was not trained "
                              "with a cached-feature head); use mode 'full'")
    mode = mode or (FineTuneJob.Mode.FAST if pretrained else FineTuneJob.Mode.FULL)
    try:
        with transaction.atomic():
            job = FineTuneJob(tenant=gallery.tenant, gallery=gallery, epochs=epochs or DEFAULT_EPOCHS[mode],
                              mode=mode, created_by=created_by, base_model=base)
            job.save()
    except IntegrityError as error:
        raise JobAlreadyRunning("this tenant already has a fine-tuning job running; wait for it or cancel it") from error
    transaction.on_commit(lambda: _enqueue_run(job.pk, tenant_id=job.tenant_id))
    return job


def finetune_cancel(*, job: FineTuneJob) -> FineTuneJob:
    """Ask the runner to stop (it checks between steps); a job no worker has started is cancelled at once."""
    if job.state in FINISHED:
        raise InvalidJobState(f"the job is already {job.state}")
    FineTuneJob.objects.for_tenant(job.tenant).filter(pk=job.pk).update(cancel_requested=True)
    FineTuneJob.objects.for_tenant(job.tenant).filter(pk=job.pk, state=State.QUEUED).update(state=State.CANCELLED, finished_at=timezone.now())
    job.refresh_from_db()
    return job


# --- run ----------------------------------------------------------------------------


def finetune_run(*, job_id: int, worker: str = "", takeover: str = "") -> FineTuneJob:
    """Prepare, train (resuming from the last checkpoint), evaluate on the held-out split, register the model."""
    token = jobs.new_run_token(worker)
    claimed = jobs.claim(FineTuneJob, job_id, token, state_field="state", waiting=State.QUEUED, running=State.PREPARING,
                         finished=FINISHED, takeover=takeover)
    if not claimed:
        return FineTuneJob.unscoped.get(pk=job_id)
    job = FineTuneJob.unscoped.select_related("gallery", "tenant", "base_model").get(pk=job_id)
    try:
        return _run(job, token)
    except FineTuneCancelled:
        return _finish(job, State.CANCELLED)
    except PlatformError as error:
        return _finish(job, State.FAILED, reason=f"{error.code}: {error}")


def _base_is_head_trained(base: ModelVersion | None) -> bool:
    """Whether the base model rebuilds from an ImageNet checkpoint plus trained head tensors."""
    if base is not None:
        return is_head_trained(base.manifest or {})
    directory = model_directory(version=None)
    if directory is None or not (directory / "manifest.json").is_file():
        return False
    return is_head_trained(json.loads((directory / "manifest.json").read_text(encoding="utf-8")))


def _run(job: FineTuneJob, token: str) -> FineTuneJob:
    from training.engine.trainer import TrainConfig, train  # imports Paddle (about 4 s): only training workers pay

    _log(job, "preparing the dataset")
    samples, holdout = _split(job.gallery)
    train_set = ImageDataset.from_pairs((_image_bytes(image), label, bbox) for image, label, bbox in samples)
    base_dir, base_config = _base_training_files(job)
    if base_config.get("architecture") == HEAD_ARCHITECTURE:
        return _run_head(job, token, train_set, samples, holdout, base_dir, base_config)
    config = TrainConfig(
        epochs=job.epochs, p=min(settings.SHITU_FINETUNE_P, train_set.num_classes), k=settings.SHITU_FINETUNE_K,
        **_network(base_config),
        base_lr=settings.SHITU_FINETUNE_LR, warmup_epochs=min(1.0, job.epochs / 5), threads=settings.ENGINE_THREADS,
        seed=job.pk,
        checkpoint_every_steps=settings.SHITU_FINETUNE_CHECKPOINT_STEPS, out_dir=str(_run_dir(job)),
        init_from=str(base_dir / TRAIN_WEIGHTS_NAME) if base_dir is not None else None,
        model_name=f"ft-t{job.tenant_id}-j{job.pk}", model_version="1", write_plots=True,
        max_steps=settings.SHITU_FINETUNE_MAX_STEPS or None,
    )
    _set_state(job, State.TRAINING, token)
    _log(job, f"training {len(train_set)} images of {train_set.num_classes} products from "
              f"{job.base_model.key if job.base_model else 'the platform default'} ({'warm start' if config.init_from else 'from scratch'})")
    result = train(config, train_set, progress=_progress_writer(job, token), cancel=_cancel_checker(job, token))
    if result.status == "cancelled":
        raise FineTuneCancelled()
    if result.resumed_from_step:
        _log(job, f"resumed from the checkpoint at step {result.resumed_from_step} after an interruption")
    _set_state(job, State.EVALUATING, token)
    metrics_before, metrics_after = _evaluate_before_after(job, result.model_dir, samples, holdout)
    version = _register_model(job, result, config)
    FineTuneJob.objects.for_tenant(job.tenant).filter(pk=job.pk).update(
        metrics_before=metrics_before, metrics_after=metrics_after, result_model=version, progress=1.0)
    _log(job, f"held-out mAP {metrics_before.get('mAP')} -> {metrics_after.get('mAP')}, "
              f"recall@1 {metrics_before.get('recall@1')} -> {metrics_after.get('recall@1')}")
    return _finish(job, State.READY)


def _run_head(job: FineTuneJob, token: str, train_set: Any, samples: list, holdout: list, base_dir: Path,
              base_config: dict) -> FineTuneJob:
    """Fast mode trains the base's embedding head on cached backbone features; full mode also trains its
    last block and head convolution. Both start from the base model's trained tensors."""
    from training.engine.head_training import HeadTrainConfig, export_head_model, train_head  # Paddle, as in _run

    train_from = FULL_MODE_TRAIN_FROM if job.mode == FineTuneJob.Mode.FULL else None
    config = HeadTrainConfig(
        backbone=base_config["backbone"], image_size=base_config["image_size"], feature_dim=base_config["feature_dim"],
        gem_p=base_config.get("gem_p", 3.0), train_from=train_from, views=settings.SHITU_FINETUNE_VIEWS,
        epochs=job.epochs, p=min(16, train_set.num_classes), k=4, seed=job.pk, threads=settings.ENGINE_THREADS,
        model_name=f"ft-t{job.tenant_id}-j{job.pk}", model_version="1")
    _set_state(job, State.TRAINING, token)
    _log(job, f"{job.mode} fine-tune of {len(train_set)} images of {train_set.num_classes} products from "
              f"{job.base_model.key if job.base_model else 'the platform default'}: "
              f"{'embedding head' if train_from is None else 'last block + head'} on cached features of "
              f"{config.views} views per photo")
    cache_dir = Path(settings.VAR_DIR) / "finetune" / "feature-cache" / (job.base_model.key if job.base_model else "default")
    try:
        result = train_head(train_set, config, cache_dir=cache_dir, init_from=base_dir,
                            progress=_progress_writer(job, token), cancel=_cancel_checker(job, token))
    except InterruptedError as cancelled:
        raise FineTuneCancelled() from cancelled
    model_dir = _run_dir(job) / "model"
    export_head_model(result, model_dir, class_names=train_set.class_names,
                      extra={"fine_tune": {"job": job.pk, "mode": job.mode, "base": job.base_model.key if job.base_model else None}})
    _set_state(job, State.EVALUATING, token)
    metrics_before, metrics_after = _evaluate_before_after(job, model_dir, samples, holdout)
    version = model_version_store(tenant=job.tenant, key=f"{config.model_name}@{config.model_version}",
                                  directory=model_dir, parent=job.base_model)
    FineTuneJob.objects.for_tenant(job.tenant).filter(pk=job.pk).update(
        metrics_before=metrics_before, metrics_after=metrics_after, result_model=version, progress=1.0)
    _log(job, f"held-out mAP {metrics_before.get('mAP')} -> {metrics_after.get('mAP')}, "
              f"recall@1 {metrics_before.get('recall@1')} -> {metrics_after.get('recall@1')} "
              f"({result.seconds:.0f} s, {result.cache_seconds:.0f} s of it caching features)")
    return _finish(job, State.READY)


def _network(base_config: dict) -> dict[str, Any]:
    """The base model's network (so its weights fit), else the settings' fine-tuning network."""
    network: dict[str, Any] = {"image_size": settings.SHITU_FINETUNE_IMAGE_SIZE,
                               "backbone_scale": settings.SHITU_FINETUNE_BACKBONE_SCALE,
                               "backbone_depths": settings.SHITU_FINETUNE_BACKBONE_DEPTHS}
    network.update({key: base_config[key] for key in NETWORK_KEYS if key in base_config})
    network["backbone_depths"] = tuple(network["backbone_depths"])
    return network


def _split(gallery: Gallery) -> tuple[list[tuple[ReferenceImage, str, Any]], list[tuple[ReferenceImage, str, Any]]]:
    """Training samples and the held-out split (fixed once per gallery: ~30% of each product with >= 3 images)."""
    images = list(ReferenceImage.objects.for_tenant(gallery.tenant).filter(gallery=gallery, status=ReferenceImage.Status.READY)
                  .select_related("product").order_by("pk"))
    holdout_row = GalleryHoldout.objects.for_tenant(gallery.tenant).filter(gallery=gallery).first()
    if holdout_row is None:
        rng = random.Random(gallery.pk)
        by_product: dict[int, list[int]] = {}
        for image in images:
            by_product.setdefault(image.product_id, []).append(image.pk)
        held = [pk for pks in by_product.values() if len(pks) >= 3 for pk in rng.sample(pks, max(1, round(0.3 * len(pks))))]
        holdout_row = GalleryHoldout(tenant=gallery.tenant, gallery=gallery, reference_image_ids=sorted(held), seed=gallery.pk)
        holdout_row.save()
    held_ids = set(holdout_row.reference_image_ids)
    rows = [(image, image.product.label, tuple(image.bbox) if image.bbox else None) for image in images]
    return [r for r in rows if r[0].pk not in held_ids], [r for r in rows if r[0].pk in held_ids]


def _image_bytes(image: ReferenceImage) -> bytes:
    return object_store().get(image.object_key)


def _evaluate_before_after(job: FineTuneJob, model_dir: Path, samples: list, holdout: list) -> tuple[dict, dict]:
    """Held-out images query the training images, with the current extractor and with the new one."""
    new_model = PaddleExtractor.from_dir(model_dir, threads=settings.ENGINE_THREADS)
    current = extractor_for(tenant=job.tenant).model
    return held_out_metrics(current, samples, holdout), held_out_metrics(new_model, samples, holdout)


def held_out_metrics(extractor: Any, samples: list, holdout: list) -> dict:
    """recall@1/5 and mAP of the held-out (image, label, bbox) rows searched among the training rows."""
    if not holdout or not samples:
        return {}
    gallery_set = ImageDataset.from_pairs((_image_bytes(i), label, bbox) for i, label, bbox in samples)
    query_set = ImageDataset.from_pairs((_image_bytes(i), label, bbox) for i, label, bbox in holdout)
    # Label *names*: each dataset numbers its own classes, so integer ids of two datasets do not match.
    metrics = retrieval_metrics(extract_features(extractor, query_set), query_set.label_names,
                                extract_features(extractor, gallery_set), gallery_set.label_names, exclude_self=False)
    return {k: (round(float(v), 4) if isinstance(v, (float, np.floating)) else v) for k, v in metrics.items()}


def _register_model(job: FineTuneJob, result: Any, config: Any) -> ModelVersion:
    """Store the exported model + its training weights + config in object storage as a tenant-owned version."""
    model_dir = Path(result.model_dir)
    weights = Path(result.out_dir) / "final_weights.pdparams"
    if weights.exists():
        (model_dir / TRAIN_WEIGHTS_NAME).write_bytes(weights.read_bytes())
    (model_dir / TRAIN_CONFIG_NAME).write_text(json.dumps(network_config(config)))
    return model_version_store(tenant=job.tenant, key=f"{config.model_name}@{config.model_version}", directory=model_dir,
                               parent=job.base_model)


def _base_training_files(job: FineTuneJob) -> tuple[Path | None, dict]:
    """Where the base model's training weights are: its stored version, or the shipped default's folder."""
    directory = model_directory(version=job.base_model)
    if directory is None or not (directory / TRAIN_WEIGHTS_NAME).exists():
        return None, {}
    config_path = directory / TRAIN_CONFIG_NAME
    return directory, json.loads(config_path.read_text()) if config_path.exists() else {}


def _run_dir(job: FineTuneJob) -> Path:
    return Path(settings.VAR_DIR) / "finetune" / f"job-{job.pk}"


def _progress_writer(job: FineTuneJob, token: str):
    """Progress and loss points to the job row, at most once a second except checkpoint reports, which are always
    written (the row's step then never trails a checkpoint on disk); every step's loss is kept (the last 500)."""
    last_write = [0.0]
    pending: list[dict] = []
    epoch = [0]

    def write(fraction: float, info: dict) -> None:
        if "loss" in info:
            pending.append({k: info[k] for k in ("step", "loss", "ce", "triplet", "lr") if k in info})
        epoch[0] = info.get("epoch", epoch[0])  # evaluation and export reports carry no epoch: keep the last
        now = time.monotonic()
        if now - last_write[0] < 1.0 and fraction < 1.0 and info.get("phase") != "checkpoint":
            return
        last_write[0] = now
        job.refresh_from_db(fields=["loss_history"])
        history = (job.loss_history + pending)[-500:]
        pending.clear()
        updated = FineTuneJob.objects.for_tenant(job.tenant).filter(pk=job.pk, run_token=token).update(
            progress=round(0.85 * fraction, 4), current_step=info.get("step", 0), current_epoch=epoch[0],
            total_steps=info.get("total_steps", 0), loss_history=history, heartbeat_at=timezone.now(),
        )
        if not updated:
            raise FineTuneCancelled()  # another runner took the job over

    return write


def _cancel_checker(job: FineTuneJob, token: str):
    def cancelled() -> bool:
        requested = FineTuneJob.objects.for_tenant(job.tenant).filter(pk=job.pk, cancel_requested=True).exists()
        return requested or not jobs.holds(FineTuneJob, job.pk, token)

    return cancelled


def _set_state(job: FineTuneJob, state: str, token: str) -> None:
    FineTuneJob.objects.for_tenant(job.tenant).filter(pk=job.pk, run_token=token).update(state=state, heartbeat_at=timezone.now())
    job.state = state


def _log(job: FineTuneJob, line: str) -> None:
    stamp = timezone.now().strftime("%H:%M:%S")
    job.refresh_from_db(fields=["log"])
    FineTuneJob.objects.for_tenant(job.tenant).filter(pk=job.pk).update(log=(job.log + f"{stamp} {line}\n")[-20000:])


def _finish(job: FineTuneJob, state: str, *, reason: str = "") -> FineTuneJob:
    FineTuneJob.objects.for_tenant(job.tenant).filter(pk=job.pk).update(state=state, failure_reason=reason, finished_at=timezone.now())
    job.refresh_from_db()
    return job


def _enqueue_run(job_id: int, *, tenant_id: int) -> None:
    from training.tasks import run_finetune  # training.tasks imports this module: a cycle at import time

    run_finetune.apply_async(args=[job_id], kwargs={"tenant_id": tenant_id}, queue="training")


# --- promote / roll back --------------------------------------------------------------


def finetune_promote(*, job: FineTuneJob, force: bool = False, by: Any = None) -> FineTuneJob:
    """Promote if the new model is better on the held-out split (or staff force it, recorded); runs in a worker."""
    if job.state != State.READY or job.result_model is None:
        raise InvalidJobState(f"only a ready job can be promoted (this one is {job.state})")
    better = job.metrics_after.get("mAP", 0) > job.metrics_before.get("mAP", 0)
    if not better and not force:
        raise InvalidJobState("the new model is not better on the held-out images; staff may force it")
    if force and not getattr(by, "is_staff", False):
        raise InvalidJobState("only platform staff may force a promotion")
    updated = FineTuneJob.objects.for_tenant(job.tenant).filter(pk=job.pk, state=State.READY).update(
        state=State.REEMBEDDING, forced_promotion_by=by if force and not better else None
    )
    if not updated:
        raise InvalidJobState("the job changed state meanwhile")
    from training.tasks import promote_finetune  # a cycle at import time, as in _enqueue_run

    transaction.on_commit(lambda: promote_finetune.apply_async(args=[job.pk], kwargs={"tenant_id": job.tenant_id}, queue="training"))
    job.refresh_from_db()
    return job


def finetune_promote_run(*, job_id: int) -> FineTuneJob:
    """Shadow first: embed every gallery of the tenant with the new model into new rows and caches; then switch
    the tenant's active model in one transaction. Recognitions read the active model once, so none mixes both."""
    job = FineTuneJob.unscoped.select_related("tenant", "result_model").get(pk=job_id)
    if job.state != State.REEMBEDDING:
        return job
    new_model = extractor_by_key(key=job.result_model.key, tenant=job.tenant)
    galleries = list(Gallery.objects.for_tenant(job.tenant))
    for gallery in galleries:
        missing = ReferenceImage.objects.for_tenant(job.tenant).filter(gallery=gallery, status=ReferenceImage.Status.READY).exclude(
            embeddings__model_key=new_model.key).select_related("gallery")
        batch = list(missing[: settings.SHITU_IMPORT_BATCH_SIZE])
        while batch:
            reference_images_embed_with(images=batch, extractor=new_model)
            batch = list(missing[: settings.SHITU_IMPORT_BATCH_SIZE])
        gallery_index_refresh(gallery=gallery, model_key=new_model.key)
    with transaction.atomic():
        model_switch(tenant=job.tenant, version=job.result_model)
        FineTuneJob.objects.for_tenant(job.tenant).filter(pk=job.pk).update(state=State.PROMOTED, finished_at=timezone.now())
    job.refresh_from_db()
    return job
