"""Inference paths through the mobile and server CPU runtimes: ExecuTorch (XNNPACK), LiteRT and
OpenVINO, for our model and for timm's, fp32 and reduced precision.

Ours goes through the graph each export writes (`mobilevit.export`: BN folded, and for
ExecuTorch shaped so XNNPACK takes every op); timm's model goes through the same runtime as a user
would export it (the model as built, the same converter and quantizer). int8 is calibrated on 64
built-in digits training images at the timed size, like the other int8 rows. A runtime that is not
installed or a conversion that fails is a skipped path with its reason, not an error.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..timing import InferencePath, first_line

RUNTIME_PATHS = (
    "executorch",
    "executorch_int8",
    "litert",
    "litert_int8",
    "openvino",
    "openvino_bf16",
    "openvino_int8",
)


def _precision(name: str) -> str:
    return name.rsplit("_", 1)[1] if name.endswith(("_int8", "_bf16")) else "fp32"


def _wrap(run: Callable[[np.ndarray], list[np.ndarray]]) -> Callable[[torch.Tensor], torch.Tensor]:
    def fn(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(run(x.numpy())[0])

    return fn


def _build(name: str, module: nn.Module, x: torch.Tensor, calib: np.ndarray | None, tmp: Path) -> Callable:
    """The runner of ``module`` through runtime path ``name`` (files under ``tmp``)."""
    if name.startswith("executorch"):
        from ..export.executorch import load_executorch, lower_to_xnnpack

        buffer, _ = lower_to_xnnpack(module, x, calib)
        (tmp / "m.pte").write_bytes(buffer)
        return load_executorch(tmp / "m.pte")
    if name.startswith("litert"):
        from ..export.litert import convert_litert, load_litert

        convert_litert(module, x, calib).export(str(tmp / "m.tflite"))
        return load_litert(tmp / "m.tflite")
    from ..export.openvino import _openvino, convert_openvino, int8_rest_precision, load_openvino

    precision = {"openvino_bf16": "bf16", "openvino_int8": int8_rest_precision()}.get(name, "f32")
    ov = _openvino()
    ov_model = convert_openvino(module, x, ["output"], calib, precision)
    ov.save_model(ov_model, str(tmp / "m.xml"), compress_to_fp16=False)
    return load_openvino(tmp / "m.xml")


def runtime_paths(
    owner: str, model: nn.Module, x: torch.Tensor, names: tuple[str, ...] = RUNTIME_PATHS
) -> list[InferencePath]:
    """``owner``'s ``model`` (eval mode) through each runtime path in ``names``, built for ``x``'s shape.

    Args:
        owner: ``mobilevit`` (our model: each runtime gets its export's graph) or a peer such as
            ``timm`` (the model as built).
        model: the model, in eval mode.
        x: an example input; every runtime's graph is built for exactly its shape.
        names: runtime paths, from `RUNTIME_PATHS`; ``_int8`` ones are calibrated on 64 built-in
            digits images at ``x``'s size.

    Returns:
        One `InferencePath` per name, in order; a runtime missing or refusing the graph is a
        skipped path with the reason.
    """
    from ..export.calibration import load_int8_data

    graphs: dict[str, nn.Module] = {}
    if owner == "mobilevit":
        from ..export.executorch import executorch_graph
        from ..export.litert import litert_graph
        from ..export.onnx import export_core

        graphs["openvino"] = export_core(model)[0]
        graphs["litert"] = litert_graph(model)[0]
        graphs["executorch"] = executorch_graph(model)[0]
    calib = None
    if any(_precision(n) == "int8" for n in names):
        calib = load_int8_data("digits", tuple(x.shape[-2:]), calib_images=64, max_val=1).calib
    paths = []
    for name in names:
        precision = _precision(name)
        module = graphs.get(name.split("_")[0], model)
        t0 = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix="mobilevit-bench-") as tmp:
                run = _build(name, module, x, calib if precision == "int8" else None, Path(tmp))
        except Exception as e:  # not installed, or the converter refuses this graph: a skip
            paths.append(InferencePath(name, owner, None, precision=precision, skipped=first_line(e)))
            continue
        paths.append(
            InferencePath(name, owner, _wrap(run), precision=precision, setup_s=time.perf_counter() - t0)
        )
    return paths
