"""Loading a state dict into a module with strict, readable checks; pretrained and backbone weights.

Works on any ``nn.Module`` and any checkpoint this package reads (ours, timm, transformers,
ml-cvnets, converted on the way in); it builds no models (that is the factory's job).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .convert import convert_state_dict, detect_source
from .hub import fetch_repo, is_hub_name
from .serialization import read_state_dict
from .specs import WEIGHTS, WeightSpec, list_weights, resolve_weights


class CheckpointMismatchError(ValueError):
    """A state dict that does not fit the model: lists missing, unexpected and mis-shaped keys."""


def _summarise(keys: list[str], n: int = 12) -> str:
    return ", ".join(keys[:n]) + (f" ... (+{len(keys) - n} more)" if len(keys) > n else "")


def load_state_dict_checked(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    reset_classifier: bool = False,
    source: str = "checkpoint",
    classifier_prefixes: tuple[str, ...] = ("head.fc.",),
) -> None:
    """Strictly load ``state_dict``; on mismatch raise an error that lists every problem.

    With ``reset_classifier`` a classifier of another class count (or a checkpoint without one)
    is skipped and the model's freshly initialised classifier is kept.

    Args:
        model: the module to load into (in place).
        state_dict: tensors under ``model``'s own keys (already converted to our layout).
        reset_classifier: skip classifier keys that are missing, unexpected or of another shape.
        source: what the checkpoint is called in the error message (e.g. its path).
        classifier_prefixes: the key prefixes that make up the classifier (a model's
            ``classifier_keys``).

    Raises:
        CheckpointMismatchError: missing, unexpected or mis-shaped keys (outside the classifier
            with ``reset_classifier``), all listed.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    misshaped = [
        f"{k} (checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)})"
        for k in own
        if k in state_dict and state_dict[k].shape != own[k].shape
    ]
    if reset_classifier:

        def is_cls(k: str) -> bool:
            return k.startswith(classifier_prefixes)

        missing = [k for k in missing if not is_cls(k)]
        unexpected = [k for k in unexpected if not is_cls(k)]
        misshaped = [k for k in misshaped if not is_cls(k.split(" ")[0])]
        state_dict = {
            k: v
            for k, v in state_dict.items()
            if not (is_cls(k) and (k not in own or v.shape != own[k].shape))
        }
    if missing or unexpected or misshaped:
        parts = [f"{source} does not fit {type(model).__name__} ({_model_name(model)}):"]
        if missing:
            parts.append(f"  missing keys ({len(missing)}): {_summarise(missing)}")
        if unexpected:
            parts.append(f"  unexpected keys ({len(unexpected)}): {_summarise(unexpected)}")
        if misshaped:
            parts.append(f"  mis-shaped keys ({len(misshaped)}): {_summarise(misshaped)}")
        only_cls = (
            not missing and not unexpected and all(k.startswith(classifier_prefixes) for k in misshaped)
        )
        if only_cls:
            parts.append("  only the classifier differs: pass reset_classifier=True to re-initialise it")
        raise CheckpointMismatchError("\n".join(parts))
    model.load_state_dict(state_dict, strict=not reset_classifier)


def _model_name(model: nn.Module) -> str:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "name", type(model).__name__)


def load_pretrained(
    model: nn.Module, pretrained: str | Path, reset_classifier: bool = False
) -> dict[str, Any]:
    """Load a weight tag, an ``hf-hub:ORG/REPO`` name or a checkpoint path (ours or a foreign
    format) into ``model``.

    Sets and returns ``model.pretrained_cfg``: the input convention the loaded model expects.

    Args:
        model: the module to load into (in place).
        pretrained: a registered weight tag (see `resolve_weights`), ``hf-hub:ORG/REPO[@REV]``,
            or a checkpoint file in any layout this package reads.
        reset_classifier: keep the model's own classifier where the checkpoint's does not fit
            (another class count), see `load_state_dict_checked`.

    Returns:
        ``model.pretrained_cfg``: the weight spec's fields (mean, std, ...) plus ``file``,
        ``source_format`` and ``channel_order``.

    Raises:
        FileNotFoundError: ``pretrained`` is neither a tag nor an existing path.
        CheckpointMismatchError: the weights do not fit ``model``.
    """
    if is_hub_name(pretrained):
        repo = fetch_repo(str(pretrained))
        sd, meta = read_state_dict(repo.weights)
        return apply_checkpoint(model, sd, meta, pretrained, None, reset_classifier)
    spec = WEIGHTS.get(str(pretrained))
    path = resolve_weights(spec.tag) if spec else Path(pretrained)
    if spec is None and not path.exists():
        raise FileNotFoundError(
            f"pretrained={pretrained!r} is neither a weight tag ({', '.join(list_weights())}) nor an existing path"
        )
    sd, meta = read_state_dict(path)
    return apply_checkpoint(model, sd, meta, path, spec, reset_classifier)


def apply_checkpoint(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    metadata: dict[str, str],
    path: str | Path,
    spec: WeightSpec | None = None,
    reset_classifier: bool = False,
) -> dict[str, Any]:
    """Load a checkpoint already read (``read_state_dict``) into ``model``, converting a foreign
    layout first; sets and returns ``model.pretrained_cfg``.

    Args:
        model: the module to load into (in place); its ``classifier_keys`` (default
            ``("head.fc.",)``) say which keys ``reset_classifier`` may skip.
        state_dict: the checkpoint's tensors, in any layout `detect_source` recognises.
        metadata: the file's metadata (our ``format`` and ``channel_order`` when we wrote it).
        path: where the checkpoint came from, recorded as ``file`` and named in errors.
        spec: the registered weight spec it came from, whose fields start the config; ``None``:
            ``tag`` ``None``, mean 0 and std 1.
        reset_classifier: keep the model's own classifier where the checkpoint's does not fit.

    Returns:
        ``model.pretrained_cfg``: the spec's fields plus ``file``, ``source_format`` and
        ``channel_order`` (RGB after a conversion).
    """
    source = detect_source(state_dict, metadata)
    order = metadata.get("channel_order", "RGB")
    if source != "mobilevit":
        state_dict, order = convert_state_dict(state_dict, source, to_rgb=True)
    prefixes = getattr(model, "classifier_keys", ("head.fc.",))
    load_state_dict_checked(
        model, state_dict, reset_classifier=reset_classifier, source=str(path), classifier_prefixes=prefixes
    )
    cfg: dict[str, Any] = asdict(spec) if spec else {"tag": None, "mean": (0.0,) * 3, "std": (1.0,) * 3}
    cfg.update(file=str(path), source_format=source, channel_order=order)
    model.pretrained_cfg = cfg  # type: ignore[assignment]
    return cfg


def load_backbone_weights(backbone: nn.Module, weights: str | Path) -> None:
    """Load the backbone part of a classifier (or segmentation) checkpoint into a features-only
    MobileViT: the 1x1 expansion and classifier are dropped, everything else must fit exactly."""
    spec = WEIGHTS.get(str(weights))
    path = resolve_weights(spec.tag) if spec else Path(weights)
    sd, meta = read_state_dict(path)
    source = detect_source(sd, meta)
    if source != "mobilevit":
        sd, _ = convert_state_dict(sd, source, to_rgb=True)
    if any(k.startswith("backbone.") for k in sd):
        sd = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
    sd = {k: v for k, v in sd.items() if not k.startswith(("conv_exp.", "head."))}
    load_state_dict_checked(backbone, sd, source=f"{path} (backbone)")
