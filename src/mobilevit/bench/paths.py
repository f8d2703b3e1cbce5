"""Inference paths side by side: ours and the peers', timed in alternating rounds on one machine.

A *path* is one way of running a model's forward pass: our eager model, our BN-folded copy
(``optimize_for_inference``: channels-last where oneDNN runs the convs, and the same in contiguous
memory), ``torch.compile`` of it,
onnxruntime on its ONNX export, and the same for timm's model, plus transformers' eager model.
Every model has random weights; nothing is downloaded.

The paths of one model and batch size are measured together (`measure_alternating`):
round after round, each path runs ``iters`` timed passes, in an order rotated every round, so
that machine noise (frequency changes, other processes) hits all paths alike. Throughput is
also put against the machine's own fp32 matmul rate measured in the same run
(`peak_matmul_gflops`). bf16 (``torch.autocast``) paths are separate rows, never mixed
into the fp32 comparison, and each states how far its logits are from fp32.
"""

from __future__ import annotations

import gc
import math
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..export.onnx import ort_session
from ..timing import InferencePath, first_line, machine_info, measure_alternating
from .peers import HF_CONFIGS, hf_v2_width

OWNERS = ("mobilevit", "timm", "transformers")
BF16_EXTENSIONS = ("avx512_bf16", "amx_bf16")


def bf16_supported() -> bool:
    """Whether the CPU has native bf16 arithmetic (AVX512-BF16 or AMX), where bf16 rows are worth timing."""
    return any(ext in machine_info()["extensions"] for ext in BF16_EXTENSIONS)


# ---------------------------------------------------------------------------------------------
# building paths


def _bf16_fn(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(x)

    return run


def _compiled_path(owner: str, model: nn.Module, x: torch.Tensor) -> InferencePath:
    """``torch.compile`` (inductor, weights frozen as constants), compiled here by a first call on ``x``."""
    t0 = time.perf_counter()
    try:
        compiled = torch.compile(model, dynamic=False)
        with torch.inference_mode(), torch._inductor.config.patch(freezing=True):
            compiled(x)
    except Exception as e:  # any backend failure (no C++ compiler, unsupported op) is a skip, not a crash
        return InferencePath("compiled", owner, None, skipped=first_line(e))
    return InferencePath("compiled", owner, compiled, setup_s=time.perf_counter() - t0)


def _ort_path(owner: str, export: Callable[[Path], None], one_thread: bool = False) -> list[InferencePath]:
    """An onnxruntime session on the file ``export`` writes (to a temp dir, removed once loaded);
    with ``one_thread``, also a session on it with one intra-op thread (``onnxruntime_1thread``),
    the run's check of its second core (see `build_paths`)."""
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="mobilevit-bench-") as tmp:
            onnx_file = Path(tmp) / "model.onnx"
            export(onnx_file)
            sessions = {"onnxruntime": ort_session(onnx_file)}
            if one_thread:
                sessions["onnxruntime_1thread"] = ort_session(onnx_file, threads=1)
    except ImportError as e:
        return [InferencePath("onnxruntime", owner, None, skipped=first_line(e))]
    setup_s = time.perf_counter() - t0

    def runner(session: Any) -> Callable[[torch.Tensor], torch.Tensor]:
        def run(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(None, {"image": x.numpy()})[0])

        return run

    return [InferencePath(name, owner, runner(s), setup_s=setup_s) for name, s in sessions.items()]


def _torch_onnx_export(model: nn.Module, x: torch.Tensor, onnx_file: Path, opset: int = 17) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about sizes baked in: fixed shapes on purpose
        torch.onnx.export(
            model,
            (x,),
            str(onnx_file),
            input_names=["image"],
            output_names=["output"],
            opset_version=opset,
            dynamo=False,
        )


