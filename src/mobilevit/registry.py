"""Model registry: ``register_model``, ``create_model`` and ``list_models``."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a builder ``fn(**kwargs) -> nn.Module`` under ``name``."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = fn
        return fn

    return wrap


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted."""
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def create_model(
    name: str,
    num_classes: int | None = None,
    pretrained: str | Path | None = None,
    *,
    reset_classifier: bool = False,
    **overrides: Any,
) -> nn.Module:
    """Build a registered model, optionally with weights.

    Args:
        name: a name from :func:`list_models`, e.g. ``"mobilevit_s"``.
        num_classes: classifier size (default: the variant's, 1000 for ImageNet).
        pretrained: a weight tag from ``mobilevit.weights.list_weights()`` (found in the local
            cache, or downloaded from where it is published), or a path to a checkpoint in our
            safetensors format, a timm / transformers state dict or folder, or an Apple ml-cvnets
            checkpoint (converted on the fly).
        reset_classifier: when ``num_classes`` differs from the checkpoint's, load everything but
            the classifier and re-initialise it. Without it such a mismatch is an error.
        **overrides: config fields, e.g. ``patch_size=(8, 4, 2)`` or ``skip_connection=False``.
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available models: {', '.join(list_models())}")
    kwargs = dict(overrides)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    model = _MODELS[name](**kwargs)
    if pretrained is not None:
        from .weights import load_pretrained

        load_pretrained(model, pretrained, reset_classifier=reset_classifier)
    return model
