"""Inference latency side by side: ours, timm and transformers, every path, in one run (issue 6).

For each model (default mobilevit_xxs, _xs, _s, MobileViT v2 mobilevitv2_050, _100 and MobileViT v3
mobilevitv3_xxs, _050 at 256x256, 2 threads) and batch size (1 and 32),
every inference path is built with random weights and timed in alternating rounds (order
rotated each round, so machine noise hits all alike): ours eager / optimized
(optimize_for_inference: BN folded, channels-last) / optimized_nchw (the same, contiguous) /
compiled (torch.compile) / onnxruntime, timm's eager /
channels_last / compiled / onnxruntime, transformers' eager (MobileViTForImageClassification / MobileViTV2ForImageClassification); bf16
autocast rows separately
where the CPU has native bf16. Throughput is also given as a fraction of the machine's fp32
matmul peak (torch.mm 2048x2048, measured at the start and the end of the run; the higher is used).

Writes docs/benchmarks.md and prints, as its last line, a JSON object with
``ratio_b1_vs_timm_eager`` (our optimized / timm eager, batch-1 time), ``ratio_b1_vs_timm_best``
and ``ratio_b32_vs_timm_best`` (our fastest path / timm's fastest path; < 1 means ours is
faster), ``peak_fraction_b32_s``, ``peak_gflops``, the CPU, and the int8 figures:
``ratio_int8_vs_fp32_b32_s`` (our faster int8 path, named in ``int8_path_s``, / our fastest fp32
path on S at batch 32; the int8 paths are onnxruntime static quantization and PyTorch's x86 int8,
PT2E + torch.compile, both calibrated on the built-in digits and timed in the same alternating
rounds) and ``int8_top1_agreement_s``: that path's int8 vs fp32 top-1 agreement on the 360 digits
validation images of a MobileViT-S trained on the digits for ``--int8-train-epochs`` epochs here
(random weights give near-constant logits, whose argmax no quantizer can keep; trained weights
are what a user quantizes), at the recipe's 64 px. ``ratio_matched`` holds the figures at matched size
(``--matched``, default v2-0.5 vs XXS, v2-1.0 vs S, v3-XXS vs XXS and v3-0.5 vs v2-0.5): both models'
paths timed in one set of alternating rounds, second time / first time per batch and path. The runtime rows (``--runtimes``:
ExecuTorch XNNPACK, LiteRT, OpenVINO for ours and timm's model; at batch 1 for every model and above it for
``--runtimes-large``, default S) give ``ratio_executorch_fp32_vs_ort_b1``,
``ratio_executorch_vs_timm_executorch_b1``, ``ratio_xnnpack_int8_vs_ort_fp32_b1_s``,
``ratio_openvino_bf16_vs_ort_fp32_b32_s``, ``ratio_openvino_int8_vs_ort_fp32_b32_s`` and, from the
digits-trained S, ``runtime_agreement_s``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from _common import REPO, print_json_last, write_doc

import mobilevit
from mobilevit.bench import count_flops, count_params, machine_info
from mobilevit.bench.paths import (
    PathResult,
    best_row,
    format_path_table,
    matched_table,
    run_matched,
    run_side_by_side,
)
from mobilevit.bench.runtime_paths import RUNTIME_PATHS
from mobilevit.timing import peak_matmul_gflops

TIMM_FP32_PATHS = ("eager", "channels_last", "compiled", "onnxruntime")
# our int8 paths: onnxruntime static quantization, and PyTorch's x86 int8 (PT2E + inductor, oneDNN)
INT8_PATHS = ("onnxruntime_int8", "compiled_int8")


def short(name: str) -> str:
    return name.removeprefix("mobilevit_").replace("mobilevitv2_", "v2_").replace("mobilevitv3_", "v3_")


def _fmt(v: float | None, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def _row(rows: list[PathResult], model: str, owner: str, path: str, batch: int) -> PathResult | None:
    return next((r for r in rows if (r.model, r.owner, r.path, r.batch) == (model, owner, path, batch)), None)


def pivot_table(rows: list[PathResult], models: list[str], batch: int, precision: str = "fp32") -> str:
    """Path rows x model columns at one batch size: ms (per pass at batch 1, per image above), images/s, % peak."""
    ms_label = "p50 ms" if batch == 1 else "ms / image"
    head = "| owner | path | " + " | ".join(
        f"{short(m)} {ms_label} | {short(m)} images/s | {short(m)} % peak" for m in models
    )
    lines = [head + " |", "|---|---|" + "---:|---:|---:|" * len(models)]
    keys = list(
        dict.fromkeys((r.owner, r.path) for r in rows if r.batch == batch and r.precision == precision)
    )
    for owner, path in keys:
        cells = []
        for m in models:
            r = _row(rows, m, owner, path, batch)
            if r is None or r.skipped:
                cells.append("skipped | | " if r is not None else "— | — | —")
                continue
            pct = None if r.peak_fraction is None else 100 * r.peak_fraction
            cells.append(
                f"{_fmt(r.ms_per_image, '.2f')} | {_fmt(r.images_per_s, '.1f')} | {_fmt(pct, '.1f')}"
            )
        lines.append(f"| {owner} | {path} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reduced_table(rows: list[PathResult], models: list[str]) -> str:
    """bf16 / int8 rows with their speed-up over the same owner's fp32 path and their agreement with fp32."""
    lines = [
        "| model | owner | path | batch | ms / image | images/s | vs fp32 counterpart | top-1 agreement "
        "| max rel logit diff |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r.precision == "fp32" or r.model not in models or r.ms_per_image is None:
            continue
        fp32 = _row(rows, r.model, r.owner, r.path.removesuffix("_bf16").removesuffix("_int8"), r.batch)
        speedup = fp32.ms_per_image / r.ms_per_image if fp32 and fp32.ms_per_image else None
        lines.append(
            f"| {short(r.model)} | {r.owner} | {r.path} | {r.batch} | {r.ms_per_image:.2f} | {r.images_per_s:.1f} "
            f"| {_fmt(speedup, '.2f')}x | {_fmt(r.top1_agreement, '.3f')} | {_fmt(r.max_rel_diff, '.2e')} |"
        )
    return "\n".join(lines)


def setup_table(rows: list[PathResult]) -> str:
    """Build time of the paths that need one (torch.compile, ONNX export + session, int8
    calibration), and skips."""
    lines = ["| model | batch | owner | path | setup s | note |", "|---|---:|---|---|---:|---|"]
    for r in rows:
        if (
            r.path in ("compiled", "onnxruntime", "onnxruntime_int8", "compiled_int8", *RUNTIME_PATHS)
            or r.skipped
        ):
            lines.append(
                f"| {short(r.model)} | {r.batch} | {r.owner} | {r.path} | {r.setup_s:.1f} | {r.skipped or ''} |"
            )
    return "\n".join(lines)


def ratio_vs_timm(
    rows: list[PathResult], model: str, batch: int, ours_paths=None, timm_paths=None
) -> float | None:
    ours = best_row([r for r in rows if r.model == model], "mobilevit", batch, ours_paths)
    timm = best_row([r for r in rows if r.model == model], "timm", batch, timm_paths)
    if ours is None or timm is None:
        return None
    return round(ours.ms_per_image / timm.ms_per_image, 3)


def figures(rows: list[PathResult], models: list[str], peak: float, info: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of the JSON line (null where a model or batch size was not run)."""
    out: dict[str, Any] = {
        "ratio_b1_vs_timm_eager": {
            short(m): ratio_vs_timm(rows, m, 1, ("optimized",), ("eager",)) for m in models
        },
        "ratio_b1_vs_timm_best": {short(m): ratio_vs_timm(rows, m, 1, None, TIMM_FP32_PATHS) for m in models},
        "ratio_b32_vs_timm_best": {
            short(m): ratio_vs_timm(rows, m, 32, None, TIMM_FP32_PATHS) for m in models
        },
    }
    out["best_paths"] = {}
    for m in models:
        rows_m = [r for r in rows if r.model == m]
        for b in sorted({r.batch for r in rows_m}):
            best = {o: best_row(rows_m, o, b) for o in ("mobilevit", "timm")}
            out["best_paths"][f"{short(m)}_b{b}"] = {o: r.path if r else None for o, r in best.items()}
    best_s = best_row([r for r in rows if r.model == "mobilevit_s"], "mobilevit", 32)
    out["peak_fraction_b32_s"] = round(best_s.peak_fraction, 4) if best_s else None
    int8_rows = [_row(rows, "mobilevit_s", "mobilevit", p, 32) for p in INT8_PATHS]
    int8_rows = [r for r in int8_rows if r is not None and r.ms_per_image is not None]
    int8_s = min(int8_rows, key=lambda r: r.ms_per_image, default=None)
    ok = int8_s is not None and best_s is not None
    out["ratio_int8_vs_fp32_b32_s"] = round(int8_s.ms_per_image / best_s.ms_per_image, 3) if ok else None
    out["int8_path_s"] = int8_s.path if int8_s else None
    out["ratio_int8_vs_fp32_b32_s_by_path"] = {
        r.path: round(r.ms_per_image / best_s.ms_per_image, 3) for r in int8_rows if best_s
    }
    out.update(runtime_figures(rows, models))
    out["peak_gflops"] = round(peak, 1)
    out["cpu"] = info["cpu"]
    out["threads"] = info["threads"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--models",
        nargs="+",
        default=[
            "mobilevit_xxs",
            "mobilevit_xs",
            "mobilevit_s",
            "mobilevitv2_050",
            "mobilevitv2_100",
            "mobilevitv3_xxs",
            "mobilevitv3_050",
        ],
    )
    p.add_argument(
        "--matched",
        nargs="*",
        default=[
            "mobilevit_xxs:mobilevitv2_050",
            "mobilevit_s:mobilevitv2_100",
            "mobilevit_xxs:mobilevitv3_xxs",
            "mobilevitv2_050:mobilevitv3_050",
        ],
        metavar="A:B",
        help="pairs timed against each other in one set of alternating rounds (v1, v2 and v3 at matched "
        "size; none: skip)",
    )
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    p.add_argument("--img-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=10, help="timed passes per path per round at batch 1")
    p.add_argument("--iters-large", type=int, default=1, help="timed passes per path per round at batch > 1")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile paths")
    p.add_argument(
        "--no-transformers-large",
        dest="transformers_large",
        action="store_false",
        help="time transformers' eager model at batch 1 only (its batch-32 passes take 5-20 s each, "
        "about 4 of the full run's 18 minutes)",
    )
    p.add_argument(
        "--int8-models",
        nargs="*",
        default=["mobilevit_s"],
        help="models with an int8 row at batch > 1 (default mobilevit_s; none: no int8 figures)",
    )
    p.add_argument(
        "--int8-train-epochs",
        type=int,
        default=8,
        help="epochs of MobileViT-S on the digits for the int8 agreement figure (0: skip it); 8 reach "
        "about 99%% top-1, a converged model like the ones users quantize (3 leave it at 92%%, near-ties)",
    )
    p.add_argument(
        "--runtimes",
        nargs="*",
        default=list(RUNTIME_PATHS),
        metavar="PATH",
        help="runtime rows for ours and timm's model (ExecuTorch XNNPACK, LiteRT, OpenVINO; default all; "
        "none: skip). The int8 ones only for --int8-models (ExecuTorch's int8 lowering takes ~2 min a model)",
    )
    p.add_argument(
        "--runtimes-large",
        nargs="*",
        default=["mobilevit_s"],
        metavar="MODEL",
        help="models with runtime rows at batch > 1 too (default mobilevit_s, the one the batch-32 "
        "targets are on; the runtime rows of every model at batch 32 add about 40 minutes)",
    )
    p.add_argument(
        "--doc",
        default="benchmarks.md",
        help="the file under docs/ the tables go to (a partial run: give it its own, e.g. "
        "benchmarks_runtimes.md, so the full run's tables stay)",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 2 passes, 1 round")
    args = p.parse_args()
    if args.quick:
        args.iters, args.iters_large, args.rounds = 2, 1, 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t_start = time.perf_counter()
    size = (args.img_size, args.img_size)
    peak_start = peak_matmul_gflops()
    print(f"fp32 matmul peak at start: {peak_start:.1f} GFLOP/s", flush=True)
    flops, params, rows = {}, {}, []
    for name in args.models:
        model = mobilevit.create_model(name).eval()
        flops[name], params[name] = count_flops(model, size), count_params(model)
        for batch in args.batches:
            t0 = time.perf_counter()
            new = run_side_by_side(
                name,
                batch,
                size,
                iters=args.iters if batch == 1 else args.iters_large,
                rounds=args.rounds,
                flops_per_image=flops[name],
                peak_gflops=peak_start,
                compile=args.compile,
                transformers=batch == 1 or args.transformers_large,
                int8=batch > 1 and name in args.int8_models,
                thread_check=batch == 1,
                runtimes=tuple(
                    r
                    for r in args.runtimes
                    if (not r.endswith("_int8") or name in args.int8_models)
                    and (batch == 1 or name in args.runtimes_large)
                ),
            )
            print(
                f"\n{name} batch {batch} ({time.perf_counter() - t0:.0f} s)\n{format_path_table(new)}",
                flush=True,
            )
            rows += new
    pairs = [tuple(p.split(":")) for p in args.matched]
    if any(len(p) != 2 for p in pairs):
        raise SystemExit(f"--matched takes pairs A:B, got {args.matched}")
    matched: list[PathResult] = []
    for pair in pairs:
        for batch in args.batches:
            t0 = time.perf_counter()
            matched += run_matched(
                list(pair),
                batch,
                size,
                iters=args.iters if batch == 1 else args.iters_large,
                rounds=args.rounds,
            )
            print(f"\nmatched {pair} batch {batch} ({time.perf_counter() - t0:.0f} s)", flush=True)
    if matched:
        print(matched_table(matched, pairs), flush=True)
    int8_check = None
    if args.int8_train_epochs > 0 and "mobilevit_s" in args.int8_models:
        t0 = time.perf_counter()
        int8_check = trained_int8_check(
            "mobilevit_s", args.int8_train_epochs, args.threads, tuple(args.runtimes)
        )
        int8_check["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"\nint8 vs fp32, MobileViT-S trained on the digits: {int8_check}", flush=True)
    peak_end = peak_matmul_gflops()
    peak = max(peak_start, peak_end)
    for r in rows:  # against the higher of the two peak measurements
        if r.images_per_s is not None:
            r.peak_fraction = flops[r.model] * r.images_per_s / (peak * 1e9)
    seconds = time.perf_counter() - t_start
    info = machine_info()
    write_doc(
        args.doc,
        "Inference latency: every path, ours and the peers",
        _doc_body(args, rows, params, flops, (peak_start, peak_end), seconds, int8_check, matched, pairs),
        "python benchmarks/latency.py " + " ".join(sys.argv[1:]),
    )
    out = figures(rows, args.models, peak, info)
    int8_path = out["int8_path_s"]
    checked = int8_check.get(int8_path, {}) if int8_check and int8_path else {}
    out["int8_top1_agreement_s"] = checked.get("top1_agreement")  # of the path the time ratio is for
    out["int8_check_s"] = int8_check
    out["runtime_agreement_s"] = {  # reduced-precision runtime exports of the digits-trained S vs fp32
        p: r.get("top1_agreement") for p, r in (int8_check or {}).items() if p in RUNTIME_PATHS
    }
    out["ratio_matched"] = matched_ratios(matched, pairs)
    out["seconds"] = round(seconds, 1)
    out["compile_s"] = {
        f"{short(r.model)}_b{r.batch}_{r.owner}": round(r.setup_s, 1)
        for r in rows
        if r.path == "compiled" and not r.skipped
    }
    print_json_last(out)


def trained_int8_check(
    model_name: str, epochs: int, threads: int, runtimes: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Train ``model_name`` on the digits (the demo recipe, ``epochs`` epochs), then compare each int8
    path with fp32 on the 360 validation images at the recipe's 64 px: the onnxruntime int8 export
    against the fp32 export, PyTorch's compiled int8 against the eager model."""
    from mobilevit.engine import load_config, train
    from mobilevit.export import export_onnx
    from mobilevit.export.calibration import load_int8_data
    from mobilevit.export.int8 import compare_int8, quantize_int8
    from mobilevit.export.int8_torch import predict_fixed_batch, quantize_int8_torch
    from mobilevit.export.runtime_checks import accuracy_check
    from mobilevit.predict import load_classifier

    with tempfile.TemporaryDirectory(prefix="mobilevit-int8-check-") as tmp:
        cfg = load_config(
            REPO / "configs" / "demo_digits.yaml",
            [
                f"model.name={model_name}",
                f"optim.epochs={epochs}",
                "optim.warmup_iters=20",
                f"run.out_dir={tmp}/run",
                f"run.threads={threads}",
                "run.progress=false",
                "data.num_workers=0",  # no fork: litert-torch's JAX threads can deadlock a forked loader
            ],
        )
        train(cfg)
        model, classes = load_classifier(Path(tmp) / "run" / "best.safetensors")
        size = (cfg.data.img_size, cfg.data.img_size)
        data = load_int8_data("digits", size, calib_images=64)
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        export_onnx(model, fp32, img_size=size, batch=32)
        quantize_int8(fp32, int8, data.calib)
        by_path = {
            "onnxruntime_int8": asdict(compare_int8(fp32, int8, data, model_classes=classes, budget_s=4.0)[0])
        }
        try:  # PyTorch's x86 int8, compiled as the benchmark times it, against the eager fp32 model
            q = quantize_int8_torch(model, data.calib)
            ref = predict_fixed_batch(model.eval(), data.val)
            by_path["compiled_int8"] = asdict(
                accuracy_check(
                    ref, predict_fixed_batch(q, data.val), data, precision="int8", model_classes=classes
                )
            )
        except Exception as e:  # no torchao / no compiler: reported, the onnxruntime figures stand
            by_path["compiled_int8"] = {"skipped": f"{type(e).__name__}: {e}"[:200]}
        by_path.update(_runtime_agreement(model, size, classes, Path(tmp), runtimes))
    keys = ("top1_agreement", "fp32_top1", "top1", "top1_drop_pt", "max_rel_logit_diff")
    return {
        "model": model_name,
        "epochs": epochs,
        "img_size": size[0],
        "val_images": len(data.val),
        "calib_images": len(data.calib),
        **{p: {k: r[k] for k in keys} if "skipped" not in r else r for p, r in by_path.items()},
    }


def _ms(rows: list[PathResult], model: str, owner: str, path: str, batch: int) -> float | None:
    r = _row(rows, model, owner, path, batch)
    return r.ms_per_image if r is not None and r.ms_per_image else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b is not None else None


def runtime_figures(rows: list[PathResult], models: list[str]) -> dict[str, Any]:
    """The runtime ratios of issue 17 (null where a path was not run or was skipped)."""
    ort = {m: _ms(rows, m, "mobilevit", "onnxruntime", 1) for m in models}
    xnn_int8 = [_ms(rows, "mobilevit_s", "mobilevit", p, 1) for p in ("executorch_int8", "litert_int8")]
    xnn_int8 = [v for v in xnn_int8 if v is not None]
    ort32_s = _ms(rows, "mobilevit_s", "mobilevit", "onnxruntime", 32)
    return {
        "ort_thread_speedup_b1": ort_thread_speedup(rows, models),  # the run's second-core check
        "ratio_executorch_fp32_vs_ort_b1": {
            short(m): _ratio(_ms(rows, m, "mobilevit", "executorch", 1), ort[m]) for m in models
        },
        "ratio_executorch_vs_timm_executorch_b1": {
            short(m): _ratio(
                _ms(rows, m, "mobilevit", "executorch", 1), _ms(rows, m, "timm", "executorch", 1)
            )
            for m in models
        },
        "ratio_xnnpack_int8_vs_ort_fp32_b1_s": _ratio(min(xnn_int8, default=None), ort.get("mobilevit_s")),
        "ratio_openvino_bf16_vs_ort_fp32_b32_s": _ratio(
            _ms(rows, "mobilevit_s", "mobilevit", "openvino_bf16", 32), ort32_s
        ),
        "ratio_openvino_int8_vs_ort_fp32_b32_s": _ratio(
            _ms(rows, "mobilevit_s", "mobilevit", "openvino_int8", 32), ort32_s
        ),
    }


def _runtime_agreement(
    model: Any, size: tuple[int, int], classes: list[str], tmp: Path, runtimes: tuple[str, ...]
) -> dict[str, dict[str, Any]]:
    """Each reduced-precision runtime export of the trained model against fp32 (its own export check,
    with no agreement threshold): ExecuTorch / LiteRT int8, OpenVINO int8 and bf16."""
    from mobilevit.export import export_executorch, export_litert, export_openvino
    from mobilevit.export.openvino import int8_rest_precision  # as the latency rows time it

    common = dict(data="digits", calib_images=64, model_classes=classes, max_drop=100.0, min_agreement=0.0)
    jobs = {
        "executorch_int8": lambda: (
            export_executorch(model, tmp / "m.pte", size, int8=True, **common).accuracy
        ),
        "litert_int8": lambda: export_litert(model, tmp / "m.tflite", size, int8=True, **common).accuracy,
        "openvino_int8": lambda: (
            export_openvino(
                model, tmp / "m.xml", size, precision=int8_rest_precision(), int8=True, **common
            ).accuracy
        ),
        "openvino_bf16": lambda: (
            export_openvino(model, tmp / "b.xml", size, precision="bf16", **common).accuracy
        ),
    }
    out = {}
    for name, job in jobs.items():
        if name not in runtimes:
            continue
        try:
            out[name] = asdict(job())
        except Exception as e:  # not installed, or the converter refused: reported, not fatal
            out[name] = {"skipped": f"{type(e).__name__}: {e}"[:200]}
    return out


def matched_ratios(rows: list[PathResult], pairs: list[tuple[str, str]]) -> dict[str, dict[str, float]]:
    """``{"v2_050_vs_xxs": {"b1_mobilevit_optimized": second / first, ...}}``: < 1, the second is faster."""
    out: dict[str, dict[str, float]] = {}
    for a, b in pairs:
        ratios = {}
        for r in rows:
            o = _row(rows, b, r.owner, r.path, r.batch) if r.model == a else None
            if o is not None and r.ms_per_image and o.ms_per_image:
                ratios[f"b{r.batch}_{r.owner}_{r.path}"] = round(o.ms_per_image / r.ms_per_image, 3)
        out[f"{short(b)}_vs_{short(a)}"] = ratios
    return out


def ort_thread_speedup(rows: list[PathResult], models: list[str]) -> dict[str, float | None]:
    """Per model, onnxruntime's one-thread time over its default session's at batch 1."""
    return {
        short(m): _ratio(
            _ms(rows, m, "mobilevit", "onnxruntime_1thread", 1), _ms(rows, m, "mobilevit", "onnxruntime", 1)
        )
        for m in models
    }


def thread_check_note(rows: list[PathResult], models: list[str], threads: int) -> str:
    """What onnxruntime's one-thread session says about the run's cores (batch 1)."""
    speedup = ort_thread_speedup(rows, models)
    measured = ", ".join(f"{m} {v:.2f}x" for m, v in speedup.items() if v is not None)
    if not measured:
        return "Second-core check: not run (no batch-1 onnxruntime rows)."
    return (
        f"Second-core check: onnxruntime with {threads} threads against one, batch 1: {measured}. "
        "On a shared host the second core is sometimes another guest's for a while, and that slows each "
        "runtime by its own amount. On the AMD EPYC family-26 kind, quiet rounds gave onnxruntime 1.6-1.8x "
        "and contended ones 1.25-1.36x; from quiet to contended rounds S at batch 1 slowed 1.41x in "
        "onnxruntime, 1.23x in ExecuTorch and 1.19x in LiteRT, XXS 1.2x, 1.75x and 1.0x "
        "(`benchmarks/runtime_ab.py`). A speedup well below the quiet one means this run's ratios "
        "between runtimes are not the CPU's; `runtime_ab.py` gives the batch-1 runtime ratios over "
        "quiet rounds only."
    )


def _doc_body(
    args,
    rows,
    params,
    flops,
    peaks: tuple[float, float],
    seconds: float,
    int8_check: dict | None,
    matched: list[PathResult],
    pairs: list[tuple[str, str]],
) -> str:
    import onnxruntime
    import timm
    import transformers

    models = args.models
    parts = [
        f"Versions: mobilevit {mobilevit.__version__}, timm {timm.__version__}, transformers "
        f"{transformers.__version__}, onnxruntime {onnxruntime.__version__}. Random weights, fp32, "
        f"{args.img_size}x{args.img_size}, torch.inference_mode. Each model and batch size: every path warmed up, "
        f"then {args.rounds} alternating rounds (path order rotated each round) of {args.iters} timed passes at "
        f"batch 1 and {args.iters_large} above; figures are medians over all passes. Whole run: {seconds / 60:.1f} min.",
        f"Measured fp32 matmul peak (torch.mm 2048x2048, best of 10, {args.threads} threads): {peaks[0]:.1f} GFLOP/s "
        f"at the start, {peaks[1]:.1f} at the end; '% peak' = network FLOPs x images/s / {max(peaks):.1f} GFLOP/s.",
        "| model | params | GFLOPs / image |\n|---|---:|---:|\n"
        + "\n".join(f"| {m} | {params[m]:,} | {flops[m] / 1e9:.3f} |" for m in models),
        "Paths: `eager` = the model as built; ours `optimized` = `optimize_for_inference` (BN folded; channels-last "
        "memory inside, the MobileViT blocks' unfold / fold one copy each; fed ordinary contiguous images), "
        "`optimized_nchw` = the same kept in contiguous memory; `compiled` = `torch.compile` (inductor, "
        "weights frozen) of our optimized / timm's eager model; `onnxruntime` = the ONNX export (opset 17, fixed "
        "shape) in onnxruntime, intra-op threads = torch threads, inter-op 1, all graph optimisations; "
        "`onnxruntime_1thread` = the same file in a one-thread session, the run's check of its second core.",
        thread_check_note(rows, models, args.threads),
    ]
    for b in args.batches:
        what = "latency per pass" if b == 1 else "time per image (pass time / batch)"
        parts.append(f"## Batch {b}: {what}, fp32\n\n" + pivot_table(rows, models, b))
    if any(r.precision != "fp32" for r in rows):
        parts.append(
            "## Reduced precision: bf16 (torch.autocast) and int8, not part of the fp32 comparison\n\n"
            "Agreement with fp32 on 16+ random images (random weights make near-ties common, so top-1 "
            "agreement is a lower bound of what trained weights give); max rel logit diff = max |reduced - fp32| "
            "/ max |fp32|. Ours and timm's models are initialised differently (different random logits), so "
            "compare each row with its own fp32 row, not the two owners' agreement figures with each "
            "other. `onnxruntime_int8` = our ONNX export after onnxruntime static quantization (QDQ, int8 "
            "weights per channel, int8 activations calibrated on 64 digits images; LayerNorm left in fp32), "
            "timed in the same alternating rounds; 'vs fp32 counterpart' is against our fp32 onnxruntime row. "
            "`compiled_int8` = PyTorch's x86 int8 (`mobilevit.export.quantize_int8_torch`: torchao PT2E with "
            "the X86InductorQuantizer, int8 weights per channel, uint8 activations calibrated on the same 64 "
            "images, lowered by torch.compile to oneDNN int8 kernels); its counterpart is our fp32 compiled "
            "row. With random weights its top-1 agreement is meaningless: the quantizer gives each MobileViT "
            "block's concat (skip connection) one shared scale, and the random-init shortcut is ~1000x "
            "smaller than the projection beside it, so it rounds to zero; with trained weights (below) the "
            "two are of one size."
            "\n\n" + reduced_table(rows, models)
        )
    if int8_check:
        c = int8_check
        lines = [
            f"| {p} | {r['top1_agreement']:.4f} | {r['fp32_top1']:.4f} | {r['top1']:.4f} "
            f"| {100 * r['max_rel_logit_diff']:.1f}% |"
            if "skipped" not in r
            else f"| {p} | skipped: {r['skipped']} | | | |"
            for p, r in c.items()
            if p in INT8_PATHS or p in RUNTIME_PATHS
        ]
        parts.append(
            f"int8 with trained weights: {c['model']} trained here on the digits for {c['epochs']} epochs "
            f"(demo recipe), exported at {c['img_size']} px, calibrated on {c['calib_images']} training images, "
            f"int8 vs fp32 on the {c['val_images']} validation images ({c['seconds']:.0f} s including the "
            "training):\n\n| int8 path | top-1 agreement | fp32 top-1 | int8 top-1 | largest logit change "
            "(of the largest fp32 logit) |\n|---|---:|---:|---:|---:|\n" + "\n".join(lines)
        )
    if matched:
        parts.append(
            "## MobileViT v1, v2 and v3 at matched size\n\n"
            "The v2 paper's claim is that separable self-attention (linear in the number of patches, no "
            "batched matmul over tokens) makes v2 faster than v1 on devices; the v3 paper's, that its "
            "fusion (1x1 over local and global features, plus the input) costs little over v1 / v2 at "
            "the same size. Here each pair's paths (ours optimized and onnxruntime, timm's eager model "
            "where timm has the model) are built for both models and timed in one set of alternating "
            f"rounds ({args.rounds} rounds; time per image); second / first < 1 means the second model "
            "is faster.\n\n" + matched_table(matched, pairs)
        )
    parts.append(
        "## Build time (torch.compile, ONNX export + session, int8 calibration) and skipped paths\n\n"
        + setup_table(rows)
    )
    full = "\n\n".join(f"### {m}\n\n" + format_path_table([r for r in rows if r.model == m]) for m in models)
    parts.append("## All figures (p90, agreement with the same owner's eager model)\n\n" + full)
    return "\n\n".join(parts)


if __name__ == "__main__":
    main()
