"""Faster ways to move the MobileViT block's tokens, each giving the reference's outputs.

The reference unfold / fold (`unfold_patches` with ``layout="nchw"``) keeps every
reshape at rank <= 4, as Core ML needs, and makes two copies each way. The layouts here move the
same memory with fewer copies; which one is fastest depends on the runtime (docs/measured_defaults.md):

- ``"nhwc"`` (the eager default): unfold and fold through the [B, H, W, C] view, one copy each
  way that moves whole C-vectors (a rank-6 permute), none more for a channels-last input;
- ``"pixels"`` (the ONNX export's): no unfold or fold at all. Tokens stay in pixel order
  [B, H*W, d]: LayerNorm and the linear layers act per token, so order does not matter to them,
  and each attention layer gathers a patch position's pixels inside the transposes it makes
  anyway (rank 8).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

PATCH_LAYOUTS = ("pixels", "nhwc", "nchw")


class PatchLayout(nn.Module):
    """How a MobileViT block takes its map through its transformer layers across patches:
    ``[B, d, H, W]`` in, ``[B, d, H, W]`` out (H and W multiples of the patch).

    A block holds one as ``block.patches`` and its forward calls it; the layouts differ only in how
    they move memory, never in outputs or gradients. Stateless (no parameters, no buffers, nothing
    in the state dict), so `set_patch_layout` swaps one for another on a model, or on an export's
    copy, the way the XNNPACK graph swaps modules. Each block family has its own subclasses, and
    `with_layout` names the family's module for a layout.
    """

    layout: str = ""

    def forward(
        self,
        y: torch.Tensor,
        layers: nn.Module,
        norm: Callable[[torch.Tensor], torch.Tensor],
        ph: int,
        pw: int,
    ) -> torch.Tensor:
        """Run ``layers`` then ``norm`` across the patches of ``y``.

        Args:
            y: the map ``[B, d, H, W]``.
            layers: the block's transformer layers.
            norm: the block's final norm.
            ph: the patch height.
            pw: the patch width.

        Returns:
            ``[B, d, H, W]``.
        """
        raise NotImplementedError

    def with_layout(self, layout: str) -> PatchLayout:
        """This block family's module for ``layout`` (one of `PATCH_LAYOUTS`)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return repr(self.layout)


def unfold_nhwc(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """`unfold_patches` in one copy: [B, C, H, W] -> [B*P, N, C].

    Args:
        x: the map ``[B, C, H, W]`` (any memory format).
        ph: the patch height.
        pw: the patch width.

    Returns:
        The tokens ``[B*P, N, C]``.
    """
    b, c, h, w = x.shape
    nh, nw = h // ph, w // pw
    # memory [B, H, W, C] = [B, nh, ph, nw, pw, C] -> [B, ph, pw, nh, nw, C] -> [B*P, N, C]
    x = x.permute(0, 2, 3, 1).reshape(b, nh, ph, nw, pw, c).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b * ph * pw, nh * nw, c)


def fold_nhwc(x: torch.Tensor, batch: int, ph: int, pw: int, nh: int, nw: int) -> torch.Tensor:
    """`fold_patches` in one copy, into [B, H, W, C] memory: returns its
    [B, C, H, W] view (channels-last).

    Args:
        x: the tokens ``[B*P, N, C]``.
        batch: B.
        ph: the patch height.
        pw: the patch width.
        nh: patches per column.
        nw: patches per row.

    Returns:
        The ``[B, C, H, W]`` channels-last view.
    """
    c = x.shape[-1]
    # [B*P, N, C] -> [B, ph, pw, nh, nw, C] -> [B, nh, ph, nw, pw, C] = memory [B, H, W, C]
    x = x.reshape(batch, ph, pw, nh, nw, c).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(batch, nh * ph, nw * pw, c).permute(0, 3, 1, 2)  # [B, C, H, W] view


def unfold_v2_nhwc(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """MobileViT v2's unfold ([B, d, H, W] -> [B, d, P, N]) in one copy through the [B, H, W, d]
    view: whole d-vectors move, and the result is a [B, d, P, N] view of [B, P, N, d] memory.

    Args:
        x: the map ``[B, d, H, W]``.
        ph: the patch height.
        pw: the patch width.

    Returns:
        ``[B, d, P, N]`` (a view of ``[B, P, N, d]`` memory).
    """
    b, d, h, w = x.shape
    nh, nw = h // ph, w // pw
    # memory [B, H, W, d] = [B, nh, ph, nw, pw, d] -> [B, ph, pw, nh, nw, d]
    x = x.permute(0, 2, 3, 1).reshape(b, nh, ph, nw, pw, d).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, ph * pw, nh * nw, d).permute(0, 3, 1, 2)  # [B, P, N, d] -> [B, d, P, N] view


