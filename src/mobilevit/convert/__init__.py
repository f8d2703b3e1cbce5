"""Convert the MobileViT weights people already have (timm, transformers, Apple ml-cvnets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..serialization import read_state_dict, save_weights
from . import cvnets, timm, transformers
from .common import ConversionError, flip_input_channels

SOURCES = ("timm", "transformers", "cvnets")
_MODULES = {"timm": timm, "transformers": transformers, "cvnets": cvnets}

__all__ = [
    "SOURCES",
    "ConversionError",
    "convert_file",
    "convert_state_dict",
    "detect_source",
    "infer_model_name",
]


def detect_source(state_dict: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    """Which layout a state dict is in: ``mobilevit`` (ours), ``timm``, ``transformers`` or ``cvnets``."""
    if metadata and metadata.get("format") == "mobilevit":
        return "mobilevit"
    if "stem.norm.weight" in state_dict or "backbone.stem.norm.weight" in state_dict:
        return "mobilevit"
    for name in SOURCES:
        if getattr(_MODULES[name], f"is_{name}")(state_dict):
            return name
    sample = ", ".join(list(state_dict)[:5])
    raise ConversionError(
        f"cannot tell which MobileViT layout this checkpoint uses (first keys: {sample}); "
        f"expected one of: ours, {', '.join(SOURCES)}"
    )


def convert_state_dict(
    state_dict: dict[str, torch.Tensor], source: str, to_rgb: bool = True
) -> tuple[dict[str, torch.Tensor], str]:
    """Map a classifier state dict from ``source`` to our layout.

    Returns ``(state_dict, channel_order)``. With ``to_rgb`` (default) weights trained on BGR
    images (ml-cvnets, transformers) get their stem's input channels reversed, an exact
    rewrite after which the model takes RGB like every other model here.
    """
    if source not in _MODULES:
        raise ConversionError(f"unknown source format {source!r}; choose from {', '.join(SOURCES)}")
    module = _MODULES[source]
    out = module.convert_classifier(dict(state_dict))
    order = module.CHANNEL_ORDER
    if to_rgb and order == "BGR":
        flip_input_channels(out)
        order = "RGB"
    return out, order


def infer_model_name(state_dict: dict[str, torch.Tensor]) -> str:
    """The registered classifier whose parameter shapes match ``state_dict`` (ours layout)."""
    from ..registry import create_model
    from ..variants import CONFIGS

    num_classes = state_dict["head.fc.weight"].shape[0] if "head.fc.weight" in state_dict else 1000
    for name in CONFIGS:
        ref = create_model(name, num_classes=num_classes).state_dict()
        if ref.keys() == state_dict.keys() and all(ref[k].shape == state_dict[k].shape for k in ref):
            return name
    raise ConversionError(
        "the checkpoint's shapes match none of the standard variants "
        f"({', '.join(CONFIGS)}); pass the model name explicitly"
    )


def convert_file(
    src: str | Path,
    out: str | Path,
    source: str | None = None,
    model_name: str | None = None,
    to_rgb: bool = True,
) -> dict[str, Any]:
    """Convert a checkpoint file or folder to our safetensors format and verify it loads.

    Returns the metadata written next to the weights.
    """
    from ..registry import create_model
    from ..weights import load_state_dict_checked

    sd, _ = read_state_dict(src)
    detected = detect_source(sd)
    if source is None:
        source = detected
    elif detected != source:
        raise ConversionError(f"{src}: --from {source} given, but the keys look like a {detected} checkpoint")
    if source == "mobilevit":
        raise ConversionError(f"{src} is already in this package's format")
    converted, order = convert_state_dict(sd, source, to_rgb=to_rgb)
    name = model_name or infer_model_name(converted)
    num_classes = converted["head.fc.weight"].shape[0] if "head.fc.weight" in converted else 1000
    model = create_model(name, num_classes=num_classes)
    load_state_dict_checked(model, converted, source=str(src))  # proves it loads, strictly
    meta = {
        "format": "mobilevit",
        "arch": name,
        "num_classes": num_classes,
        "channel_order": order,
        "converted_from": source,
        "source_file": Path(src).name,
    }
    save_weights(converted, out, meta)
    return meta
