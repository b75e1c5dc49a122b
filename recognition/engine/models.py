"""Model packages on disk: manifest, official/our layouts, export, and archive install.

A model directory holds a Paddle inference program (``inference.json`` from Paddle 3's
PIR, or the older ``inference.pdmodel`` of the official PaddleClas archives) with its
``inference.pdiparams``, for detectors PaddleDetection's ``infer_cfg.yml``, and our
``manifest.json``. Installed models live in ``<models_root>/<kind>/<name>/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import stat
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from .errors import ModelFormatError, ModelInstallError, ModelNotFound
from .preprocess import DetectionPreprocess, RecognitionPreprocess

MANIFEST_NAME = "manifest.json"
MANIFEST_SCHEMA = 1
KINDS = ("detector", "extractor")
PROGRAM_NAMES = ("inference.json", "inference.pdmodel", "model.json", "model.pdmodel")
DEFAULT_MAX_ARCHIVE_BYTES = 1 << 30      # 1 GiB uncompressed; the official archives are ~20-30 MB
DEFAULT_MAX_MEMBERS = 1000
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_CHUNK = 1 << 20


# --- manifest ---------------------------------------------------------------------


@dataclass(frozen=True)
class ModelManifest:
    """What a model directory holds and how to feed it; written as ``manifest.json``."""

    kind: str                           # "detector" | "extractor"
    name: str
    version: str
    input_size: tuple[int, int]         # (height, width) the program expects
    feature_dim: int | None             # extractor output width; None for detectors
    preprocessing: dict[str, Any]
    files: dict[str, str]               # file name -> sha256 hex
    source: str                         # "official" | "project"
    created: str                        # ISO-8601 UTC
    program_format: str = "pir-json"    # "pir-json" | "pdmodel"
    labels: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        data["labels"] = list(self.labels)
        data["schema"] = MANIFEST_SCHEMA
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelManifest":
        try:
            return cls(
                kind=str(data["kind"]), name=str(data["name"]), version=str(data["version"]),
                input_size=tuple(int(v) for v in data["input_size"]),
                feature_dim=None if data.get("feature_dim") is None else int(data["feature_dim"]),
                preprocessing=dict(data.get("preprocessing") or {}),
                files={str(k): str(v) for k, v in dict(data["files"]).items()},
                source=str(data.get("source", "project")), created=str(data.get("created", "")),
                program_format=str(data.get("program_format", "pir-json")),
                labels=tuple(str(v) for v in data.get("labels") or ()),
                extra=dict(data.get("extra") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"invalid model manifest: {exc!r}") from exc

    def write(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / MANIFEST_NAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
        return path


def read_manifest(model_dir: str | Path) -> ModelManifest:
    """Load ``manifest.json``; ``ModelNotFound`` if absent, ``ModelFormatError`` if unreadable."""
    path = Path(model_dir) / MANIFEST_NAME
    if not path.is_file():
        raise ModelNotFound(f"no {MANIFEST_NAME} in {model_dir}")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"cannot read {path}: {exc}") from exc
    return ModelManifest.from_dict(data)


def installed_models(models_root: str | Path, kind: str | None = None) -> list[ModelManifest]:
    """Manifests of every installed model under ``models_root`` (optionally one kind)."""
    root = Path(models_root)
    found = []
    for model_kind in (kind,) if kind else KINDS:
        base = root / model_kind
        if not base.is_dir():
            continue
        for model_dir in sorted(base.iterdir()):
            if model_dir.is_dir() and (model_dir / MANIFEST_NAME).is_file():
                found.append(read_manifest(model_dir))
    return found


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


# --- locating files ---------------------------------------------------------------


@dataclass(frozen=True)
class ModelFiles:
    """The files of one inference model, wherever they sit."""

    program: Path
    params: Path
    infer_cfg: Path | None = None
    manifest: Path | None = None

    @property
    def program_format(self) -> str:
        return "pdmodel" if self.program.suffix == ".pdmodel" else "pir-json"

    @property
    def directory(self) -> Path:
        return self.program.parent


def _files_in(directory: Path) -> ModelFiles | None:
    for program_name in PROGRAM_NAMES:
        program = directory / program_name
        params = program.with_suffix(".pdiparams")
        if program.is_file() and params.is_file():
            infer_cfg = directory / "infer_cfg.yml"
            manifest = directory / MANIFEST_NAME
            return ModelFiles(program, params, infer_cfg if infer_cfg.is_file() else None,
                              manifest if manifest.is_file() else None)
    return None


def find_model_files(model_dir: str | Path) -> ModelFiles:
    """Find ``inference.json``/``inference.pdmodel`` (or PaddleDetection's ``model.*``) and
    ``.pdiparams`` in ``model_dir`` or its only subdirectory (how archives unpack)."""
    directory = Path(model_dir)
    if not directory.is_dir():
        raise ModelNotFound(f"model directory {directory} does not exist")
    found = _files_in(directory)
    if found is None:
        subdirs = [p for p in directory.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))]
        if len(subdirs) == 1:
            found = _files_in(subdirs[0])
    if found is None:
        raise ModelNotFound(
            f"no inference model in {directory}: expected inference.pdmodel or inference.json "
            "next to inference.pdiparams")
    return found


def program_input_shapes(files: ModelFiles) -> dict[str, list[int]]:
    """Declared input shapes (``-1`` = dynamic) read from the program file itself.

    Paddle Inference reports ``[0]`` for an input's shape until it is fed, so we read the
    ``data`` ops of a PIR ``.json`` or the feed variables of a ``.pdmodel`` protobuf.
    Returns ``{}`` when the file cannot be parsed.
    """
    try:
        if files.program_format == "pir-json":
            return _json_input_shapes(json.loads(files.program.read_text()))
        return _pdmodel_input_shapes(files.program.read_bytes())
    except Exception:  # noqa: BLE001 - shapes are a hint; loading decides validity
        return {}


def _json_input_shapes(program: Mapping[str, Any]) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    for region in program.get("program", {}).get("regions", []):
        for block in region.get("blocks", []):
            for op in block.get("ops", []):
                if not str(op.get("#", "")).endswith(".data"):
                    continue
                attrs = {a.get("N"): a.get("AT", {}).get("D") for a in op.get("A", [])
                         if isinstance(a, dict)}
                if isinstance(attrs.get("name"), str) and isinstance(attrs.get("shape"), list):
                    shapes[attrs["name"]] = [int(v) for v in attrs["shape"]]
    return shapes


def _pdmodel_input_shapes(data: bytes) -> dict[str, list[int]]:
    from paddle.base.proto import framework_pb2

    program = framework_pb2.ProgramDesc()
    program.ParseFromString(data)
    block = program.blocks[0]
    feeds = [name for op in block.ops if op.type == "feed"
             for slot in op.outputs if slot.parameter == "Out" for name in slot.arguments]
    shapes = {}
    for var in block.vars:
        if var.name in feeds:
            shapes[var.name] = [int(v) for v in var.type.dense_tensor.tensor.dims]
    return shapes


@dataclass(frozen=True)
class InferConfig:
    """The parts of PaddleDetection's ``infer_cfg.yml`` we use."""

    labels: tuple[str, ...]
    preprocess: DetectionPreprocess
    draw_threshold: float
    arch: str

    @property
    def input_size(self) -> tuple[int, int]:
        return self.preprocess.target_size


def parse_infer_cfg(path: str | Path) -> InferConfig:
    """Read a detector's ``infer_cfg.yml`` (label list, resize, mean/std, draw_threshold)."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ModelFormatError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path} is not a mapping")
    steps = data.get("Preprocess") or []
    if not isinstance(steps, list):
        raise ModelFormatError(f"{path}: Preprocess must be a list")
    return InferConfig(labels=tuple(str(v) for v in data.get("label_list") or ("foreground",)),
                       preprocess=DetectionPreprocess.from_infer_cfg(steps),
                       draw_threshold=float(data.get("draw_threshold", 0.5)),
                       arch=str(data.get("arch", "")))


def write_infer_cfg(path: str | Path, *, preprocess: DetectionPreprocess,
                    labels: Sequence[str], draw_threshold: float = 0.5,
                    arch: str = "PicoDet") -> None:
    """Write an ``infer_cfg.yml`` in PaddleDetection's export format."""
    interp = {v: k for k, v in {0: "nearest", 1: "bilinear", 2: "bicubic"}.items()}
    config = {
        "mode": "paddle", "draw_threshold": draw_threshold, "metric": "COCO",
        "use_dynamic_shape": False, "arch": arch, "min_subgraph_size": 3,
        "Preprocess": [
            {"type": "Resize", "interp": interp[preprocess.interpolation],
             "keep_ratio": preprocess.keep_ratio, "target_size": list(preprocess.target_size)},
            {"type": "NormalizeImage", "is_scale": preprocess.normalize.scale != 1.0,
             "mean": list(preprocess.normalize.mean), "std": list(preprocess.normalize.std)},
            {"type": "Permute"},
        ],
        "label_list": list(labels),
    }
    Path(path).write_text(yaml.safe_dump(config, sort_keys=False))


# --- export -----------------------------------------------------------------------


def export_inference_model(layer, out_dir: str | Path, *, kind: str,
                           input_size: int | tuple[int, int], name: str = "model",
                           version: str = "1", labels: Sequence[str] = ("foreground",),
                           draw_threshold: float = 0.5, source: str = "project",
                           extra: Mapping[str, Any] | None = None) -> ModelManifest:
    """Save ``layer`` with ``paddle.jit.save`` in the official layout plus ``manifest.json``.

    The layer is switched to eval mode and its re-parameterisable blocks are fused first.
    Extractors take ``x [N,3,H,W]`` and output raw (not normalised) features; detectors
    take ``image``, ``im_shape``, ``scale_factor`` and output ``bbox [M,6]``, ``bbox_num``.
    """
    import paddle
    from paddle.static import InputSpec

    from .nets.pplcnetv2 import reparameterize

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    _check_name(name)
    height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layer.eval()
    reparameterize(layer)
    feature_dim = None
    info: dict[str, Any] = dict(extra or {})
    if kind == "extractor":
        spec = [InputSpec([None, 3, height, width], "float32", "x")]
        with paddle.no_grad():
            probe = layer(paddle.zeros([1, 3, height, width], dtype="float32"))
        feature_dim = int(probe.shape[-1])
        preprocessing = RecognitionPreprocess(size=(height, width)).to_dict()
        labels = ()
    else:
        spec = [InputSpec([None, 3, height, width], "float32", "image"),
                InputSpec([None, 2], "float32", "im_shape"),
                InputSpec([None, 2], "float32", "scale_factor")]
        det_pre = DetectionPreprocess(target_size=(height, width))
        preprocessing = det_pre.to_dict()
        write_infer_cfg(out / "infer_cfg.yml", preprocess=det_pre, labels=labels,
                        draw_threshold=draw_threshold)
        for key in ("score_threshold", "nms_threshold", "nms_top_k", "keep_top_k", "export_nms"):
            if hasattr(layer, key):
                info.setdefault("nms", {})[key] = getattr(layer, key)
    paddle.jit.save(layer, str(out / "inference"), input_spec=spec)
    files = find_model_files(out)
    manifest = ModelManifest(
        kind=kind, name=name, version=str(version), input_size=(height, width),
        feature_dim=feature_dim, preprocessing=preprocessing,
        files=_hash_files(out), source=source, created=_utc_now(),
        program_format=files.program_format, labels=tuple(labels), extra=info)
    manifest.write(out)
    return manifest


def _hash_files(directory: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(directory.iterdir())
            if p.is_file() and p.name != MANIFEST_NAME and not p.name.endswith(".tmp")}


def _check_name(name: str) -> str:
    if not _NAME_RE.match(name or "") or name in (".", ".."):
        raise ModelInstallError(
            f"invalid model name {name!r}: use letters, digits, '.', '_' or '-' (max 128)")
    return name


# --- install ----------------------------------------------------------------------


def install_archive(source: str | Path, models_root: str | Path, *, timeout: float = 15,
                    name: str | None = None, overwrite: bool = False,
                    max_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES) -> ModelManifest:
    """Install a model from an http(s) URL, a local .tar/.tar.gz/.zip, or a directory.

    Downloads with a short timeout (offline fails fast), extracts safely (no absolute or
    ``..`` paths, links, devices; size and member caps), detects the kind, loads the
    program once on a dummy input, hashes the files, writes ``manifest.json`` and moves the
    package into ``<models_root>/<kind>/<name>`` with a rename. Re-installing identical
    files returns the existing manifest; different files need ``overwrite=True``.
    """
    root = Path(models_root)
    root.mkdir(parents=True, exist_ok=True)
    _sweep_stale_staging(root)
    staging = Path(tempfile.mkdtemp(prefix=".install-", dir=root))
    try:
        source_text = str(source)
        if _is_url(source_text):
            archive = _download(source_text, staging / "download", timeout=timeout,
                                max_bytes=max_bytes)
            tree = staging / "extracted"
            safe_extract(archive, tree, max_bytes=max_bytes)
            default_name = _name_from(PurePosixPath(urllib.parse.urlparse(source_text).path).name)
        else:
            path = Path(source_text).expanduser()
            if not path.exists():
                raise ModelInstallError(f"{path} does not exist", details={"source": source_text})
            if path.is_dir():
                tree = path
            else:
                tree = staging / "extracted"
                safe_extract(path, tree, max_bytes=max_bytes)
            default_name = _name_from(path.name)
        try:
            files = find_model_files(tree)
        except ModelNotFound as exc:
            raise ModelInstallError(f"{source_text}: {exc}") from exc
        linked = [p.name for p in (files.program, files.params, files.infer_cfg, files.manifest)
                  if p is not None and p.is_symlink()]
        if linked:  # only possible for directory sources; archives never create links
            raise ModelInstallError(f"{source_text}: refusing symbolic links {linked}")

        existing = _read_packaged_manifest(files)
        package = staging / "package"
        package.mkdir()
        _copy_model_files(files, package)
        if existing is not None:
            _verify_packaged_hashes(existing, package)
            existing.write(package)  # so the test load below uses its preprocessing
        manifest = _describe(package, existing=existing,
                             name=name or (existing.name if existing else default_name),
                             source_text=source_text)
        manifest.write(package)
        return _move_into_place(package, root, manifest, staging, overwrite=overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _sweep_stale_staging(root: Path, older_than_s: float = 24 * 3600) -> None:
    """Remove staging dirs left by installs that were killed (they are never renamed in)."""
    cutoff = time.time() - older_than_s
    for leftover in root.glob(".install-*"):
        try:
            if leftover.is_dir() and leftover.stat().st_mtime < cutoff:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            continue


def _is_url(text: str) -> bool:
    return urllib.parse.urlparse(text).scheme.lower() in ("http", "https")


def _name_from(filename: str) -> str:
    base = filename
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    base = re.sub(r"_infer$", "", base)
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-._") or "model"
    return base[:128]


def _download(url: str, directory: Path, *, timeout: float, max_bytes: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "archive"
    hint = ("if this machine is offline, download the archive elsewhere and install it from "
            "the local file (install <path-to-archive>)")
    request = urllib.request.Request(url, headers={"User-Agent": "shitu-platform/1"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(target, "wb") as out:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise ModelInstallError(f"{url} is {int(declared)} bytes, over the {max_bytes} limit")
            written = 0
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                written += len(chunk)
                if written > max_bytes:
                    raise ModelInstallError(f"{url} exceeds the {max_bytes}-byte limit")
                out.write(chunk)
    except ModelInstallError:
        raise
    except urllib.error.HTTPError as exc:  # the server answered: no offline hint
        raise ModelInstallError(f"could not download {url}: HTTP {exc.code} {exc.reason}",
                                details={"url": url, "status": exc.code}) from exc
    except (urllib.error.URLError, socket.timeout, TimeoutError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ModelInstallError(f"could not download {url}: {reason}; {hint}",
                                details={"url": url}) from exc
    return target


def _member_target(dest: Path, name: str) -> Path:
    """Map an archive member name to a path inside ``dest`` or refuse it."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or re.match(r"^[A-Za-z]:", name):
        raise ModelInstallError(f"archive member {name!r} has an absolute or non-POSIX path")
    parts = [part for part in PurePosixPath(name).parts if part not in ("", ".")]
    if any(part == ".." for part in parts):
        raise ModelInstallError(f"archive member {name!r} escapes the archive with '..'")
    target = dest.joinpath(*parts) if parts else dest
    resolved_dest = dest.resolve()
    if os.path.commonpath([resolved_dest, target.resolve()]) != str(resolved_dest):
        raise ModelInstallError(f"archive member {name!r} resolves outside the archive")
    return target


def _stream_to(source, target: Path, budget: list[int], member: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        for chunk in iter(lambda: source.read(_CHUNK), b""):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise ModelInstallError(f"archive is larger than allowed (stopped at {member!r})")
            out.write(chunk)


def safe_extract(archive: str | Path, dest: str | Path, *,
                 max_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES,
                 max_members: int = DEFAULT_MAX_MEMBERS) -> Path:
    """Extract a .tar(.gz/.bz2/.xz) or .zip into ``dest``, refusing anything unsafe.

    Only regular files and directories are accepted; absolute paths, ``..``, symlinks,
    hard links and device/FIFO members abort the whole extraction, as does exceeding
    ``max_bytes`` of uncompressed data (counted while writing) or ``max_members`` entries.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    budget = [max_bytes]
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as bundle:
            members = bundle.infolist()
            if len(members) > max_members:
                raise ModelInstallError(f"archive has {len(members)} entries (limit {max_members})")
            for info in members:
                file_type = stat.S_IFMT(info.external_attr >> 16)  # 0 when no Unix mode stored
                if file_type == stat.S_IFLNK:
                    raise ModelInstallError(f"archive member {info.filename!r} is a symbolic link")
                if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
                    raise ModelInstallError(f"archive member {info.filename!r} is not a regular file")
                target = _member_target(dest, info.filename)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                with bundle.open(info) as handle:
                    _stream_to(handle, target, budget, info.filename)
        return dest
    try:
        bundle = tarfile.open(archive, mode="r:*")
    except (tarfile.TarError, OSError) as exc:
        raise ModelInstallError(f"{archive.name} is not a .tar, .tar.gz or .zip archive") from exc
    with bundle:
        count = 0
        for member in bundle:
            count += 1
            if count > max_members:
                raise ModelInstallError(f"archive has more than {max_members} entries")
            if member.issym() or member.islnk():
                raise ModelInstallError(f"archive member {member.name!r} is a link")
            if not (member.isreg() or member.isdir()):
                raise ModelInstallError(f"archive member {member.name!r} is not a regular file")
            target = _member_target(dest, member.name)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            if member.size > budget[0]:
                raise ModelInstallError(f"archive is larger than allowed (at {member.name!r})")
            handle = bundle.extractfile(member)
            if handle is None:
                raise ModelInstallError(f"cannot read archive member {member.name!r}")
            with handle:
                _stream_to(handle, target, budget, member.name)
    return dest


def _read_packaged_manifest(files: ModelFiles) -> ModelManifest | None:
    if files.manifest is None:
        return None
    return read_manifest(files.directory)


def _copy_model_files(files: ModelFiles, package: Path) -> None:
    """Copy the program under its canonical name (``inference.*``) plus params and config."""
    program_name = "inference" + files.program.suffix
    shutil.copyfile(files.program, package / program_name)
    shutil.copyfile(files.params, package / "inference.pdiparams")
    if files.infer_cfg is not None:
        shutil.copyfile(files.infer_cfg, package / "infer_cfg.yml")


def _verify_packaged_hashes(manifest: ModelManifest, package: Path) -> None:
    for filename in ("inference.json", "inference.pdmodel", "inference.pdiparams", "infer_cfg.yml"):
        path = package / filename
        if path.is_file() and filename in manifest.files:
            if sha256_file(path) != manifest.files[filename]:
                raise ModelInstallError(f"{filename} does not match the sha256 in its manifest.json")


def _version_from(text: str) -> str | None:
    match = re.search(r"[_-]v(\d+(?:\.\d+)*)", text)
    return f"v{match.group(1)}" if match else None


def _describe(package: Path, *, existing: ModelManifest | None, name: str,
              source_text: str) -> ModelManifest:
    """Detect the kind, load the program once on a dummy input, and build the manifest."""
    from .inference import PaddleDetector, PaddleExtractor, program_input_names

    _check_name(name)
    files = find_model_files(package)
    if files.infer_cfg is not None:
        kind = "detector"
    else:
        try:
            inputs = set(program_input_names(package))
        except Exception as exc:  # noqa: BLE001 - any load failure means a bad package
            raise ModelInstallError(f"{source_text}: Paddle cannot load the program: {exc}") from exc
        kind = "detector" if inputs & {"scale_factor", "im_shape"} else "extractor"
    if existing is not None and existing.kind != kind:
        raise ModelInstallError(f"manifest says {existing.kind!r} but the files look like a {kind}")

    hashes = _hash_files(package)
    try:
        if kind == "extractor":
            model = PaddleExtractor.from_dir(package, threads=1, warmup=True)
            feature_dim, input_size = model.feature_dim, model.input_size
            preprocessing, labels = model.preprocess.to_dict(), ()
        else:
            model = PaddleDetector.from_dir(package, threads=1, warmup=True)
            feature_dim, input_size = None, model.input_size
            preprocessing, labels = model.preprocess.to_dict(), model.labels
    except (ModelFormatError, ModelNotFound) as exc:
        raise ModelInstallError(f"{source_text}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - Paddle raises many types on bad programs
        raise ModelInstallError(f"{source_text}: the model failed a test run: {exc}") from exc

    if existing is not None:
        if existing.feature_dim is not None and existing.feature_dim != feature_dim:
            raise ModelInstallError(
                f"manifest says feature_dim {existing.feature_dim}, the model outputs {feature_dim}")
        version, source, created, extra = (existing.version, existing.source, existing.created,
                                           dict(existing.extra))
    else:
        version = _version_from(source_text) or hashes["inference.pdiparams"][:12]
        source, created, extra = "official", _utc_now(), {}
    extra["installed_from"] = source_text
    extra["installed_at"] = _utc_now()
    return ModelManifest(kind=kind, name=name, version=version, input_size=tuple(input_size),
                         feature_dim=feature_dim, preprocessing=preprocessing, files=hashes,
                         source=source, created=created, program_format=files.program_format,
                         labels=tuple(labels), extra=extra)


def _move_into_place(package: Path, root: Path, manifest: ModelManifest, staging: Path, *,
                     overwrite: bool) -> ModelManifest:
    target = root / manifest.kind / manifest.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        try:
            current = read_manifest(target)
        except (ModelNotFound, ModelFormatError):
            current = None
        if current is not None and current.files == manifest.files:
            return current
        if not overwrite:
            raise ModelInstallError(
                f"{manifest.kind} {manifest.name!r} is already installed with different files; "
                "pass overwrite=True to replace it", details={"path": str(target)})
        # Two renames on one filesystem: readers see the old or the new package, never a mix.
        os.rename(target, staging / "replaced")
    try:
        os.rename(package, target)
    except OSError as exc:  # another install won the race for this name
        raise ModelInstallError(f"could not install into {target}: {exc}") from exc
    return manifest


__all__ = [
    "DEFAULT_MAX_ARCHIVE_BYTES", "InferConfig", "ModelFiles", "ModelManifest",
    "export_inference_model", "find_model_files", "install_archive", "installed_models",
    "parse_infer_cfg", "program_input_shapes", "read_manifest", "safe_extract", "sha256_file", "write_infer_cfg",
]
