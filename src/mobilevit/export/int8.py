"""Post-training int8 quantization of a classifier's ONNX export, judged by what it costs and gains.

The paper's claim is latency on devices, so int8 is offered as an optimisation only where it is
one. :func:`export_int8` writes and verifies the fp32 ONNX export (:func:`~.onnx.export_onnx`),
quantizes it with onnxruntime's static quantization (QDQ format, int8 weights per output
channel, int8 activations calibrated on training images) and then measures both sides on this
machine:

- **accuracy**: top-1 agreement of int8 with fp32 and the top-1 accuracy of each on a
  validation set (the built-in digits by default, or a folder with ``train/`` and ``val/``
  class folders), plus the largest logit change relative to the largest fp32 logit;
- **time**: fp32 and int8 onnxruntime sessions at the export's batch size, timed in
  alternating rounds (:func:`~mobilevit.bench.timing.measure_alternating`), per image.

Where int8 is not faster than fp32 the int8 model is not written and :class:`Int8NotFaster`
says so with the numbers (the verified fp32 model stays next to it); ``keep_slower`` writes it
anyway, e.g. for a device whose int8 kernels pay where these do not. On the CPUs measured so far
it did not pay (docs/measured_defaults.md): MobileViT is dominated by depthwise convolutions, SiLU,
LayerNorm and small attention matmuls, where the quantize / dequantize traffic can cost more than
the int8 arithmetic saves.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .batches import padded_batches
from .onnx import ExportError, export_onnx

log = logging.getLogger(__name__)


class Int8NotFaster(ExportError):
    """int8 is not faster than fp32 here: the int8 model was not written. ``report`` holds the numbers."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class Int8Data:
    """Images for calibration and validation, ``[N, 3, H, W]`` float32 in [0, 1], and the labels."""

    calib: np.ndarray
    val: np.ndarray
    labels: np.ndarray
    classes: list[str]
    source: str
    calib_split: str
    skipped: list[str] = field(default_factory=list)  # unreadable files, by path and reason


def load_int8_data(
    data: str | Path,
    img_size: tuple[int, int],
    calib_images: int = 64,
    max_val: int | None = None,
    seed: int = 0,
) -> Int8Data:
    """Calibration and validation images at ``img_size`` (resized whole, as the digits demo evaluates).

    ``data`` is ``"digits"`` (scikit-learn's handwritten digits, written once under the cache
    folder) or a folder with ``val/`` (and ideally ``train/``) class folders. Calibration uses
    ``calib_images`` images drawn (seeded) from ``train/``, or from ``val/`` when there is none;
    validation uses all of ``val/`` (or ``max_val`` of them, seeded). Class indices are those
    training assigns (the sorted class folders of ``train/``). Unreadable files are skipped, logged
    and listed in ``skipped``.
    """
    import torchvision.transforms.v2 as T

    from ..data.folders import BadSample, DataError, ImageFolderDataset
    from ..data.synthetic import write_digits
    from ..weights.specs import cache_dir

    if calib_images < 1:
        raise ExportError(f"calibration needs at least one image, got calib_images={calib_images}")
    if str(data) == "digits":
        root = write_digits(cache_dir() / "data" / "digits", size=32, seed=0)
    else:
        root = Path(data)
        if not (root / "val").is_dir():
            raise ExportError(
                f"int8 validation data {str(data)!r}: expected 'digits' or a folder with val/ "
                "(and train/) class folders"
            )
    resize = T.Compose(
        [T.ToImage(), T.Resize(tuple(img_size), antialias=True), T.ToDtype(torch.float32, scale=True)]
    )

    def transform(image: Any, key: Any = None) -> torch.Tensor:
        return resize(image)

    skipped: list[str] = []

    def stack(ds: ImageFolderDataset, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        for i in indices:
            item = ds[i]
            if isinstance(item, BadSample):
                log.warning("skipping unreadable image %s (%s)", item.path, item.error)
                skipped.append(f"{item.path}: {item.error}")
                continue
            images.append(item[0].numpy())
            labels.append(item[1])
        if not images:
            raise ExportError(f"no readable images in {ds.root}")
        return np.stack(images).astype(np.float32), np.asarray(labels, dtype=np.int64)

    has_train = (root / "train").is_dir()
    try:  # class indices as training assigns them: the sorted folder names of train/
        calib_ds = ImageFolderDataset(root, "train" if has_train else "val", transform)
        val_ds = (
            ImageFolderDataset(root, "val", transform, classes=calib_ds.classes) if has_train else calib_ds
        )
    except DataError as e:
        raise ExportError(f"int8 validation data: {e}") from e
    rng = np.random.default_rng(seed)
    calib_idx = sorted(rng.permutation(len(calib_ds))[:calib_images].tolist())
    val_idx = list(range(len(val_ds)))
    if max_val is not None and max_val < len(val_ds):  # a seeded subset of every class, not the first ones
        val_idx = sorted(rng.permutation(len(val_ds))[:max_val].tolist())
    calib, _ = stack(calib_ds, calib_idx)
    val, labels = stack(val_ds, val_idx)
    return Int8Data(
        calib, val, labels, list(val_ds.classes), str(data), "train" if has_train else "val", skipped
    )


def _model_batch(session: Any) -> int | None:
    """The fixed batch size of the session's image input, or None when it is dynamic."""
    dim = session.get_inputs()[0].shape[0]
    return dim if isinstance(dim, int) else None


def run_batched(session: Any, images: np.ndarray, batch: int = 8) -> np.ndarray:
    """Logits of ``images`` from an onnxruntime session (at its fixed batch size, if it has one)."""
    batch = _model_batch(session) or batch
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x})[0][:n] for x, n in padded_batches(images, batch)])


