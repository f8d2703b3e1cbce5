"""Helpers shared by the tests: random-but-non-trivial weights and the fixture folder."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from mobilevit.bench.peers import HF_CONFIGS  # transformers configs of the three variants (one copy)

__all__ = [
    "FIXTURES",
    "FIXTURES_V2",
    "FIXTURES_V3",
    "HF_CONFIGS",
    "REPO",
    "VARIANTS",
    "max_diff",
    "randomize",
]

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("MOBILEVIT_FIXTURES", REPO.parent / "shared" / "fixtures" / "cvnets"))
FIXTURES_V2 = FIXTURES.parent / "cvnets_v2"  # the official MobileViT v2 code's outputs
FIXTURES_V3 = FIXTURES.parent / "cvnets_v3"  # the MobileViTv3 reference code's outputs
VARIANTS = ("mobilevit_xxs", "mobilevit_xs", "mobilevit_s")


@torch.no_grad()
def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every norm and bias random values so a wrong key mapping cannot hide.

    A fresh model has identity BatchNorms and zero biases: a swapped BN, LN or bias would then
    still give the right answer. (The ml-cvnets fixtures were randomised the same way.)
    """
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
        if isinstance(m, nn.BatchNorm2d | nn.LayerNorm | nn.GroupNorm):
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
        if isinstance(m, nn.Linear | nn.Conv2d) and m.bias is not None:
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
    return model


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()
