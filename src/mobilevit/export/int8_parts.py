"""The parts of a classifier that int8 quantization can leave in fp32, named as modules
(``stem``, ``stages.<i>.<j>``, ``head``), and the ranking of a per-block sensitivity pass
(one part quantized at a time), shared by both quantizers: onnxruntime's (`int8`) and
PyTorch's PT2E x86 path (`int8_torch`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch import nn

log = logging.getLogger(__name__)


def unit_names(keep_float: str | Sequence[str]) -> list[str]:
    """``keep_float`` as a list of module names: one name given as a string is one name, not its letters."""
    return [keep_float] if isinstance(keep_float, str) else list(keep_float)


def int8_units(model: nn.Module) -> list[str]:
    """The parts a sensitivity pass quantizes one at a time, by module name: every block of every
    stage (``stages.<i>.<j>``: an inverted residual or a MobileViT block) and each other top-level
    module (the stem, the last 1x1 convolution, the head)."""
    units = []
    for name, child in model.named_children():
        if name == "stages":
            units += [f"stages.{i}.{j}" for i, stage in enumerate(child) for j, _ in stage.named_children()]
        else:
            units.append(name)
    return units


def unknown_units(model: nn.Module, keep_float: Sequence[str]) -> str | None:
    """Why ``keep_float`` does not name modules of ``model`` (None where every name does)."""
    names = dict(model.named_modules())
    unknown = [n for n in keep_float if not n or n not in names]
    if not unknown:
        return None
    return (
        f"keep_float: {', '.join(map(repr, unknown))} name no module of {type(model).__name__}; "
        f"its blocks are {', '.join(int8_units(model))}"
    )


def rank_units(
    units: Sequence[str],
    logits_with_only: Callable[[str], np.ndarray],
    fp32_logits: np.ndarray,
    labels: np.ndarray,
) -> list[dict[str, Any]]:
    """A sensitivity pass's ranking, whatever the quantizer: ``logits_with_only(unit)`` gives the
    logits with that unit alone quantized, scored against ``labels`` and the fp32 ``fp32_logits``.

    Args:
        units: the module names to try, one at a time.
        logits_with_only: builds and runs the model with only that unit quantized; returns its
            logits ``[M, classes]`` on the labelled images.
        fp32_logits: the fp32 model's logits ``[M, classes]`` on the same images.
        labels: their class indices ``[M]``.

    Returns:
        One dict per unit, the most costly first: ``unit``, ``top1``, ``drop_pt`` (against fp32),
        ``agreement`` (top-1 with fp32), ``seconds``.
    """
    labels = np.asarray(labels)
    ref = fp32_logits.argmax(1)
    ref_top1 = float((ref == labels).mean())
    rows = []
    for unit in units:
        t0 = time.perf_counter()
        got = logits_with_only(unit).argmax(1)
        top1 = float((got == labels).mean())
        rows.append(
            {
                "unit": unit,
                "top1": top1,
                "drop_pt": 100 * (ref_top1 - top1),
                "agreement": float((got == ref).mean()),
                "seconds": time.perf_counter() - t0,
            }
        )
        log.info("int8 sensitivity %s: %s", unit, rows[-1])
    return sorted(rows, key=lambda r: -r["drop_pt"])
