"""Frozen dataclasses that declare a MobileViT network (Table 4 / Appendix A of the paper), and
the v3 paper's block on the same frame (fusion, residual, depthwise local conv).

A model is fully described by a `MobileViTConfig`; the named variants live in
``mobilevit.py`` (v1) and ``mobilevitv3.py`` (v3). Every knob the papers' ablations turn (patch
size per stage, local kernel n, transformer width / depth / heads / FFN ratio, dropout, the
block's skip connection and fusion) is a field here, so an ablation is a config change rather
than a code edit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StageSpec:
    """One of the five stages (L1..L5 in the paper's Figure 1b).

    An MV2 stage is ``num_blocks`` inverted residuals, the first with ``stride``. A MobileViT
    stage (``transformer_dim`` set) is one stride-2 MV2 followed by one MobileViT block.
    """

    out_channels: int
    stride: int = 1
    num_blocks: int = 1
    expand_ratio: float = 4.0
    transformer_dim: int | None = None
    transformer_depth: int = 0
    ffn_ratio: float = 2.0
    num_heads: int = 4
    patch_size: tuple[int, int] = (2, 2)

    @property
    def is_vit(self) -> bool:
        return self.transformer_dim is not None

    def validate(self, index: int) -> None:
        """Raise ``ValueError`` naming the first invalid field of the stage."""
        where = f"stage {index + 1}"
        if self.out_channels <= 0:
            raise ValueError(f"{where}: out_channels must be positive, got {self.out_channels}")
        if self.stride not in (1, 2):
            raise ValueError(f"{where}: stride must be 1 or 2, got {self.stride}")
        if self.num_blocks < 1:
            raise ValueError(f"{where}: num_blocks must be >= 1, got {self.num_blocks}")
        if self.is_vit:
            d = self.transformer_dim
            if d is None or d <= 0:
                raise ValueError(f"{where}: transformer_dim must be positive, got {d}")
            if self.transformer_depth < 1:
                raise ValueError(f"{where}: transformer_depth must be >= 1, got {self.transformer_depth}")
            if self.num_heads < 1 or d % self.num_heads != 0:
                raise ValueError(
                    f"{where}: transformer_dim {d} must be divisible by num_heads {self.num_heads}"
                )
            if len(self.patch_size) != 2 or min(self.patch_size) < 1:
                raise ValueError(f"{where}: patch_size must be two positive ints, got {self.patch_size}")
            if self.ffn_ratio <= 0:
                raise ValueError(f"{where}: ffn_ratio must be positive, got {self.ffn_ratio}")

    @property
    def ffn_dim(self) -> int:
        assert self.transformer_dim is not None
        return int(self.transformer_dim * self.ffn_ratio)


# Names accepted by MobileViTConfig.replace() that fan out over the MobileViT (transformer) stages.
_PER_VIT_STAGE = {
    "patch_size": "patch_size",
    "transformer_dim": "transformer_dim",
    "transformer_depth": "transformer_depth",
    "num_heads": "num_heads",
    "ffn_ratio": "ffn_ratio",
}


@dataclass(frozen=True)
class MobileViTConfig:
    """A complete MobileViT v1 classifier / backbone description."""

    name: str
    stages: tuple[StageSpec, ...]
    stem_channels: int = 16
    exp_factor: int = 4  # 1x1 expansion before the classifier: min(exp_factor * C5, 960)
    conv_kernel_size: int = 3  # local representation kernel n in the MobileViT block
    transformer_dropout: float = 0.1  # dropout after attention and after the FFN
    attn_dropout: float = 0.0
    ffn_dropout: float = 0.0  # dropout between the two FFN linears
    classifier_dropout: float = 0.1
    skip_connection: bool = True  # concat the block input before the fusion conv (Section 3.1)
    # MobileViT v3 (Wadekar & Chaurasia 2022, Section 3): the fusion conv is 1x1 over the local
    # branch's features (d channels) and the global ones ("v3") instead of n x n over the block input
    # and the global ones ("v1"); the block input is added to its output (fusion_residual); the
    # local n x n conv is depthwise (local_depthwise)
    fusion: str = "v1"
    fusion_residual: bool = False
    local_depthwise: bool = False
    layer_norm_eps: float = 1e-5
    in_chans: int = 3
    num_classes: int = 1000
    output_stride: int = 32
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""
        if len(self.stages) != 5:
            raise ValueError(f"MobileViT has 5 stages, got {len(self.stages)}")
        for i, s in enumerate(self.stages):
            s.validate(i)
        if self.output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {self.output_stride}")
        if self.conv_kernel_size < 1 or self.conv_kernel_size % 2 == 0:
            raise ValueError(f"conv_kernel_size must be a positive odd int, got {self.conv_kernel_size}")
        if self.num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 = no classifier), got {self.num_classes}")
        if self.fusion not in ("v1", "v3"):
            raise ValueError(f"fusion must be 'v1' or 'v3', got {self.fusion!r}")
        if self.in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {self.in_chans}")
        for name in ("transformer_dropout", "attn_dropout", "ffn_dropout", "classifier_dropout"):
            p = getattr(self, name)
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")

    @property
    def vit_stage_indices(self) -> tuple[int, ...]:
        return tuple(i for i, s in enumerate(self.stages) if s.is_vit)

    @property
    def exp_channels(self) -> int:
        return min(self.exp_factor * self.stages[-1].out_channels, 960)

    @classmethod
    def accepted_overrides(cls) -> list[str]:
        own = [f.name for f in dataclasses.fields(cls) if f.name not in ("name", "stages", "extra")]
        return sorted(own + list(_PER_VIT_STAGE))

    def replace(self, **overrides: Any) -> MobileViTConfig:
        """Return a copy with fields changed.

        Besides the top-level fields, ``patch_size``, ``transformer_dim``, ``transformer_depth``,
        ``num_heads`` and ``ffn_ratio`` apply to the MobileViT stages: give one value for all of
        them or a sequence with one value per MobileViT stage (e.g. ``patch_size=(8, 4, 2)``).
        """
        unknown = sorted(set(overrides) - set(self.accepted_overrides()))
        if unknown:
            raise TypeError(
                f"unknown MobileViT config option(s) {unknown}; accepted: {', '.join(self.accepted_overrides())}"
            )
        top = {k: v for k, v in overrides.items() if k not in _PER_VIT_STAGE}
        stages = list(self.stages)
        vit = self.vit_stage_indices
        for key, attr in _PER_VIT_STAGE.items():
            if key not in overrides:
                continue
            values = _per_stage(key, overrides[key], len(vit))
            for i, v in zip(vit, values, strict=True):
                stages[i] = dataclasses.replace(stages[i], **{attr: v})
        return dataclasses.replace(self, stages=tuple(stages), **top)


def _per_stage(key: str, value: Any, n: int) -> list[Any]:
    """Expand a scalar (or, for patch_size, an int or an (h, w) pair) to one value per stage."""
    if key == "patch_size":
        if isinstance(value, int):
            return [(value, value)] * n
        seq = list(value)
        if len(seq) == 2 and all(isinstance(v, int) for v in seq) and n != 2:
            return [tuple(seq)] * n
        out = [(v, v) if isinstance(v, int) else tuple(v) for v in seq]
    elif isinstance(value, Sequence) and not isinstance(value, str):
        out = list(value)
    else:
        return [value] * n
    if len(out) != n:
        raise ValueError(f"{key} needs one value per MobileViT stage ({n}), got {len(out)}: {value!r}")
    return out
