"""Per-step learning rate: linear warm-up then cosine decay (PaddleClas ``Cosine`` + ``LinearWarmup``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

REFERENCE_LR = 0.06
REFERENCE_BATCH = 8 * 256  # PaddleClas trained PP-ShiTuV2 on 8 GPUs x 256 images


def scaled_lr(batch_size: int, *, reference_lr: float = REFERENCE_LR,
              reference_batch: int = REFERENCE_BATCH) -> float:
    """Linear scaling rule: the published LR was tuned for a global batch of 2048."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return reference_lr * batch_size / reference_batch


@dataclass(frozen=True)
class CosineWarmup:
    """LR at a global step: ``warmup_start_lr -> base_lr`` linearly over ``warmup_steps``, then
    ``eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T)) / 2`` with ``T = total - warmup``.

    A pure function of the step, so a resumed run needs no scheduler state.
    """

    base_lr: float
    total_steps: int
    warmup_steps: int = 0
    eta_min: float = 0.0
    warmup_start_lr: float = 0.0

    @classmethod
    def from_epochs(cls, base_lr: float, *, epochs: int, steps_per_epoch: int,
                    warmup_epochs: float = 0.0, eta_min: float = 0.0) -> "CosineWarmup":
        """PaddleClas' arithmetic: ``warmup_steps = round(warmup_epochs * steps_per_epoch)``."""
        return cls(base_lr=base_lr, total_steps=int(epochs * steps_per_epoch),
                   warmup_steps=int(round(warmup_epochs * steps_per_epoch)), eta_min=eta_min)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_start_lr + (self.base_lr - self.warmup_start_lr) * step / self.warmup_steps
        decay_steps = self.total_steps - self.warmup_steps
        if decay_steps <= 0:  # all warm-up: PaddleClas falls back to a constant LR
            return self.base_lr
        progress = min(step - self.warmup_steps, decay_steps) / decay_steps
        return self.eta_min + (self.base_lr - self.eta_min) * (1.0 + math.cos(math.pi * progress)) / 2.0


__all__ = ["REFERENCE_BATCH", "REFERENCE_LR", "CosineWarmup", "scaled_lr"]
