"""Names of the files that let a model be trained further, and the network settings stored in them.

No Paddle here: the web process reads and writes these without loading the training code.
"""

from __future__ import annotations

from typing import Any

# What a model's training weights need to be built and loaded again (stored as train_config.json).
NETWORK_KEYS = ("image_size", "backbone_scale", "backbone_depths", "feature_dim", "colour_weight", "colour_dim")
TRAIN_CONFIG_NAME = "train_config.json"
# Networks rebuilt from a pinned ImageNet checkpoint plus trained head tensors (``head_training``).
HEAD_ARCHITECTURE = "efficientnet-lite-shitu"
TRAIN_WEIGHTS_NAME = "train_weights.pdparams"


def network_config(config: Any) -> dict[str, Any]:
    """The ``NETWORK_KEYS`` of a ``TrainConfig`` as plain JSON values."""
    values = {key: getattr(config, key) for key in NETWORK_KEYS}
    values["backbone_depths"] = [int(depth) for depth in values["backbone_depths"]]
    return values


def is_head_trained(manifest: dict[str, Any]) -> bool:
    """Whether a model's manifest says it was built on a pretrained checkpoint with a trained head."""
    extra = manifest.get("extra") or {}
    return bool(extra.get("pretrained")) and (extra.get("training") or {}).get("method", "").startswith("head")


__all__ = ["HEAD_ARCHITECTURE", "is_head_trained", "NETWORK_KEYS", "TRAIN_CONFIG_NAME", "TRAIN_WEIGHTS_NAME", "network_config"]
