"""``create_model``: a registered builder, then (optionally) weights loaded into what it built."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..weights.hub import fetch_repo, is_hub_name
from ..weights.loading import load_backbone_weights, load_pretrained
from .features import feature_maps
from .registry import list_models, model_entrypoint

__all__ = ["create_model", "list_models"]


def create_model(
    name: str,
    num_classes: int | None = None,
    pretrained: str | Path | None = None,
    *,
    reset_classifier: bool = False,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model, optionally with weights.

    Args:
        name: a name from `list_models`, e.g. ``"mobilevit_s"``, or ``"hf-hub:ORG/REPO"``
            (``@REVISION`` optional): the architecture its config names, with its weights (a repo
            in this package's, timm's or transformers' layout; huggingface_hub's cache and
            ``HF_HUB_OFFLINE`` apply).
        num_classes: classifier size (default: the variant's, 1000 for ImageNet).
        pretrained: a weight tag from ``mobilevit.weights.list_weights()`` (found in the local
            cache, or downloaded from where it is published), or a path to a checkpoint in our
            safetensors format, a timm / transformers state dict or folder, or an Apple ml-cvnets
            checkpoint (converted on the fly).
        reset_classifier: when ``num_classes`` differs from the checkpoint's, load everything but
            the classifier and re-initialise it. Without it such a mismatch is an error.
        features_only: return a `FeatureMaps` (timm's
            ``features_only``): ``model(x)`` is a list of maps, one per level in ``out_indices``, at
            strides 2, 4, 8, 16, 32 (with ``output_stride``, the last ones dilated instead), with
            ``model.feature_info.channels()`` / ``.reduction()`` / ``.module_name()``.
        out_indices: the levels ``features_only`` returns (default all five, 0..4).
        **overrides: config fields, e.g. ``patch_size=(8, 4, 2)`` or ``skip_connection=False``;
            for detection and segmentation models also ``backbone_weights`` (a classifier's
            checkpoint or tag, loaded into the backbone) and the head's own settings.
    """
    repo = None
    if is_hub_name(name):
        if pretrained is not None:
            raise ValueError(f"{name} brings its own weights; pretrained= cannot be given with it")
        repo = fetch_repo(name)
        if not repo.arch:
            raise ValueError(f"{name}: its config names no MobileViT architecture this package has")
        overrides = {**repo.config.get("model_overrides", {}), **overrides}
        if num_classes is None:
            num_classes = repo.num_classes
        name, pretrained = repo.arch, name
    build = model_entrypoint(name)
    kwargs = dict(overrides)
    backbone_weights = kwargs.pop("backbone_weights", None)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    model = build(**kwargs)
    if backbone_weights:
        if not hasattr(model, "mobilevit_backbone"):
            raise ValueError(f"{name} has no backbone to load backbone_weights into; use pretrained=")
        load_backbone_weights(model.mobilevit_backbone(), backbone_weights)
    if pretrained is not None:
        cfg = load_pretrained(model, pretrained, reset_classifier=reset_classifier)
        if repo is not None and repo.layout == "mobilevit":  # the repo's preprocessing (config.json)
            pre = repo.config.get("preprocessing") or {}
            cfg.update({k: pre[k] for k in ("crop_size", "resize_size", "interpolation") if k in pre})
    if features_only:
        return feature_maps(model, out_indices)
    if out_indices is not None:
        raise ValueError("out_indices selects the maps of features_only=True; pass features_only=True too")
    return model
