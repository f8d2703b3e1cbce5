"""Where the time goes, op by op: our model through ExecuTorch (XNNPACK, fp32 and int8, from
ExecuTorch's ETDump) and through onnxruntime fp32 (its profiler), batch 1, 256 px, random weights;
for LiteRT int8, whose Python API has no per-op timer, the ops of the file by kind and output type
(which ops stay in float).

Each runtime runs the model ``--runs`` times after loading; the per-op figures are each op's
median over the runs (ExecuTorch) or its mean (onnxruntime), summed over the ops of one kind.
Writes docs/runtime_profiles.md; the last line printed is a JSON object with the totals per op kind.

    python benchmarks/runtime_profile.py [--models mobilevit_s mobilevitv2_100] [--runs 30]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import print_json_last, write_doc

IMG = (256, 256)
# ExecuTorch events that are not a pass: loading, and the pass as a whole (DELEGATE_CALL is kept)
_LOADING = {"Program::load_method", "Method::init", "Method::execute"}


def executorch_profile(
    model: torch.nn.Module, int8: bool, runs: int, tmp: Path
) -> dict[str, tuple[float, int]]:
    """{op kind: (ms per pass summed over the kind's ops, op count)} from ExecuTorch's ETDump."""
    from executorch.devtools import Inspector
    from executorch.extension.pybindings.portable_lib import _load_for_executorch

    from mobilevit.export.calibration import load_int8_data
    from mobilevit.export.executorch import executorch_graph, lower_to_xnnpack

    x = torch.rand(1, 3, *IMG)
    calib = load_int8_data("digits", IMG, calib_images=32, max_val=1).calib if int8 else None
    buffer, _ = lower_to_xnnpack(executorch_graph(model)[0], x, calib)
    (tmp / "m.pte").write_bytes(buffer)
    module = _load_for_executorch(str(tmp / "m.pte"), enable_etdump=True, debug_buffer_size=0)
    for _ in range(runs):
        module.forward([x])
    module.write_etdump_result_to_file(str(tmp / "m.etdp"))
    kinds: dict[str, list[float]] = collections.defaultdict(list)
    for block in Inspector(etdump_path=str(tmp / "m.etdp")).event_blocks:
        for event in block.events:
            if event.perf_data is not None and event.name not in _LOADING:
                # XNNPACK names an op by its kind, repeats as 'Subtract (ND) #4': the kind without the number
                kinds[re.sub(r"\s*#\d+$", "", event.name)].append(float(np.median(event.perf_data.raw)))
    return _summed(kinds)


def ort_profile(model: torch.nn.Module, runs: int, tmp: Path) -> dict[str, tuple[float, int]]:
    """{op kind: (ms per pass, op count)} from onnxruntime's profiler on our ONNX export."""
    import onnxruntime as ort

    from mobilevit.export import export_onnx

    export_onnx(model, tmp / "m.onnx", img_size=IMG, batch=1)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = torch.get_num_threads(), 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_profiling, opts.profile_file_prefix = True, str(tmp / "ort")
    session = ort.InferenceSession(str(tmp / "m.onnx"), opts, providers=["CPUExecutionProvider"])
    x = np.random.rand(1, 3, *IMG).astype(np.float32)
    for _ in range(runs + 1):  # the first pass (allocations) is dropped below
        session.run(None, {"image": x})
    events = json.loads(Path(session.end_profiling()).read_text())
    per_node: dict[tuple[str, str], list[float]] = collections.defaultdict(list)  # (kind, node)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[e["args"]["op_name"], e["name"]].append(e["dur"] / 1000.0)
    kinds: dict[str, list[float]] = collections.defaultdict(list)
    for (kind, _), durations in per_node.items():
        kinds[kind].append(float(np.mean(durations[1:] or durations)))
    return _summed(kinds)


def _summed(kinds: dict[str, list[float]]) -> dict[str, tuple[float, int]]:
    """{kind: (the ops' times summed, op count)}, the most expensive kind first."""
    return {k: (sum(v), len(v)) for k, v in sorted(kinds.items(), key=lambda kv: -sum(kv[1]))}


def litert_int8_ops(model: torch.nn.Module, tmp: Path) -> dict[str, int]:
    """{'OP (output type)': count} of our model's LiteRT int8 file, read with LiteRT's flatbuffer schema."""
    from ai_edge_litert import schema_py_generated as schema

    from mobilevit.export.calibration import load_int8_data
    from mobilevit.export.litert import convert_litert, litert_graph

    calib = load_int8_data("digits", IMG, calib_images=32, max_val=1).calib
    convert_litert(litert_graph(model)[0], torch.rand(1, 3, *IMG), calib).export(str(tmp / "m.tflite"))
    flat = schema.Model.GetRootAsModel((tmp / "m.tflite").read_bytes(), 0)
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    graph = flat.Subgraphs(0)
    counts: collections.Counter[str] = collections.Counter()
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = flat.OperatorCodes(op.OpcodeIndex())  # small codes sit in the deprecated field
        kind = op_names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]
        counts[f"{kind} ({type_names[graph.Tensors(op.Outputs(0)).Type()]})"] += 1
    return dict(counts.most_common())


def _table(profile: dict[str, tuple[float, int]], whole: str) -> str:
    ops = {k: v for k, v in profile.items() if k != whole}
    total = sum(ms for ms, _ in ops.values())
    lines = ["| op kind | ops | ms per pass | share |", "|---|---:|---:|---:|"]
    lines += [
        f"| {k} | {n} | {ms:.3f} | {100 * ms / total:.1f}% |" for k, (ms, n) in ops.items() if ms >= 0.005
    ]
    note = f"Sum of the ops: {total:.2f} ms"
    if whole in profile:
        note += f"; the whole call ({whole}): {profile[whole][0]:.2f} ms"
    return "\n".join(lines) + f"\n\n{note}.\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilevit_s", "mobilevitv2_100"])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from mobilevit.models import create_model

    sections, figures = [], {}
    for name in args.models:
        torch.manual_seed(0)
        model = create_model(name).eval()
        with tempfile.TemporaryDirectory(prefix="mobilevit-profile-") as tmp:
            profiles = {
                "onnxruntime fp32": (ort_profile(model, args.runs, Path(tmp)), ""),
                "ExecuTorch XNNPACK fp32": (
                    executorch_profile(model, False, args.runs, Path(tmp)),
                    "DELEGATE_CALL",
                ),
                "ExecuTorch XNNPACK int8": (
                    executorch_profile(model, True, args.runs, Path(tmp)),
                    "DELEGATE_CALL",
                ),
            }
            litert_ops = litert_int8_ops(model, Path(tmp))
        for runtime, (profile, whole) in profiles.items():
            sections.append(f"## {name}, {runtime}, batch 1\n\n{_table(profile, whole)}")
            figures[f"{name}/{runtime}"] = {k: round(ms, 3) for k, (ms, _) in profile.items()}
        inventory = "\n".join(f"| {k} | {n} |" for k, n in litert_ops.items())
        sections.append(
            f"## {name}, LiteRT int8: the ops of the file (no per-op timer)\n\n"
            f"| op (output type) | ops |\n|---|---:|\n{inventory}\n"
        )
        figures[f"{name}/LiteRT int8 ops"] = litert_ops
        print(f"{name} profiled", file=sys.stderr, flush=True)
    body = (
        "Per-op time of our model at batch 1, 256 px, random weights, after loading: ExecuTorch's "
        "ETDump (each XNNPACK op's median over the runs; int8 calibrated on 32 digits images) and "
        "onnxruntime's profiler (each node's mean), summed per op kind. Profiling adds a little to "
        "each op; compare kinds, not the totals with `latency.py`'s. LiteRT's Python interpreter "
        "has no per-op timer: for its int8 file, the ops by kind and by the type of their output "
        "(FLOAT32 ops run in float, with DEQUANTIZE / QUANTIZE ops at the edges of each float "
        "stretch).\n\n" + "\n".join(sections)
    )
    command = "python benchmarks/runtime_profile.py " + " ".join(sys.argv[1:])
    write_doc("runtime_profiles.md", "Where the time goes in each runtime, op by op", body, command.strip())
    print_json_last(figures)


if __name__ == "__main__":
    main()
