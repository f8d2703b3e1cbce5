"""The MobileViT block (Section 3.1, Figure 1b of Mehta & Rastegari, ICLR 2022).

local representation (n x n conv, then 1x1 to width d) -> unfold into P = h*w pixel positions
x N non-overlapping patches -> L pre-norm transformer layers that attend, for each pixel
position, across all N patches -> fold back -> 1x1 projection to C -> concat with the block
input (the skip connection) -> n x n fusion conv.

MobileViT v3 (Wadekar & Chaurasia 2022, Section 3, Figure 1) changes the end of the block
(``fusion="v3"``): a 1x1 fusion conv over the local branch's d-channel features concatenated with
the global ones, then the block input added (``fusion_residual``), and a depthwise local conv
(``local_depthwise``).

The unfold / fold can move memory three ways with the same result: the block calls its
``patches`` module (a `PatchLayout`: `PatchesNHWC` by default, `PixelOrder` in the ONNX graph,
the reference `PatchesNCHW` for Core ML), which `set_patch_layout` swaps. This file writes the
reference way; the faster ones, which differ between eager PyTorch, onnxruntime and Core ML, are
in `patch_layouts`.

A feature map whose side is not a multiple of the patch size is resized bilinearly to the next
multiple before unfolding and back after folding, as ml-cvnets, timm and transformers do.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvNormAct
from .patch_layouts import (  # noqa: F401  (set_patch_layout: re-exported)
    PATCH_LAYOUTS,
    PatchLayout,
    fold_nhwc,
    pixel_order_attention,
    set_patch_layout,
    transform_in_pixel_order,
    unfold_nhwc,
)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection, computed by SDPA."""

    def __init__(self, dim: int, num_heads: int, attn_dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_dropout = attn_dropout
        # qkv rows: [0:d] query, [d:2d] key, [2d:3d] value; heads are contiguous d/heads chunks
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """``x``: [B*P, N, d] unfolded tokens, or with ``grid = (nh, ph, nw, pw)`` [B, H*W, d]
        tokens in pixel order, each pixel attending to the pixels at its position in the other
        patches (the same attention, with the unfold / fold folded into its own transposes)."""
        dropout_p = self.attn_dropout if self.training else 0.0
        hh, hd = self.num_heads, self.head_dim
        if grid is None:
            b, n, d = x.shape  # [B*P, N, d]
            # [B*P, N, 3d] -> [B*P, N, 3, heads, hd] -> [3, B*P, heads, N, hd]
            qkv = self.qkv(x).reshape(b, n, 3, hh, hd).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
            # [B*P, heads, N, hd] -> [B*P, N, d]
            return self.proj(y.transpose(1, 2).reshape(b, n, d))
        return self.proj(pixel_order_attention(self.qkv(x), grid, hh, hd, dropout_p))


class FeedForward(nn.Module):
    """Linear d -> ffn -> SiLU -> dropout -> Linear ffn -> d."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.SiLU(inplace=True)  # fc1's output is read by nothing else
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(self.act(self.fc1(x))))


class TransformerLayer(nn.Module):
    """Pre-norm transformer encoder layer without positional embedding or drop-path."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        ffn_dropout: float = 0.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, attn_dropout)
        self.drop1 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = FeedForward(dim, ffn_dim, ffn_dropout)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, grid: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        x = x + self.drop1(self.attn(self.norm1(x), grid))
        return x + self.drop2(self.mlp(self.norm2(x)))


def unfold_patches(x: torch.Tensor, ph: int, pw: int, layout: str = "nhwc") -> torch.Tensor:
    """[B, C, H, W] -> [B*P, N, C] with P = ph*pw pixel positions and N = (H/ph)*(W/pw) patches.

    Token ``[b*P + i*pw + j, n_h*nw + n_w]`` is pixel ``(n_h*ph + i, n_w*pw + j)`` of image b, the
    layout of ml-cvnets (section 3.1 of the paper: unfold into P-pixel patches). What is written
    here is the reference way (``layout="nchw"``: every reshape at rank <= 4, as Core ML needs);
    ``"nhwc"`` (the default) moves the same memory in one copy (`patch_layouts`).

    Args:
        x: the map ``[B, C, H, W]``, H and W multiples of the patch.
        ph: the patch height.
        pw: the patch width.
        layout: ``"pixels"``, ``"nchw"`` or ``"nhwc"`` (the same tokens, written differently).

    Returns:
        The tokens ``[B*P, N, C]``.
    """
    if layout == "nhwc":
        return unfold_nhwc(x, ph, pw)
    b, c, h, w = x.shape
    nh, nw = h // ph, w // pw
    # [B, C, H, W] -> [B*C*nh, ph, nw, pw] -> [B*C*nh, nw, ph, pw]
    x = x.reshape(b * c * nh, ph, nw, pw).transpose(1, 2)
    # -> [B, C, N, P] -> [B, P, N, C] -> [B*P, N, C]
    return x.reshape(b, c, nh * nw, ph * pw).transpose(1, 3).reshape(b * ph * pw, nh * nw, c)


def fold_patches(
    x: torch.Tensor, batch: int, ph: int, pw: int, nh: int, nw: int, layout: str = "nhwc"
) -> torch.Tensor:
    """Inverse of `unfold_patches`: [B*P, N, C] -> [B, C, nh*ph, nw*pw] (``"nhwc"``: a
    channels-last view, `patch_layouts`).

    Args:
        x: the tokens ``[B*P, N, C]``.
        batch: B.
        ph: the patch height.
        pw: the patch width.
        nh: patches per column.
        nw: patches per row.
        layout: as `unfold_patches`.

    Returns:
        The map ``[B, C, nh*ph, nw*pw]``.
    """
    if layout == "nhwc":
        return fold_nhwc(x, batch, ph, pw, nh, nw)
    c = x.shape[-1]
    # [B*P, N, C] -> [B, P, N, C] -> [B, C, N, P] -> [B*C*nh, nw, ph, pw]
    x = x.reshape(batch, ph * pw, nh * nw, c).transpose(1, 3).reshape(batch * c * nh, nw, ph, pw)
    # -> [B*C*nh, ph, nw, pw] -> [B, C, H, W]
    return x.transpose(1, 2).reshape(batch, c, nh * ph, nw * pw)


class PatchesV1(PatchLayout):
    """The v1 / v3 block's layouts (`PatchLayout`): tokens ``[B*P, N, d]``, or pixel order."""

    def with_layout(self, layout: str) -> PatchLayout:
        """The v1 module for ``layout``: `PatchesNCHW`, `PatchesNHWC` or `PixelOrder`."""
        return {"nchw": PatchesNCHW, "nhwc": PatchesNHWC, "pixels": PixelOrder}[layout]()


class PatchesNCHW(PatchesV1):
    """The reference unfold / fold (every reshape at rank <= 4, as Core ML needs)."""

    layout = "nchw"

    def forward(self, y: torch.Tensor, layers: nn.Module, norm: nn.Module, ph: int, pw: int) -> torch.Tensor:
        b, _, h, w = y.shape
        tokens = norm(layers(unfold_patches(y, ph, pw, "nchw")))  # [B*P, N, d]
        return fold_patches(tokens, b, ph, pw, h // ph, w // pw, "nchw")  # [B, d, H, W]


class PatchesNHWC(PatchesV1):
    """Unfold / fold in one copy each way through the [B, H, W, d] view (the eager default)."""

    layout = "nhwc"

    def forward(self, y: torch.Tensor, layers: nn.Module, norm: nn.Module, ph: int, pw: int) -> torch.Tensor:
        b, _, h, w = y.shape
        tokens = norm(layers(unfold_nhwc(y, ph, pw)))  # [B*P, N, d]
        return fold_nhwc(tokens, b, ph, pw, h // ph, w // pw)  # [B, d, H, W], channels-last view


class PixelOrder(PatchesV1):
    """No unfold or fold: tokens stay in pixel order and attention gathers each patch position's
    pixels (the ONNX graph's layout)."""

    layout = "pixels"

    def forward(self, y: torch.Tensor, layers: nn.Module, norm: nn.Module, ph: int, pw: int) -> torch.Tensor:
        return transform_in_pixel_order(y, layers, norm, ph, pw)  # [B, d, H, W]


class MobileViTBlock(nn.Module):
    """Local conv -> unfold -> transformers across patches -> fold -> projection -> fusion."""

    def __init__(
        self,
        channels: int,
        transformer_dim: int,
        depth: int,
        num_heads: int = 4,
        ffn_dim: int | None = None,
        patch_size: tuple[int, int] = (2, 2),
        kernel_size: int = 3,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        ffn_dropout: float = 0.0,
        skip_connection: bool = True,
        layer_norm_eps: float = 1e-5,
        dilation: int = 1,
        fusion: str = "v1",
        fusion_residual: bool = False,
        local_depthwise: bool = False,
    ) -> None:
        super().__init__()
        if fusion not in ("v1", "v3"):
            raise ValueError(f"fusion must be 'v1' or 'v3', got {fusion!r}")
        self.patch_size = tuple(patch_size)
        self.skip_connection = skip_connection
        self.fusion, self.fusion_residual = fusion, fusion_residual
        ffn_dim = 2 * transformer_dim if ffn_dim is None else ffn_dim
        groups = channels if local_depthwise else 1
        self.conv_local = ConvNormAct(channels, channels, kernel_size, dilation=dilation, groups=groups)
        self.conv_in = nn.Conv2d(channels, transformer_dim, 1, bias=False)
        self.transformer = nn.Sequential(
            *[
                TransformerLayer(
                    transformer_dim, num_heads, ffn_dim, dropout, attn_dropout, ffn_dropout, layer_norm_eps
                )
                for _ in range(depth)
            ]
        )
        self.norm = nn.LayerNorm(transformer_dim, eps=layer_norm_eps)
        self.conv_proj = ConvNormAct(transformer_dim, channels, 1)
        # v1: n x n over [input (C), global (C)]; v3: 1 x 1 over [local (d), global (C)]
        skip_channels = channels if fusion == "v1" else transformer_dim
        fusion_in = skip_channels + channels if skip_connection else channels
        self.conv_fusion = ConvNormAct(fusion_in, channels, kernel_size if fusion == "v1" else 1)
        # how unfold / fold move memory (set_patch_layout swaps it): stateless, the outputs are the same
        self.patches: PatchLayout = PatchesNHWC()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self.conv_in(self.conv_local(x))  # [B, d, H, W]
        y = local
        h, w = y.shape[-2:]
        ph, pw = self.patch_size
        new_h, new_w = math.ceil(h / ph) * ph, math.ceil(w / pw) * pw
        resized = (new_h, new_w) != (h, w)
        if resized:
            y = F.interpolate(y, size=(new_h, new_w), mode="bilinear", align_corners=False)
        y = self.patches(y, self.transformer, self.norm, ph, pw)  # across patches: [B, d, H, W]
        if resized:
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        y = self.conv_proj(y)  # [B, C, H, W]
        if self.skip_connection:  # v1: [input, global]; v3: [local, global]
            y = torch.cat((x if self.fusion == "v1" else local, y), dim=1)
        y = self.conv_fusion(y)
        return y + x if self.fusion_residual else y
