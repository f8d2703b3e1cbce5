"""Weights out to the peers' layouts: ``convert_to(weights, out, "timm" | "transformers" | "cvnets")``.

Ours -> peer is the inverse of each peer's converter in `mobilevit.weights.convert` (the key
renames, transformers' split q / k / v, the input channel order each peer's weights take). Every
conversion is checked both ways before anything is written: the peer's state dict converted
back must equal ours exactly, and where the peer library is installed its own model loads the
result strictly and gives our logits. Files are written to a temporary name and moved in place,
so a failure leaves nothing behind.

- ``timm``: a ``.safetensors`` state dict for ``timm.create_model(name,
  pretrained_cfg_overlay=dict(file=...))``; v1 and v2 classifiers (timm has no v3 and no heads).
- ``transformers``: a ``save_pretrained`` folder (``config.json``, ``model.safetensors``,
  ``preprocessor_config.json``) for ``MobileViT(V2)ForImageClassification`` or
  ``...ForSemanticSegmentation``; the image processor is set so that transformers' own
  preprocessing feeds the model what it was trained on (v1: its usual flip to BGR, with the stem
  flipped to match; v2: no flip).
- ``cvnets``: an ml-cvnets ``.pt`` state dict (v1 and v3 on v1 in the v0.1 layout, BGR stem; v2
  and v3 on v2 in the v0.2 layout, RGB), classifiers and DeepLabv3.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .loading import class_names, load_model
from .weights.convert import ConversionError, convert_with_task
from .weights.convert import cvnets as cvnets_layout
from .weights.convert import timm as timm_layout
from .weights.convert import transformers as hf_layout
from .weights.convert.common import flip_input_channels
from .weights.convert.transformers import HF_CONFIGS, hf_v2_width
from .weights.serialization import WeightsMeta

TARGETS = ("timm", "transformers", "cvnets")
_STEM = {"classification": "stem.conv.weight", "segmentation": "backbone.stem.conv.weight"}
_V1 = ("mobilevit_xxs", "mobilevit_xs", "mobilevit_s")
# config fields that change no tensor: a model trained with them is the peer's model
_SHAPELESS = {
    "transformer_dropout",
    "attn_dropout",
    "ffn_dropout",
    "classifier_dropout",
    "dropout",
    "drop_path",
}


def _base_arch(meta: WeightsMeta) -> str:
    return meta.arch.removeprefix("deeplabv3_") if meta.task == "segmentation" else meta.arch


def check_target(meta: WeightsMeta, target: str) -> None:
    """Raise `ConversionError` (before any work) when ``target`` cannot hold this model."""
    if target not in TARGETS:
        raise ConversionError(f"--to must be one of {', '.join(TARGETS)}, not {target!r}")
    arch, what = _base_arch(meta), f"{meta.arch} ({meta.task})"
    if meta.task == "detection":
        raise ConversionError(f"{target} has no MobileViT SSDLite detector: {what} cannot be converted to it")
    if target == "timm" and meta.task != "classification":
        raise ConversionError(f"timm has MobileViT classifiers only: {what} cannot be converted to it")
    if arch.startswith("mobilevitv3_") and target != "cvnets":
        raise ConversionError(
            f"{target} has no MobileViT v3: {what} converts to cvnets only (the MobileViTv3 code's layout)"
        )
    if target == "transformers" and meta.task == "segmentation" and hf_v2_width(arch) is not None:
        raise ConversionError(
            f"transformers' MobileViTV2ForSemanticSegmentation leaves out the dilation of the blocks' "
            f"local conv at output stride 16, so it computes other outputs from {what}'s weights; "
            "convert it to cvnets instead"
        )
    known = arch in _V1 or hf_v2_width(arch) is not None or arch.startswith("mobilevitv3_")
    if not known:
        raise ConversionError(f"{what} is not one of the released architectures {target} can build")
    shaped = sorted(set(meta.model_overrides) - _SHAPELESS)
    if shaped:
        raise ConversionError(
            f"{what} was built with {', '.join(shaped)} changed; {target}'s standard {arch} cannot hold it"
        )


def _peer_order(target: str, v2: bool) -> str:
    """The channel order the peer's layout is read as (what its converter assumes, so round trips hold)."""
    if target == "timm" or v2:
        return "RGB"
    return "BGR"  # transformers' v1 processors flip to BGR; ml-cvnets v0.1 reads with OpenCV


def to_peer_state_dict(
    state_dict: dict[str, torch.Tensor], meta: WeightsMeta, target: str
) -> tuple[dict[str, torch.Tensor], str]:
    """Our (RGB) state dict -> ``target``'s layout, checked to convert back exactly: (state dict, channel order)."""
    check_target(meta, target)
    v2 = any(k.endswith("attn.qkv_proj.weight") for k in state_dict)
    ours = {k: v.detach().clone() for k, v in state_dict.items()}
    order = _peer_order(target, v2)
    if order == "BGR":
        flip_input_channels(ours, _STEM[meta.task])
    if target == "timm":
        peer = timm_layout.from_ours(ours, v2)
    elif target == "transformers":
        peer = hf_layout.from_ours(ours, v2, meta.task)
    else:
        peer = cvnets_layout.from_ours(ours, v2, meta.task)
    back, task, _ = convert_with_task(peer, target, to_rgb=order == "BGR")
    if task != meta.task or back.keys() != state_dict.keys():
        raise ConversionError(f"{target}: the converted keys do not map back onto {meta.arch}'s (a bug)")
    for k, v in state_dict.items():
        if not torch.equal(back[k], v):
            raise ConversionError(f"{target}: {k} does not convert back exactly (a bug)")
    return peer, order


