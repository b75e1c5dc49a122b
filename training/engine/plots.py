"""PNG charts of a training log: loss curves and retrieval metrics per evaluation (matplotlib Agg)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def _records(log_path: Path) -> list[dict[str, Any]]:
    records = []
    for line in Path(log_path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def _smooth(values: list[float], window: int) -> list[float]:
    """Trailing mean, so noisy per-batch losses still show a trend."""
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


EXTRACTOR_LOSSES = (("loss", "total"), ("ce", "cross-entropy"), ("triplet", "triplet"))
EXTRACTOR_METRICS = (("recall@1", "recall@1"), ("mAP", "mAP"))


def plot_losses(records: Sequence[dict[str, Any]], path: str | Path,
                curves: Sequence[tuple[str, str]] = EXTRACTOR_LOSSES) -> Path:
    """One smoothed curve per ``(log key, legend label)`` of ``curves``."""
    steps = [r for r in records if r.get("event") == "step"]
    figure, axes = plt.subplots(figsize=(8, 4.5))
    window = max(1, len(steps) // 50)
    for key, label in curves:
        xs = [r["step"] for r in steps]
        axes.plot(xs, _smooth([float(r[key]) for r in steps], window), label=label)
    axes.set_xlabel("step")
    axes.set_ylabel(f"loss (mean of {window} steps)" if window > 1 else "loss")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def plot_metrics(records: Sequence[dict[str, Any]], path: str | Path,
                 metrics: Sequence[tuple[str, str]] = EXTRACTOR_METRICS) -> Path | None:
    evals = [r for r in records if r.get("event") == "eval"]
    if not evals:
        return None
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for name in dict.fromkeys(r["name"] for r in evals):
        rows = [r for r in evals if r["name"] == name]
        xs = [r["epoch"] for r in rows]
        for (key, label), style in zip(metrics, ("-o", "--s", ":^", "-.v")):
            if all(key in r for r in rows):
                axes.plot(xs, [r[key] for r in rows], style, label=f"{name} {label}")
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylim(0, 1)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def plot_training_log(log_path: str | Path, out_dir: str | Path, *,
                      curves: Sequence[tuple[str, str]] = EXTRACTOR_LOSSES,
                      metrics: Sequence[tuple[str, str]] = EXTRACTOR_METRICS) -> list[Path]:
    """``losses.png`` and (when the run evaluated) ``metrics.png`` in ``out_dir``."""
    records = _records(Path(log_path))
    out = Path(out_dir)
    written = [plot_losses(records, out / "losses.png", curves)]
    metrics = plot_metrics(records, out / "metrics.png", metrics)
    if metrics is not None:
        written.append(metrics)
    return written


__all__ = ["plot_losses", "plot_metrics", "plot_training_log"]
