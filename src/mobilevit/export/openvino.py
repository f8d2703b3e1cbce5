"""OpenVINO export (IR: ``.xml`` + ``.bin``), verified with OpenVINO's ``Core.compile_model`` on CPU.

Weights are stored in fp32 (not compressed to fp16). ``precision`` is the CPU inference precision
OpenVINO is asked for, recorded in the IR's runtime options so a plain ``compile_model(path)``
uses it: ``f32`` (checked like every fp32 export) or ``bf16`` (OpenVINO's default on CPUs with
native bf16; checked, like int8, by top-1 agreement with fp32; on a CPU without bf16 OpenVINO
computes in f32, and the report says so). ``int8``: NNCF post-training quantization (its
transformer preset: int8 weights per channel, activations calibrated on training images), with
``precision`` the one of the ops it leaves unquantized (``bf16``: faster where native).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Unpack

import numpy as np
import torch
from torch import nn

from .batches import padded_batches
from .errors import ExportError
from .onnx import export_core
from .reports import ExportReport
from .runtime_checks import require
from .runtime_export import ExportOptions, Graph, RuntimeBackend, export_to_runtime

log = logging.getLogger(__name__)

RUNTIME = "OpenVINO"
PRECISIONS = ("f32", "bf16")


def _openvino() -> Any:
    """``import openvino`` with its telemetry off. OpenVINO's converter reports each import and
    conversion to Google Analytics from a forked process unless the user opted out (or ``CI`` is
    set); a library converting a user's model must not phone home on their behalf. With
    ``openvino_telemetry`` unimportable the converter uses its own no-op stub, as when that
    package is not installed. (Where it was imported already, the user's own setting stands.)"""
    if "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # import -> ImportError
    return require("openvino", RUNTIME)


def cpu_has_bf16() -> bool:
    """Whether OpenVINO's CPU plugin computes bf16 natively here (AVX512_BF16 or AMX)."""
    return "BF16" in _openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def int8_rest_precision() -> str:
    """The precision for the ops NNCF leaves unquantized: bf16 where native (OpenVINO's own CPU
    default there), else f32."""
    return "bf16" if cpu_has_bf16() else "f32"


def compile_openvino(path: str | Path, precision: str | None = None, threads: int | None = None) -> Any:
    """The IR compiled for CPU (``precision``: the IR's recorded one when None).

    Args:
        path: the ``.xml`` file.
        precision: ``f32`` / ``bf16``, or None for the one the IR records.
        threads: inference threads (default: torch's).

    Returns:
        OpenVINO's compiled model.
    """
    ov = _openvino()
    core = ov.Core()
    model = core.read_model(str(path))
    key = ["runtime_options", "INFERENCE_PRECISION_HINT"]
    if precision is None and model.has_rt_info(key):  # compile_model does not read it itself here
        precision = model.get_rt_info(key).astype(str)
    config = {"INFERENCE_NUM_THREADS": threads or torch.get_num_threads()}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    return core.compile_model(model, "CPU", config)


def load_openvino(path: str | Path, precision: str | None = None, threads: int | None = None) -> Any:
    """A runner for an IR: float32 NCHW batch -> list of outputs.

    Args:
        path: the ``.xml`` file.
        precision: ``f32`` / ``bf16``, or None for the one the IR records.
        threads: inference threads (default: torch's).

    Returns:
        A runner (its ``compiled`` attribute: OpenVINO's compiled model).
    """
    compiled = compile_openvino(path, precision, threads)
    request = compiled.create_infer_request()

    def run(x: np.ndarray) -> list[np.ndarray]:
        result = request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return [np.array(result[out]) for out in compiled.outputs]

    run.compiled = compiled  # type: ignore[attr-defined]
    return run


def convert_openvino(
    module: nn.Module,
    example: torch.Tensor,
    outputs: list[str],
    calib: np.ndarray | None = None,
    precision: str = "f32",
) -> Any:
    """``module`` converted to an OpenVINO model at ``example``'s shape (input ``image``, outputs
    named ``outputs``), NNCF-quantized when ``calib`` is given, ``precision`` recorded as its CPU
    inference precision.

    Args:
        module: the inference graph.
        example: an input at the file's batch and size.
        outputs: the output names.
        calib: calibration images for int8 (NNCF), or None.
        precision: ``f32`` or ``bf16``.

    Returns:
        The OpenVINO model, ready for ``save_model``.
    """
    ov = _openvino()
    with torch.no_grad():
        ov_model = ov.convert_model(module, example_input=example, input=[tuple(example.shape)])
    ov_model.inputs[0].get_tensor().set_names({"image"})
    for port, name in zip(ov_model.outputs, outputs, strict=True):
        port.get_tensor().set_names({name})
    if calib is not None:
        nncf = require("nncf", RUNTIME)
        batches = [xb for xb, _ in padded_batches(calib, example.shape[0])]
        ov_model = nncf.quantize(
            ov_model,
            nncf.Dataset(batches),
            subset_size=len(batches) * example.shape[0],
            model_type=nncf.ModelType.TRANSFORMER,
        )
    ov_model.set_rt_info(precision, ["runtime_options", "INFERENCE_PRECISION_HINT"])
    return ov_model


def _graph(model: nn.Module) -> Graph:
    return Graph(*export_core(model))


def _convert(
    graph: Graph, example: torch.Tensor, calib: np.ndarray | None, precision: str, path: Path
) -> dict[str, Any]:
    hint = "f32" if precision == "fp32" else precision
    ov_model = convert_openvino(graph.module, example, graph.outputs, calib, hint)
    _openvino().save_model(ov_model, str(path), compress_to_fp16=False)
    return {}


def _inference_precision(run: Any) -> str:
    """What OpenVINO's CPU plugin computes the float ops in here (f32, or bf16 where native)."""
    hint = run.compiled.get_property("INFERENCE_PRECISION_HINT")
    return hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)


