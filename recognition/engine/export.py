"""Export a Paddle layer as an inference model package: the official layout plus ``manifest.json``.

Paddle is imported when a model is exported, not with this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .manifest import KINDS, ModelManifest, check_model_name, hash_files, utc_now
from .model_files import find_model_files, write_infer_cfg
from .preprocess import DetectionPreprocess, RecognitionPreprocess


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
    check_model_name(name)
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
        files=hash_files(out), source=source, created=utc_now(),
        program_format=files.program_format, labels=tuple(labels), extra=info)
    manifest.write(out)
    return manifest


__all__ = ["export_inference_model"]
