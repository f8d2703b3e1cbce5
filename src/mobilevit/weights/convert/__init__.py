"""The key layouts of the MobileViT weights people already have (timm, transformers, Apple ml-cvnets):
detecting which one a state dict uses and mapping it to ours. Pure state-dict work: no model is
built here (``mobilevit.loading.convert_file`` builds one to verify a conversion)."""

from __future__ import annotations

import torch

from ..serialization import WEIGHTS_FORMAT
from . import cvnets, timm, transformers
from .common import ConversionError, flip_input_channels

SOURCES = ("timm", "transformers", "cvnets")
_MODULES = {"timm": timm, "transformers": transformers, "cvnets": cvnets}

__all__ = [
    "SOURCES",
    "ConversionError",
    "convert_state_dict",
    "convert_with_task",
    "detect_source",
    "num_classes_of",
    "task_of",
]


def detect_source(state_dict: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    """Which layout a state dict is in: ``mobilevit`` (ours), ``timm``, ``transformers`` or ``cvnets``."""
    if metadata and metadata.get("format") == WEIGHTS_FORMAT:
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
    """Map a classifier, segmentation or detection state dict from ``source`` to our layout.

    Returns ``(state_dict, channel_order)``. With ``to_rgb`` (default) weights trained on BGR
    images (ml-cvnets, transformers) get their stem's input channels reversed, an exact
    rewrite after which the model takes RGB like every other model here.

    Args:
        state_dict: the checkpoint's tensors, in ``source``'s key layout (not modified).
        source: ``timm``, ``transformers`` or ``cvnets`` (see `detect_source`).
        to_rgb: reverse the stem's input channels of BGR-trained weights so the model takes RGB.

    Returns:
        ``(state_dict, channel_order)``: the tensors under our keys, and ``"RGB"`` or ``"BGR"``,
        the channel order the converted weights expect.
    """
    out, _, order = convert_with_task(state_dict, source, to_rgb)
    return out, order


def convert_with_task(
    state_dict: dict[str, torch.Tensor], source: str, to_rgb: bool = True, trained_on: str | None = None
) -> tuple[dict[str, torch.Tensor], str, str]:
    """Like `convert_state_dict`, also returning the task (classification / segmentation).

    ``trained_on`` ("RGB" / "BGR") overrides the channel order the source is believed to have
    been trained on (for MobileViT v2 the sources disagree: docs/guides/weights.md, "Input convention").

    Args:
        state_dict: the checkpoint's tensors, in ``source``'s key layout (not modified).
        source: ``timm``, ``transformers`` or ``cvnets`` (see `detect_source`).
        to_rgb: reverse the stem's input channels of BGR-trained weights so the model takes RGB.
        trained_on: ``"RGB"`` or ``"BGR"`` (any case) to override the source's believed channel
            order; ``None`` keeps the source module's own.

    Returns:
        ``(state_dict, task, channel_order)``: the tensors under our keys, ``classification``,
        ``segmentation`` or ``detection``, and the channel order the converted weights expect.

    Raises:
        ConversionError: an unknown ``source`` or ``trained_on``, or keys the converter does not know.
    """
    if source not in _MODULES:
        raise ConversionError(f"unknown source format {source!r}; choose from {', '.join(SOURCES)}")
    module = _MODULES[source]
    out, task = module.convert(dict(state_dict))
    order = module.channel_order(state_dict) if hasattr(module, "channel_order") else module.CHANNEL_ORDER
    if trained_on is not None:
        if trained_on.upper() not in ("RGB", "BGR"):
            raise ConversionError(f"trained_on must be RGB or BGR, got {trained_on!r}")
        order = trained_on.upper()
    if to_rgb and order == "BGR":
        flip_input_channels(out, STEM_KEY[task])
        order = "RGB"
    return out, task, order


STEM_KEY = {
    "classification": "stem.conv.weight",
    "segmentation": "backbone.stem.conv.weight",
    "detection": "backbone.body.stem.conv.weight",
}


def task_of(state_dict: dict[str, torch.Tensor]) -> str:
    """The task of a state dict in our layout."""
    if "classifier.weight" in state_dict and any(k.startswith("aspp.") for k in state_dict):
        return "segmentation"
    if any(k.startswith("head.levels.") for k in state_dict):
        return "detection"
    return "classification"


def num_classes_of(state_dict: dict[str, torch.Tensor]) -> int:
    """The class count a state dict in our layout was trained for (detection: with background)."""
    if "head.levels.0.predict.pw.weight" in state_dict:  # SSDLite: anchors x (4 + K) outputs
        last = max(int(k.split(".")[2]) for k in state_dict if k.startswith("head.levels."))
        c0 = state_dict["head.levels.0.predict.pw.weight"].shape[0]
        c_last = state_dict[f"head.levels.{last}.predict.weight"].shape[0]
        # with a anchors per location c = a * (4 + K); 6 and 4 anchors: K = c0 / 6 - 4 = c_last / 4 - 4
        return int(c0 - c_last) // 2 - 4
    for key in ("head.fc.weight", "classifier.weight"):
        if key in state_dict:
            return int(state_dict[key].shape[0])
    return 1000
