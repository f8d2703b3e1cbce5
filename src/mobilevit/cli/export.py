"""``mobilevit export``."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(sub: Any) -> None:
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
    s.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    from ..export import export_onnx
    from ..loading import load_model

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
        from ..export.coreml import export_coreml

        report = export_coreml(model, args.out, size, dynamic_hw=args.dynamic_hw)
        check = report["check"]
        shown = check if isinstance(check, str) else "max abs diff {:.2e}".format(check["max_abs_diff"])
        print(f"Core ML parity: {shown}")
        print(
            f"wrote {report['path']} (ML program, {size[0]}x{size[1]}, outputs {', '.join(report['outputs'])})"
        )
        return 0
    if args.int8:
        return _export_int8(args, model, size, meta.classes)  # recorded by files trained here
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
    from ..export import Int8NotFaster, export_int8

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
