"""ONNX export, verified in onnxruntime against eager PyTorch as part of the export.

The model is exported at a fixed height and width. Dynamic height / width is refused: with
MobileViT's patch unfolding, PyTorch's TorchScript exporter bakes the traced sizes into the
graph and the torch.export-based exporter drops the resize branch needed for sizes that are
not multiples of the patch grid (the resize that ml-cvnets, timm and transformers apply there
is data-dependent control flow); either would write a
model that is silently wrong at some sizes. A dynamic batch dimension is supported and checked.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import MobileViTError
from .optimize import optimize_for_inference

log = logging.getLogger(__name__)


class ExportError(MobileViTError, RuntimeError):
    """An export that cannot be made, or that failed its parity check (the file is deleted)."""


def _check_size(model: nn.Module, img_size: tuple[int, int]) -> None:
    """An export size the model can take: >= 32 px, and a detector's own size (its anchors depend on it)."""
    if len(img_size) != 2 or min(img_size) < 32:
        raise ExportError(f"image size must be two ints >= 32 (the network's output stride), got {img_size}")
    built = getattr(getattr(model, "ssd_config", None), "image_size", None)
    if built is not None and tuple(img_size) != tuple(built):
        raise ExportError(
            f"this detector was built for {built[0]}x{built[1]} inputs (its anchors depend on the size); "
            f"export it at that size, not {img_size[0]}x{img_size[1]}"
        )


def export_core(model: nn.Module, patch_layout: str = "pixels") -> tuple[nn.Module, nn.Module, list[str]]:
    """What an export traces: ``(BN-folded module, eager reference, output names)``.

    Classifiers and segmenters map ``image -> output``; an SSDLite detector its core
    ``image -> (scores, boxes)`` (:class:`~mobilevit.heads.ssdlite.SSDLiteForExport`).
    ``patch_layout``: how the MobileViT blocks unfold / fold in the graph (``"pixels"``: inside
    the attention's own transposes, the fastest in onnxruntime; ``"nchw"``: rank <= 4, for Core
    ML); see :func:`~mobilevit.blocks.set_patch_layout`.
    """
    from ..heads.ssdlite import SSDLite, SSDLiteForExport
    from ..models.blocks import set_patch_layout

    fast = optimize_for_inference(model, channels_last=False)  # the graph has no memory format
    set_patch_layout(fast, patch_layout)
    if isinstance(model, SSDLite):
        return SSDLiteForExport(fast).eval(), SSDLiteForExport(model.eval()).eval(), ["scores", "boxes"]
    return fast, model.eval(), ["output"]


def export_onnx(
    model: nn.Module,
    path: str | Path,
    img_size: tuple[int, int] = (256, 256),
    dynamic_batch: bool = False,
    dynamic_hw: bool = False,
    opset: int = 17,
    atol: float = 1e-4,
    batch: int = 1,
) -> dict[str, Any]:
    """Export ``model`` (BN folded) to ONNX and check it in onnxruntime; returns a report.

    Without ``dynamic_batch`` the graph takes exactly ``batch`` images (fixed shapes let
    onnxruntime plan every buffer); with it, any batch size (traced at 2, checked at 2 and 3).

    Classifiers and segmenters export ``image -> output``; an SSDLite detector exports its
    traceable core ``image -> (scores, boxes)`` (see :class:`~mobilevit.heads.ssdlite.SSDLiteForExport`),
    at the size it was built for (its anchors are baked in).
    """
    if dynamic_hw:
        raise ExportError(
            "dynamic height/width is refused: the PyTorch ONNX exporters either bake the traced sizes into "
            "MobileViT's unfold/fold or drop its resize branch, so the model would be wrong at other sizes. "
            "Export one model per input size (--img-size H W)."
        )
    if not 7 <= opset <= 21:
        raise ExportError(f"unsupported opset {opset}; use 13..21 (17 is the default)")
    _check_size(model, img_size)
    if batch < 1:
        raise ExportError(f"batch must be >= 1, got {batch}")
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ExportError("ONNX export needs onnx and onnxruntime: pip install 'mobilevit[export]'") from e

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fast, reference, output_names = export_core(model)
    x = torch.rand(2 if dynamic_batch else batch, 3, *img_size)
    dynamic_axes = {n: {0: "batch"} for n in ["image", *output_names]} if dynamic_batch else None
    with torch.no_grad(), warnings.catch_warnings():
        # the traced sizes are constants on purpose (fixed H x W); the tracer's warnings say just that
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            fast,
            (x,),
            str(path),
            input_names=["image"],
            output_names=output_names,
            opset_version=opset,
            dynamic_axes=dynamic_axes,
            dynamo=False,
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    checks = []
    batches = [x.shape[0], 3] if dynamic_batch else [x.shape[0]]
    for b in batches:
        xb = torch.rand(b, 3, *img_size)
        with torch.no_grad():
            refs = reference(xb)
        refs = refs if isinstance(refs, tuple) else (refs,)
        gots = session.run(None, {"image": xb.numpy()})
        diff = max(
            float(np.abs(r.numpy() - g).max()) if r.shape == g.shape else float("inf")
            for r, g in zip(refs, gots, strict=True)
        )
        checks.append({"batch": b, "size": list(img_size), "max_abs_diff": diff})
        if not diff <= atol:
            path.unlink(missing_ok=True)
            raise ExportError(
                f"onnxruntime disagrees with PyTorch at batch {b}, {img_size[0]}x{img_size[1]}: max abs diff "
                f"{diff:.3g} > {atol:g}; the export was deleted"
            )
    return {
        "path": str(path),
        "opset": opset,
        "img_size": list(img_size),
        "dynamic_batch": dynamic_batch,
        "batch": None if dynamic_batch else batch,
        "outputs": output_names,
        "checks": checks,
        "bytes": path.stat().st_size,
    }
