"""Post-training int8 quantization of a classifier's ONNX export, judged by what it costs and gains.

The paper's claim is latency on devices, so int8 is offered as an optimisation only where it is
one. `export_int8` writes and verifies the fp32 ONNX export (`export_onnx`),
quantizes it with onnxruntime's static quantization (QDQ format, int8 weights per output
channel, int8 activations calibrated on training images) and then measures both sides on this
machine:

- **accuracy**: the top-1 accuracy of each on the model's own labelled validation images
  (`calibration`), the drop between them (at most ``max_drop`` points, or the file is
  refused: `Int8TooInaccurate`), top-1 agreement and the largest logit change relative
  to the largest fp32 logit;
- **time**: fp32 and int8 onnxruntime sessions at the export's batch size, timed in
  alternating rounds (`measure_alternating`), per image.

Where int8 is not faster than fp32 the int8 model is not written and `Int8NotFaster`
says so with the numbers (the verified fp32 model stays next to it); ``keep_slower`` writes it
anyway, e.g. for a device whose int8 kernels pay where these do not. On the CPUs measured so far
it did not pay (docs/measured_defaults.md): MobileViT is dominated by depthwise convolutions, SiLU,
LayerNorm and small attention matmuls, where the quantize / dequantize traffic can cost more than
the int8 arithmetic saves.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..timing import InferencePath, measure_alternating
from .batches import padded_batches
from .calibration import Int8Data, Int8Source, load_int8_data
from .errors import ExportError
from .int8_parts import int8_units, rank_units, unit_names
from .onnx import export_onnx, ort_session
from .reports import AccuracyCheck, Int8Report, Int8Timing
from .runtime_checks import DEFAULT_MAX_DROP, accuracy_check, check_criteria, judge

log = logging.getLogger(__name__)


class Int8NotFaster(ExportError):
    """int8 is not faster than fp32 here: the int8 model was not written. ``report`` holds the numbers."""

    def __init__(self, message: str, report: Int8Report) -> None:
        super().__init__(message)
        self.report = report


class Int8TooInaccurate(ExportError):
    """int8 loses more top-1 than allowed: the int8 model was not written. ``report`` holds the numbers."""

    def __init__(self, message: str, report: Int8Report) -> None:
        super().__init__(message)
        self.report = report


def _model_batch(session: Any) -> int | None:
    """The fixed batch size of the session's image input, or None when it is dynamic."""
    dim = session.get_inputs()[0].shape[0]
    return dim if isinstance(dim, int) else None


def run_batched(session: Any, images: np.ndarray, batch: int = 8) -> np.ndarray:
    """Logits of ``images`` from an onnxruntime session (at its fixed batch size, if it has one).

    Args:
        session: an onnxruntime session of a classifier.
        images: ``[N, 3, H, W]`` float32, or uint8 pixel values (`to_float`).
        batch: the batch to run at when the session's is dynamic.

    Returns:
        The logits ``[N, K]``.
    """
    batch = _model_batch(session) or batch
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x})[0][:n] for x, n in padded_batches(images, batch)])


def _scope(unit: str) -> str:
    """The node-name prefix torch's (TorchScript) ONNX exporter gives module ``unit``: ``/stem/``
    for a top-level module, ``/stages.0/stages.0.0/`` for a block of a stage (a list's items are
    scoped by their whole dotted name, one level after another)."""
    parts = unit.split(".")
    if len(parts) == 1:
        return f"/{unit}/"
    return "/" + "/".join(".".join(parts[:i]) for i in range(2, len(parts) + 1)) + "/"


def _nodes_of_units(graph_nodes: Sequence[str], units: Sequence[str]) -> list[str]:
    """The ONNX node names that belong to module names ``units`` (``stem``, ``stages.0``,
    ``stages.0.0``, ``head``: `int8_units` lists the blocks), in graph order; a unit that names no
    node is an `ExportError`."""
    prefixes = {unit: _scope(unit) for unit in units}
    empty = [u for u, pre in prefixes.items() if not any(n.startswith(pre) for n in graph_nodes)]
    if empty:
        raise ExportError(
            f"keep_float: {', '.join(map(repr, empty))} name no part of this ONNX graph; "
            "use module names such as 'stem', 'stages.0.0' or 'head' (mobilevit.export.int8_units)"
        )
    return [n for n in graph_nodes if any(n.startswith(pre) for pre in prefixes.values())]


