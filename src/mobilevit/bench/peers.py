"""The peers' side: transformers' configs for each paper variant (random weights only); they live
with the transformers key layout (``weights/convert/transformers.py``)."""

from __future__ import annotations

from ..weights.convert.transformers import HF_CONFIGS, hf_v2_width

__all__ = ["HF_CONFIGS", "hf_v2_width"]