def _int8_path(model: nn.Module, x: torch.Tensor) -> InferencePath:
    """Our ONNX export quantized to int8 (`quantize_int8`: onnxruntime
    static QDQ), calibrated on 64 built-in digits training images at this input size."""
    from ..export import export_onnx
    from ..export.calibration import load_int8_data
    from ..export.int8 import quantize_int8

    t0 = time.perf_counter()
    size = (x.shape[-2], x.shape[-1])
    try:
        data = load_int8_data("digits", size, calib_images=64, max_val=1)
        with tempfile.TemporaryDirectory(prefix="mobilevit-bench-") as tmp:
            fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            export_onnx(model, fp32, img_size=size, batch=x.shape[0])
            quantize_int8(fp32, int8, data.calib)
            session = ort_session(int8)
    except ImportError as e:
        return InferencePath("onnxruntime_int8", "mobilevit", None, precision="int8", skipped=first_line(e))

    def run(xb: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"image": xb.numpy()})[0])

    return InferencePath(
        "onnxruntime_int8", "mobilevit", run, precision="int8", setup_s=time.perf_counter() - t0
    )


def _int8_compiled_path(model: nn.Module, x: torch.Tensor) -> InferencePath:
    """Our model through PyTorch's x86 int8 (`quantize_int8_torch`:
    PT2E + inductor, oneDNN int8 kernels), calibrated on 64 built-in digits training images at this
    input size; compiled here, at this batch size (the compile time is its setup time)."""
    from ..export.calibration import load_int8_data
    from ..export.int8_torch import quantize_int8_torch

    t0 = time.perf_counter()
    try:
        data = load_int8_data("digits", (x.shape[-2], x.shape[-1]), calib_images=64, max_val=1)
        int8 = quantize_int8_torch(model, data.calib)
        int8(x)  # compiles the graph for this batch size
    except Exception as e:  # no torchao, no C++ compiler for inductor: a skip, not a crash
        return InferencePath("compiled_int8", "mobilevit", None, precision="int8", skipped=first_line(e))
    return InferencePath(
        "compiled_int8", "mobilevit", int8, precision="int8", setup_s=time.perf_counter() - t0
    )


def _our_paths(
    model_name: str,
    x: torch.Tensor,
    compile: bool,
    onnx: bool,
    bf16: bool,
    int8: bool = False,
    runtimes: tuple[str, ...] = (),
    thread_check: bool = False,
) -> list[InferencePath]:
    from ..export import export_onnx, optimize_for_inference
    from ..models import create_model

    model = create_model(model_name).eval()
    fast = optimize_for_inference(model)
    fast_nchw = optimize_for_inference(model, channels_last=False)
    paths = [
        InferencePath("eager", "mobilevit", model),
        InferencePath("optimized", "mobilevit", fast),
        InferencePath("optimized_nchw", "mobilevit", fast_nchw),
    ]
    if compile:
        paths.append(_compiled_path("mobilevit", fast, x))
    if onnx:

        def export(onnx_file: Path) -> None:  # BN folded and checked against eager in onnxruntime
            export_onnx(model, onnx_file, img_size=(x.shape[-2], x.shape[-1]), batch=x.shape[0])

        paths += _ort_path("mobilevit", export, one_thread=thread_check)
    if bf16:
        paths.append(InferencePath("optimized_bf16", "mobilevit", _bf16_fn(fast), precision="bf16"))
    if int8:
        paths.append(_int8_path(model, x))
        if compile:
            paths.append(_int8_compiled_path(model, x))
    if runtimes:
        from .runtime_paths import runtime_paths

        paths += runtime_paths("mobilevit", model, x, runtimes)
    return paths


