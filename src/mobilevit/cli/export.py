"""``mobilevit export``."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    s = sub.add_parser(
        "export",
        help="export to ONNX, ExecuTorch (XNNPACK), LiteRT, OpenVINO or Core ML, each verified in its runtime",
    )
    s.add_argument("weights", help="weights from train / convert (or a foreign checkpoint with --model)")
    s.add_argument("--model", default=None, help="architecture, for files that do not record it")
    s.add_argument(
        "--format",
        choices=["onnx", "executorch", "litert", "openvino", "coreml"],
        default="onnx",
        help="onnx (.onnx, onnxruntime); executorch (.pte, XNNPACK delegate); litert (.tflite); openvino "
        "(.xml IR + .bin); coreml (an .mlpackage folder). executorch, litert and openvino need "
        "pip install 'mobilevit[mobile]'",
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
        "--precision",
        choices=["f32", "bf16"],
        default="f32",
        help="openvino: the CPU inference precision recorded in the IR (bf16: checked by top-1 agreement; "
        "with --int8, the precision of the ops NNCF leaves unquantized)",
    )
    s.add_argument(
        "--int8",
        action="store_true",
        help="post-training int8 of a classifier. onnx: onnxruntime static quantization, written only if "
        "faster than fp32 here, with its accuracy and time against fp32 printed and saved as "
        "<stem>.int8.json; executorch: PT2E XNNPACKQuantizer; litert: litert-torch's PT2E quantizer; "
        "openvino: NNCF. The last three are kept when their top-1 agreement with fp32 reaches "
        "--min-agreement",
    )
    s.add_argument(
        "--min-agreement",
        type=float,
        default=0.98,
        help="executorch / litert / openvino int8 or bf16: the top-1 agreement with fp32 on the "
        "validation images a file must reach to be kept (default 0.98)",
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

    _validate(args)
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
    if args.format in RUNTIMES:
        return _export_runtime(args, model, size, meta.classes)
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


RUNTIMES = ("executorch", "litert", "openvino")


def _validate(args: argparse.Namespace) -> None:
    """Flag combinations that cannot work, refused before the weights are read."""
    fmt = args.format
    if args.int8 and fmt == "coreml":
        raise SystemExit("mobilevit export: error: --int8 is for onnx, executorch, litert and openvino")
    if fmt != "onnx" and (args.dynamic_batch or (fmt == "coreml" and args.batch != 1)):
        flag = "--dynamic-batch" if args.dynamic_batch else f"--batch {args.batch}"
        fixed = "a fixed batch of 1" if fmt == "coreml" else "a fixed batch (--batch N)"
        shown = {"coreml": "Core ML", "executorch": "ExecuTorch", "litert": "LiteRT", "openvino": "OpenVINO"}[
            fmt
        ]
        raise SystemExit(f"mobilevit export: error: {flag} is for ONNX; a {shown} export takes {fixed}")
    if fmt in RUNTIMES and args.dynamic_hw:
        raise SystemExit(
            f"mobilevit export: error: --dynamic-hw is refused: a {fmt} export takes one input size "
            "(--img-size H W); export one file per size"
        )
    if args.precision != "f32" and fmt != "openvino":
        raise SystemExit("mobilevit export: error: --precision is for openvino")
    if not 0.0 <= args.min_agreement <= 1.0:
        raise SystemExit(
            f"mobilevit export: error: --min-agreement must be in [0, 1], got {args.min_agreement}"
        )


def _export_runtime(
    args: argparse.Namespace, model: Any, size: tuple[int, int], classes: list[str] | None
) -> int:
    from ..export import export_executorch, export_litert, export_openvino

    common = dict(
        img_size=size,
        batch=args.batch,
        int8=args.int8,
        data=args.int8_data,
        calib_images=args.calib_images,
        model_classes=classes,
        min_agreement=args.min_agreement,
    )
    if args.format == "executorch":
        r = export_executorch(model, args.out, **common)
        total = r["delegated_ops"] + sum(r["portable_ops"].values())
        print(
            f"XNNPACK delegate: {r['delegated_ops']} of {total} ops ({100 * r['delegated_fraction']:.1f}%) "
            f"in {r['delegate_pieces']} piece(s)"
        )
        if r["portable_ops"]:
            left = ", ".join(f"{k} x{v}" for k, v in sorted(r["portable_ops"].items()))
            print(f"warning: ops on ExecuTorch's portable kernels: {left}", file=sys.stderr)
    elif args.format == "litert":
        r = export_litert(model, args.out, **common)
    else:
        r = export_openvino(model, args.out, precision=args.precision, **common)
    reduced = next((k for k in ("int8", "bf16") if k in r), None)
    if reduced:
        f = r[reduced]
        acc = (
            f"top-1 fp32 {f['fp32_top1']:.4f} / {reduced} {f['int8_top1']:.4f}"
            if f["fp32_top1"] is not None
            else f["accuracy_note"]
        )
        print(
            f"{args.format} {reduced} vs fp32 on {f['val_images']} {f['data']} validation images: top-1 "
            f"agreement {f['top1_agreement']:.4f}, {acc}, largest logit change "
            f"{100 * f['max_rel_logit_diff']:.1f}% of the largest fp32 logit"
        )
    for c in r.get("checks", []):
        print(
            f"{args.format} parity at batch {c['batch']}, {c['size'][0]}x{c['size'][1]}: max abs diff "
            f"{c['max_abs_diff']:.2e}"
        )
    print(
        f"wrote {r['path']} ({r['precision']}, {r['bytes'] / 1e6:.1f} MB, batch {r['batch']}, {size[0]}x{size[1]})"
    )
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
