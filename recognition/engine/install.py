"""Install a model package from an http(s) URL, a local archive or a folder into
``<models_root>/<kind>/<name>/``: download with a short timeout, safe extraction, a test load, hashes,
``manifest.json``, and one rename into place."""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath

from .archive_safety import DEFAULT_MAX_ARCHIVE_BYTES, safe_extract
from .errors import ModelFormatError, ModelInstallError, ModelNotFound
from .manifest import ModelManifest, check_model_name, hash_files, read_manifest, sha256_file, utc_now
from .model_files import ModelFiles, find_model_files

_CHUNK = 1 << 20


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

    check_model_name(name)
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

    hashes = hash_files(package)
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
        source, created, extra = "official", utc_now(), {}
    extra["installed_from"] = source_text
    extra["installed_at"] = utc_now()
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


__all__ = ["install_archive"]
