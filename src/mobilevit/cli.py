"""The ``mobilevit`` command: models, weights, bench, convert, export, train, eval, predict, ablate."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

VARIANTS = ("mobilevit_xxs", "mobilevit_xs", "mobilevit_s")


def _cmd_models(args: argparse.Namespace) -> int:
    from . import create_model, list_models
    from .bench import count_params

    for name in list_models(args.pattern):
        print(f"{name:24s} {count_params(create_model(name)):>12,d} params")
    return 0


def _cmd_weights(args: argparse.Namespace) -> int:
    from .weights import WEIGHTS, cache_dir

    print(f"cache: {cache_dir()}")
    for tag, spec in sorted(WEIGHTS.items()):
        cached = (cache_dir() / spec.filename).is_file()
        print(
            f"{tag:28s} {spec.source_format:12s} input {spec.channel_order} "
            f"{'mIoU ' + str(spec.miou) if spec.miou else 'top-1 ' + str(spec.top1)}  {'cached' if cached else spec.url}"
        )
    return 0


def _bench_validate(args: argparse.Namespace) -> tuple[int, int]:
    from . import list_models

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
    if args.threads < 0 or min(args.batch) < 1:
        raise ValueError("--threads must be >= 0 and --batch sizes >= 1")
    return size


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import format_table, machine_info, rows_as_dicts, summarize_models

    size = _bench_validate(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine_info()
    print(
        f"# {info['cpu']} ({', '.join(info['extensions']) or 'no AVX'}), {info['threads']} threads, torch {info['torch']}"
    )
    if args.side_by_side:
        return _bench_side_by_side(args, size, info)
    rows = summarize_models(args.models, size, iters=args.iters or 20)
    print(format_table(rows, size))
    if args.json:
        print(json.dumps({"machine": info, "img_size": size, "rows": rows_as_dicts(rows)}))
    return 0


def _bench_side_by_side(args: argparse.Namespace, size: tuple[int, int], info: dict) -> int:
    from dataclasses import asdict

    from . import create_model
    from .bench import count_flops, count_params
    from .bench.paths import format_path_table, run_side_by_side
    from .bench.timing import peak_matmul_gflops

    iters = args.iters or 10
    iters_large = args.iters_large or max(1, iters // 4)
    peak = peak_matmul_gflops()
    print(f"# measured fp32 peak (torch.mm 2048x2048): {peak:.1f} GFLOP/s")
    models, rows = {}, []
    for name in args.models:
        model = create_model(name).eval()
        flops = count_flops(model, size)
        models[name] = {"params": count_params(model), "gflops": flops / 1e9}
        print(
            f"\n## {name}: {models[name]['params']:,} params, {flops / 1e9:.3f} GFLOPs at {size[0]}x{size[1]}"
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
            )
        print(format_path_table(model_rows), flush=True)
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


def _cmd_convert(args: argparse.Namespace) -> int:
    from .loading import convert_file

    meta = convert_file(
        args.src, args.out, source=args.source, model_name=args.model, to_rgb=not args.keep_bgr
    )
    print(
        f"wrote {args.out}: {meta.arch} ({meta.num_classes} classes) from {meta.extra['converted_from']}, "
        f"takes {meta.channel_order} input"
    )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .engine import load_config, train

    cfg = load_config(args.config, args.overrides)
    if args.out_dir:
        cfg.run.out_dir = args.out_dir
    summary = train(cfg, resume=args.resume)
    print(json.dumps(summary))
    return 0 if summary["stopped"] is None else 3


def _cmd_eval(args: argparse.Namespace) -> int:
    from .engine import evaluate_weights

    overrides = list(args.overrides)
    if not any(o.startswith("run.out_dir=") for o in overrides):
        overrides.append(f"run.out_dir={args.out_dir or Path(args.weights).parent / 'eval'}")
    result = evaluate_weights(args.weights, args.config, overrides, model_name=args.model)
    if "summary" in result:  # pycocotools' own table
        print(result.pop("summary"), file=sys.stderr)
    print(json.dumps(result))
    return 0


def _print_results(results: list[dict[str, Any]], as_json: bool, show: Any) -> int:
    for r in results:
        if "error" in r:
            print(f"{r['image']}: error: {r['error']}")
        else:
            show(r)
    if as_json:
        print(json.dumps(results))
    return 0 if all("error" not in r for r in results) else 2


def _cmd_predict(args: argparse.Namespace) -> int:
    from .loading import load_model
    from .predict import predict_boxes, predict_images, predict_masks

    model, meta = load_model(args.weights, args.model)
    classes = meta.classes or []
    out_dir = Path(args.out_dir)
    if meta.task == "detection":
        found = predict_boxes(model, classes, args.images, out_dir, args.score_threshold)

        def show(r: dict[str, Any]) -> None:
            shown = ", ".join(f"{d['class']} {d['score']:.2f}" for d in r["detections"]) or "nothing"
            print(f"{r['image']} -> {r['boxes_png']}  ({shown})")

        return _print_results(found, args.json, show)
    if meta.task == "segmentation":
        written = predict_masks(model, classes, args.images, out_dir, size=args.img_size)
        return _print_results(
            written, args.json, lambda r: print(f"{r['image']} -> {r['overlay']}  ({r['summary']})")
        )
    results = predict_images(model, classes, args.images, img_size=args.img_size, topk=args.topk)

    def show_top(r: dict[str, Any]) -> None:
        print(r["image"])
        for t in r["top"]:
            print(f"  {t['prob']:7.2%}  {t['class']}")

    return _print_results(results, args.json, show_top)


def _cmd_ablate(args: argparse.Namespace) -> int:
    from .ablate import run_from_args

    return run_from_args(args)


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx
    from .loading import load_model

    if args.int8 and args.format != "onnx":
        raise SystemExit("mobilevit export: error: --int8 is for ONNX (onnxruntime static quantization)")
    if args.format == "coreml" and (args.dynamic_batch or args.batch != 1):
        flag = "--dynamic-batch" if args.dynamic_batch else f"--batch {args.batch}"
        raise SystemExit(
            f"mobilevit export: error: {flag} is for ONNX; a Core ML export takes a fixed batch of 1"
        )
    model, meta = load_model(args.weights, args.model)
    if args.img_size:
        size = (args.img_size[0], args.img_size[-1])
    else:  # a detector's own input size (its anchors depend on it), else 256
        size = tuple(getattr(getattr(model, "ssd_config", None), "image_size", (256, 256)))
    if args.format == "coreml":
        from .export.coreml import export_coreml

        report = export_coreml(model, args.out, size, dynamic_hw=args.dynamic_hw)
        check = report["check"]
        shown = check if isinstance(check, str) else "max abs diff {:.2e}".format(check["max_abs_diff"])
        print(f"Core ML parity: {shown}")
        print(
            f"wrote {report['path']} (ML program, {size[0]}x{size[1]}, outputs {', '.join(report['outputs'])})"
        )
        return 0
    if args.int8:
        from .weights import read_weights_meta

        recorded = read_weights_meta(args.weights)  # files trained here record their classes
        return _export_int8(args, model, size, recorded.classes if recorded else None)
    report = export_onnx(
        model,
        args.out,
        size,
        dynamic_batch=args.dynamic_batch,
        dynamic_hw=args.dynamic_hw,
        opset=args.opset,
        batch=args.batch,
    )
    for c in report["checks"]:
        print(
            f"onnxruntime parity at batch {c['batch']}, {c['size'][0]}x{c['size'][1]}: max abs diff {c['max_abs_diff']:.2e}"
        )
    print(f"wrote {report['path']} ({report['bytes'] / 1e6:.1f} MB, opset {report['opset']})")
    return 0


def _export_int8(
    args: argparse.Namespace, model: Any, size: tuple[int, int], classes: list[str] | None
) -> int:
    from .export import Int8NotFaster, export_int8

    if args.dynamic_hw:
        raise SystemExit(
            "mobilevit export: error: --dynamic-hw is refused (see docs); --int8 takes a fixed size"
        )
    try:
        r = export_int8(
            model,
            args.out,
            size,
            batch=args.batch,
            dynamic_batch=args.dynamic_batch,
            opset=args.opset,
            data=args.int8_data,
            calib_images=args.calib_images,
            model_classes=classes,
            keep_slower=args.int8_keep_slower,
        )
    except Int8NotFaster as e:
        print(f"mobilevit export: {e}", file=sys.stderr)
        return 3
    acc = (
        f"top-1 fp32 {r['fp32_top1']:.4f} / int8 {r['int8_top1']:.4f}"
        if r["fp32_top1"] is not None
        else r["accuracy_note"]
    )
    print(
        f"int8 vs fp32 on {r['val_images']} {r['data']} validation images: top-1 agreement "
        f"{r['top1_agreement']:.4f}, {acc}, largest logit change {100 * r['max_rel_logit_diff']:.1f}% "
        "of the largest fp32 logit"
    )
    print(
        f"time (onnxruntime, batch {r['timed_batch']}, {r['threads']} threads): int8 "
        f"{r['int8_ms_per_image']:.2f} ms/image vs fp32 {r['fp32_ms_per_image']:.2f} "
        f"({r['ratio_int8_vs_fp32']:.2f}x)"
    )
    if r["ratio_int8_vs_fp32"] >= 1.0:
        print(
            "warning: int8 is slower than fp32 here; written because of --int8-keep-slower", file=sys.stderr
        )
    print(f"wrote {r['path']} (int8, {r['bytes'] / 1e6:.1f} MB) and {r['fp32_path']} (fp32, verified)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mobilevit", description="MobileViT models, weights and tools")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("models", help="list registered models with their parameter counts")
    s.add_argument("pattern", nargs="?", default="*")
    s.set_defaults(fn=_cmd_models)

    s = sub.add_parser("weights", help="list the released weights this package knows")
    s.set_defaults(fn=_cmd_weights)

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
    s.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
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
    s.set_defaults(fn=_cmd_bench)

    s = sub.add_parser("convert", help="convert timm / transformers / ml-cvnets weights to safetensors")
    s.add_argument("src", help="checkpoint file, or a transformers save_pretrained folder")
    s.add_argument("out", help="output .safetensors path")
    s.add_argument(
        "--from",
        dest="source",
        choices=["timm", "transformers", "cvnets"],
        default=None,
        help="source format (default: detected from the keys)",
    )
    s.add_argument("--model", default=None, help="target model name (default: inferred from the shapes)")
    s.add_argument(
        "--keep-bgr",
        action="store_true",
        help="keep a BGR-trained stem as is (default: flip it so the model takes RGB)",
    )
    s.set_defaults(fn=_cmd_convert)

    s = sub.add_parser("export", help="export to ONNX (verified in onnxruntime against PyTorch) or Core ML")
    s.add_argument("weights", help="weights from train / convert (or a foreign checkpoint with --model)")
    s.add_argument("--model", default=None, help="architecture, for files that do not record it")
    s.add_argument(
        "--format", choices=["onnx", "coreml"], default="onnx", help="coreml: an .mlpackage folder"
    )
    s.add_argument("--out", required=True)
    s.add_argument(
        "--img-size",
        nargs="+",
        type=int,
        default=None,
        metavar="H [W]",
        help="input size (default: a detector's own, else 256)",
    )
    s.add_argument("--batch", type=int, default=1, help="the fixed batch size of the export (default 1)")
    s.add_argument("--dynamic-batch", action="store_true")
    s.add_argument("--dynamic-hw", action="store_true", help="refused with an explanation (see docs)")
    s.add_argument("--opset", type=int, default=17)
    s.add_argument(
        "--int8",
        action="store_true",
        help="post-training int8 (onnxruntime static quantization, classifiers): written only if faster "
        "than fp32 here, with its accuracy and time against fp32 printed and saved as <stem>.int8.json",
    )
    s.add_argument(
        "--int8-data",
        default="digits",
        help="calibration + validation images: digits (default) or a folder with train/ and val/ class folders",
    )
    s.add_argument("--calib-images", type=int, default=64, help="calibration images (default 64)")
    s.add_argument(
        "--int8-keep-slower",
        action="store_true",
        help="write the int8 model even where it is slower than fp32 (e.g. for another device)",
    )
    s.set_defaults(fn=_cmd_export)

    s = sub.add_parser("train", help="train or fine-tune a classifier with the paper's recipe")
    s.add_argument("--config", default=None, help="YAML recipe (see configs/)")
    s.add_argument("overrides", nargs="*", help="section.key=value, e.g. optim.lr=1e-3 data.batch_size=64")
    s.add_argument("--resume", default=None, help="resume.pt (or its run folder) of an interrupted run")
    s.add_argument("--out-dir", default=None, help="shortcut for run.out_dir=...")
    s.set_defaults(fn=_cmd_train)

    s = sub.add_parser(
        "eval",
        help="top-1 / top-5 (classifiers), mIoU (segmentation) or COCO mAP (detection) on a validation split",
    )
    s.add_argument("weights", help="safetensors from train or convert (or a foreign checkpoint with --model)")
    s.add_argument("--config", default=None, help="recipe whose data section to use")
    s.add_argument("overrides", nargs="*", help="e.g. data.dataset=digits data.img_size=64")
    s.add_argument("--model", default=None)
    s.add_argument("--out-dir", default=None)
    s.set_defaults(fn=_cmd_eval)

    s = sub.add_parser(
        "predict",
        help="top-5 classes, a colour overlay PNG of the predicted mask, or a PNG with the detected boxes",
    )
    s.add_argument("images", nargs="+")
    s.add_argument("--weights", required=True)
    s.add_argument("--model", default=None, help="architecture, for files that do not record it")
    s.add_argument("--img-size", type=int, default=None, help="crop size (default: the weights' own)")
    s.add_argument("--topk", type=int, default=5)
    s.add_argument(
        "--out-dir", default="predictions", help="segmentation / detection: where the output PNGs go"
    )
    s.add_argument(
        "--score-threshold", type=float, default=0.3, help="detection: lowest score drawn (default 0.3)"
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=_cmd_predict)

    s = sub.add_parser(
        "ablate",
        help="re-run one of the paper's ablations: weight-decay, skip-connection, patch-size, ema-label-smoothing",
        description="Train every variant of a study (configs/ablations/STUDY.yaml) with the same recipe and "
        "seeds, then write results.csv / results.md and a figure. Rerunning resumes an interrupted study.",
    )
    s.add_argument(
        "study", help="weight-decay, skip-connection, patch-size, ema-label-smoothing, or a study YAML"
    )
    s.add_argument("overrides", nargs="*", help="section.key=value for every variant")
    s.add_argument(
        "--data", default=None, help="digits, shapes, or a folder with train/ and val/ class folders"
    )
    s.add_argument("--model", default=None, help="e.g. mobilevit_xxs (default: the recipe's)")
    s.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the recipe's)")
    s.add_argument(
        "--seeds", type=int, default=None, help="seeds per variant: run.seed, run.seed+1, ... (default 1)"
    )
    s.add_argument("--variants", default=None, help="comma-separated subset of the study's variants")
    s.add_argument(
        "--recipe", default=None, help="classification recipe to start from (default: the study's)"
    )
    s.add_argument("--out-dir", default=None, help="the study's folder (default: runs/ablations/STUDY)")
    s.add_argument("--latency-iters", type=int, default=None, help="timed passes per round (patch-size; 30)")
    s.add_argument("--replot", action="store_true", help="redraw the tables and figures of a finished study")
    s.set_defaults(fn=_cmd_ablate)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # argparse cannot take positional key=value overrides after an option (``train --config X a=b``):
    # collect such leftovers as overrides of the commands that have them, refuse anything else.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        return args.fn(args)
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as e:
        print(f"mobilevit {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
