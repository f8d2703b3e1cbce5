"""The peers' side: transformers' configs for each paper variant (random weights only)."""

from __future__ import annotations

from typing import Any

# transformers' MobileViTConfig for each paper variant (the defaults are mobilevit_s')
HF_CONFIGS: dict[str, dict[str, Any]] = {
    "mobilevit_xxs": dict(
        hidden_sizes=[64, 80, 96], neck_hidden_sizes=[16, 16, 24, 48, 64, 80, 320], expand_ratio=2.0
    ),
    "mobilevit_xs": dict(hidden_sizes=[96, 120, 144], neck_hidden_sizes=[16, 32, 48, 64, 80, 96, 384]),
    "mobilevit_s": dict(hidden_sizes=[144, 192, 240], neck_hidden_sizes=[16, 32, 64, 96, 128, 160, 640]),
}


def hf_v2_width(model_name: str) -> float | None:
    """transformers' ``MobileViTV2Config(width_multiplier=...)`` for ``mobilevitv2_*`` names, else None."""
    if not model_name.startswith("mobilevitv2_"):
        return None
    from ..models.mobilevitv2 import WIDTHS

    return WIDTHS.get(model_name.removeprefix("mobilevitv2_"))