def quantize_int8(fp32_path: str | Path, out_path: str | Path, calib: np.ndarray, batch: int = 8) -> None:
    """onnxruntime static quantization of ``fp32_path`` into ``out_path``: QDQ, int8 weights per
    output channel, int8 activations calibrated (min / max) on ``calib``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ..bench.timing import ort_session

    class Reader(CalibrationDataReader):
        def __init__(self, batches: list[tuple[np.ndarray, int]]) -> None:
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
        quantize_static(
            str(pre),
            str(out_path),
            Reader(padded_batches(calib, fixed or batch)),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=op_types,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
        )


def _time_sessions(fp32: Any, int8: Any, x: np.ndarray, rounds: int, budget_s: float) -> dict[str, float]:
    """ms per image of each session on ``x``, alternating rounds; about ``budget_s`` seconds in all."""
    from ..bench.timing import InferencePath, measure_alternating

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
) -> dict[str, Any]:
    """Accuracy and time of the int8 model against the fp32 one, both in onnxruntime."""
    from ..bench.timing import ort_session

    fp32, int8 = ort_session(Path(fp32_path)), ort_session(Path(int8_path))
    figures = accuracy_figures(run_batched(fp32, data.val), run_batched(int8, data.val), data, model_classes)
    batch = _model_batch(fp32) or 1
    x = padded_batches(data.val[:batch], batch)[0][0]
    ms = _time_sessions(fp32, int8, x, rounds, budget_s)
    return {
        "fp32_ms_per_image": ms["fp32"],
        "int8_ms_per_image": ms["int8"],
        "ratio_int8_vs_fp32": ms["int8"] / ms["fp32"],
        "timed_batch": batch,
        "threads": torch.get_num_threads(),
        **figures,
    }


def accuracy_figures(
    ref: np.ndarray, got: np.ndarray, data: Int8Data, model_classes: list[str] | None = None
) -> dict[str, Any]:
    """int8 logits ``got`` against fp32 logits ``ref`` on ``data.val``: top-1 agreement, the largest
    logit change relative to the largest fp32 logit, and each one's top-1 accuracy (where the
    model's classes are the data's)."""
    agreement = float((ref.argmax(1) == got.argmax(1)).mean())
    rel = float(np.abs(ref - got).max() / max(float(np.abs(ref).max()), 1e-12))
    k = ref.shape[1]
    accuracy_note = None
    if model_classes is not None and list(model_classes) != data.classes:
        accuracy_note = (
            f"the model's classes ({k}) are not the data's ({len(data.classes)}): accuracy not computed"
        )
    elif k != len(data.classes):
        accuracy_note = f"the model has {k} classes, the data {len(data.classes)}: accuracy not computed"
    fp32_top1 = int8_top1 = None
    if accuracy_note is None:
        fp32_top1 = float((ref.argmax(1) == data.labels).mean())
        int8_top1 = float((got.argmax(1) == data.labels).mean())
    return {
        "top1_agreement": agreement,
        "max_rel_logit_diff": rel,
        "fp32_top1": fp32_top1,
        "int8_top1": int8_top1,
        "accuracy_note": accuracy_note,
        "val_images": int(len(data.val)),
        "calib_images": int(len(data.calib)),
        "calib_split": data.calib_split,
        "data": data.source,
        "skipped_images": data.skipped,
    }


def export_int8(
    model: nn.Module,
    path: str | Path,
    img_size: tuple[int, int] = (256, 256),
    batch: int = 1,
    dynamic_batch: bool = False,
    opset: int = 17,
    data: str | Path = "digits",
    calib_images: int = 64,
    max_val: int | None = None,
    model_classes: list[str] | None = None,
    keep_slower: bool = False,
    budget_s: float = 10.0,
) -> dict[str, Any]:
    """Write an int8 ONNX classifier at ``path`` if it is faster than fp32 here (or ``keep_slower``).

    The verified fp32 export is written next to it as ``<stem>.fp32.onnx`` and the figures as
    ``<stem>.int8.json`` (also when int8 is refused). Raises :class:`Int8NotFaster` with the
    numbers when int8 is not faster; :class:`~.onnx.ExportError` for a model that is not a
    classifier or data that cannot be read, before any export.
    """
    from ..models import BackboneBase

    if not isinstance(model, BackboneBase) or model.num_classes < 1:
        raise ExportError(
            "--int8 quantizes classifiers (its accuracy check is top-1 on labelled images); "
            f"got a {type(model).__name__}. Export segmentation and detection models in fp32."
        )
    path = Path(path)
    data_ = load_int8_data(
        data, img_size, calib_images=calib_images, max_val=max_val
    )  # bad data: before work
    fp32_path = path.with_name(path.stem + ".fp32.onnx")
    report_path = path.with_name(path.stem + ".int8.json")
    fp32_report = export_onnx(
        model, fp32_path, img_size, dynamic_batch=dynamic_batch, opset=opset, batch=batch
    )
    path.unlink(missing_ok=True)  # never leave an older model under the name of this one
    with tempfile.TemporaryDirectory(prefix="mobilevit-int8-", dir=path.parent) as tmp:
        candidate = Path(tmp) / path.name
        quantize_int8(fp32_path, candidate, data_.calib)
        figures = compare_int8(fp32_path, candidate, data_, model_classes=model_classes, budget_s=budget_s)
        faster = figures["ratio_int8_vs_fp32"] < 1.0
        report = {
            "path": str(path),
            "fp32_path": str(fp32_path),
            "written": bool(faster or keep_slower),
            "img_size": list(img_size),
            "batch": fp32_report["batch"],
            "fp32_checks": fp32_report["checks"],
            **figures,
        }
        if report["written"]:
            candidate.replace(path)
            report["bytes"] = path.stat().st_size
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    if not report["written"]:
        raise Int8NotFaster(
            f"int8 is not faster than fp32 on this machine: {figures['int8_ms_per_image']:.2f} vs "
            f"{figures['fp32_ms_per_image']:.2f} ms per image at batch {figures['timed_batch']} "
            f"({figures['ratio_int8_vs_fp32']:.2f}x the fp32 time, {figures['threads']} threads, onnxruntime), "
            f"top-1 agreement {figures['top1_agreement']:.4f}; {path} was not written. The verified fp32 model "
            f"is {fp32_path}; the figures are in {report_path}. --int8-keep-slower writes the int8 model "
            "anyway (e.g. for a device whose int8 kernels pay). On x86 CPUs PyTorch's own int8 "
            "(mobilevit.export.quantize_int8_torch: PT2E + torch.compile, oneDNN kernels) may pay where "
            "onnxruntime's does not; `mobilevit bench --side-by-side --int8` times both here.",
            report,
        )
    return report


__all__ = ["Int8Data", "Int8NotFaster", "compare_int8", "export_int8", "load_int8_data", "quantize_int8"]