def _computed_as(run: Any, precision: str) -> str:
    used = _inference_precision(run)
    return f"int8 + {used}" if precision == "int8" else used


BACKEND = RuntimeBackend(
    name=RUNTIME,
    format="openvino",
    suffix=".xml",
    modules=("openvino",),
    graph=_graph,
    convert=_convert,
    load=load_openvino,
    float_precisions=("fp32", "bf16"),
    companions=(".bin",),
    computed_as=_computed_as,
    loaded_fields=lambda run: {"inference_precision": _inference_precision(run)},
)


def export_openvino(
    model: nn.Module,
    path: str | Path,
    img_size: tuple[int, int] = (256, 256),
    batch: int = 1,
    *,
    precision: str = "f32",
    **options: Unpack[ExportOptions],
) -> ExportReport:
    """Export ``model`` to OpenVINO IR (``.xml`` + ``.bin``) and check it in OpenVINO.

    The same outputs, checks and arguments as `export_executorch`, plus
    ``precision`` (``f32`` / ``bf16``): the CPU inference precision recorded in the IR (with
    ``int8``: that of the ops NNCF leaves unquantized). bf16 is checked like int8; on a CPU
    without native bf16 OpenVINO computes in f32, and ``inference_precision`` and the accuracy
    check's ``computed_as`` say so.

    Args:
        model: a classifier, segmenter or detector (put in eval mode; a detector exports its core).
        path: the file to write.
        img_size: the input ``(H, W)`` the file takes.
        batch: the fixed batch the file takes.
        precision: ``f32`` or ``bf16`` (see above).
        **options: `ExportOptions`: ``int8``, ``data`` (labelled images of
            the model's classes, required for int8), ``calib_images``, ``max_val``,
            ``model_classes``, ``max_drop``, ``min_agreement``, ``atol``.

    Returns:
        The `ExportReport`, with ``inference_precision``.
    """
    if precision not in PRECISIONS:
        raise ExportError(f"OpenVINO precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if options.get("int8"):
        require("nncf", RUNTIME)
    fp = "fp32" if precision == "f32" else precision
    return export_to_runtime(BACKEND, model, path, img_size=img_size, batch=batch, precision=fp, **options)