def _timm_paths(
    model_name: str, x: torch.Tensor, compile: bool, onnx: bool, bf16: bool, runtimes: tuple[str, ...] = ()
) -> list[InferencePath]:
    try:
        import timm
    except ImportError:
        return []
    if not timm.is_model(model_name):
        return []
    model = timm.create_model(model_name, pretrained=False).eval()
    model_cl = timm.create_model(model_name, pretrained=False).eval()
    model_cl.load_state_dict(model.state_dict())
    model_cl = model_cl.to(memory_format=torch.channels_last)
    paths = [
        InferencePath("eager", "timm", model),
        InferencePath("channels_last", "timm", model_cl, memory_format=torch.channels_last),
    ]
    if compile:
        paths.append(_compiled_path("timm", model, x))
    if onnx:
        paths += _ort_path("timm", lambda f: _torch_onnx_export(model, x, f))
    if bf16:
        paths.append(InferencePath("eager_bf16", "timm", _bf16_fn(model), precision="bf16"))
    if runtimes:  # timm's model as built, through the same runtimes
        from .runtime_paths import runtime_paths

        paths += runtime_paths("timm", model, x, runtimes)
    return paths


def _transformers_paths(model_name: str) -> list[InferencePath]:
    width = hf_v2_width(model_name)
    if model_name not in HF_CONFIGS and width is None:
        return []
    try:
        import transformers
    except ImportError:
        return []
    if width is None:
        config = transformers.MobileViTConfig(num_labels=1000, **HF_CONFIGS[model_name])
        model = transformers.MobileViTForImageClassification(config).eval()
    else:
        config = transformers.MobileViTV2Config(num_labels=1000, width_multiplier=width)
        model = transformers.MobileViTV2ForImageClassification(config).eval()

    def run(x: torch.Tensor) -> torch.Tensor:
        return model(pixel_values=x).logits

    return [InferencePath("eager", "transformers", run)]


def build_paths(
    model_name: str,
    batch: int,
    img_size: int | tuple[int, int] = (256, 256),
    peers: bool = True,
    *,
    compile: bool = True,
    onnx: bool = True,
    bf16: bool | None = None,
    transformers: bool = True,
    int8: bool = False,
    runtimes: tuple[str, ...] = (),
    thread_check: bool = False,
) -> list[InferencePath]:
    """Every inference path of ``model_name`` at ``batch`` x 3 x ``img_size``, ready to time.

    Ours: ``eager``, ``optimized``, ``optimized_nchw``, ``compiled``, ``onnxruntime``; with
    ``peers`` (when installed) timm's ``eager``, ``channels_last``, ``compiled``, ``onnxruntime``
    and transformers' ``eager`` (unless ``transformers`` is False). ``bf16`` (default: when the CPU has native bf16) adds
    ``mobilevit/optimized_bf16`` and ``timm/eager_bf16``; ``int8`` adds ``mobilevit/onnxruntime_int8``
    (our export quantized by onnxruntime) and, with ``compile``, ``mobilevit/compiled_int8`` (PyTorch's
    x86 int8: PT2E + inductor), both calibrated on the built-in digits; ``runtimes`` (names from
    `RUNTIME_PATHS`) adds ours and timm's model through ExecuTorch, LiteRT
    and OpenVINO (`runtime_paths`). ``thread_check`` adds ``mobilevit/onnxruntime_1thread``,
    our ONNX export in a one-thread session: its time over the ``onnxruntime`` row's is how much
    the second core gave onnxruntime in this run. A host that shares that core (a busy VM
    neighbour) slows each runtime by a different amount, so ratios between runtimes are read
    against that figure. ONNX graphs and compiled code are
    built for exactly this input shape; a compilation that fails is a skipped path, not an
    error. With ``compile``, torch.compile's caches are reset first (one set of paths at a time
    keeps every model within dynamo's recompilation limit).

    Args:
        model_name: a registered classifier name (also looked up in timm and transformers).
        batch: images per forward pass (>= 1).
        img_size: input side, or ``(height, width)``, pixels (>= 32).
        peers: add timm's and transformers' paths where installed and the model exists there.
        compile: add the ``torch.compile`` paths.
        onnx: add the onnxruntime paths.
        bf16: add the bf16 autocast paths; ``None``: when `bf16_supported`.
        transformers: with ``peers``, add transformers' eager model.
        int8: add our int8 paths (onnxruntime, and PyTorch's with ``compile``).
        runtimes: names from `RUNTIME_PATHS` to add through `runtime_paths`.
        thread_check: add ``mobilevit/onnxruntime_1thread``.

    Returns:
        The paths, ours first; every model has random weights.
    """
    size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if len(size) != 2 or min(size) < 32:
        raise ValueError(
            f"image size must be one or two ints >= 32 (the network's output stride), got {img_size}"
        )
    if bf16 is None:
        bf16 = bf16_supported()
    if compile:
        torch._dynamo.reset()
    x = torch.rand(batch, 3, *size)
    paths = _our_paths(model_name, x, compile, onnx, bf16, int8, runtimes, thread_check)
    if peers:
        paths += _timm_paths(model_name, x, compile, onnx, bf16, runtimes)
        if transformers:
            paths += _transformers_paths(model_name)
    return paths