def fold_v2_nhwc(x: torch.Tensor, ph: int, pw: int, nh: int, nw: int) -> torch.Tensor:
    """Inverse of `unfold_v2_nhwc`: [B, d, P, N] -> a [B, d, H, W] view of [B, H, W, d] memory.

    Args:
        x: ``[B, d, P, N]``.
        ph: the patch height.
        pw: the patch width.
        nh: patches per column.
        nw: patches per row.

    Returns:
        The ``[B, d, H, W]`` view of ``[B, H, W, d]`` memory.
    """
    b, d = x.shape[:2]
    # [B, d, P, N] -> [B, P, N, d] = [B, ph, pw, nh, nw, d] -> [B, nh, ph, nw, pw, d]
    x = x.permute(0, 2, 3, 1).reshape(b, ph, pw, nh, nw, d).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, nh * ph, nw * pw, d).permute(0, 3, 1, 2)  # [B, H, W, d] -> [B, d, H, W] view


def pixel_order_attention(
    qkv: torch.Tensor, grid: tuple[int, int, int, int], heads: int, head_dim: int, dropout_p: float = 0.0
) -> torch.Tensor:
    """Attention of [B, H*W, 3d] projections in pixel order, each pixel attending to the pixels at
    its position in the other patches; returns [B, H*W, d] before the output projection.

    Args:
        qkv: the projections ``[B, H*W, 3d]`` in pixel order.
        grid: ``(nh, ph, nw, pw)``: patches per column, patch height, patches per row, patch width.
        heads: attention heads.
        head_dim: d / heads.
        dropout_p: attention dropout (training only).

    Returns:
        ``[B, H*W, d]``.
    """
    b, hw, _ = qkv.shape
    nh, ph, nw, pw = grid
    # [B, H*W, 3d] = [B, nh, ph, nw, pw, 3, heads, hd] -> [3, B, ph, pw, heads, nh, nw, hd]
    qkv = qkv.reshape(b, nh, ph, nw, pw, 3, heads, head_dim).permute(5, 0, 2, 4, 6, 1, 3, 7)
    q, k, v = qkv.reshape(3, b * ph * pw, heads, nh * nw, head_dim).unbind(0)  # [B*P, heads, N, hd]
    y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    # [B*P, heads, N, hd] = [B, ph, pw, heads, nh, nw, hd] -> [B, nh, ph, nw, pw, heads, hd]
    y = y.reshape(b, ph, pw, heads, nh, nw, head_dim).permute(0, 4, 1, 5, 2, 3, 6)
    return y.reshape(b, hw, heads * head_dim)


def transform_in_pixel_order(
    y: torch.Tensor, layers: nn.Sequential, norm: Callable[[torch.Tensor], torch.Tensor], ph: int, pw: int
) -> torch.Tensor:
    """The block's transformer on a [B, d, H, W] map without unfolding it: [B, d, H, W] out.

    Args:
        y: the map ``[B, d, H, W]``.
        layers: the block's transformer layers.
        norm: the block's final norm.
        ph: the patch height.
        pw: the patch width.

    Returns:
        ``[B, d, H, W]``.
    """
    b, _, h, w = y.shape
    grid = (h // ph, ph, w // pw, pw)
    tokens = y.permute(0, 2, 3, 1).reshape(b, h * w, -1)  # [B, H*W, d], pixel order
    for layer in layers:
        tokens = layer(tokens, grid)
    # [B, H*W, d] -> [B, H, W, d] -> [B, d, H, W] (a channels-last view)
    return norm(tokens).reshape(b, h, w, -1).permute(0, 3, 1, 2)


def set_patch_layout(model: nn.Module, layout: str) -> int:
    """Swap every MobileViT block's `PatchLayout` in ``model`` for the one of ``layout``
    (``"nhwc"``, ``"pixels"`` or the reference ``"nchw"``); the outputs do not change.

    Args:
        model: any model holding MobileViT blocks (changed in place).
        layout: one of `PATCH_LAYOUTS`.

    Returns:
        The number of blocks set.
    """
    if layout not in PATCH_LAYOUTS:
        raise ValueError(f"patch layout must be one of {', '.join(PATCH_LAYOUTS)}, not {layout!r}")
    count = 0
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, PatchLayout):
                setattr(module, name, child.with_layout(layout))
                count += 1
    return count
