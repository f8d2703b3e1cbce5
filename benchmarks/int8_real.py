"""Reduced precision on real photos: every int8 / bf16 path of a classifier trained on Imagenette,
judged on the whole val split the way its export check judges it.

For each weights file (default: the Imagenette-trained XXS and S under runs/), each path is built
through the library's own export (calibrated on 64 train images of the data the weights record,
validated on every val image through training's eval resize + crop), then timed at batch 1 against
the fp32 file of the same runtime in alternating rounds:

- ``onnxruntime_int8`` (QDQ static) vs onnxruntime fp32; where it loses more than ``--max-drop``,
  onnxruntime's own per-block sensitivity pass and the costliest blocks kept in fp32
  (``export_int8(keep_float=...)``) until it holds;
- ``compiled_int8`` (PyTorch x86: torchao PT2E + inductor) vs the BN-folded eager fp32 model; 7-bit
  activations on a CPU without VNNI or AMX (`quantize_int8_torch`'s default there). Where it loses
  more than ``--max-drop``, a per-block sensitivity pass ranks what each block costs and the
  costliest blocks are kept in fp32 until it holds (rows "blocks in fp32", with their latency);
- ``executorch_int8`` / ``litert_int8`` (PT2E for XNNPACK) vs their fp32 files;
- ``openvino_int8`` (NNCF; the ops it leaves unquantized in f32) and ``openvino_bf16`` vs OpenVINO
  f32 (on a CPU without native bf16, OpenVINO computes the bf16 file in f32: the ``computed as``
  column says so).

Rows are kept per machine (the ``machine`` column): a run on another CPU adds its rows beside the
earlier ones instead of replacing them.

Columns: top-1 of fp32 and of the path, the drop (target <= 0.5 pt), top-1 agreement, the largest
logit change, and the latency ratio. Prints, as its last line, a JSON object with every figure;
writes docs/int8_real_photos.md. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from _common import DOCS, REPO, print_json_last, write_doc

from mobilevit.export.calibration import int8_source, load_int8_data
from mobilevit.loading import load_model
from mobilevit.timing import InferencePath, measure_alternating

DEFAULT_WEIGHTS = [
    REPO / "benchmarks" / "artifacts" / "imagenette_mobilevit_xxs.safetensors",
    REPO / "runs" / "imagenette_mobilevit_s" / "best.safetensors",
]
ROWS_FILE = DOCS / "int8_real_photos.json"
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


def measure(
    weights: Path, paths: tuple[str, ...], calib_images: int, iters: int, max_drop: float
) -> list[dict[str, Any]]:
    """Every path of ``weights``: accuracy on the whole val split and batch-1 latency; where the
    PyTorch x86 or the onnxruntime int8 path loses more than ``max_drop`` points, that path's own
    per-block sensitivity pass and the blocks kept in fp32 that bring it within."""
    from mobilevit.export import (
        export_executorch,
        export_int8,
        export_litert,
        export_openvino,
        int8_sensitivity,
        int8_sensitivity_onnx,
    )
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
    cache: dict[str, Any] = {}

    def int8_data() -> Any:
        """The calibration and val images, read once."""
        if "data" not in cache:
            cache["data"] = load_int8_data(source, size, calib_images=calib_images)
        return cache["data"]

    def compiled_data() -> Any:
        """The images and, once, the BN-folded fp32 model's logits on them (the x86 path's reference)."""
        if "ref" not in cache:
            from mobilevit.export import optimize_for_inference
            from mobilevit.export.int8_torch import predict_fixed_batch

            cache["fp32"] = optimize_for_inference(model)
            cache["ref"] = predict_fixed_batch(cache["fp32"], int8_data().val)
        return int8_data(), cache["fp32"], cache["ref"]

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
            "compiled_int8": lambda: _compiled(model, *compiled_data(), classes),
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
            if name in ("compiled_int8", "onnxruntime_int8") and acc.top1_drop_pt > max_drop:
                data = int8_data()
                t1 = time.perf_counter()
                ranking = (
                    int8_sensitivity(model, data.calib, data.val, data.labels, compile=True)
                    if name == "compiled_int8"
                    else int8_sensitivity_onnx(model, data.calib, data.val, data.labels)
                )
                seconds = time.perf_counter() - t1
                build = (
                    (lambda keep: _compiled(model, *compiled_data(), classes, tuple(keep)))
                    if name == "compiled_int8"
                    else (lambda keep: _onnx_keeping(model, t, size, keep, common))
                )
                fixes = keep_float_until(ranking, build, max_drop, x, iters)
                rows[-1] |= {"sensitivity": ranking, "sensitivity_seconds": seconds}
                rows += [
                    {"weights": str(weights), "arch": meta.arch, "path": f"{name}, blocks in fp32", **f}
                    for f in fixes
                ]
    return rows


def _onnx_keeping(
    model: Any, tmp: Path, size: tuple[int, int], keep: list[str], common: dict[str, Any]
) -> Any:
    """onnxruntime int8 with ``keep`` in fp32: its accuracy check, the fp32 and int8 runners."""
    from mobilevit.export import export_int8
    from mobilevit.export.onnx import ort_session

    acc = export_int8(model, tmp / "k.onnx", size, keep_slower=True, keep_float=keep, **common).accuracy
    fp32, int8 = ort_session(tmp / "k.fp32.onnx"), ort_session(tmp / "k.onnx")
    return (
        replace(acc, computed_as=f"int8 ({', '.join(keep)} in fp32)"),
        lambda a: fp32.run(None, {"image": a}),
        lambda a: int8.run(None, {"image": a}),
    )


def _compiled(
    model: Any, data: Any, fp32: Any, ref: Any, classes: Any, keep_float: tuple[str, ...] = ()
) -> tuple[Any, Any, Any]:
    """PyTorch x86 int8 (``keep_float``: blocks left in fp32) against ``fp32``'s logits ``ref``: its
    accuracy check, the fp32 and int8 runners."""
    from mobilevit.export import quantize_int8_torch
    from mobilevit.export.int8_torch import predict_fixed_batch
    from mobilevit.export.runtime_checks import accuracy_check, judge

    q = quantize_int8_torch(model, data.calib, keep_float=keep_float)
    bits = "7-bit activations" if q.report["reduce_range"] else "8-bit activations"
    acc = accuracy_check(
        ref,
        predict_fixed_batch(q, data.val),
        data,
        precision="int8",
        computed_as=f"int8 ({bits}{', ' + ', '.join(keep_float) + ' in fp32' if keep_float else ''})",
        model_classes=classes,
    )
    judge(acc, 100.0, None)
    return acc, fp32, q


def keep_float_until(
    ranking: list[dict[str, Any]],
    build: Any,
    max_drop: float,
    x: torch.Tensor,
    iters: int,
    most: int = 4,
) -> list[dict[str, Any]]:
    """A path's fix after its sensitivity pass: keep the costliest blocks of ``ranking`` in fp32,
    one more at a time (at most ``most``), until the drop is within ``max_drop``. ``build(keep)``
    gives (accuracy check, fp32 runner, reduced runner) with ``keep`` in fp32. One row per tried
    fix, with its accuracy and latency."""
    fixes = []
    for n in range(1, min(most, len(ranking)) + 1):
        keep = [r["unit"] for r in ranking[:n]]
        t1 = time.perf_counter()
        acc, fp32_run, reduced_run = build(keep)
        fixes.append(
            {
                **{k: v for k, v in asdict(acc).items() if k != "skipped_images"},
                **_time(fp32_run, reduced_run, x, iters),
                "keep_float": keep,
                "seconds": time.perf_counter() - t1,
            }
        )
        print(f"keep float {keep}: drop {acc.top1_drop_pt:.2f} pt", flush=True)
        if acc.top1_drop_pt <= max_drop:
            break
    return fixes


# the CPU of the rows stored before rows named their machine (the page's header then said so)
FIRST_MACHINE = "AMD EPYC, family 25 model 1"


def this_machine() -> str:
    from mobilevit.bench import machine_info

    return str(machine_info()["cpu"])


def _key(r: dict[str, Any]) -> tuple[str, str, str]:
    # a path's blocks-in-fp32 rows go with it; another CPU's rows are rows of their own
    return r.get("machine", FIRST_MACHINE), r["weights"], r["path"].split(",")[0]


def merge(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored rows, those of every (machine, weights, path) measured now replaced by the new
    ones; ordered by weights, then machine, then path."""
    now = {_key(r) for r in new}
    rows = [r for r in old if _key(r) not in now] + new
    order = {p: i for i, p in enumerate(PATHS)}
    return sorted(
        rows, key=lambda r: (r["weights"], _key(r)[0], order.get(_key(r)[2], len(order)), r["path"])
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", nargs="+", default=[str(w) for w in DEFAULT_WEIGHTS])
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    p.add_argument("--calib-images", type=int, default=64)
    p.add_argument("--iters", type=int, default=20, help="timed passes per path per round (5 rounds)")
    p.add_argument(
        "--fresh",
        action="store_true",
        help=f"forget the rows of earlier runs ({ROWS_FILE.name}) instead of replacing only the paths measured now",
    )
    p.add_argument(
        "--max-drop",
        type=float,
        default=0.5,
        help="the target (pt of top-1); a PyTorch x86 or onnxruntime int8 path beyond it gets its own "
        "sensitivity pass",
    )
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for name in ("mobilevit.export.int8_torch", "mobilevit.export.int8_parts"):  # the passes' progress
        logging.getLogger(name).setLevel(logging.INFO)
    missing = [w for w in args.weights if not Path(w).is_file()]
    if missing:
        raise SystemExit(
            f"int8_real.py: no weights file {', '.join(missing)}; train one first, e.g. "
            "mobilevit train --config configs/imagenette_mobilevit_xxs.yaml data.root=../shared/data/imagenette160 "
            "(benchmarks/artifacts/README.md: the committed file's recipe)"
        )
    torch.set_num_threads(2)
    new = [
        r | {"date": time.strftime("%Y-%m-%d"), "machine": this_machine()}
        for w in args.weights
        for r in measure(Path(w), tuple(args.paths), args.calib_images, args.iters, args.max_drop)
    ]
    rows = merge([] if args.fresh else json.loads(ROWS_FILE.read_text()) if ROWS_FILE.is_file() else [], new)
    ROWS_FILE.write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        "| model | machine | path | computed as | fp32 top-1 | top-1 | drop (pt) | agreement | largest logit change | "
        "ms fp32 | ms reduced | ratio | measured |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(
                f"| {Path(r['weights']).parent.name} | {_key(r)[0]} | {r['path']} | skipped: {r['skipped']} "
                f"||||||||| {r['date']} |"
            )
            continue
        lines.append(
            f"| {r['arch']} | {_key(r)[0]} | {r['path']} | {r['computed_as']} | {100 * r['fp32_top1']:.2f}% | {100 * r['top1']:.2f}% | "
            f"{r['top1_drop_pt']:.2f} | {r['top1_agreement']:.4f} | {100 * r['max_rel_logit_diff']:.1f}% | "
            f"{r['fp32_ms']:.2f} | {r['reduced_ms']:.2f} | {r['ratio']:.2f} | {r['date']} |"
        )
    measured = [r for r in rows if "skipped" not in r]
    sensitivity = []
    for r in measured:
        if "sensitivity" not in r:
            continue
        sensitivity += [
            f"\n{r['arch']}, {r['path']} ({_key(r)[0]}): one block quantized at a time (the rest in fp32), "
            + ("compiled as the path runs" if r["path"] == "compiled_int8" else "in onnxruntime at batch 32")
            + f", every val image; the pass took {r['sensitivity_seconds'] / 60:.1f} min. "
            "The costliest first:\n",
            "| block | top-1 | drop (pt) | agreement |",
            "|---|---:|---:|---:|",
        ]
        sensitivity += [
            f"| {u['unit']} | {100 * u['top1']:.2f}% | {u['drop_pt']:.2f} | {u['agreement']:.4f} |"
            for u in r["sensitivity"]
        ]
    body = (
        f"Imagenette-trained classifiers, every val image ({measured[0]['val_images'] if measured else 0}), "
        f"through each file's own runtime; calibration on {args.calib_images} train images; images: "
        f"{measured[0]['preprocessing'] if measured else ''}. Latency: batch 1, ms per image (p50), "
        f"alternating rounds against the fp32 file of the same runtime. Each run of the script replaces "
        f"the rows of the paths it measures (kept in {ROWS_FILE.name}; `--fresh` starts over): the "
        "last column gives each row's date. The header names the machine of the latest run; each row "
        "names its own (a CPU with VNNI or AMX runs int8 with 8-bit activations and bf16 natively, "
        "one without computes OpenVINO's bf16 in f32).\n\n"
        + "\n".join(lines)
        + f"\n\nTarget: a drop of at most {args.max_drop} pt on every path. The export check keeps a file by "
        "the same rule (`--max-drop`, default 0.5). Where the PyTorch x86 or the onnxruntime path misses "
        "it, the rows 'blocks in fp32' keep the costliest blocks of that path's sensitivity pass below in "
        "fp32 (`quantize_int8_torch(keep_float=...)`, `export_int8(keep_float=...)`), one more at a time, "
        "until it holds.\n" + "\n".join(sensitivity) + ("\n" if sensitivity else "")
    )
    write_doc(
        "int8_real_photos.md",
        "Reduced precision on real photos (Imagenette)",
        body,
        "python benchmarks/int8_real.py --weights " + " ".join(sorted({r["weights"] for r in rows})),
    )
    figures = {
        f"{_key(r)[0]}:{r['arch']}.{r['path']}{'.' + '+'.join(r['keep_float']) if r.get('keep_float') else ''}": (
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
    # a path counts as within where it, or its last blocks-in-fp32 fix, is
    final: dict[tuple[str, str, str], float] = {}
    for r in measured:
        final[_key(r)] = r["top1_drop_pt"]
    figures["all_within_target"] = all(d <= args.max_drop for d in final.values()) and len(measured) == len(
        rows
    )
    print_json_last(figures)


if __name__ == "__main__":
    main()
