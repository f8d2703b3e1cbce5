"""The checks an export must pass in its own runtime before it is kept (a file that fails is
deleted, and the error says by how much it missed), and the request checks made before any work.

- fp32: every output of the runtime against eager PyTorch on random images at the export's size
  and batch, max abs diff <= ``atol`` (`ParityCheck`);
- reduced precision (bf16, int8; classifiers): top-1 accuracy of the file and of the fp32 eager
  model on labelled validation images, the model's own (`calibration`). The file is kept
  when its top-1 drops by at most ``max_drop`` percentage points; top-1 agreement with fp32 is
  reported beside it, and ``min_agreement`` (when given) must be reached too. Where the model's
  classes are unknown, accuracy cannot be computed and agreement alone decides
  (`DEFAULT_MIN_AGREEMENT`).
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
from .calibration import Int8Data
from .errors import ExportError, check_size
from .reports import AccuracyCheck, ParityCheck

# one batch of float32 NCHW images in, the model's outputs (in export_core's order) out
Runner = Callable[[np.ndarray], list[np.ndarray]]

EXTRA = "mobile"
DEFAULT_MAX_DROP = 0.5  # percentage points of top-1
DEFAULT_MIN_AGREEMENT = 0.98  # the rule where accuracy cannot be computed


def require(module: str, runtime: str, extra: str = EXTRA) -> Any:
    """Import ``module`` or say which extra installs ``runtime``.

    Args:
        module: the module to import.
        runtime: the runtime's name, for the message.
        extra: the pip extra that installs it.

    Returns:
        The imported module; `ExportError` naming the extra otherwise.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ExportError(
            f"the {runtime} export needs {module.split('.')[0]}, which is not installed: "
            f"pip install 'mobilevit[{extra}]'"
        ) from e


