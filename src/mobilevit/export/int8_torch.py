"""Post-training int8 through PyTorch's own x86 path: PT2E quantization lowered to oneDNN.

The model (BN folded, `optimize_for_inference`) is captured with
``torch.export``, annotated by torchao's ``X86InductorQuantizer`` (int8 weights per output
channel, uint8 activations per tensor, calibrated on sample images), converted, and compiled
by inductor with frozen weights, which lowers every quantized conv and linear to oneDNN's
int8 kernels (AMX or VNNI where the CPU has them) and fuses the quantize / dequantize and the
SiLU around them into those kernels. That fusion is what onnxruntime's static quantization
lacks on these CPUs, where its int8 export is slower than fp32 (`int8`).

On a CPU without an int8 dot product (no VNNI or AMX: `cpu_has_int8_dot`) the activations are
quantized to 7 bits, as torchao advises there: oneDNN's AVX2 kernels overflow on 8-bit ones.
`keep_float` leaves named blocks in fp32, and `int8_sensitivity` ranks the blocks by what they
cost (one block quantized at a time).

Its speed and agreement with fp32 are measured by ``benchmarks/latency.py`` (docs/measured_defaults.md).
The result is an in-memory module; `save_int8_torch` writes its int8 graph as a
``torch.export`` program (``.pt2``) and `load_int8_torch` reads it back and compiles it
for the machine it runs on.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import MobileViTError
from .batches import padded_batches
from .int8_parts import int8_units, rank_units, unit_names, unknown_units
from .optimize import optimize_for_inference

log = logging.getLogger(__name__)


class Int8Unavailable(MobileViTError, RuntimeError):
    """PyTorch int8 cannot be built here: torchao is not installed."""


class Int8Compiled(nn.Module):
    """A quantized, compiled copy of a classifier: ``forward(images) -> logits`` without autograd.

    ``quantized`` is the converted (not yet compiled) graph module, kept for inspection and for
    running without a C++ compiler (slow: it simulates int8 in fp32). ``report`` says how it
    was made (calibration images, seconds).
    """

    def __init__(self, quantized: nn.Module, compiled: Any, report: dict[str, Any]) -> None:
        super().__init__()
        self.quantized = quantized
        self._compiled = compiled
        self.report = report
        self.training = False

    def train(self, mode: bool = True) -> Int8Compiled:
        """Inference only: ``eval()`` is a no-op (an exported graph has no train mode) and ``train()`` refuses."""
        if mode:
            raise RuntimeError("an int8 model is for inference only; quantize a trained model instead")
        self.training = False
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.report["img_size"]
        if x.dim() != 4 or list(x.shape[-2:]) != size:
            raise ValueError(
                f"this int8 model takes [B, 3, {size[0]}, {size[1]}] images (its calibration size), "
                f"got {tuple(x.shape)}; quantize again at the size you need"
            )
        # freezing: inductor folds the int8 weights into prepacked oneDNN tensors (needs no_grad)
        with torch.no_grad(), torch._inductor.config.patch(freezing=True):
            return self._compiled(x)


def _import_pt2e() -> tuple[Any, Any, Any]:
    """torchao's ``prepare_pt2e``, ``convert_pt2e`` and x86 quantizer module; importing them also
    registers the quantize / dequantize ops that a saved int8 program uses."""
    try:
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer
    except ImportError as e:
        raise Int8Unavailable(
            "PyTorch int8 needs torchao (PT2E quantization): pip install 'mobilevit[export]'"
        ) from e
    return prepare_pt2e, convert_pt2e, x86_inductor_quantizer


def _as_tensor(images: np.ndarray | torch.Tensor, what: str = "calibration images") -> torch.Tensor:
    x = torch.as_tensor(images)
    if x.dim() != 4 or x.shape[1] != 3 or x.shape[0] < 1:
        raise ValueError(f"{what} must be [N, 3, H, W] with N >= 1, got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{what} must be float (normalised as the model expects), got {x.dtype}")
    return x.float().contiguous()


def _export_any_batch(module: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """``torch.export`` of ``module`` with a dynamic batch dimension (height and width fixed)."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad():
        return torch.export.export(module, (example,), dynamic_shapes=({0: batch},))


