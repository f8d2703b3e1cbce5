"""``mobilevit export``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ..export.errors import ExportError
from ..export.runtime_checks import DEFAULT_MAX_DROP, DEFAULT_MIN_AGREEMENT

if TYPE_CHECKING:
    from ..export.calibration import Int8Source
    from ..export.reports import AccuracyCheck, ParityCheck


def add_parser(sub: Any) -> None:
    """Add the ``export`` subcommand to ``sub``."""
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
        help="input size (default: the crop the weights were trained and evaluated at, as training "
        "here records it; a detector's own; else 256)",
    )
    s.add_argument("--batch", type=int, default=1, help="the fixed batch size of the export (default 1)")
    s.add_argument("--dynamic-batch", action="store_true")
    s.add_argument(
        "--dynamic-hw",
        action="store_true",
        help="refused with the reason: MobileViT's unfold / fold bake the traced size into every "
        "exporter's graph, so export one file per size (--img-size H W)",
    )
    s.add_argument("--opset", type=int, default=17)
    s.add_argument(
        "--precision",
        choices=["f32", "bf16"],
        default="f32",
        help="openvino: the CPU inference precision recorded in the IR (bf16: checked like int8, by top-1 "
        "against fp32; on a CPU without native bf16 OpenVINO runs it in f32, and the report says so; "
        "with --int8, the precision of the ops NNCF leaves unquantized)",
    )
    s.add_argument(
        "--int8",
        action="store_true",
        help="post-training int8 of a classifier, calibrated and judged on the model's own labelled "
        "images (see --int8-data). onnx: onnxruntime static quantization, written only if faster than "
        "fp32 here, with its accuracy and time against fp32 printed and saved as <stem>.int8.json; "
        "executorch: PT2E XNNPACKQuantizer; litert: litert-torch's PT2E quantizer; openvino: NNCF. "
        "A file that loses more than --max-drop points of top-1 is deleted",
    )
    s.add_argument(
        "--max-drop",
        type=float,
        default=DEFAULT_MAX_DROP,
        help="int8 / bf16: the largest top-1 drop against fp32, in percentage points, on the validation "
        f"images, for the file to be kept (default {DEFAULT_MAX_DROP})",
    )
    s.add_argument(
        "--min-agreement",
        type=float,
        default=None,
        help="int8 / bf16: a top-1 agreement with fp32 the file must reach too (default: none, except "
        f"where accuracy cannot be computed: {DEFAULT_MIN_AGREEMENT})",
    )
    s.add_argument(
        "--int8-data",
        default=None,
        help="calibration + validation images: a folder with train/ and val/ class folders, or digits. "
        "Default: the images the weights were trained on, as training recorded them (with its eval "
        "resize and crop); weights that record none need this flag",
    )
    s.add_argument("--calib-images", type=int, default=64, help="calibration images (default 64)")
    s.add_argument(
        "--int8-val-images",
        type=int,
        default=None,
        metavar="N",
        help="int8 / bf16: judge on N validation images drawn at random (seeded) across the classes "
        "(default: all; they are held in memory as 8-bit pixels, about 0.2 MB each at 256 px)",
    )
    s.add_argument(
        "--int8-keep-float",
        nargs="+",
        default=[],
        metavar="MODULE",
        help="onnx --int8: leave these modules in fp32 (e.g. stem stages.0.0 head, or a whole stage "
        "stages.0), as a per-block sensitivity pass (mobilevit.export.int8_sensitivity_onnx) names them",
    )
    s.add_argument(
        "--int8-keep-slower",
        action="store_true",
        help="write the int8 model even where it is slower than fp32 (e.g. for another device)",
    )
    s.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    """Run ``mobilevit export`` to the chosen format and print its checks.

    Returns 0, or 3 when an ONNX int8 export is refused (slower than fp32, or too inaccurate).
    """
    from ..export import export_onnx
    from ..loading import load_model

    _validate(args)
    model, meta = load_model(args.weights, args.model)
    if args.img_size:
        size = (args.img_size[0], args.img_size[-1])
    elif meta.task == "classification" and "img_size" in meta.extra:  # trained here: its eval crop
        size = (int(meta.extra["img_size"]),) * 2
    else:  # a detector's own input size (its anchors depend on it), else 256
        size = tuple(getattr(getattr(model, "ssd_config", None), "image_size", (256, 256)))
    if args.format == "coreml":
        from ..export.coreml import export_coreml

        report = export_coreml(model, args.out, size, dynamic_hw=args.dynamic_hw)
        shown = report.check_note or f"max abs diff {report.checks[0].max_abs_diff:.2e}"
        print(f"Core ML parity: {shown}")
        print(f"wrote {report.path} (ML program, {size[0]}x{size[1]}, outputs {', '.join(report.outputs)})")
        return 0
    source = None
    if args.int8 or args.precision == "bf16":
        from ..export.calibration import int8_source

        source = int8_source(args.int8_data, meta.extra, size, weights=args.weights)
        print(
            f"calibration and validation images: {source.data} ({source.why})",
            file=sys.stderr,
        )
    if args.format in RUNTIMES:
        return _export_runtime(args, model, size, meta.classes, source)
    if args.int8:
        return _export_int8(args, model, size, meta.classes, source)  # recorded by files trained here
    report = export_onnx(
        model,
        args.out,
        size,
        dynamic_batch=args.dynamic_batch,
        dynamic_hw=args.dynamic_hw,
        opset=args.opset,
        batch=args.batch,
    )
    _print_checks("onnxruntime", report.checks)
    print(f"wrote {report.path} ({report.bytes / 1e6:.1f} MB, opset {report.opset})")
    return 0


RUNTIMES = ("executorch", "litert", "openvino")


def _validate(args: argparse.Namespace) -> None:
    """Flag combinations that cannot work, refused before the weights are read (an `ExportError`:
    one line, exit status 2)."""
    fmt = args.format
    if args.int8 and fmt == "coreml":
        raise ExportError("--int8 is for onnx, executorch, litert and openvino")
    if args.int8_keep_float and not (args.int8 and fmt == "onnx"):
        raise ExportError(
            "--int8-keep-float is for --int8 --format onnx (onnxruntime's quantizer); in Python, "
            "quantize_int8_torch(keep_float=...) does the same for PyTorch's own int8"
        )
    if args.dynamic_hw and (fmt in RUNTIMES or args.int8):  # (plain ONNX / Core ML: the exporter says why)
        raise ExportError(
            f"--dynamic-hw is refused: a {fmt}{' int8' if args.int8 else ''} export "
            "takes one input size, since "
            "MobileViT's unfold / fold bake the traced size into the graph; export one file per size "
            "(--img-size H W)"
        )
    if fmt != "onnx" and (args.dynamic_batch or (fmt == "coreml" and args.batch != 1)):
        flag = "--dynamic-batch" if args.dynamic_batch else f"--batch {args.batch}"
        fixed = "a fixed batch of 1" if fmt == "coreml" else "a fixed batch (--batch N)"
        shown = {"coreml": "Core ML", "executorch": "ExecuTorch", "litert": "LiteRT", "openvino": "OpenVINO"}[
            fmt
        ]
        raise ExportError(f"{flag} is for ONNX; a {shown} export takes {fixed}")
    if args.precision != "f32" and fmt != "openvino":
        raise ExportError("--precision is for openvino")
    if args.min_agreement is not None and not 0.0 <= args.min_agreement <= 1.0:
        raise ExportError(f"--min-agreement must be in [0, 1], got {args.min_agreement}")
    if args.int8_val_images is not None and args.int8_val_images < 1:
        raise ExportError(f"--int8-val-images must be >= 1, got {args.int8_val_images}")
    if not args.max_drop >= 0:
        raise ExportError(f"--max-drop must be >= 0 points, got {args.max_drop}")


def _print_checks(runtime: str, checks: list[ParityCheck]) -> None:
    for c in checks:
        print(
            f"{runtime} parity at batch {c.batch}, {c.size[0]}x{c.size[1]}: max abs diff {c.max_abs_diff:.2e}"
        )


def _print_accuracy(runtime: str, acc: AccuracyCheck) -> None:
    """The reduced-precision check in one line (and, where the CPU ran another precision, a warning)."""
    if acc.top1 is not None and acc.fp32_top1 is not None and acc.top1_drop_pt is not None:
        shown = (
            f"top-1 fp32 {100 * acc.fp32_top1:.2f}% / {acc.precision} {100 * acc.top1:.2f}% "
            f"(drop {acc.top1_drop_pt:.2f} pt)"
        )
    else:
        shown = acc.accuracy_note or ""
    # "int8 (stages.0.0 in fp32)" where blocks were left in fp32; bf16 run as f32 is warned about below
    ran = acc.computed_as if acc.computed_as.startswith(acc.precision) else acc.precision
    print(
        f"{runtime} {ran} vs fp32 on {acc.val_images} {acc.data} validation images: top-1 agreement "
        f"{acc.top1_agreement:.4f}, {shown}, largest logit change {100 * acc.max_rel_logit_diff:.1f}% of the "
        f"largest fp32 logit; kept by: {acc.criterion}; images: {acc.preprocessing}"
    )
    if acc.precision not in acc.computed_as:
        print(
            f"warning: this CPU computes {acc.computed_as}, not {acc.precision}: the check above judged "
            f"{acc.computed_as}; the file is still {acc.precision} for a CPU that has it",
            file=sys.stderr,
        )


def _export_runtime(
    args: argparse.Namespace,
    model: Any,
    size: tuple[int, int],
    classes: list[str] | None,
    source: Int8Source | None,
) -> int:
    from ..export import export_executorch, export_litert, export_openvino

    common = dict(
        img_size=size,
        batch=args.batch,
        int8=args.int8,
        data=source,
        calib_images=args.calib_images,
        max_val=args.int8_val_images,
        model_classes=classes,
        max_drop=args.max_drop,
        min_agreement=args.min_agreement,
    )
    if args.format == "executorch":
        r = export_executorch(model, args.out, **common)
        d = r.delegation
        total = d.delegated_ops + sum(d.portable_ops.values())
        print(
            f"XNNPACK delegate: {d.delegated_ops} of {total} ops ({100 * d.delegated_fraction:.1f}%) "
            f"in {d.delegate_pieces} piece(s)"
        )
        if d.portable_ops:
            left = ", ".join(f"{k} x{v}" for k, v in sorted(d.portable_ops.items()))
            print(f"warning: ops on ExecuTorch's portable kernels: {left}", file=sys.stderr)
    elif args.format == "litert":
        r = export_litert(model, args.out, **common)
    else:
        r = export_openvino(model, args.out, precision=args.precision, **common)
    if r.accuracy is not None:
        _print_accuracy(args.format, r.accuracy)
    _print_checks(args.format, r.checks)
    print(f"wrote {r.path} ({r.precision}, {r.bytes / 1e6:.1f} MB, batch {r.batch}, {size[0]}x{size[1]})")
    return 0


def _export_int8(
    args: argparse.Namespace,
    model: Any,
    size: tuple[int, int],
    classes: list[str] | None,
    source: Int8Source | None,
) -> int:
    from ..export import Int8NotFaster, Int8TooInaccurate, export_int8

    try:
        r = export_int8(
            model,
            args.out,
            size,
            batch=args.batch,
            dynamic_batch=args.dynamic_batch,
            opset=args.opset,
            data=source,
            calib_images=args.calib_images,
            max_val=args.int8_val_images,
            model_classes=classes,
            keep_slower=args.int8_keep_slower,
            max_drop=args.max_drop,
            min_agreement=args.min_agreement,
            keep_float=args.int8_keep_float,
        )
    except (Int8NotFaster, Int8TooInaccurate) as e:
        _print_accuracy("onnxruntime", e.report.accuracy)
        print(f"mobilevit export: {e}", file=sys.stderr)
        return 3
    _print_accuracy("onnxruntime", r.accuracy)
    t = r.timing
    print(
        f"time (onnxruntime, batch {t.timed_batch}, {t.threads} threads): int8 "
        f"{t.int8_ms_per_image:.2f} ms/image vs fp32 {t.fp32_ms_per_image:.2f} "
        f"({t.ratio_int8_vs_fp32:.2f}x)"
    )
    if t.ratio_int8_vs_fp32 >= 1.0:
        print(
            "warning: int8 is slower than fp32 here; written because of --int8-keep-slower", file=sys.stderr
        )
    print(f"wrote {r.path} (int8, {r.bytes / 1e6:.1f} MB) and {r.fp32_path} (fp32, verified)")
    return 0
