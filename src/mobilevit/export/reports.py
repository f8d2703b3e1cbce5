"""What an export returns: the file it wrote and the checks that file passed, as dataclasses.

Every export is checked before it is kept: fp32 files by output parity with eager PyTorch
(`ParityCheck`), reduced-precision classifiers (int8, bf16) by top-1 accuracy against fp32
on labelled images (`AccuracyCheck`). ``to_dict()`` gives the JSON form the CLI and the
benchmarks write.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ParityCheck:
    """Outputs of the exported file against eager PyTorch on random images at one batch and size."""

    batch: int
    size: tuple[int, int]
    max_abs_diff: float


@dataclass
class AccuracyCheck:
    """A reduced-precision classifier file against the fp32 model on labelled validation images."""

    precision: str  # the file's reduced precision: int8 | bf16
    computed_as: str  # what this machine's runtime computed in (bf16 without native bf16: f32)
    top1_agreement: float  # fraction of images where both give the same top-1 class
    max_rel_logit_diff: float  # largest logit change, relative to the largest fp32 logit
    fp32_top1: float | None  # top-1 accuracy of the fp32 model (None: the classes are not the data's)
    top1: float | None  # top-1 accuracy of the reduced-precision file
    top1_drop_pt: float | None  # fp32_top1 - top1, in percentage points
    accuracy_note: str | None  # why accuracy was not computed, when it was not
    val_images: int
    calib_images: int
    calib_split: str  # train | val: where the calibration images came from
    data: str  # "digits" or the folder
    preprocessing: str  # how the images were brought to the model's size
    skipped_images: list[str] = field(default_factory=list)
    criterion: str = ""  # the rule the file was kept by, in words


@dataclass
class Delegation:
    """ExecuTorch: the ops inside XNNPACK delegates and those left on the portable kernels."""

    delegated_ops: int
    portable_ops: dict[str, int]
    delegated_fraction: float
    delegate_pieces: int


@dataclass
class ExportReport:
    """One exported file (or folder) and the check it passed."""

    path: str
    format: str  # onnx | executorch | litert | openvino | coreml
    precision: str  # fp32 | int8 | bf16
    img_size: tuple[int, int]
    batch: int | None  # None: a dynamic batch
    outputs: list[str]
    bytes: int = 0
    checks: list[ParityCheck] = field(default_factory=list)  # fp32 parity (empty for reduced precision)
    accuracy: AccuracyCheck | None = None  # reduced precision
    check_note: str | None = None  # a check that could not run here (Core ML off macOS)
    files: list[str] = field(default_factory=list)  # every file written (OpenVINO: .xml and .bin)
    opset: int | None = None  # ONNX
    delegation: Delegation | None = None  # ExecuTorch
    modules_rewritten: int | None = None  # ExecuTorch: modules swapped for XNNPACK-friendly ones
    inference_precision: str | None = None  # OpenVINO: what its CPU plugin computed in here

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


@dataclass
class Int8Timing:
    """The onnxruntime int8 file against its fp32 twin on this machine, per image (alternating rounds)."""

    fp32_ms_per_image: float
    int8_ms_per_image: float
    ratio_int8_vs_fp32: float
    timed_batch: int
    threads: int


@dataclass
class Int8Report:
    """``export_int8``: the int8 ONNX file (written or not), its fp32 twin, accuracy and time."""

    path: str
    fp32_path: str
    written: bool
    img_size: tuple[int, int]
    batch: int | None
    fp32_checks: list[ParityCheck]
    accuracy: AccuracyCheck
    timing: Int8Timing
    bytes: int = 0
    refused: str | None = None  # why the int8 file was not written
    keep_float: list[str] = dataclasses.field(default_factory=list)  # modules left in fp32

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready values (tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


__all__ = [
    "AccuracyCheck",
    "Delegation",
    "ExportReport",
    "Int8Report",
    "Int8Timing",
    "ParityCheck",
]
