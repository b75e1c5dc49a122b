"""Parameters, MACs and exported file sizes of our nets next to the published figures.

Usage: .venv/bin/python bench/model_stats.py [--no-export]

MACs are counted with forward hooks on every Conv2D and Linear that runs (paddle.flops
breaks with numpy 2.4), on the deployed form: eval mode, multi-kernel branches fused.
PaddleClas' "FLOPs" for PP-LCNetV2 (604M) are multiply-accumulates; PaddleDetection's
PicoDet "FLOPS" count a multiply-accumulate as two operations, so detector rows compare
2 x MACs with the published figure.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paddle  # noqa: E402

from recognition.engine.export import export_inference_model  # noqa: E402
from recognition.engine.nets import (  # noqa: E402
    PicoDet,
    RepDepthwiseSeparable,
    build_recognition_model,
    pplcnetv2_base,
    reparameterize,
)


def param_counts(layer) -> tuple[int, int]:
    """(training parameters, parameters left after rep())."""
    total = sum(int(np.prod(p.shape)) for p in layer.parameters())
    branches = sum(int(np.prod(p.shape)) for block in layer.sublayers()
                   if isinstance(block, RepDepthwiseSeparable) and block.use_rep
                   for p in block.dw_conv_list.parameters())
    return total, total - branches


def count_macs(layer, inputs) -> int:
    macs = [0]

    def conv_hook(conv, _inputs, output):
        kernel = int(np.prod(conv.weight.shape[1:]))  # (in / groups) * kh * kw
        macs[0] += int(np.prod(output.shape)) * kernel

    def linear_hook(linear, _inputs, output):
        macs[0] += int(np.prod(output.shape)) * int(linear.weight.shape[0])

    handles = []
    for sub in layer.sublayers():
        if isinstance(sub, paddle.nn.Conv2D):
            handles.append(sub.register_forward_post_hook(conv_hook))
        elif isinstance(sub, paddle.nn.Linear):
            handles.append(sub.register_forward_post_hook(linear_hook))
    layer.eval()
    reparameterize(layer)
    with paddle.no_grad():
        layer(*inputs)
    for handle in handles:
        handle.remove()
    return macs[0]


def exported_size(layer, kind: str, size) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        export_inference_model(layer, tmp, kind=kind, input_size=size, name="stats")
        return {p.name: p.stat().st_size for p in Path(tmp).iterdir()}


def detector_inputs(size: int):
    return (paddle.zeros([1, 3, size, size]), paddle.to_tensor([[float(size)] * 2]),
            paddle.ones([1, 2]))


ROWS = [
    # name, builder, kind, input size, published params, published MACs, published note
    ("PPLCNetV2_base (ImageNet cls)", pplcnetv2_base, "extractor", 224, 6.6e6, 604e6,
     "PaddleClas zoo: 6.6M / 604M FLOPs (=MACs)"),
    ("PPLCNetV2_base_ShiTu + BNNeck", build_recognition_model, "extractor", 224, None, None,
     "archive 19 MB (PP-ShiTuV2 doc)"),
    ("PicoDet LCNet x2.5, 1 cls, 640", lambda: PicoDet(scale=2.5), "detector", 640, None, None,
     "mainbody archive 30.1 MB"),
    ("PicoDet LCNet x1.5, 80 cls, 416", lambda: PicoDet(scale=1.5, num_classes=80), "detector", 416,
     3.10e6, 3.85e9 / 2, "legacy zoo: 3.10M / 3.85G FLOPs (=2xMACs)"),
    ("PicoDet LCNet x1.5, 80 cls, 640", lambda: PicoDet(scale=1.5, num_classes=80), "detector", 640,
     None, None, "PicoDet-L (ESNet) 640: 3.30M / 8.91G FLOPs"),
    ("PicoDet LCNet x1.0, 1 cls, 640", lambda: PicoDet(scale=1.0), "detector", 640, None, None, ""),
    ("PicoDet LCNet x0.75, 1 cls, 640", lambda: PicoDet(scale=0.75), "detector", 640, None, None, ""),
    ("PicoDet LCNet x1.0, 1 cls, 416", lambda: PicoDet(scale=1.0), "detector", 416, None, None, ""),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-export", action="store_true", help="skip the exported file sizes")
    args = parser.parse_args()
    paddle.seed(0)
    header = (f"{'model':34} {'params(train)':>13} {'params(dep)':>12} {'vs pub':>7} "
              f"{'MACs':>9} {'vs pub':>7} {'fp32 MB':>8}  published")
    print(header)
    print("-" * len(header))
    for name, build, kind, size, pub_params, pub_macs, note in ROWS:
        layer = build()
        train_params, deployed = param_counts(layer)
        inputs = (paddle.zeros([1, 3, size, size]),) if kind == "extractor" else detector_inputs(size)
        macs = count_macs(layer, inputs)
        size_mb = ""
        if not args.no_export:
            files = exported_size(layer, kind, size)
            size_mb = f"{sum(files.values()) / 1e6:.1f}"
        param_ratio = f"{deployed / pub_params:.3f}" if pub_params else ""
        mac_ratio = f"{macs / pub_macs:.3f}" if pub_macs else ""
        print(f"{name:34} {train_params / 1e6:12.3f}M {deployed / 1e6:11.3f}M {param_ratio:>7} "
              f"{macs / 1e6:8.0f}M {mac_ratio:>7} {size_mb:>8}  {note}")
    print("\nparams(dep) = after rep() (deployed); MACs = conv + linear multiply-accumulates, batch 1;"
          "\nfp32 MB = inference.json + inference.pdiparams (+ infer_cfg.yml) as exported here.")


if __name__ == "__main__":
    main()