def quantize_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    calib: np.ndarray,
    batch: int = 8,
    keep_float: Sequence[str] = (),
) -> None:
    """onnxruntime static quantization of ``fp32_path`` into ``out_path``: QDQ, int8 weights per
    output channel, int8 activations calibrated (min / max) on ``calib``.

    Args:
        fp32_path: the verified fp32 ONNX file.
        out_path: where the int8 file goes.
        calib: calibration images ``[N, 3, H, W]`` float32.
        batch: the calibration batch where the model's batch is dynamic.
        keep_float: module names (``stages.0.0``, ``stem``, ``head``) whose nodes stay fp32
            (onnxruntime's ``nodes_to_exclude``), as `quantize_int8_torch`'s ``keep_float``.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, batches: Iterator[tuple[np.ndarray, int]]) -> None:
            self.it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            nxt = next(self.it, None)
            return None if nxt is None else {"image": nxt[0]}

    from onnxruntime.quantization.registry import QDQRegistry

    # every op onnxruntime can quantize in QDQ form except the transformer's norms (v1's LayerNorm;
    # v2's GroupNorm(1), which the ONNX export writes as InstanceNormalization over a reshape): their
    # scales stay fp32, since a per-channel axis does not exist for a rank-1 weight, and they are cheap
    op_types = sorted(set(QDQRegistry) - {"LayerNormalization", "InstanceNormalization"})
    fixed = _model_batch(ort_session(Path(fp32_path)))
    with tempfile.TemporaryDirectory(prefix="mobilevit-int8-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        # shape inference and constant folding first, as onnxruntime recommends before quantizing
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        keep_float = unit_names(keep_float)
        excluded = (
            _nodes_of_units([n.name for n in onnx.load(str(pre)).graph.node], keep_float)
            if keep_float
            else []
        )
        quantize_static(
            str(pre),
            str(out_path),
            Reader(padded_batches(calib, fixed or batch)),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=op_types,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
        )


def int8_sensitivity_onnx(
    model: nn.Module,
    calib: np.ndarray,
    images: np.ndarray,
    labels: np.ndarray,
    units: Sequence[str] | None = None,
    batch: int = 32,
) -> list[dict[str, Any]]:
    """What each part of ``model`` costs in onnxruntime's int8: quantize one unit at a time (the
    rest kept in fp32 by `quantize_int8`'s ``keep_float``) and score top-1 on labelled ``images``
    against the fp32 ONNX file, as `int8_sensitivity` does for PyTorch's int8.

    Args:
        model: a classifier.
        calib: calibration images ``[N, 3, H, W]`` float32.
        images: validation images ``[M, 3, H, W]``, float32 or uint8 pixel values.
        labels: their class indices ``[M]``.
        units: the module names to try (default: `int8_units`).
        batch: the batch the files run at (they are exported with a dynamic batch).

    Returns:
        One dict per unit, the most costly first: ``unit``, ``top1``, ``drop_pt``, ``agreement``,
        ``seconds``.
    """
    _check_classifier(model)
    units = list(units) if units is not None else int8_units(model)
    _check_units(model, units)
    with tempfile.TemporaryDirectory(prefix="mobilevit-int8-sensitivity-") as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        export_onnx(model, fp32, tuple(calib.shape[-2:]), dynamic_batch=True)

        def quantized_only(unit: str) -> np.ndarray:
            quantize_int8(fp32, int8, calib, keep_float=[u for u in units if u != unit])
            return run_batched(ort_session(int8), images, batch)

        return rank_units(units, quantized_only, run_batched(ort_session(fp32), images, batch), labels)


def _time_sessions(fp32: Any, int8: Any, x: np.ndarray, rounds: int, budget_s: float) -> dict[str, float]:
    """ms per image of each session on ``x``, alternating rounds; about ``budget_s`` seconds in all."""

    def path(name: str, session: Any) -> InferencePath:
        def fn(t: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {"image": t.numpy()})[0])

        return InferencePath(name, "mobilevit", fn)

    paths = [path("fp32", fp32), path("int8", int8)]
    xt = torch.from_numpy(x)
    t0 = time.perf_counter()
    for p in paths:
        p(xt)
    one = (time.perf_counter() - t0) / 2
    iters = max(1, min(20, int(budget_s / (2 * rounds * max(one, 1e-4)))))
    res = measure_alternating(paths, xt, iters=iters, rounds=rounds, warmup=1)
    return {k.split("/")[1]: v.p50_ms / x.shape[0] for k, v in res.items()}


def compare_int8(
    fp32_path: str | Path,
    int8_path: str | Path,
    data: Int8Data,
    model_classes: list[str] | None = None,
    rounds: int = 5,
    budget_s: float = 10.0,
) -> tuple[AccuracyCheck, Int8Timing]:
    """Accuracy and time of the int8 model against the fp32 one, both in onnxruntime.

    Args:
        fp32_path: the fp32 ONNX file.
        int8_path: its int8 twin.
        data: labelled validation images (``data.val`` is run through both).
        model_classes: the model's class names, when known.
        rounds: alternating timing rounds.
        budget_s: about how long the timing takes in all.

    Returns:
        ``(accuracy, timing)``.
    """
    fp32, int8 = ort_session(Path(fp32_path)), ort_session(Path(int8_path))
    accuracy = accuracy_check(
        run_batched(fp32, data.val),
        run_batched(int8, data.val),
        data,
        precision="int8",
        model_classes=model_classes,
    )
    batch = _model_batch(fp32) or 1
    x, _ = next(padded_batches(data.val[:batch], batch))
    ms = _time_sessions(fp32, int8, x, rounds, budget_s)
    timing = Int8Timing(
        fp32_ms_per_image=ms["fp32"],
        int8_ms_per_image=ms["int8"],
        ratio_int8_vs_fp32=ms["int8"] / ms["fp32"],
        timed_batch=batch,
        threads=torch.get_num_threads(),
    )
    return accuracy, timing


def _check_classifier(model: nn.Module) -> None:
    from ..models import BackboneBase

    if not isinstance(model, BackboneBase) or model.num_classes < 1:
        raise ExportError(
            "--int8 quantizes classifiers (its accuracy check is top-1 on labelled images); "
            f"got a {type(model).__name__}. Export segmentation and detection models in fp32."
        )


def _check_units(model: nn.Module, keep_float: Sequence[str]) -> None:
    """``keep_float`` names parts `quantize_int8` can find in the ONNX graph (a top-level module, a
    stage ``stages.<i>`` or a block ``stages.<i>.<j>``), checked before any export or data loading."""
    units = int8_units(model)
    stages = {".".join(u.split(".")[:2]) for u in units if u.startswith("stages.")}
    unknown = [n for n in keep_float if n not in {*units, *stages}]
    if unknown:
        raise ExportError(
            f"--int8-keep-float / keep_float: {', '.join(map(repr, unknown))} is not a part onnxruntime's "
            f"quantizer can leave in fp32; the parts of {type(model).__name__} are {', '.join(units)}, "
            "or a whole stage (stages.<i>)"
        )


def export_int8(
    model: nn.Module,
    path: str | Path,
    img_size: tuple[int, int] = (256, 256),
    batch: int = 1,
    *,
    dynamic_batch: bool = False,
    opset: int = 17,
    data: str | Path | Int8Source,
    calib_images: int = 64,
    max_val: int | None = None,
    model_classes: list[str] | None = None,
    keep_slower: bool = False,
    max_drop: float = DEFAULT_MAX_DROP,
    min_agreement: float | None = None,
    budget_s: float = 10.0,
    keep_float: Sequence[str] = (),
) -> Int8Report:
    """Write an int8 ONNX classifier at ``path`` if it is faster than fp32 here (or ``keep_slower``)
    and loses at most ``max_drop`` points of top-1 on ``data``'s validation images.

    Args:
        model: a classifier.
        path: the int8 file to write; the verified fp32 export goes beside it as
            ``<stem>.fp32.onnx`` and the figures as ``<stem>.int8.json`` (also when int8 is refused).
        img_size: the input ``(H, W)``.
        batch: the fixed batch (ignored with ``dynamic_batch``).
        dynamic_batch: a dynamic batch dimension.
        opset: the ONNX opset.
        data: labelled images of the model's classes (``"digits"``, a folder with ``train/`` and
            ``val/``, or an `Int8Source`).
        calib_images: calibration images drawn from ``train/``.
        max_val: validate on a seeded subset of ``val/`` of this size (None: all of it).
        model_classes: the model's class names (a mismatch with the data's is an error).
        keep_slower: write the int8 file even where it is not faster here.
        max_drop: the largest accepted top-1 drop, percentage points.
        min_agreement: a top-1 agreement with fp32 the file must reach too (None: only where
            accuracy cannot be computed).
        budget_s: about how long the timing takes.
        keep_float: module names whose nodes stay fp32 (see `quantize_int8`).

    Returns:
        The `Int8Report`. Raises `Int8NotFaster` or
        `Int8TooInaccurate` with the report when the file is refused;
        `ExportError` for a model that is not a classifier or data that cannot be
        read, before any export.
    """
    _check_classifier(model)
    check_criteria(max_drop, min_agreement)
    keep_float = unit_names(keep_float)
    _check_units(model, keep_float)
    path = Path(path)
    data_ = load_int8_data(  # bad data, or another model's classes: before any work
        data, img_size, calib_images, max_val, model_classes=model_classes, num_classes=model.num_classes
    )
    fp32_path = path.with_name(path.stem + ".fp32.onnx")
    report_path = path.with_name(path.stem + ".int8.json")
    fp32_report = export_onnx(
        model, fp32_path, img_size, dynamic_batch=dynamic_batch, opset=opset, batch=batch
    )
    path.unlink(missing_ok=True)  # never leave an older model under the name of this one
    with tempfile.TemporaryDirectory(prefix="mobilevit-int8-", dir=path.parent) as tmp:
        candidate = Path(tmp) / path.name
        quantize_int8(fp32_path, candidate, data_.calib, keep_float=keep_float)
        accuracy, timing = compare_int8(
            fp32_path, candidate, data_, model_classes=model_classes, budget_s=budget_s
        )
        if keep_float:
            accuracy = dataclasses.replace(accuracy, computed_as=f"int8 ({', '.join(keep_float)} in fp32)")
        inaccurate = judge(accuracy, max_drop, min_agreement)
        slower = timing.ratio_int8_vs_fp32 >= 1.0 and not keep_slower
        report = Int8Report(
            path=str(path),
            fp32_path=str(fp32_path),
            written=not (slower or inaccurate),
            img_size=(int(img_size[0]), int(img_size[1])),
            batch=fp32_report.batch,
            fp32_checks=list(fp32_report.checks),
            accuracy=accuracy,
            timing=timing,
            keep_float=list(keep_float),
        )
        if slower:
            report.refused = (
                f"int8 is not faster than fp32 on this machine: {timing.int8_ms_per_image:.2f} vs "
                f"{timing.fp32_ms_per_image:.2f} ms per image at batch {timing.timed_batch} "
                f"({timing.ratio_int8_vs_fp32:.2f}x the fp32 time, {timing.threads} threads, onnxruntime), "
                f"top-1 agreement {accuracy.top1_agreement:.4f}"
            )
        elif inaccurate:
            report.refused = f"int8 {inaccurate}"
        if report.written:
            candidate.replace(path)
            report.bytes = path.stat().st_size
    report_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    if slower:
        raise Int8NotFaster(
            f"{report.refused}; {path} was not written. The verified fp32 model "
            f"is {fp32_path}; the figures are in {report_path}. --int8-keep-slower writes the int8 model "
            "anyway (e.g. for a device whose int8 kernels pay). On x86 CPUs PyTorch's own int8 "
            "(mobilevit.export.quantize_int8_torch: PT2E + torch.compile, oneDNN kernels) may pay where "
            "onnxruntime's does not; `mobilevit bench --side-by-side --int8` times both here.",
            report,
        )
    if inaccurate:
        raise Int8TooInaccurate(
            f"{report.refused}; {path} was not written. The verified fp32 model is {fp32_path}; the figures "
            f"are in {report_path}. Calibrate on the model's own images (--int8-data) or loosen --max-drop.",
            report,
        )
    return report


__all__ = [
    "Int8NotFaster",
    "Int8TooInaccurate",
    "compare_int8",
    "export_int8",
    "int8_sensitivity_onnx",
    "quantize_int8",
    "run_batched",
]
