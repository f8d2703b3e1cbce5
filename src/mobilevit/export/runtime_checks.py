"""What the ExecuTorch, LiteRT and OpenVINO exports share: the runtime import with the extra to
install, calibration data for int8, and the checks an export must pass in its own runtime before
it is kept (a file that fails is deleted, and the error says by how much it missed).

- fp32: every output of the runtime against eager PyTorch on random images at the export's size
  and batch, max abs diff <= ``atol``;
- reduced precision (bf16, int8; classifiers): top-1 agreement with the fp32 eager model on the
  validation images (the built-in digits by default, like the onnxruntime int8 report), which
  must reach ``min_agreement``; the top-1 accuracy of each where the classes match.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .batches import padded_batches
from .int8 import Int8Data, accuracy_figures
from .onnx import ExportError, _check_size

# one batch of float32 NCHW images in, the model's outputs (in export_core's order) out
Runner = Callable[[np.ndarray], list[np.ndarray]]

EXTRA = "mobile"


def require(module: str, runtime: str) -> Any:
    """Import ``module`` or say which extra installs ``runtime``."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ExportError(
            f"the {runtime} export needs {module.split('.')[0]}, which is not installed: "
            f"pip install 'mobilevit[{EXTRA}]'"
        ) from e


def check_request(
    model: nn.Module,
    path: str | Path,
    suffix: str,
    img_size: tuple[int, int],
    batch: int,
    reduced: str | None,
) -> Path:
    """Refuse, before any work, what the export cannot make: a wrong file suffix, a size or batch
    the model cannot take, reduced precision for a model that is not a classifier."""
    from ..models import BackboneBase

    path = Path(path)
    if path.suffix != suffix:
        raise ExportError(f"the file name must end in {suffix}, got {path}")
    _check_size(model, img_size)
    if batch < 1:
        raise ExportError(f"batch must be >= 1, got {batch}")
    if reduced and not (isinstance(model, BackboneBase) and model.num_classes > 0):
        raise ExportError(
            f"{reduced} is checked as top-1 agreement with fp32 on labelled images, so it is offered for "
            f"classifiers; got a {type(model).__name__}. Export segmentation and detection models in fp32."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def calibrate(module: Callable[[torch.Tensor], Any], images: np.ndarray, batch: int) -> None:
    """Run ``images`` through a prepared (observed) graph at its fixed ``batch``."""
    with torch.no_grad():
        for xb, _ in padded_batches(images, batch):
            module(torch.from_numpy(xb))


def _as_tuple(out: Any) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


def check_fp32(
    run: Runner,
    reference: nn.Module,
    path: Path,
    runtime: str,
    img_size: tuple[int, int],
    batch: int,
    atol: float = 1e-4,
    seed: int = 0,
) -> dict[str, Any]:
    """Max abs diff of every output against eager PyTorch; over ``atol``: the file is deleted."""
    x = torch.rand(batch, 3, *img_size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        refs = _as_tuple(reference(x))
    try:
        gots = run(x.numpy())
    except Exception:
        path.unlink(missing_ok=True)
        raise
    diff = max(
        float(np.abs(r.numpy() - g).max()) if tuple(r.shape) == tuple(g.shape) else float("inf")
        for r, g in zip(refs, gots, strict=True)
    )
    if not diff <= atol:
        path.unlink(missing_ok=True)
        raise ExportError(
            f"{runtime} disagrees with PyTorch at batch {batch}, {img_size[0]}x{img_size[1]}: max abs diff "
            f"{diff:.3g} > {atol:g}; {path} was deleted"
        )
    return {"batch": batch, "size": list(img_size), "max_abs_diff": diff}


def logits_of(run: Runner, images: np.ndarray, batch: int) -> np.ndarray:
    """A classifier file's logits for ``images``, at its fixed batch size."""
    return np.concatenate([run(xb)[0][:n] for xb, n in padded_batches(images, batch)])


def check_reduced(
    run: Runner,
    reference: nn.Module,
    data: Int8Data,
    path: Path,
    what: str,
    batch: int,
    model_classes: list[str] | None,
    min_agreement: float,
) -> dict[str, Any]:
    """Top-1 agreement of the reduced-precision file with the fp32 eager model on ``data.val``;
    below ``min_agreement``: the file is deleted."""
    with torch.no_grad():
        ref = np.concatenate(
            [reference(torch.from_numpy(xb)).numpy()[:n] for xb, n in padded_batches(data.val, batch)]
        )
    try:
        got = logits_of(run, data.val, batch)
    except Exception:
        path.unlink(missing_ok=True)
        raise
    figures = accuracy_figures(ref, got, data, model_classes)
    if figures["top1_agreement"] < min_agreement:
        path.unlink(missing_ok=True)
        raise ExportError(
            f"{what} agrees with fp32 on {figures['top1_agreement']:.4f} of the {figures['val_images']} "
            f"{data.source} validation images, below {min_agreement:g} (largest logit change "
            f"{100 * figures['max_rel_logit_diff']:.1f}% of the largest fp32 logit); {path} was deleted. "
            "A model trained on other images than the calibration data, or with random weights, agrees "
            "less: calibrate on its own data (--int8-data) or lower --min-agreement."
        )
    return figures


def verify(
    run: Runner,
    reference: nn.Module,
    path: Path,
    runtime: str,
    img_size: tuple[int, int],
    batch: int,
    atol: float,
    reduced: str | None = None,
    data: Int8Data | None = None,
    model_classes: list[str] | None = None,
    min_agreement: float = 0.98,
) -> dict[str, Any]:
    """The check an export must pass: fp32 parity (``{"checks": [...]}``), or with ``reduced``
    (``"int8"`` / ``"bf16"``) top-1 agreement on ``data`` (``{reduced: figures}``)."""
    if reduced is None:
        return {"checks": [check_fp32(run, reference, path, runtime, img_size, batch, atol)]}
    what = f"{runtime} {reduced}"
    return {reduced: check_reduced(run, reference, data, path, what, batch, model_classes, min_agreement)}