def cpu_has_int8_dot() -> bool:
    """Whether this CPU has an int8 dot-product instruction for oneDNN (AVX512-VNNI, AVX-VNNI or
    AMX). Without one, oneDNN's AVX2 int8 kernels sum pairs of u8 x s8 products in 16 bits, which
    overflow with full-range 8-bit activations; torchao's advice for such CPUs is 7-bit activations
    (``reduce_range``)."""
    from ..timing import machine_info

    flags = set(machine_info()["extensions"])
    return bool(torch.cpu._is_vnni_supported() or torch.cpu._is_amx_tile_supported() or "avx_vnni" in flags)


def quantize_int8_torch(
    model: nn.Module,
    calib: np.ndarray | torch.Tensor,
    batch_size: int = 16,
    compile: bool = True,
    keep_float: Sequence[str] = (),
    reduce_range: bool | None = None,
) -> Int8Compiled:
    """int8 copy of classifier ``model``, calibrated on ``calib`` ([N, 3, H, W] float images).

    The copy accepts any batch size at the calibration images' height and width; with
    ``compile`` (default) the first call at each batch size compiles a graph for it. With
    ``compile=False`` the converted graph runs as is (reference int8 arithmetic simulated in
    fp32, for checking accuracy without a compiler, not for speed). Raises
    `Int8Unavailable` without torchao (``pip install 'mobilevit[export]'``).

    Args:
        model: a classifier.
        calib: calibration images ``[N, 3, H, W]`` float, at the size the copy will take.
        batch_size: the calibration batch.
        compile: compile the converted graph with inductor (oneDNN int8 kernels).
        keep_float: module names (``stages.4.1``, ``head``: `int8_units` lists the blocks) whose
            operations stay in fp32, the quantizer's per-module setting; `int8_sensitivity`
            says which parts cost the most accuracy.
        reduce_range: quantize activations to 7 bits (0-127). Default: where `cpu_has_int8_dot`
            is False, i.e. where oneDNN's int8 kernels would overflow on full-range activations
            (the graph is quantized for the CPU it is made on; a copy saved on one CPU and run on
            another keeps its choice).

    Returns:
        The `Int8Compiled` copy (its ``report`` says how it was made).
    """
    prepare_pt2e, convert_pt2e, xiq = _import_pt2e()
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    from ..models import BackboneBase

    if not isinstance(model, BackboneBase) or model.num_classes < 1:
        raise ValueError(
            "int8 quantizes classifiers (its accuracy is measured as top-1 agreement with fp32); got a "
            f"{type(model).__name__}. Export segmentation and detection models in fp32."
        )
    images = _as_tensor(calib)
    t0 = time.perf_counter()
    fast = optimize_for_inference(model, channels_last=False)  # the graph is traced in NCHW
    if reduce_range is None:
        reduce_range = not cpu_has_int8_dot()
    keep_float = unit_names(keep_float)
    unknown = unknown_units(fast, keep_float)
    if unknown:
        raise ValueError(unknown)
    example = images[: min(batch_size, len(images))]
    graph = _export_any_batch(fast, example).module()
    with torch.no_grad():
        quantizer = xiq.X86InductorQuantizer()
        quantizer.set_global(xiq.get_default_x86_inductor_quantization_config(reduce_range=reduce_range))
        for name in keep_float:
            quantizer.set_module_name_qconfig(name, None)
        prepared = prepare_pt2e(graph, quantizer)
        for i in range(0, len(images), batch_size):  # observers record activation ranges
            prepared(images[i : i + batch_size])
        quantized = convert_pt2e(prepared)
    report = {
        "calib_images": len(images),
        "img_size": list(images.shape[-2:]),
        "compiled": compile,
        "keep_float": list(keep_float),
        "reduce_range": reduce_range,
    }
    # one specialised graph per batch size, compiled at its first call (the first call is slow)
    compiled: Any = torch.compile(quantized, dynamic=False) if compile else quantized
    report["seconds"] = round(time.perf_counter() - t0, 1)
    log.info("int8 (PT2E, x86 inductor): %s", report)
    return Int8Compiled(quantized, compiled, report)


