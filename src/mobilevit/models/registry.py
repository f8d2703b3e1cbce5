"""The model name table: ``register_model`` (a decorator on builders) and ``list_models``.

Model families (``models/mobilevit.py``) and heads (``heads/``) register their builders here when
imported; ``mobilevit/__init__.py`` imports them all. ``create_model`` is in ``models/factory.py``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_PARAMS: dict[str, int] = {}


def register_model(
    name: str, params: int | None = None
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a builder ``fn(**kwargs) -> nn.Module`` under ``name``, with the
    parameter count its default build has (the one table of them; a test checks every entry)."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[name] = fn
        if params is not None:
            _PARAMS[name] = params
        return fn

    return wrap


def register_builder(
    name: str, build: Callable[..., nn.Module], params: int | None = None, doc: str = ""
) -> None:
    """Register ``build(**kwargs)`` under ``name`` (for families registered in a loop, e.g. v2's widths).

    Args:
        name: the model name.
        build: ``build(**kwargs) -> nn.Module``.
        params: the parameter count of its default build (checked by a test).
        doc: the builder's docstring.
    """

    def builder(**kwargs: Any) -> nn.Module:
        return build(**kwargs)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = doc
    register_model(name, params=params)(builder)


def expected_params(name: str) -> int | None:
    """The parameter count registered for ``name`` (its default build), None if none was."""
    model_entrypoint(name)
    return _PARAMS.get(name)


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``, sorted."""
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def model_entrypoint(name: str) -> Callable[..., nn.Module]:
    """The builder registered under ``name``; a clear error listing the names otherwise."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; available models: {', '.join(list_models())}")
    return _MODELS[name]
