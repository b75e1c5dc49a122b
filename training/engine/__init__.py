"""Training and evaluation engine for the PP-ShiTuV2 feature extractor: pure Python + Paddle, no Django.

Paddle-free pieces (`evaluate`, `sampler`, `schedule`, `augment`, `dataset`) import without paddle, so the
evaluation command can score the colour-histogram baseline on a machine without it; `losses`, `runs`,
`checkpoints`, `extractor_net`, `trainer` and `det_trainer` import paddle.
"""

from __future__ import annotations

from .dataset import ImageDataset, Sample
from .evaluate import (evaluate_extractor, format_report_table, leave_one_out, retrieval_metrics,
                       split_gallery_query)
from .sampler import PKSampler
from .schedule import CosineWarmup, scaled_lr

__all__ = [
    "CosineWarmup", "ImageDataset", "PKSampler", "Sample", "evaluate_extractor",
    "format_report_table", "leave_one_out", "retrieval_metrics", "scaled_lr", "split_gallery_query",
]
