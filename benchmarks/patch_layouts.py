"""Which way should a MobileViT block move its tokens? Every patch layout, timed where it runs.

A block's `PatchLayout` (``models/patch_layouts.py``) decides how the map goes through the
transformer across patches; every layout gives the same outputs, and the model keeps one forward
that calls its ``patches`` module, which an export swaps on its copy. This script times each
layout in each place it can run, in one set of alternating rounds per model: eager PyTorch
(`optimize_for_inference`, the library's fast path) and onnxruntime (an ONNX file exported with
that layout). v2 blocks have two layouts (``nchw``, ``nhwc``); v1 / v3 blocks a third, ``pixels``.
Core ML needs ``nchw`` (rank <= 4) and is not timed here (macOS only).

Prints, as its last line, a JSON object with each layout's batch-1 p50 relative to the layout the
library picks for that runtime; writes docs/patch_layouts.md.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch
from _common import print_json_last, write_doc

from mobilevit import create_model, optimize_for_inference
from mobilevit.export import export_onnx
from mobilevit.export.onnx import ort_session
from mobilevit.models.blocks import set_patch_layout
from mobilevit.models.patch_layouts import PatchLayout
from mobilevit.timing import InferencePath, measure_alternating


def used_layouts(model: torch.nn.Module) -> dict[str, str]:
    """The layout the library uses in each runtime: the blocks' own (eager), export_onnx's default."""
    patches = next(m for m in model.modules() if isinstance(m, PatchLayout))
    return {"eager": patches.layout, "onnxruntime": patches.with_layout("pixels").layout}


def layouts(model: str) -> list[str]:
    """The layouts a model's blocks have (v2 blocks: no pixel-order form)."""
    return ["nchw", "nhwc"] if model.startswith("mobilevitv2") else ["nchw", "nhwc", "pixels"]


def paths_for(name: str, size: int, batch: int, tmp: Path) -> tuple[list[InferencePath], dict[str, str]]:
    """Eager and onnxruntime paths of ``name`` in each of its layouts (random weights, eval), and
    the layout the library uses in each runtime."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    out = []
    for layout in layouts(name):
        fast = optimize_for_inference(model)
        set_patch_layout(fast, layout)
        out.append(InferencePath(f"eager/{layout}", name, fast))
    for layout in layouts(name):
        onnx_file = tmp / f"{name}_{layout}.onnx"
        export_onnx(model, onnx_file, img_size=(size, size), batch=batch, patch_layout=layout)
        session = ort_session(onnx_file)

        def run(x: torch.Tensor, s: Any = session) -> Any:
            return s.run(None, {"image": x.numpy()})[0]

        out.append(InferencePath(f"onnxruntime/{layout}", name, run))
    return out, used_layouts(model)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["mobilevit_xxs", "mobilevit_s", "mobilevitv2_050"])
    p.add_argument("--img-size", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args()
    lines = [
        "| model | runtime | layout | p50 ms | p90 ms | / the library's layout for that runtime |",
        "|---|---|---|---:|---:|---:|",
    ]
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            paths, used = paths_for(name, args.img_size, args.batch, Path(tmp))
            x = torch.rand(args.batch, 3, args.img_size, args.img_size)
            lat = measure_alternating(paths, x, iters=args.iters, rounds=args.rounds)
            for path in paths:
                runtime, layout = path.name.split("/")
                ref = lat[f"{name}/{runtime}/{used[runtime]}"].p50_ms
                got = lat[path.key]
                ratio = got.p50_ms / ref
                figures[f"{name}.{runtime}.{layout}"] = round(ratio, 3)
                mark = " (used)" if layout == used[runtime] else ""
                lines.append(
                    f"| {name} | {runtime} | {layout}{mark} | {got.p50_ms:.2f} | {got.p90_ms:.2f} | {ratio:.3f} |"
                )
            print("\n".join(lines[-len(paths) :]), flush=True)
    body = (
        f"Batch {args.batch}, {args.img_size}x{args.img_size}, fp32, random weights; each model's paths "
        f"timed in {args.rounds} alternating rounds of {args.iters} passes (`mobilevit.timing.measure_alternating`). "
        "eager = `optimize_for_inference` (BN folded, channels-last inside) with the layout set; onnxruntime "
        "= `export_onnx(..., patch_layout=...)` in a CPU session with all graph optimisations. A ratio "
        "above 1 is slower than the layout the library uses in that runtime ((used)).\n\n"
        + "\n".join(lines)
        + "\n"
    )
    cmd = f"python benchmarks/patch_layouts.py --models {' '.join(args.models)} --img-size {args.img_size} --batch {args.batch}"
    write_doc(
        "patch_layouts.md", "Patch layouts: each way of moving the tokens, timed where it runs", body, cmd
    )
    print_json_last(figures)


if __name__ == "__main__":
    main()
