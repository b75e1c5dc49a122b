"""What every training run shares (extractor, detector): its file names, JSON-lines log, atomic JSON
writes, seeds derived from ``(seed, step, ...)``, JSON-safe config values and the device choice."""

from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import paddle

LOG_NAME = "train_log.jsonl"
RESULT_NAME = "result.json"
MODEL_DIR_NAME = "model"


class DeviceSettings(Protocol):
    """The two config fields ``select_device`` reads (both trainers' configs have them)."""

    device: str                         # auto | cpu | gpu
    threads: int                        # CPU math threads (ignored on GPU)


def select_device(config: DeviceSettings) -> str:
    """GPU when Paddle was built with CUDA and one is visible (unless ``device='cpu'``), else CPU
    capped at ``config.threads`` math threads (Paddle 3.3 has no public ``set_num_threads``)."""
    wants_gpu = config.device in ("auto", "gpu")
    if wants_gpu and paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        paddle.set_device("gpu:0")
        return "gpu:0"
    if config.device == "gpu":
        raise RuntimeError("device='gpu' but Paddle sees no CUDA GPU")
    paddle.set_device("cpu")
    paddle.base.core.set_num_threads(max(1, int(config.threads)))
    return "cpu"


def config_values(config_class: type, data: Any, overrides: dict[str, Any], *, what: str,
                  aliases: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
    """Keyword arguments for a run-config dataclass from a YAML/JSON mapping and command-line overrides (None
    means "not given"): ``aliases`` renamed, unknown keys refused so a typo never trains with a default."""
    values = {str(k): v for k, v in dict(data or {}).items()}
    for alias, name in aliases:
        if alias in values:
            values[name] = values.pop(alias)
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - {f.name for f in fields(config_class)})
    if unknown:
        raise ValueError(f"unknown {what} config keys: {unknown}")
    return values


def derived_seed(*parts: int) -> int:
    """One 32-bit seed from several integers (e.g. ``(seed, step, purpose)``), the same in every process."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint32)[0])


def to_jsonable(value: Any) -> Any:
    """Config values (tuples, numpy scalars, paths) as plain JSON types."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON through a temporary file, fsync and one rename: readers see old or new."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class TrainLog:
    """Append-only JSON lines; on resume, records after the checkpoint's step are dropped."""

    def __init__(self, path: Path, *, keep_until_step: int | None):
        self.path = path
        if keep_until_step is not None and path.exists():
            kept = []
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a kill
                if int(record.get("step", 0)) <= keep_until_step:
                    kept.append(line)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
            os.replace(tmp, path)
        elif keep_until_step is None and path.exists():
            path.unlink()
        self.handle = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """Records of a training log, skipping a torn last line."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


__all__ = ["LOG_NAME", "MODEL_DIR_NAME", "RESULT_NAME", "DeviceSettings", "TrainLog", "config_values", "derived_seed", "read_log",
           "select_device", "to_jsonable", "write_json_atomic"]