# ---------------------------------------------------------------------------------------------
# measuring


def check_agreement(
    paths: list[InferencePath], batch: int, img_size: tuple[int, int], images: int = 16, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Each path against its owner's fp32 ``eager`` path on ``images`` random images.

    Returns, per path key: ``max_abs_diff`` and ``max_rel_diff`` of the logits (the latter
    relative to the largest |logit| of the reference) and ``top1_agreement`` (the fraction of
    images whose argmax class is the same).

    Args:
        paths: the paths to compare (skipped ones and owners without an ``eager`` path are left out).
        batch: images per forward pass.
        img_size: ``(height, width)``, pixels.
        images: how many random images in all (rounded up to whole batches).
        seed: the random images' seed.
    """
    g = torch.Generator().manual_seed(seed)
    # inputs made outside inference mode, like the compiled paths' example input: an inference tensor
    # would fail dynamo's guards and make it compile a second time
    xs = [torch.rand(batch, 3, *img_size, generator=g) for _ in range(math.ceil(images / batch))]
    refs = {p.owner: p for p in paths if p.name == "eager" and p.fn is not None}
    outputs: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        for p in paths:
            if p.fn is not None and p.owner in refs:
                outputs[p.key] = torch.cat([p(p.prepare(x)).float() for x in xs])
    result = {}
    for key, out in outputs.items():
        ref = outputs[refs[key.split("/", 1)[0]].key]
        diff = float((out - ref).abs().max())
        result[key] = {
            "max_abs_diff": diff,
            "max_rel_diff": diff / max(float(ref.abs().max()), 1e-12),
            "top1_agreement": float((out.argmax(-1) == ref.argmax(-1)).float().mean()),
        }
    return result


# ---------------------------------------------------------------------------------------------
# one model at one batch size, end to end


@dataclass
class PathResult:
    """One row of the side-by-side table: a path of one model at one batch size."""

    model: str
    owner: str
    path: str
    precision: str
    batch: int
    p50_ms: float | None
    p90_ms: float | None
    ms_per_image: float | None
    images_per_s: float | None
    peak_fraction: float | None
    setup_s: float
    skipped: str | None = None
    max_abs_diff: float | None = None
    max_rel_diff: float | None = None
    top1_agreement: float | None = None


def run_side_by_side(
    model_name: str,
    batch: int,
    img_size: tuple[int, int],
    *,
    iters: int,
    rounds: int,
    flops_per_image: float,
    peak_gflops: float,
    peers: bool = True,
    compile: bool = True,
    onnx: bool = True,
    bf16: bool | None = None,
    transformers: bool = True,
    int8: bool = False,
    runtimes: tuple[str, ...] = (),
    thread_check: bool = False,
) -> list[PathResult]:
    """Build, check and time every path of one model at one batch size; frees them afterwards.

    ``peak_fraction`` is the useful work rate (``flops_per_image`` x images/s, with the network's
    FLOPs counted once for every implementation) over the measured ``peak_gflops``.

    Args:
        model_name: a registered classifier name.
        batch: images per forward pass.
        img_size: ``(height, width)``, pixels.
        iters: timed passes of each path per round.
        rounds: alternating rounds (see `measure_alternating`).
        flops_per_image: the network's FLOPs for one image, for ``peak_fraction``.
        peak_gflops: the machine's fp32 matmul rate, GFLOP/s (`peak_matmul_gflops`).
        peers: add timm's and transformers' paths (see `build_paths`).
        compile: add the ``torch.compile`` paths.
        onnx: add the onnxruntime paths.
        bf16: add the bf16 paths; ``None``: when `bf16_supported`.
        transformers: with ``peers``, add transformers' eager model.
        int8: add our int8 paths.
        runtimes: names from `RUNTIME_PATHS` to add.
        thread_check: add ``mobilevit/onnxruntime_1thread``.

    Returns:
        One `PathResult` per path, skipped ones included (with ``skipped`` set and no timings).
    """
    paths = build_paths(
        model_name,
        batch,
        img_size,
        peers,
        compile=compile,
        onnx=onnx,
        bf16=bf16,
        transformers=transformers,
        int8=int8,
        runtimes=runtimes,
        thread_check=thread_check,
    )
    agreement = check_agreement(paths, batch, img_size)  # also the first warm-up pass of every path
    x = torch.rand(batch, 3, *img_size)
    latencies = measure_alternating(paths, x, iters=iters, rounds=rounds, warmup=1)
    rows = []
    for p in paths:
        lat, agree = latencies.get(p.key), agreement.get(p.key, {})
        rows.append(
            PathResult(
                model=model_name,
                owner=p.owner,
                path=p.name,
                precision=p.precision,
                batch=batch,
                p50_ms=lat.p50_ms if lat else None,
                p90_ms=lat.p90_ms if lat else None,
                ms_per_image=lat.ms_per_image if lat else None,
                images_per_s=lat.images_per_s if lat else None,
                peak_fraction=flops_per_image * lat.images_per_s / (peak_gflops * 1e9) if lat else None,
                setup_s=p.setup_s,
                skipped=p.skipped,
                **agree,
            )
        )
    del paths
    if compile:
        torch._dynamo.reset()
    gc.collect()
    return rows


def _num(v: float | None, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def format_path_table(rows: list[PathResult]) -> str:
    """Markdown: one line per path and batch size (fp32 rows first, then reduced precision)."""
    head = (
        "| owner | path | precision | batch | p50 ms | p90 ms | ms / image | images/s | % of fp32 peak "
        "| top-1 agree | max rel diff | setup s |"
    )
    lines = [head, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    ordered = sorted(rows, key=lambda r: (r.precision != "fp32", r.batch))
    for r in ordered:
        if r.skipped:
            lines.append(f"| {r.owner} | {r.path} | {r.precision} | {r.batch} | skipped: {r.skipped} |||||||")
            continue
        lines.append(
            f"| {r.owner} | {r.path} | {r.precision} | {r.batch} | {_num(r.p50_ms, '.2f')} | {_num(r.p90_ms, '.2f')} "
            f"| {_num(r.ms_per_image, '.2f')} | {_num(r.images_per_s, '.1f')} "
            f"| {_num(None if r.peak_fraction is None else 100 * r.peak_fraction, '.1f')} "
            f"| {_num(r.top1_agreement, '.2f')} | {_num(r.max_rel_diff, '.1e')} | {r.setup_s:.1f} |"
        )
    return "\n".join(lines)


def best_row(
    rows: list[PathResult], owner: str, batch: int, names: tuple[str, ...] | None = None
) -> PathResult | None:
    """The fastest (lowest ms per image) timed fp32 row of ``owner`` at ``batch``, among ``names`` if given.

    Args:
        rows: results from `run_side_by_side`.
        owner: ``mobilevit``, ``timm`` or ``transformers``.
        batch: the batch size to look at.
        names: path names to choose among; ``None``: all of the owner's.

    Returns:
        The row, or ``None`` when no timed fp32 row matches.
    """
    candidates = [
        r
        for r in rows
        if r.owner == owner
        and r.batch == batch
        and r.precision == "fp32"
        and r.ms_per_image is not None
        and (names is None or r.path in names)
    ]
    return min(candidates, key=lambda r: r.ms_per_image, default=None)


# ---------------------------------------------------------------------------------------------
# models against each other (v1 vs v2 at matched size)

MATCHED_PATHS = (("mobilevit", "optimized"), ("mobilevit", "onnxruntime"), ("timm", "eager"))


def run_matched(
    models: list[str],
    batch: int,
    img_size: tuple[int, int],
    *,
    iters: int,
    rounds: int,
    paths: tuple[tuple[str, str], ...] = MATCHED_PATHS,
) -> list[PathResult]:
    """The same paths (``(owner, path)`` pairs: our optimized and onnxruntime paths, timm's eager
    model) of several models, timed in *one* set of alternating rounds, so that the models are
    compared under the same machine noise (e.g. v2-0.5 against v1-XXS). Rows carry no agreement
    figures; paths a model lacks (timm without the model) are left out.

    Args:
        models: registered classifier names.
        batch: images per forward pass.
        img_size: ``(height, width)``, pixels.
        iters: timed passes of each path per round.
        rounds: alternating rounds (see `measure_alternating`).
        paths: the ``(owner, path)`` pairs to time for each model.

    Returns:
        One `PathResult` per model and path, ``peak_fraction`` ``None``.
    """
    timed: list[InferencePath] = []
    origin: dict[str, tuple[str, str, InferencePath]] = {}
    x = torch.rand(batch, 3, *img_size)
    wanted = set(paths)
    for name in models:
        built = _our_paths(name, x, compile=False, onnx=True, bf16=False)
        built += _timm_paths(name, x, compile=False, onnx=False, bf16=False)
        for p in built:
            if (p.owner, p.name) in wanted:
                # one namespace for all models' paths: owner = the model, name = owner/path
                q = InferencePath(
                    f"{p.owner}/{p.name}", name, p.fn, p.memory_format, p.precision, p.setup_s, p.skipped
                )
                timed.append(q)
                origin[q.key] = (name, p.owner, p)
    latencies = measure_alternating(timed, x, iters=iters, rounds=rounds, warmup=2)
    rows = []
    for q in timed:
        name, owner, p = origin[q.key]
        lat = latencies.get(q.key)
        rows.append(
            PathResult(
                model=name,
                owner=owner,
                path=p.name,
                precision=p.precision,
                batch=batch,
                p50_ms=lat.p50_ms if lat else None,
                p90_ms=lat.p90_ms if lat else None,
                ms_per_image=lat.ms_per_image if lat else None,
                images_per_s=lat.images_per_s if lat else None,
                peak_fraction=None,
                setup_s=p.setup_s,
                skipped=p.skipped,
            )
        )
    del timed, origin
    gc.collect()
    return rows


def matched_table(rows: list[PathResult], pairs: list[tuple[str, str]]) -> str:
    """Markdown: per pair (a, b), batch and path, a's and b's time per image and b / a."""
    lines = [
        "| pair | batch | owner | path | first ms / image | second ms / image | second / first |",
        "|---|---:|---|---|---:|---:|---:|",
    ]
    for a, b in pairs:
        for r in rows:
            if r.model != a or r.ms_per_image is None:
                continue
            other = next(
                (s for s in rows if (s.model, s.owner, s.path, s.batch) == (b, r.owner, r.path, r.batch)),
                None,
            )
            if other is None or other.ms_per_image is None:
                continue
            lines.append(
                f"| {a} vs {b} | {r.batch} | {r.owner} | {r.path} | {r.ms_per_image:.2f} | "
                f"{other.ms_per_image:.2f} | {other.ms_per_image / r.ms_per_image:.2f} |"
            )
    return "\n".join(lines)
