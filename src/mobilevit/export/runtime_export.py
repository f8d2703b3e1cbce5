"""The one export skeleton of the on-device runtimes (ExecuTorch, LiteRT, OpenVINO).

Each export takes the same steps: refuse a request that cannot work -> read the calibration and
validation images (reduced precision) -> build the graph the runtime takes -> convert and write
the file -> load it in the runtime -> check it (fp32: parity with eager PyTorch; int8 / bf16:
top-1 against fp32 on labelled images) -> report. A runtime contributes only what differs, as a
`RuntimeBackend`: its graph, its convert, its loader and what it computed in.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
from torch import nn

from .calibration import Int8Source, load_int8_data
from .errors import ExportError
from .reports import ExportReport
from .runtime_checks import (
    DEFAULT_MAX_DROP,
    Runner,
    check_criteria,
    check_fp32,
    check_reduced,
    check_request,
    require,
)

log = logging.getLogger(__name__)


@dataclass
class Graph:
    """What a runtime converts: the traced module, the eager reference, the output names, and
    report fields of the graph's making (e.g. ``modules_rewritten``)."""

    module: nn.Module
    reference: nn.Module
    outputs: list[str]
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RuntimeBackend:
    """One runtime's part of the skeleton.

    ``convert(graph, example, calib, precision, path)`` writes the file (``calib``: int8
    calibration images, else None) and returns report fields; ``load(path)`` gives a
    `Runner`; ``computed_as(run, precision)`` says what the runtime
    computed in here (default: the precision asked for).
    """

    name: str  # as shown: "ExecuTorch"
    format: str  # as in ExportReport.format: "executorch"
    suffix: str  # the file's: ".pte"
    modules: tuple[str, ...]  # imported before any work: a missing one names the extra to install
    graph: Callable[[nn.Module], Graph]
    convert: Callable[[Graph, torch.Tensor, np.ndarray | None, str, Path], dict[str, Any]]
    load: Callable[[Path], Runner]
    float_precisions: tuple[str, ...] = ("fp32",)  # non-int8 precisions it writes
    companions: tuple[str, ...] = ()  # suffixes of the files written beside (OpenVINO: .bin)
    computed_as: Callable[[Runner, str], str] | None = None
    loaded_fields: Callable[[Runner], dict[str, Any]] | None = None  # report fields read off the loaded file

    def files(self, path: Path) -> list[Path]:
        """The export's files: ``path`` and its companions."""
        return [path, *(path.with_suffix(s) for s in self.companions)]


class ExportOptions(TypedDict, total=False):
    """The keyword options every runtime export takes (see `export_to_runtime`)."""

    int8: bool
    data: str | Path | Int8Source | None
    calib_images: int
    max_val: int | None
    model_classes: list[str] | None
    max_drop: float
    min_agreement: float | None
    atol: float


def export_to_runtime(
    backend: RuntimeBackend,
    model: nn.Module,
    path: str | Path,
    *,
    img_size: tuple[int, int] = (256, 256),
    batch: int = 1,
    int8: bool = False,
    precision: str = "fp32",
    data: str | Path | Int8Source | None = None,
    calib_images: int = 64,
    max_val: int | None = None,
    model_classes: list[str] | None = None,
    max_drop: float = DEFAULT_MAX_DROP,
    min_agreement: float | None = None,
    atol: float = 1e-4,
) -> ExportReport:
    """Export ``model`` through ``backend`` and check the file in its runtime.

    Args:
        backend: the runtime's part (`RuntimeBackend`).
        model: a classifier, segmenter or detector (a detector exports its core).
        path: the file to write (its suffix the runtime's).
        img_size: the input ``(H, W)``.
        batch: the fixed batch of the file.
        int8: post-training int8 (classifiers), calibrated on ``data``.
        precision: the float precision (``backend.float_precisions``); with ``int8``, that of the
            ops left unquantized.
        data: labelled images of the model's classes for int8 / bf16 (``"digits"``, a folder with
            ``train/`` and ``val/``, or an `Int8Source`); required there.
        calib_images: calibration images drawn from ``train/``.
        max_val: validate on a seeded subset of ``val/`` of this size (None: all of it).
        model_classes: the model's class names (a mismatch with the data's is an error).
        max_drop: int8 / bf16 files losing more top-1 than this (percentage points) are deleted.
        min_agreement: top-1 agreement with fp32 a reduced file must also reach (None: only
            where accuracy cannot be computed).
        atol: fp32 parity tolerance.

    Returns:
        The `ExportReport`. A file that fails its check is deleted and
        `ExportError` says by how much it missed.
    """
    if precision not in backend.float_precisions:
        raise ExportError(
            f"{backend.name} precision must be one of {', '.join(backend.float_precisions)}, got {precision!r}"
        )
    reduced = "int8" if int8 else (None if precision == backend.float_precisions[0] else precision)
    check_criteria(max_drop, min_agreement)
    path = check_request(model, path, backend.suffix, img_size, batch, reduced)
    for module in backend.modules:
        require(module, backend.name)
    data_ = None
    if reduced:
        if calib_images < 1:
            raise ExportError(f"calibration needs at least one image, got calib_images={calib_images}")
        if data is None:
            raise ExportError(
                f"{reduced} is calibrated and judged on labelled images of the model's classes: pass data "
                "(a folder with train/ and val/ class folders, or 'digits' for a digits model)"
            )
        data_ = load_int8_data(
            data,
            img_size,
            calib_images,
            max_val,
            model_classes=model_classes,
            num_classes=getattr(model, "num_classes", None),
        )
    graph = backend.graph(model)
    example = torch.rand(batch, 3, *img_size)
    files = backend.files(path)
    for f in files:  # never leave an older model under the name of this one
        f.unlink(missing_ok=True)
    try:
        fields = backend.convert(graph, example, data_.calib if (int8 and data_) else None, precision, path)
        run = backend.load(path)
        asked = reduced or "fp32"
        computed = backend.computed_as(run, asked) if backend.computed_as else asked
        if backend.loaded_fields:
            fields.update(backend.loaded_fields(run))
        report = ExportReport(
            path=str(path),
            format=backend.format,
            precision=asked,
            img_size=(int(img_size[0]), int(img_size[1])),
            batch=batch,
            outputs=graph.outputs,
            files=[str(f) for f in files],
            **graph.fields,
            **fields,
        )
        if reduced and data_ is not None:
            if reduced not in computed:
                log.warning(
                    "%s: this CPU has no native %s; the runtime computes in %s here, and the check below "
                    "judges that, not %s",
                    backend.name,
                    reduced,
                    computed,
                    reduced,
                )
            report.accuracy = check_reduced(
                run,
                graph.reference,
                data_,
                files=files,
                what=f"{backend.name} {reduced}",
                batch=batch,
                precision=reduced,
                computed_as=computed,
                model_classes=model_classes,
                max_drop=max_drop,
                min_agreement=min_agreement,
            )
        else:
            report.checks = [check_fp32(run, graph.reference, files, backend.name, img_size, batch, atol)]
    except BaseException:  # a file half written, not runnable or failing its check is not left behind
        for f in files:
            f.unlink(missing_ok=True)
        raise
    report.bytes = sum(f.stat().st_size for f in files)
    return report