# ------------------------------------------------------------------ the peers' own models
def _hf_model(meta: WeightsMeta, classes: list[str]) -> nn.Module:
    try:
        import transformers as hf
    except ImportError as e:
        raise ConversionError("--to transformers needs transformers: pip install transformers") from e
    arch = _base_arch(meta)
    labels = dict(enumerate(classes))
    common: dict[str, Any] = dict(
        num_labels=len(classes), id2label=labels, label2id={v: k for k, v in labels.items()}
    )
    width = hf_v2_width(arch)
    if meta.task == "segmentation":  # v1 only (check_target): DeepLabv3 at output stride 16
        config = hf.MobileViTConfig(**HF_CONFIGS[arch], output_stride=16, **common)
        return hf.MobileViTForSemanticSegmentation(config).eval()
    if width is None:
        return hf.MobileViTForImageClassification(hf.MobileViTConfig(**HF_CONFIGS[arch], **common)).eval()
    return hf.MobileViTV2ForImageClassification(hf.MobileViTV2Config(width_multiplier=width, **common)).eval()


def _hf_processor(model: nn.Module, meta: WeightsMeta, order: str) -> Any:
    import transformers as hf

    cfg = getattr(model, "pretrained_cfg", None) or {}
    crop = int(cfg.get("crop_size") or 256)
    resize = int(cfg.get("resize_size") or crop + 32)
    if meta.task == "segmentation":
        size = int(cfg.get("eval_size") or 512)
        return hf.MobileViTImageProcessor(
            do_resize=True,
            size={"shortest_edge": size},
            resample=2,  # PIL bilinear, as our evaluation resizes
            do_center_crop=False,
            do_normalize=False,
            do_flip_channel_order=order == "BGR",
        )
    return hf.MobileViTImageProcessor(
        size={"shortest_edge": resize},
        crop_size={"height": crop, "width": crop},
        resample=2,  # PIL bilinear, as our evaluation resizes
        do_normalize=False,  # [0, 1] in, no mean / std
        do_flip_channel_order=order == "BGR",
    )


def _timm_logits(peer: dict[str, torch.Tensor], meta: WeightsMeta, classes: list[str], x: torch.Tensor):
    """timm's own model with ``peer`` loaded strictly, on ``x``; None when timm is not installed."""
    try:
        import timm as timm_lib
    except ImportError:
        return None
    model = timm_lib.create_model(meta.arch, pretrained=False, num_classes=len(classes)).eval()
    model.load_state_dict(peer, strict=True)
    with torch.no_grad():
        return model(x)


def convert_to(
    weights: str | Path, out: str | Path, target: str, model_name: str | None = None
) -> dict[str, Any]:
    """Convert a weights file (ours, or any format ``load_model`` reads) to ``target``'s layout at
    ``out``; returns a report (files written, channel order, the logit check)."""
    model, meta = load_model(weights, model_name)
    check_target(meta, target)
    out = Path(out)
    if target == "timm" and out.suffix != ".safetensors":
        raise ConversionError(f"--to timm writes a .safetensors file; got {out}")
    if target == "cvnets" and out.suffix not in (".pt", ".pth"):
        raise ConversionError(f"--to cvnets writes a .pt checkpoint; got {out}")
    if target == "transformers" and out.suffix:
        raise ConversionError(f"--to transformers writes a folder (save_pretrained); got the file name {out}")
    if target == "transformers" and out.exists():
        raise ConversionError(f"{out} exists; remove it first (a save_pretrained folder is written whole)")
    classes = class_names(meta)
    peer, order = to_peer_state_dict(model.state_dict(), meta, target)

    x = torch.rand(2, 3, 128, 128)
    x_peer = x.flip(1) if order == "BGR" else x  # what the peer's model is fed for the same image
    with torch.no_grad():
        ours = model(x) if meta.task == "classification" else model.forward_lowres(x)
    hf_model, theirs = None, None
    if target == "timm":
        theirs = _timm_logits(peer, meta, classes, x_peer)
    elif target == "transformers":
        hf_model = _hf_model(meta, classes)
        hf_model.load_state_dict(peer, strict=True)
        with torch.no_grad():
            theirs = hf_model(pixel_values=x_peer).logits
    diff = None if theirs is None else float((theirs - ours).abs().max())
    if diff is not None and diff > 1e-4:
        raise ConversionError(
            f"{target}'s own model gives other outputs than ours (max abs diff {diff:.2e}); nothing written"
        )

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if hf_model is not None:
            hf_model.save_pretrained(tmp)
            _hf_processor(model, meta, order).save_pretrained(tmp)
            os.replace(tmp, out)
        else:
            staged = tmp / out.name
            if target == "timm":
                from safetensors.torch import save_file

                save_file({k: v.contiguous() for k, v in peer.items()}, str(staged))
            else:
                torch.save(peer, staged)
            os.replace(staged, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "target": target,
        "arch": meta.arch,
        "task": meta.task,
        "num_classes": len(classes),
        "out": str(out),
        "channel_order": order,
        "peer_max_abs_diff": diff,
        "license": meta.extra.get("license"),
    }
