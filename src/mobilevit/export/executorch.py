"""ExecuTorch export with the XNNPACK delegate (``.pte``), verified in ExecuTorch's own runtime.

The BN-folded model is shaped for XNNPACK first (`xnnpack_graph`: the norms, the attention
and the pool in ops the partitioner takes), so the whole network lowers to XNNPACK; the report
counts the ops delegated and a graph that is not wholly delegated is logged as a warning with the
ops left on the portable kernels. ``int8``: PT2E quantization with ExecuTorch's
``XNNPACKQuantizer`` (symmetric, int8 weights per output channel, int8 activations calibrated on
training images), lowered to XNNPACK's int8 kernels. The file takes the export's batch and size.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Unpack

import numpy as np
import torch
from torch import nn

from .onnx import export_core
from .reports import Delegation, ExportReport
from .runtime_checks import calibrate, require
from .runtime_export import ExportOptions, Graph, RuntimeBackend, export_to_runtime
from .xnnpack_graph import shape_for_xnnpack

log = logging.getLogger(__name__)

RUNTIME = "ExecuTorch"


def delegation(graph_module: torch.fx.GraphModule) -> Delegation:
    """Ops inside XNNPACK delegates and ops left outside (by name) of a lowered graph, from
    ExecuTorch's own ``get_delegation_info`` (less the ``getitem`` reads of the delegates' outputs)."""
    info = require("executorch.devtools.backend_debug", RUNTIME).get_delegation_info(graph_module)
    outside = {
        op: b.non_delegated
        for op, b in info.delegation_by_operator.items()
        if b.non_delegated and op != "getitem"
    }
    total = info.num_delegated_nodes + sum(outside.values())
    return Delegation(
        delegated_ops=info.num_delegated_nodes,
        portable_ops=outside,
        delegated_fraction=info.num_delegated_nodes / total if total else 0.0,
        delegate_pieces=info.num_delegated_subgraphs,
    )


def load_executorch(path: str | Path) -> Any:
    """A runner for a ``.pte`` file: float32 NCHW batch -> list of outputs (ExecuTorch ``Runtime``)."""
    rt = require("executorch.runtime", RUNTIME)
    method = rt.Runtime.get().load_program(Path(path)).load_method("forward")

    def run(x: np.ndarray) -> list[np.ndarray]:
        return [o.numpy() for o in method.execute([torch.from_numpy(np.ascontiguousarray(x))])]

    return run


def executorch_graph(model: nn.Module) -> tuple[nn.Module, nn.Module, list[str], int]:
    """What the ExecuTorch export lowers: ``(graph, eager reference, output names, modules
    rewritten)``, the BN-folded graph shaped for XNNPACK (`shape_for_xnnpack`),
    its blocks unfolding / folding through the NHWC view (the layout XNNPACK holds maps in: one
    transpose each way instead of two)."""
    fast, reference, outputs = export_core(model, patch_layout="nhwc")
    return fast, reference, outputs, shape_for_xnnpack(fast)


def quantize_for_xnnpack(module: nn.Module, example: torch.Tensor, calib: np.ndarray) -> torch.fx.GraphModule:
    """``module`` (an inference graph, already shaped) quantized by PT2E with ExecuTorch's
    ``XNNPACKQuantizer`` (int8 weights per output channel, int8 activations calibrated on
    ``calib`` at ``example``'s batch): the converted graph, its int8 ops between quantize /
    dequantize pairs. The attention's bmm and softmax stay float: XNNPACK's partitioner takes
    both in fp32 only, so int8 ones would leave the delegate.

    Args:
        module: the shaped inference graph.
        example: an input at the file's batch and size.
        calib: calibration images ``[N, 3, H, W]`` float32.

    Returns:
        The converted PT2E graph module.
    """
    quantizer_mod = require("executorch.backends.xnnpack.quantizer.xnnpack_quantizer", RUNTIME)
    pt2e = require("torchao.quantization.pt2e.quantize_pt2e", RUNTIME)
    quantizer = quantizer_mod.XNNPACKQuantizer().set_global(
        quantizer_mod.get_symmetric_quantization_config(is_per_channel=True)
    )
    with torch.no_grad():
        prepared = pt2e.prepare_pt2e(torch.export.export(module, (example,)).module(), quantizer)
        calibrate(prepared, calib, example.shape[0])
        return pt2e.convert_pt2e(prepared)


def lower_to_xnnpack(
    module: nn.Module, example: torch.Tensor, calib: np.ndarray | None = None
) -> tuple[bytes, Delegation]:
    """``module`` (an inference graph, already shaped) exported, quantized when ``calib`` is given,
    and lowered to XNNPACK: (the .pte bytes, the delegation report).

    Args:
        module: the shaped inference graph.
        example: an input at the file's batch and size.
        calib: calibration images for int8, or None for fp32.

    Returns:
        ``(the .pte bytes, the `Delegation`)``.
    """
    exir = require("executorch.exir", RUNTIME)
    partitioner = require("executorch.backends.xnnpack.partition.xnnpack_partitioner", RUNTIME)
    with torch.no_grad():
        if calib is not None:
            module = quantize_for_xnnpack(module, example, calib)
        program = torch.export.export(module, (example,))
        edge = exir.to_edge_transform_and_lower(program, partitioner=[partitioner.XnnpackPartitioner()])
    report = delegation(edge.exported_program().graph_module)
    return edge.to_executorch().buffer, report


def _graph(model: nn.Module) -> Graph:
    fast, reference, outputs, swapped = executorch_graph(model)
    return Graph(fast, reference, outputs, {"modules_rewritten": swapped})


def _convert(
    graph: Graph, example: torch.Tensor, calib: np.ndarray | None, precision: str, path: Path
) -> dict[str, Any]:
    buffer, report = lower_to_xnnpack(graph.module, example, calib)
    if report.portable_ops:
        log.warning(
            "ExecuTorch: %d of %d ops delegated to XNNPACK; on the portable kernels: %s",
            report.delegated_ops,
            report.delegated_ops + sum(report.portable_ops.values()),
            ", ".join(f"{k} x{v}" for k, v in sorted(report.portable_ops.items())),
        )
    path.write_bytes(buffer)
    return {"delegation": report}


BACKEND = RuntimeBackend(
    name=RUNTIME,
    format="executorch",
    suffix=".pte",
    modules=("executorch.exir",),
    graph=_graph,
    convert=_convert,
    load=load_executorch,
)


def export_executorch(
    model: nn.Module,
    path: str | Path,
    img_size: tuple[int, int] = (256, 256),
    batch: int = 1,
    **options: Unpack[ExportOptions],
) -> ExportReport:
    """Export ``model`` to an ExecuTorch ``.pte`` (XNNPACK) and check it in ExecuTorch.

    Classifiers and segmenters map ``image -> output``, a detector its core ``image -> (scores,
    boxes)``. fp32 is checked against eager PyTorch (``atol``); ``int8`` (classifiers) by top-1
    against fp32 on ``data``'s labelled validation images (at most ``max_drop`` points lost). A
    file that fails is deleted (`ExportError` with the numbers).

    Args:
        model: a classifier, segmenter or detector (put in eval mode; a detector exports its core).
        path: the file to write.
        img_size: the input ``(H, W)`` the file takes.
        batch: the fixed batch the file takes.
        **options: `ExportOptions`: ``int8``, ``data`` (labelled images of
            the model's classes, required for int8), ``calib_images``, ``max_val``,
            ``model_classes``, ``max_drop``, ``min_agreement``, ``atol``.

    Returns:
        The `ExportReport`, with the XNNPACK ``delegation``.
    """
    return export_to_runtime(BACKEND, model, path, img_size=img_size, batch=batch, **options)