def check_request(
    model: nn.Module,
    path: str | Path,
    suffix: str,
    img_size: tuple[int, int],
    batch: int,
    reduced: str | None,
) -> Path:
    """Refuse, before any work, what the export cannot make.

    Args:
        model: the model to export.
        path: the file to write.
        suffix: the suffix the runtime's files take (``.pte``, ``.tflite``, ``.xml``).
        img_size: the export's ``(H, W)``.
        batch: the export's fixed batch.
        reduced: ``"int8"`` / ``"bf16"`` for a reduced-precision export (classifiers only), else None.

    Returns:
        ``path`` as a `Path`, its folder created.
    """
    from ..models import BackboneBase

    path = Path(path)
    if path.suffix != suffix:
        raise ExportError(f"the file name must end in {suffix}, got {path}")
    check_size(model, img_size)
    if batch < 1:
        raise ExportError(f"batch must be >= 1, got {batch}")
    if reduced and not (isinstance(model, BackboneBase) and model.num_classes > 0):
        raise ExportError(
            f"{reduced} is checked as top-1 agreement with fp32 on labelled images, so it is offered for "
            f"classifiers; got a {type(model).__name__}. Export segmentation and detection models in fp32."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def check_criteria(max_drop: float, min_agreement: float | None) -> None:
    """A keep rule made of numbers: ``max_drop`` >= 0 points, ``min_agreement`` >= 0 (above 1
    no file passes: a way to see the figures of one that would be deleted)."""
    if not max_drop >= 0:
        raise ExportError(f"max_drop must be >= 0 percentage points, got {max_drop}")
    if min_agreement is not None and not min_agreement >= 0.0:
        raise ExportError(f"min_agreement must be >= 0, got {min_agreement}")


def calibrate(module: Callable[[torch.Tensor], Any], images: np.ndarray, batch: int) -> None:
    """Run ``images`` through a prepared (observed) graph at its fixed ``batch``.

    Args:
        module: a PT2E-prepared graph.
        images: calibration images ``[N, 3, H, W]`` float32.
        batch: the graph's batch (the last batch is padded).
    """
    with torch.no_grad():
        for xb, _ in padded_batches(images, batch):
            module(torch.from_numpy(xb))


def _as_tuple(out: Any) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


def check_fp32(
    run: Runner,
    reference: nn.Module,
    files: list[Path],
    runtime: str,
    img_size: tuple[int, int],
    batch: int,
    atol: float = 1e-4,
    seed: int = 0,
) -> ParityCheck:
    """Max abs diff of every output against eager PyTorch; over ``atol``: `ExportError`
    (the skeleton, `export_to_runtime`, then deletes the ``files``).

    Args:
        run: the loaded file's runner.
        reference: the eager model.
        files: the export's files (the first one named in messages as deleted).
        runtime: the runtime's name, for messages.
        img_size: the export's ``(H, W)``.
        batch: the export's fixed batch.
        atol: the largest accepted difference.
        seed: the random images' seed.

    Returns:
        The `ParityCheck`.
    """
    x = torch.rand(batch, 3, *img_size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        refs = _as_tuple(reference(x))
    gots = run(x.numpy())
    diff = max(
        float(np.abs(r.numpy() - g).max()) if tuple(r.shape) == tuple(g.shape) else float("inf")
        for r, g in zip(refs, gots, strict=True)
    )
    if not diff <= atol:
        raise ExportError(
            f"{runtime} disagrees with PyTorch at batch {batch}, {img_size[0]}x{img_size[1]}: max abs diff "
            f"{diff:.3g} > {atol:g}; {files[0]} was deleted"
        )
    return ParityCheck(batch, (int(img_size[0]), int(img_size[1])), diff)


def logits_of(run: Runner, images: np.ndarray, batch: int) -> np.ndarray:
    """A classifier file's logits for ``images``, at its fixed batch size.

    Args:
        run: the file's runner.
        images: ``[N, 3, H, W]`` float32, or uint8 pixel values (`to_float`).
        batch: the file's fixed batch.

    Returns:
        The logits ``[N, K]``.
    """
    return np.concatenate([run(xb)[0][:n] for xb, n in padded_batches(images, batch)])


def eager_logits(model: nn.Module, images: np.ndarray, batch: int) -> np.ndarray:
    """The eager model's logits for ``images``, in batches of ``batch``.

    Args:
        model: the eager classifier.
        images: ``[N, 3, H, W]`` float32.
        batch: the batch to run at.

    Returns:
        The logits ``[N, K]``.
    """
    with torch.no_grad():
        return np.concatenate(
            [model(torch.from_numpy(xb)).numpy()[:n] for xb, n in padded_batches(images, batch)]
        )


def accuracy_check(
    ref: np.ndarray,
    got: np.ndarray,
    data: Int8Data,
    *,
    precision: str,
    computed_as: str | None = None,
    model_classes: list[str] | None = None,
) -> AccuracyCheck:
    """Reduced-precision logits ``got`` against fp32 logits ``ref`` on ``data.val``.

    Args:
        ref: fp32 logits ``[N, K]``.
        got: the reduced-precision file's logits ``[N, K]``.
        data: the validation images' labels and provenance.
        precision: the file's precision (int8, bf16).
        computed_as: what the runtime computed in here (default: ``precision``).
        model_classes: the model's class names, when known: accuracy is computed where they are
            the data's (or, unknown, where the counts match).

    Returns:
        The `AccuracyCheck` (its ``criterion`` is set by `judge`).
    """
    agreement = float((ref.argmax(1) == got.argmax(1)).mean())
    rel = float(np.abs(ref - got).max() / max(float(np.abs(ref).max()), 1e-12))
    k = ref.shape[1]
    note = None
    if model_classes is not None and list(model_classes) != data.classes:
        note = f"the model's classes ({k}) are not the data's ({len(data.classes)}): accuracy not computed"
    elif k != len(data.classes):
        note = f"the model has {k} classes, the data {len(data.classes)}: accuracy not computed"
    fp32_top1 = top1 = drop = None
    if note is None:
        fp32_top1 = float((ref.argmax(1) == data.labels).mean())
        top1 = float((got.argmax(1) == data.labels).mean())
        drop = 100.0 * (fp32_top1 - top1)
    return AccuracyCheck(
        precision=precision,
        computed_as=computed_as or precision,
        top1_agreement=agreement,
        max_rel_logit_diff=rel,
        fp32_top1=fp32_top1,
        top1=top1,
        top1_drop_pt=drop,
        accuracy_note=note,
        val_images=int(len(data.val)),
        calib_images=int(len(data.calib)),
        calib_split=data.calib_split,
        data=data.source,
        preprocessing=data.preprocessing,
        skipped_images=list(data.skipped),
    )


def judge(acc: AccuracyCheck, max_drop: float, min_agreement: float | None) -> str | None:
    """Apply the keep rule to ``acc`` (sets ``acc.criterion``); the reason it fails, or None.

    The top-1 drop against fp32 decides where accuracy was computed (at most ``max_drop`` points);
    ``min_agreement``, when given, must be reached too; where accuracy was not computed, agreement
    decides alone (``min_agreement`` or `DEFAULT_MIN_AGREEMENT`).

    Args:
        acc: the figures of the file.
        max_drop: the largest accepted top-1 drop, percentage points.
        min_agreement: a top-1 agreement to reach too, or None.

    Returns:
        None when the file is kept, else why not (with the numbers).
    """
    rules, failed = [], []
    if acc.top1_drop_pt is not None:
        rules.append(f"top-1 drop <= {max_drop:g} pt")
        if acc.top1_drop_pt > max_drop + 1e-9:
            failed.append(
                f"loses {acc.top1_drop_pt:.2f} pt of top-1 on the {acc.val_images} {acc.data} validation "
                f"images ({100 * acc.fp32_top1:.2f}% -> {100 * acc.top1:.2f}%), more than {max_drop:g}"
            )
    if min_agreement is None and acc.top1_drop_pt is None:
        min_agreement = DEFAULT_MIN_AGREEMENT
    if min_agreement is not None:
        rules.append(f"top-1 agreement >= {min_agreement:g}")
        if acc.top1_agreement < min_agreement:
            failed.append(
                f"agrees with fp32 on {acc.top1_agreement:.4f} of the {acc.val_images} {acc.data} validation "
                f"images, below {min_agreement:g}"
            )
    acc.criterion = " and ".join(rules)
    return "; ".join(failed) or None


def check_reduced(
    run: Runner,
    reference: nn.Module,
    data: Int8Data,
    *,
    files: list[Path],
    what: str,
    batch: int,
    precision: str,
    computed_as: str | None = None,
    model_classes: list[str] | None = None,
    max_drop: float = DEFAULT_MAX_DROP,
    min_agreement: float | None = None,
) -> AccuracyCheck:
    """The reduced-precision file against the fp32 eager model on ``data.val``; a file that fails
    `judge` raises `ExportError` saying by how much (the skeleton then
    deletes the ``files``).

    Args:
        run: the loaded file's runner.
        reference: the fp32 eager model.
        data: the labelled validation images.
        files: the export's files (the first one named in messages as deleted).
        what: e.g. ``"ExecuTorch int8"``, for messages.
        batch: the file's fixed batch.
        precision: the file's precision (int8, bf16).
        computed_as: what the runtime computed in here.
        model_classes: the model's class names, when known.
        max_drop: the largest accepted top-1 drop, in percentage points.
        min_agreement: a top-1 agreement the file must reach too (None: only where accuracy
            cannot be computed, at `DEFAULT_MIN_AGREEMENT`).

    Returns:
        The `AccuracyCheck`.
    """
    ref = eager_logits(reference, data.val, batch)
    got = logits_of(run, data.val, batch)
    acc = accuracy_check(
        ref, got, data, precision=precision, computed_as=computed_as, model_classes=model_classes
    )
    failure = judge(acc, max_drop, min_agreement)
    if failure:
        raise ExportError(
            f"{what} {failure} (largest logit "
            f"change {100 * acc.max_rel_logit_diff:.1f}% of the largest fp32 logit); {files[0]} was deleted. "
            "A model calibrated on other images than its own, or with random weights, loses more: "
            "calibrate on its own data (--int8-data), or loosen --max-drop / --min-agreement."
        )
    return acc
