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

from ..layout import channels_last_pays
from ..models.layers import ConvNormAct


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


def _input_to_channels_last(module: nn.Module, args: tuple) -> tuple | None:
    if args and isinstance(args[0], torch.Tensor) and args[0].dim() == 4:
        return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
    return None


def _output_to_contiguous(module: nn.Module, args: tuple, out: object) -> object:
    if isinstance(out, torch.Tensor) and out.dim() == 4:  # dense maps (segmentation) as callers expect
        return out.contiguous()
    return None


def optimize_for_inference(model: nn.Module, channels_last: bool | None = None) -> nn.Module:
    """A frozen copy of ``model`` for inference: eval mode, BN folded, no autograd state.

    ``channels_last`` (default: `channels_last_pays`) runs the copy in channels-last memory:
    weights converted, inputs converted on the way in (callers pass ordinary [B, 3, H, W]
    tensors), 4-d outputs returned contiguous, and the MobileViT blocks' unfold / fold done with
    one copy each straight from and into that layout. ``False`` keeps the contiguous layout (what
    the exporters trace; they pick the blocks' patch layout themselves). Outputs equal the eager
    model's to 1e-4.
    """
    if channels_last is None:
        channels_last = channels_last_pays()
    fast = copy.deepcopy(model).eval()
    fold_batchnorm(fast)
    for p in fast.parameters():
        p.requires_grad_(False)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
        fast.register_forward_pre_hook(_input_to_channels_last)
        fast.register_forward_hook(_output_to_contiguous)
    fast.pretrained_cfg = getattr(model, "pretrained_cfg", None)
    return fast
