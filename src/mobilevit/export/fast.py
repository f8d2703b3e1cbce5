"""An inference-only copy of a model: BatchNorm folded into the convolutions before it.

Every ``ConvNormAct`` (conv -> BN -> act) becomes conv (with bias) -> act, which removes one
full pass over each feature map. Attention already runs through the fused
``scaled_dot_product_attention``. Outputs equal the eager model's to float rounding (<= 1e-4).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..layers import ConvNormAct


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> int:
    """Fold every ``ConvNormAct``'s BatchNorm into its conv, in place (eval only). Returns the count."""
    if model.training:
        raise RuntimeError("fold_batchnorm needs a model in eval() mode: folding freezes the BN statistics")
    folded = 0
    for module in model.modules():
        if isinstance(module, ConvNormAct) and isinstance(getattr(module, "norm", None), nn.BatchNorm2d):
            module.conv = fuse_conv_bn_eval(module.conv, module.norm)
            del module.norm
            folded += 1
    return folded


def optimize_for_inference(model: nn.Module, channels_last: bool = False) -> nn.Module:
    """A frozen copy of ``model`` for inference: eval mode, BN folded, no autograd state.

    ``channels_last`` converts the weights' memory format (pair it with channels-last inputs);
    whether it pays depends on the CPU, so it is off by default and measured by ``mobilevit bench``.
    """
    fast = copy.deepcopy(model).eval()
    fold_batchnorm(fast)
    for p in fast.parameters():
        p.requires_grad_(False)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    fast.pretrained_cfg = getattr(model, "pretrained_cfg", None)
    return fast
