"""``mobilevit bench``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch

VARIANTS = ("mobilevit_xxs", "mobilevit_xs", "mobilevit_s")


def add_parser(sub: Any) -> None:
    """Add the ``bench`` subcommand to ``sub``."""
    s = sub.add_parser(
        "bench",
        help="params, GFLOPs and latency of each model; --side-by-side compares inference paths and peers",
        description=(
            "Default: params, GFLOPs and eager batch-1 latency of each model (quick). With --side-by-side: for "
            "each model and --batch size, every inference path - ours (eager, optimized = optimize_for_inference: "
            "BN folded, channels-last; optimized_nchw = the same in contiguous memory; compiled = torch.compile, "
            "onnxruntime) and, with --peers, timm's "
            "(eager, channels_last, compiled, onnxruntime) and transformers' (eager) - timed in alternating "
            "rounds (order rotated each round), fp32, random weights, with p50/p90 ms, images/s, ms per image "
            "and the fraction of the machine's fp32 matmul peak measured in the same run. On CPUs with bf16 "
            "(AVX512-BF16 / AMX) bf16 autocast rows follow, and with --int8 the int8 rows, each with its agreement "
            "with fp32."
        ),
    )
    s.add_argument("--models", nargs="+", default=list(VARIANTS))
    s.add_argument("--img-size", nargs="+", type=int, default=[256], metavar="H [W]")
    s.add_argument(
        "--iters",
        type=int,
        default=None,
        help="timed passes (default 20; with --side-by-side: per path per round at batch 1, default 10)",
    )
    s.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    s.add_argument(
        "--json",
        action="store_true",
        help="standard output is the figures as one JSON object and nothing else (the tables: stderr)",
    )
    s.add_argument("--side-by-side", action="store_true", help="compare every inference path and the peers")
    s.add_argument("--batch", nargs="+", type=int, default=[1, 32], help="batch sizes (--side-by-side)")
    s.add_argument(
        "--iters-large",
        type=int,
        default=None,
        help="passes per path per round at batch > 1 (default iters // 4)",
    )
    s.add_argument("--rounds", type=int, default=5, help="alternating rounds (--side-by-side)")
    s.add_argument(
        "--peers",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="include timm / transformers paths",
    )
    s.add_argument("--no-compile", dest="compile", action="store_false", help="skip the torch.compile paths")
    s.add_argument("--no-onnx", dest="onnx", action="store_false", help="skip the onnxruntime paths")
    s.add_argument("--no-bf16", dest="bf16", action="store_false", help="skip the bf16 rows")
    s.add_argument(
        "--int8",
        action="store_true",
        help="add our int8 rows (onnxruntime static quantization and, unless --no-compile, PyTorch's x86 "
        "int8: PT2E + torch.compile), calibrated on the built-in digits",
    )
    s.add_argument(
        "--runtimes",
        nargs="*",
        default=None,
        metavar="PATH",
        help="add ours and timm's model through the mobile / CPU runtimes (pip install 'mobilevit[mobile]'): "
        "executorch, executorch_int8, litert, litert_int8, openvino, openvino_bf16, openvino_int8; "
        "the flag alone: all of them",
    )
    s.set_defaults(fn=run)


def _bench_validate(args: argparse.Namespace) -> tuple[int, int]:
    from ..models import list_models

    if not 1 <= len(args.img_size) <= 2 or min(args.img_size) < 1:
        raise ValueError(f"--img-size must be one or two positive ints (H [W]), got {args.img_size}")
    size = (args.img_size[0], args.img_size[-1])
    if args.side_by_side and min(size) < 32:
        raise ValueError(
            f"image size must be one or two ints >= 32 (the network's output stride), got {size}"
        )
    unknown = [m for m in args.models if m not in list_models()]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; see `mobilevit models`")
    for flag in ("iters", "iters_large", "rounds"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")
    if args.runtimes is not None:
        from ..bench.runtime_paths import RUNTIME_PATHS

        bad = [r for r in args.runtimes if r not in RUNTIME_PATHS]
        if bad:
            raise ValueError(
                f"unknown runtime path(s) {', '.join(bad)}; choose from {', '.join(RUNTIME_PATHS)}"
            )
        args.runtimes = tuple(args.runtimes) or RUNTIME_PATHS
    if args.threads < 0 or min(args.batch) < 1:
        raise ValueError("--threads must be >= 0 and --batch sizes >= 1")
    return size


def say(args: argparse.Namespace, text: str) -> None:
    """The human-readable output: standard output, or standard error with ``--json`` (whose
    standard output is then the JSON alone)."""
    print(text, file=sys.stderr if args.json else sys.stdout, flush=True)


def run(args: argparse.Namespace) -> int:
    """Run ``mobilevit bench``: the params / GFLOPs / latency table, or ``--side-by-side`` the paths; 0."""
    from ..bench import format_table, machine_info, rows_as_dicts, summarize_models

    size = _bench_validate(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info()
    say(
        args,
        f"# {info['cpu']} ({', '.join(info['extensions']) or 'no AVX'}), {info['threads']} threads, torch {info['torch']}",
    )
    if args.side_by_side:
        return _bench_side_by_side(args, size, info)
    rows = summarize_models(args.models, size, iters=args.iters or 20)
    say(args, format_table(rows, size))
    if args.json:
        print(json.dumps({"machine": info, "img_size": size, "rows": rows_as_dicts(rows)}))
    return 0


def _bench_side_by_side(args: argparse.Namespace, size: tuple[int, int], info: dict) -> int:
    from dataclasses import asdict

    from ..bench import count_flops, count_params
    from ..bench.paths import format_path_table, run_side_by_side
    from ..models import create_model
    from ..timing import peak_matmul_gflops

    iters = args.iters or 10
    iters_large = args.iters_large or max(1, iters // 4)
    peak = peak_matmul_gflops()
    say(args, f"# measured fp32 peak (torch.mm 2048x2048): {peak:.1f} GFLOP/s")
    models, rows = {}, []
    for name in args.models:
        model = create_model(name).eval()
        flops = count_flops(model, size)
        models[name] = {"params": count_params(model), "gflops": flops / 1e9}
        say(
            args,
            f"\n## {name}: {models[name]['params']:,} params, {flops / 1e9:.3f} GFLOPs at {size[0]}x{size[1]}",
        )
        model_rows = []
        for batch in args.batch:
            model_rows += run_side_by_side(
                name,
                batch,
                size,
                iters=iters if batch == 1 else iters_large,
                rounds=args.rounds,
                flops_per_image=flops,
                peak_gflops=peak,
                peers=args.peers,
                compile=args.compile,
                onnx=args.onnx,
                bf16=None if args.bf16 else False,
                int8=args.int8,
                runtimes=args.runtimes or (),
            )
        say(args, format_path_table(model_rows))
        rows += model_rows
    if args.json:
        print(
            json.dumps(
                {
                    "machine": info,
                    "img_size": size,
                    "peak_gflops": peak,
                    "models": models,
                    "rows": [asdict(r) for r in rows],
                }
            )
        )
    return 0