def predict_fixed_batch(module: nn.Module, images: np.ndarray | torch.Tensor, batch: int = 32) -> np.ndarray:
    """``module``'s outputs on ``images`` in batches of exactly ``batch`` (the last one padded, the
    padding dropped: `padded_batches`), so that a compiled module builds one graph.

    Args:
        module: any module mapping a batch to logits.
        images: ``[N, 3, H, W]`` float, or uint8 pixel values (`to_float`: ``k / 255``).
        batch: the one batch size the module sees.

    Returns:
        The outputs ``[N, ...]`` as float32 numpy.
    """
    pixels = isinstance(images, np.ndarray) and images.dtype == np.uint8
    x = images if pixels else _as_tensor(images, "images").numpy()
    with torch.no_grad():
        return np.concatenate(
            [module(torch.from_numpy(chunk))[:n].float().numpy() for chunk, n in padded_batches(x, batch)]
        )


def int8_sensitivity(
    model: nn.Module,
    calib: np.ndarray | torch.Tensor,
    images: np.ndarray | torch.Tensor,
    labels: np.ndarray,
    units: Sequence[str] | None = None,
    compile: bool = False,
) -> list[dict[str, Any]]:
    """What each part of ``model`` costs in int8: quantize one unit at a time (the rest kept in
    fp32 by `quantize_int8_torch`'s ``keep_float``) and score top-1 on labelled ``images``.

    Args:
        model: a classifier.
        calib: calibration images ``[N, 3, H, W]`` float.
        images: validation images ``[M, 3, H, W]`` float or uint8 pixel values, the model's
            preprocessing.
        labels: their class indices ``[M]``.
        units: the module names to try (default: `int8_units`).
        compile: score the compiled int8 graphs (oneDNN kernels, one compile per unit) instead of
            the reference arithmetic (default; the faster pass).

    Returns:
        One dict per unit, the most costly first: ``unit``, ``top1``, ``drop_pt`` (against fp32),
        ``agreement`` (top-1 with fp32), ``seconds``.
    """
    fast = optimize_for_inference(model, channels_last=False)
    units = list(units) if units is not None else int8_units(fast)
    unknown = unknown_units(fast, units)
    if unknown:
        raise ValueError(unknown)

    def quantized_only(unit: str) -> np.ndarray:
        q = quantize_int8_torch(model, calib, compile=compile, keep_float=[u for u in units if u != unit])
        return predict_fixed_batch(q, images)

    return rank_units(units, quantized_only, predict_fixed_batch(fast, images), labels)


_REPORT_FILE = "mobilevit_int8.json"  # stored inside the .pt2 archive


def save_int8_torch(int8: Int8Compiled, path: str | Path) -> Path:
    """Write ``int8``'s quantized graph (any batch size, its calibration H x W) as a
    ``torch.export`` program, with its report; `load_int8_torch` reads it back."""
    h, w = int8.report["img_size"]
    program = _export_any_batch(int8.quantized, torch.zeros(2, 3, h, w))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(path), extra_files={_REPORT_FILE: json.dumps(int8.report)})
    return path


def load_int8_torch(path: str | Path, compile: bool = True) -> Int8Compiled:
    """An int8 model written by `save_int8_torch`, compiled for this machine at the first
    call of each batch size (``compile=False``: the graph as is, int8 simulated in fp32)."""
    _import_pt2e()  # the file's quantize / dequantize ops are torchao's
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no int8 model at {path}")
    extra = {_REPORT_FILE: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
    except Exception as e:
        raise ValueError(f"{path} is not a torch.export program ({type(e).__name__}: {e})") from e
    if not extra[_REPORT_FILE]:
        raise ValueError(f"{path} is a torch.export program but not an int8 model written by save_int8_torch")
    quantized = program.module()
    report = {**json.loads(extra[_REPORT_FILE]), "compiled": compile}
    return Int8Compiled(quantized, torch.compile(quantized, dynamic=False) if compile else quantized, report)
