"""The issue-17 batch-1 ratios (ExecuTorch / LiteRT, fp32 and int8, against our onnxruntime fp32
path) with each round checked for a contended second core.

On a shared host (a VM whose two cores are not always its own) a busy neighbour slows each
runtime by its own amount (measured here: onnxruntime's two-thread session most for S, ExecuTorch
most for XXS), so a run's ratios between runtimes need not be the CPU's. Each round here times every path (``--iters`` passes each, order
rotated) together with our ONNX export in a one-thread session; a round is *quiet* when
onnxruntime's two-thread time is at most ``1 / --quiet-speedup`` of its one-thread time in that
round. The ratios are medians of per-round ratios over the quiet rounds (the contended rounds'
figures are printed beside them). Random weights, 256 px, int8 calibrated on 64 digits images, as
in ``latency.py``. Writes docs/runtime_ab.md; the last line printed is a JSON object.

    python benchmarks/runtime_ab.py [--models mobilevit_xxs mobilevit_s] [--rounds 24]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import print_json_last, write_doc

RUNTIMES = ("executorch", "litert", "executorch_int8", "litert_int8")


def build(name: str, int8: bool, size: int, tmp: Path) -> dict[str, Any]:
    """{path: callable on a [1, 3, size, size] tensor}: onnxruntime with 2 (torch's) and 1 thread,
    and our graph through each runtime of :data:`RUNTIMES` (int8 ones only with ``int8``)."""
    from mobilevit.bench.runtime_paths import runtime_paths
    from mobilevit.export import export_onnx
    from mobilevit.export.onnx import ort_session
    from mobilevit.models import create_model

    torch.manual_seed(0)
    model = create_model(name).eval()
    export_onnx(model, tmp / "m.onnx", img_size=(size, size))
    paths: dict[str, Any] = {}
    for label, threads in (("onnxruntime", None), ("onnxruntime_1thread", 1)):
        session = ort_session(tmp / "m.onnx", threads=threads)
        paths[label] = lambda x, s=session: s.run(None, {"image": x.numpy()})
    x = torch.rand(1, 3, size, size)
    names = tuple(r for r in RUNTIMES if int8 or not r.endswith("_int8"))
    for p in runtime_paths("mobilevit", model, x, names):
        if p.skipped:
            raise SystemExit(f"{name}: {p.name} could not be built here: {p.skipped}")
        paths[p.name] = p.fn
    return paths


def time_rounds(paths: dict[str, Any], x: torch.Tensor, rounds: int, iters: int) -> list[dict[str, float]]:
    """Per round, ms per pass of each path (``iters`` passes; path order rotated each round)."""
    for fn in paths.values():  # warm-up
        for _ in range(3):
            fn(x)
    keys, out = list(paths), []
    for r in range(rounds):
        row = {}
        for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
            t0 = time.perf_counter()
            for _ in range(iters):
                paths[k](x)
            row[k] = (time.perf_counter() - t0) / iters * 1e3
        out.append(row)
    return out


def summarize(rounds: list[dict[str, float]], quiet_speedup: float) -> dict[str, Any]:
    """Quiet and contended rounds: each path's median ms and median per-round ratio to onnxruntime."""
    groups: dict[str, list[dict[str, float]]] = {"quiet": [], "contended": []}
    for r in rounds:
        quiet = r["onnxruntime_1thread"] / r["onnxruntime"] >= quiet_speedup
        groups["quiet" if quiet else "contended"].append(r)
    out: dict[str, Any] = {
        "speedups": [round(r["onnxruntime_1thread"] / r["onnxruntime"], 2) for r in rounds]
    }
    for g, rs in groups.items():
        out[g] = {
            "rounds": len(rs),
            "ms": {k: round(float(np.median([r[k] for r in rs])), 3) for k in rounds[0]} if rs else {},
            "ratio": {k: round(float(np.median([r[k] / r["onnxruntime"] for r in rs])), 3) for k in rounds[0]}
            if rs
            else {},
        }
    return out


def table(name: str, s: dict[str, Any]) -> str:
    lines = [
        f"## {name}, batch 1\n",
        f"onnxruntime one-thread / two-thread time per round: {', '.join(f'{v:.2f}' for v in s['speedups'])}.\n",
        "| path | quiet ms | quiet ratio to onnxruntime | contended ms | contended ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    q, c = s["quiet"], s["contended"]
    for k in q["ms"] or c["ms"]:
        cells = [q["ms"].get(k), q["ratio"].get(k), c["ms"].get(k), c["ratio"].get(k)]
        lines.append(f"| {k} | " + " | ".join("—" if v is None else f"{v:.3f}" for v in cells) + " |")
    lines.append(f"\nRounds: {q['rounds']} quiet, {c['rounds']} contended.")
    return "\n".join(lines)


def _quiet_ratio(s: dict[str, Any], path: str) -> float | None:
    return s["quiet"]["ratio"].get(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["mobilevit_xxs", "mobilevit_s"])
    p.add_argument("--int8-models", nargs="*", default=["mobilevit_s"])
    p.add_argument("--rounds", type=int, default=24)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--img-size", type=int, default=256)
    p.add_argument(
        "--quiet-speedup",
        type=float,
        default=1.5,
        help="a round is quiet when onnxruntime's one-thread time is at least this many times its "
        "two-thread time (quiet rounds measured 1.6-1.8 on 2 cores, contended ones 1.25-1.36)",
    )
    args = p.parse_args()
    if args.rounds < 1 or args.iters < 1 or args.threads < 1:
        raise SystemExit("--rounds, --iters and --threads must be >= 1")
    if args.quiet_speedup <= 1:
        raise SystemExit(
            f"--quiet-speedup must be above 1 (two threads against one), got {args.quiet_speedup}"
        )
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    summaries = {}
    for name in args.models:
        with tempfile.TemporaryDirectory(prefix="mobilevit-ab-") as tmp:
            paths = build(name, name in args.int8_models, args.img_size, Path(tmp))
            x = torch.rand(1, 3, args.img_size, args.img_size)
            summaries[name] = summarize(time_rounds(paths, x, args.rounds, args.iters), args.quiet_speedup)
        print(table(name, summaries[name]), file=sys.stderr, flush=True)
    seconds = time.perf_counter() - t_start
    body = (
        f"Our model at batch 1, {args.img_size} px, random weights, {args.threads} threads: onnxruntime "
        "(our ONNX export, all graph optimisations) with two threads and with one, and our graph "
        "through ExecuTorch (XNNPACK) and LiteRT, fp32 and int8 (PT2E, calibrated on 64 digits "
        f"images), built as in `latency.py`. {args.rounds} rounds of {args.iters} passes per path, "
        "order rotated each round. A round is quiet when onnxruntime's one-thread time is at least "
        f"{args.quiet_speedup}x its two-thread time in that round; a ratio is the median over the "
        "rounds of each round's time over that round's onnxruntime time. Whole run: "
        f"{seconds / 60:.1f} min.\n\n" + "\n\n".join(table(n, s) for n, s in summaries.items())
    )
    write_doc(
        "runtime_ab.md",
        "Runtime ratios at batch 1, quiet and contended rounds apart",
        body,
        ("python benchmarks/runtime_ab.py " + " ".join(sys.argv[1:])).strip(),
    )
    short = {n: n.removeprefix("mobilevit_") for n in args.models}
    s_model = summaries.get("mobilevit_s")
    int8 = [_quiet_ratio(s_model, f"{r}_int8") for r in ("executorch", "litert")] if s_model else []
    int8 = [v for v in int8 if v is not None]
    print_json_last(
        {
            "quiet_rounds": {short[n]: s["quiet"]["rounds"] for n, s in summaries.items()},
            "ratio_executorch_fp32_vs_ort_b1_quiet": {
                short[n]: _quiet_ratio(s, "executorch") for n, s in summaries.items()
            },
            "ratio_litert_fp32_vs_ort_b1_quiet": {
                short[n]: _quiet_ratio(s, "litert") for n, s in summaries.items()
            },
            "ratio_xnnpack_int8_vs_ort_fp32_b1_s_quiet": min(int8, default=None),
            "summaries": summaries,
            "seconds": round(seconds, 1),
        }
    )


if __name__ == "__main__":
    main()
