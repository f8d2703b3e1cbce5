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

from .errors import ExportError, check_size
from .optimize import optimize_for_inference
from .reports import ExportReport, ParityCheck

log = logging.getLogger(__name__)


def export_core(model: nn.Module, patch_layout: str = "pixels") -> tuple[nn.Module, nn.Module, list[str]]:
    """What an export traces: ``(BN-folded module, eager reference, output names)``.

    Classifiers and segmenters map ``image -> output``; an SSDLite detector its core
    ``image -> (scores, boxes)`` (`SSDLiteForExport`).
    ``patch_layout``: how the MobileViT blocks unfold / fold in the graph (``"pixels"``: inside
    the attention's own transposes, the fastest in onnxruntime; ``"nhwc"``: the XNNPACK graphs';
    ``"nchw"``: rank <= 4, for Core ML), set on the copy by `set_patch_layout`.
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
    patch_layout: str = "pixels",
) -> ExportReport:
    """Export ``model`` (BN folded) to ONNX and check it in onnxruntime.

    Without ``dynamic_batch`` the graph takes exactly ``batch`` images (fixed shapes let
    onnxruntime plan every buffer); with it, any batch size (traced at 2, checked at 2 and 3).

    Classifiers and segmenters export ``image -> output``; an SSDLite detector exports its
    traceable core ``image -> (scores, boxes)`` (see `SSDLiteForExport`),
    at the size it was built for (its anchors are baked in).

    Args:
        model: a classifier, segmenter or detector (put in eval mode).
        path: the ``.onnx`` file to write.
        img_size: the input ``(H, W)``; a detector's own size.
        dynamic_batch: a dynamic batch dimension (else the file takes exactly ``batch``).
        dynamic_hw: refused with the reason (one file per size).
        opset: the ONNX opset, 14..21.
        atol: the largest accepted difference against eager PyTorch.
        batch: the fixed batch without ``dynamic_batch``.
        patch_layout: how the MobileViT blocks move their tokens in the graph (`set_patch_layout`):
            ``"pixels"``, the fastest in onnxruntime (docs/patch_layouts.md), ``"nhwc"`` or ``"nchw"``.

    Returns:
        The `ExportReport` with the parity ``checks``.
    """
    if dynamic_hw:
        raise ExportError(
            "dynamic height/width is refused: the PyTorch ONNX exporters either bake the traced sizes into "
            "MobileViT's unfold/fold or drop its resize branch, so the model would be wrong at other sizes. "
            "Export one model per input size (--img-size H W)."
        )
    if not 14 <= opset <= 21:  # 14: the first with scaled_dot_product_attention's ops
        raise ExportError(f"unsupported opset {opset}; use 14..21 (17 is the default)")
    check_size(model, img_size)
    if batch < 1:
        raise ExportError(f"batch must be >= 1, got {batch}")
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ExportError("ONNX export needs onnx and onnxruntime: pip install 'mobilevit[export]'") from e

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fast, reference, output_names = export_core(model, patch_layout)
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
        checks.append(ParityCheck(b, (int(img_size[0]), int(img_size[1])), diff))
        if not diff <= atol:
            path.unlink(missing_ok=True)
            raise ExportError(
                f"onnxruntime disagrees with PyTorch at batch {b}, {img_size[0]}x{img_size[1]}: max abs diff "
                f"{diff:.3g} > {atol:g}; the export was deleted"
            )
    return ExportReport(
        path=str(path),
        format="onnx",
        precision="fp32",
        img_size=(int(img_size[0]), int(img_size[1])),
        batch=None if dynamic_batch else batch,
        outputs=output_names,
        bytes=path.stat().st_size,
        checks=checks,
        files=[str(path)],
        opset=opset,
    )


def ort_session(onnx_file: Path, threads: int | None = None) -> Any:
    """An onnxruntime CPU session on ``onnx_file`` with ``threads`` intra-op threads (default: torch's
    thread count), all graph optimisations."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(onnx_file), opts, providers=["CPUExecutionProvider"])
