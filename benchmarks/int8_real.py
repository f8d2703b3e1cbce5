"""Reduced precision on real photos: every int8 / bf16 path of a classifier trained on Imagenette,
judged on the whole val split the way its export check judges it.

For each weights file (default: the Imagenette-trained XXS and S under runs/), each path is built
through the library's own export (calibrated on 64 train images of the data the weights record,
validated on every val image through training's eval resize + crop), then timed at batch 1 against
the fp32 file of the same runtime in alternating rounds:

- ``onnxruntime_int8`` (QDQ static) vs onnxruntime fp32;
- ``compiled_int8`` (PyTorch x86: torchao PT2E + inductor) vs the BN-folded eager fp32 model;
- ``executorch_int8`` / ``litert_int8`` (PT2E for XNNPACK) vs their fp32 files;
- ``openvino_int8`` (NNCF) and ``openvino_bf16`` vs OpenVINO f32 (on a CPU without native bf16,
  OpenVINO computes the bf16 file in f32: the ``computed as`` column says so).

Columns: top-1 of fp32 and of the path, the drop (target <= 0.5 pt), top-1 agreement, the largest
logit change, and the latency ratio. Prints, as its last line, a JSON object with every figure;
writes docs/int8_real_photos.md. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from _common import REPO, print_json_last, write_doc

from mobilevit.export.calibration import int8_source, load_int8_data
from mobilevit.loading import load_model
from mobilevit.timing import InferencePath, measure_alternating

DEFAULT_WEIGHTS = [
    REPO / "runs" / "imagenette_mobilevit_xxs" / "best.safetensors",
    REPO / "runs" / "imagenette_mobilevit_s" / "best.safetensors",
]
PATHS = (
    "onnxruntime_int8",
    "compiled_int8",
    "executorch_int8",
    "litert_int8",
    "openvino_int8",
    "openvino_bf16",
)


def _path(name: str, run: Any) -> InferencePath:
    def fn(x: torch.Tensor) -> torch.Tensor:
        out = run(x.numpy()) if not isinstance(run, torch.nn.Module) else run(x)
        return out[0] if isinstance(out, list) else out

    return InferencePath(name, "mobilevit", fn)


def _time(fp32: Any, reduced: Any, x: torch.Tensor, iters: int) -> dict[str, float]:
    res = measure_alternating([_path("fp32", fp32), _path("reduced", reduced)], x, iters=iters, rounds=5)
    fp, rd = res["mobilevit/fp32"].p50_ms, res["mobilevit/reduced"].p50_ms
    return {"fp32_ms": fp, "reduced_ms": rd, "ratio": rd / fp}


def measure(weights: Path, paths: tuple[str, ...], calib_images: int, iters: int) -> list[dict[str, Any]]:
    """Every path of ``weights``: accuracy on the whole val split and batch-1 latency."""
    from mobilevit.export import export_executorch, export_int8, export_litert, export_openvino
    from mobilevit.export.executorch import load_executorch
    from mobilevit.export.litert import load_litert
    from mobilevit.export.onnx import ort_session
    from mobilevit.export.openvino import load_openvino

    model, meta = load_model(weights)
    model.eval()
    size = (int(meta.extra["img_size"]),) * 2
    source = int8_source(None, meta.extra, size, weights=str(weights))
    classes = meta.classes
    x = torch.rand(1, 3, *size)
    rows = []
    common = dict(
        data=source, calib_images=calib_images, model_classes=classes, max_drop=100.0, min_agreement=None
    )
    with tempfile.TemporaryDirectory(prefix="mobilevit-int8-real-") as tmp:
        t = Path(tmp)

        def ort(path: Path) -> Any:
            s = ort_session(path)
            return lambda a: s.run(None, {"image": a})

        def runtime(export: Any, load: Any, suffix: str, **reduced: Any) -> Any:
            """(accuracy of the reduced file, fp32 runner, reduced runner) of one runtime."""
            acc = export(model, t / f"r{suffix}", size, **reduced, **common).accuracy
            return acc, load(export(model, t / f"f{suffix}", size).path), load(t / f"r{suffix}")

        jobs = {
            "onnxruntime_int8": lambda: (
                export_int8(model, t / "m.onnx", size, keep_slower=True, **common).accuracy,
                ort(t / "m.fp32.onnx"),
                ort(t / "m.onnx"),
            ),
            "executorch_int8": lambda: runtime(export_executorch, load_executorch, ".pte", int8=True),
            "litert_int8": lambda: runtime(export_litert, load_litert, ".tflite", int8=True),
            "openvino_int8": lambda: runtime(export_openvino, load_openvino, ".xml", int8=True),
            "openvino_bf16": lambda: runtime(export_openvino, load_openvino, ".xml", precision="bf16"),
            "compiled_int8": lambda: _compiled(model, source, size, calib_images, classes),
        }
        for name in paths:
            t0 = time.perf_counter()
            try:
                acc, fp32_run, reduced_run = jobs[name]()
                timing = _time(fp32_run, reduced_run, x, iters)
            except Exception as e:  # a runtime not installed or a converter that refused: reported
                rows.append(
                    {"weights": str(weights), "path": name, "skipped": f"{type(e).__name__}: {e}"[:300]}
                )
                continue
            rows.append(
                {
                    "weights": str(weights),
                    "arch": meta.arch,
                    "path": name,
                    **{k: v for k, v in asdict(acc).items() if k != "skipped_images"},
                    **timing,
                    "seconds": time.perf_counter() - t0,
                }
            )
            print(f"{meta.arch} {name}: {rows[-1]}", flush=True)
    return rows


def _compiled(model: Any, source: Any, size: tuple[int, int], calib_images: int, classes: Any) -> tuple:
    from mobilevit.export import optimize_for_inference, quantize_int8_torch
    from mobilevit.export.int8_torch import predict_fixed_batch
    from mobilevit.export.runtime_checks import accuracy_check, judge

    data = load_int8_data(source, size, calib_images=calib_images)
    q = quantize_int8_torch(model, data.calib)
    ref = predict_fixed_batch(model, data.val)
    acc = accuracy_check(ref, predict_fixed_batch(q, data.val), data, precision="int8", model_classes=classes)
    judge(acc, 100.0, None)
    return acc, optimize_for_inference(model), q


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", nargs="+", default=[str(w) for w in DEFAULT_WEIGHTS])
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    p.add_argument("--calib-images", type=int, default=64)
    p.add_argument("--iters", type=int, default=20, help="timed passes per path per round (5 rounds)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    missing = [w for w in args.weights if not Path(w).is_file()]
    if missing:
        raise SystemExit(
            f"int8_real.py: no weights file {', '.join(missing)}; train one first, e.g. "
            "mobilevit train --config configs/imagenette_mobilevit_xxs.yaml data.root=../shared/data/imagenette160"
        )
    torch.set_num_threads(2)
    rows = [
        r for w in args.weights for r in measure(Path(w), tuple(args.paths), args.calib_images, args.iters)
    ]
    lines = [
        "| model | path | computed as | fp32 top-1 | top-1 | drop (pt) | agreement | largest logit change | "
        "ms fp32 | ms reduced | ratio |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(
                f"| {Path(r['weights']).parent.name} | {r['path']} | skipped: {r['skipped']} |||||||||"
            )
            continue
        lines.append(
            f"| {r['arch']} | {r['path']} | {r['computed_as']} | {100 * r['fp32_top1']:.2f}% | {100 * r['top1']:.2f}% | "
            f"{r['top1_drop_pt']:.2f} | {r['top1_agreement']:.4f} | {100 * r['max_rel_logit_diff']:.1f}% | "
            f"{r['fp32_ms']:.2f} | {r['reduced_ms']:.2f} | {r['ratio']:.2f} |"
        )
    measured = [r for r in rows if "skipped" not in r]
    body = (
        f"Imagenette-trained classifiers, every val image ({measured[0]['val_images'] if measured else 0}), "
        f"through each file's own runtime; calibration on {args.calib_images} train images; images: "
        f"{measured[0]['preprocessing'] if measured else ''}. Latency: batch 1, ms per image (p50), "
        f"alternating rounds against the fp32 file of the same runtime.\n\n"
        + "\n".join(lines)
        + "\n\nTarget: a drop of at most 0.5 pt on every path. The export check keeps a file by the same "
        "rule (`--max-drop`, default 0.5).\n"
    )
    write_doc(
        "int8_real_photos.md",
        "Reduced precision on real photos (Imagenette)",
        body,
        "python benchmarks/int8_real.py --weights "
        + " ".join(args.weights)
        + ("" if tuple(args.paths) == PATHS else " --paths " + " ".join(args.paths)),
    )
    figures = {
        f"{r['arch']}.{r['path']}": (
            {
                "drop_pt": round(r["top1_drop_pt"], 2),
                "agreement": round(r["top1_agreement"], 4),
                "ratio": round(r["ratio"], 3),
            }
            if "skipped" not in r
            else "skipped"
        )
        for r in rows
    }
    figures["all_within_0.5pt"] = all(r["top1_drop_pt"] <= 0.5 for r in measured) and len(measured) == len(
        rows
    )
    print_json_last(figures)


if __name__ == "__main__":
    main()
