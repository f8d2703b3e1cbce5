"""Core ML export (``coremltools``, ML program) of the BN-folded model.

Conversion runs anywhere coremltools installs (Linux included); running the converted model needs
macOS, so the parity check against eager PyTorch runs there and is reported as skipped elsewhere.
The model is converted from a TorchScript trace at a fixed input size: a trace records MobileViT's
unfold / fold reshapes with the traced sizes, so a model claiming flexible sizes would be wrong at
the others (the patch grid and its resize are fixed at trace time), and that is refused like
dynamic ONNX sizes.
Unfold / fold stay at rank <= 4, within Core ML's rank-5 limit.
"""

from __future__ import annotations

import logging
import platform
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import ExportError, check_size
from .onnx import export_core
from .reports import ExportReport, ParityCheck

log = logging.getLogger(__name__)


def export_coreml(
    model: nn.Module,
    path: str | Path,
    img_size: tuple[int, int] = (256, 256),
    batch: int = 1,
    dynamic_hw: bool = False,
    atol: float = 1e-3,
) -> ExportReport:
    """Convert ``model`` (BN folded) to a Core ML ``.mlpackage``; returns a report.

    Classifiers and segmenters map ``image -> output``; an SSDLite detector exports its core
    ``image -> (scores, boxes)`` at the size it was built for. On macOS the package is run once
    and compared with eager PyTorch (``atol``; Core ML computes in fp16 on some units).

    Args:
        model: a classifier, segmenter or detector (put in eval mode).
        path: the ``.mlpackage`` folder to write.
        img_size: the input ``(H, W)``; a detector's own size.
        batch: the fixed batch.
        dynamic_hw: refused with the reason (one file per size).
        atol: the largest accepted difference against eager PyTorch (macOS only).

    Returns:
        The `ExportReport`: ``checks`` on macOS, else ``check_note`` says why none ran.
    """
    if dynamic_hw:
        raise ExportError(
            "flexible height/width is refused for Core ML: the traced unfold/fold reshapes keep the traced "
            "sizes, so the model would be wrong at other sizes. Export one model per input size (--img-size H W)."
        )
    check_size(model, img_size)
    if Path(path).suffix != ".mlpackage":
        raise ExportError(f"a Core ML ML program is a folder ending in .mlpackage, got {path}")
    if batch < 1:
        raise ExportError(f"batch must be >= 1, got {batch}")
    try:
        import coremltools as ct
    except ImportError as e:
        raise ExportError("Core ML export needs coremltools: pip install 'mobilevit[export]'") from e
    fast, reference, outputs = export_core(model, patch_layout="nchw")  # rank <= 4 reshapes
    x = torch.rand(batch, 3, *img_size)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings: the sizes are constants on purpose
        traced = torch.jit.trace(fast, x)
        mlmodel = ct.convert(
            traced,
            inputs=[ct.TensorType(name="image", shape=tuple(x.shape))],
            outputs=[ct.TensorType(name=n) for n in outputs],
            convert_to="mlprogram",
            minimum_deployment_target=ct.target.iOS16,
        )
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mlmodel.save(str(path))
    report = ExportReport(
        path=str(path),
        format="coreml",
        precision="fp32",
        img_size=(int(img_size[0]), int(img_size[1])),
        batch=batch,
        outputs=outputs,
        files=[str(path)],
    )
    if platform.system() != "Darwin":
        report.check_note = "skipped: running a Core ML model needs macOS"
        return report
    with torch.no_grad():
        refs = reference(x)
    refs = refs if isinstance(refs, tuple) else (refs,)
    got = mlmodel.predict({"image": x.numpy()})
    diff = max(float(np.abs(r.numpy() - got[n]).max()) for r, n in zip(refs, outputs, strict=True))
    report.checks = [ParityCheck(batch, (int(img_size[0]), int(img_size[1])), diff)]
    if not diff <= atol:
        shutil.rmtree(path, ignore_errors=True)
        raise ExportError(
            f"Core ML disagrees with PyTorch: max abs diff {diff:.3g} > {atol:g}; the export was deleted"
        )
    return report
