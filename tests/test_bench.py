"""Side-by-side inference paths (issue 6): names, numerical agreement, timing and the CLI."""

import json

import pytest
import torch

from mobilevit.bench.paths import build_paths, check_agreement
from mobilevit.cli import main
from mobilevit.timing import InferencePath, measure_alternating, peak_matmul_gflops

pytest.importorskip("timm")
pytest.importorskip("transformers")
pytest.importorskip("onnxruntime")

SIZE = (64, 64)
FP32_PATHS = {
    "mobilevit/eager",
    "mobilevit/optimized",
    "mobilevit/optimized_nchw",
    "mobilevit/onnxruntime",
    "mobilevit/onnxruntime_1thread",  # thread_check: the second-core check
    "timm/eager",
    "timm/channels_last",
    "timm/onnxruntime",
    "transformers/eager",
}
BF16_PATHS = {"mobilevit/optimized_bf16", "timm/eager_bf16"}


@pytest.fixture(scope="module")
def paths() -> list[InferencePath]:
    # compile=False: torch.compile of two models takes over a minute on 2 cores, too slow for the unit
    # suite; the skip-on-failure logic is tested below, and benchmarks/latency.py checks the compiled
    # paths' agreement with eager in every run (docs/benchmarks.md, "All figures").
    return build_paths("mobilevit_xxs", 2, SIZE, peers=True, compile=False, bf16=True, thread_check=True)


def test_build_paths_names(paths):
    assert {p.key for p in paths} == FP32_PATHS | BF16_PATHS
    assert all(p.skipped is None for p in paths)
    assert {p.key for p in paths if p.precision == "bf16"} == BF16_PATHS


def test_every_fp32_path_equals_its_eager_model(paths):
    agreement = check_agreement(paths, 2, SIZE, images=4)
    assert set(agreement) == FP32_PATHS | BF16_PATHS
    for key in FP32_PATHS:
        assert agreement[key]["max_abs_diff"] <= 1e-4, (key, agreement[key])
        assert agreement[key]["top1_agreement"] == 1.0
    for key in BF16_PATHS:  # reduced precision: close, not equal
        assert agreement[key]["max_rel_diff"] < 0.2, (key, agreement[key])


def test_measure_alternating_times_every_path(paths):
    x = torch.rand(2, 3, *SIZE)
    lat = measure_alternating(paths, x, iters=1, rounds=1, warmup=0)
    assert set(lat) == {p.key for p in paths}
    assert all(v.p50_ms > 0 and v.images_per_s > 0 and v.runs == 1 for v in lat.values())
    with pytest.raises(ValueError, match="iters and rounds must be >= 1"):
        measure_alternating(paths, x, iters=0)


def test_failed_compile_is_a_skipped_path(monkeypatch):
    def no_compiler(*args, **kwargs):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found")

    monkeypatch.setattr(torch, "compile", no_compiler)
    got = build_paths("mobilevit_xxs", 1, SIZE, peers=False, onnx=False, bf16=False)
    compiled = next(p for p in got if p.name == "compiled")
    assert compiled.fn is None and "No working C++ compiler" in compiled.skipped
    lat = measure_alternating(got, torch.rand(1, 3, *SIZE), iters=1, rounds=2, warmup=0)
    assert "mobilevit/compiled" not in lat and len(lat) == 3
    with pytest.raises(RuntimeError, match="was skipped"):
        compiled(torch.rand(1, 3, *SIZE))


def test_peak_matmul_gflops_positive():
    assert peak_matmul_gflops(n=256, reps=2) > 0


def test_cli_side_by_side_json(capsys):
    argv = ["bench", "--side-by-side", "--models", "mobilevit_xxs", "--img-size", "64", "--batch", "1"]
    argv += ["--iters", "1", "--rounds", "1", "--no-peers", "--no-compile", "--no-bf16", "--json"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    payload = json.loads(captured.out)  # with --json, standard output is the JSON alone
    assert payload["peak_gflops"] > 0 and payload["models"]["mobilevit_xxs"]["params"] == 1_272_024
    got = {(r["owner"], r["path"]) for r in payload["rows"]}
    assert got == {("mobilevit", p) for p in ("eager", "optimized", "optimized_nchw", "onnxruntime")}
    assert all(r["p50_ms"] > 0 and r["peak_fraction"] > 0 for r in payload["rows"])
    assert "| mobilevit | optimized |" in captured.err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--models", "mobilevit_nope"], "unknown model(s) mobilevit_nope"),
        (["--img-size", "0"], "--img-size must be one or two positive ints"),
        (["--img-size", "-64"], "--img-size must be one or two positive ints"),
        (["--side-by-side", "--img-size", "16"], "image size must be one or two ints >= 32"),
        (["--rounds", "0"], "--rounds must be >= 1"),
    ],
)
def test_cli_bench_bad_input(capsys, extra, message):
    assert main(["bench", *extra]) == 2
    assert message in capsys.readouterr().err


def test_build_paths_bad_input():
    with pytest.raises(ValueError, match="unknown model"):
        build_paths("mobilevit_nope", 1, SIZE)
    with pytest.raises(ValueError, match="batch must be >= 1"):
        build_paths("mobilevit_xxs", 0, SIZE)


@pytest.mark.slow
def test_int8_path_is_its_own_precision():
    got = build_paths("mobilevit_xxs", 2, SIZE, peers=False, compile=False, bf16=False, int8=True)
    int8 = next(p for p in got if p.name == "onnxruntime_int8")
    assert int8.precision == "int8" and int8.skipped is None
    agreement = check_agreement(got, 2, SIZE)["mobilevit/onnxruntime_int8"]
    assert 0.0 <= agreement["top1_agreement"] <= 1.0 and agreement["max_rel_diff"] < 1.0


def test_machine_info_names_the_cpu_generation(monkeypatch):
    # "AMD EPYC" alone covers Zen 4 (family 25) and Zen 5 (family 26), whose runtime ratios differ
    import builtins
    import io

    from mobilevit import timing

    cpuinfo = (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
        "model name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_vnni\n"
    )
    real_open = builtins.open
    monkeypatch.setattr(timing.platform, "processor", lambda: "")
    monkeypatch.setattr(
        builtins,
        "open",
        lambda f, *a, **k: io.StringIO(cpuinfo) if f == "/proc/cpuinfo" else real_open(f, *a, **k),
    )
    info = timing.machine_info()
    assert info["cpu"] == "AMD EPYC, family 26 model 2"
    assert info["extensions"] == ["avx2", "avx512f", "avx512_vnni"]


def test_ort_session_threads(tmp_path):
    # the second-core check is only a check if its session really runs on one intra-op thread
    from mobilevit.export import export_onnx
    from mobilevit.export.onnx import ort_session
    from mobilevit.models import create_model

    export_onnx(create_model("mobilevit_xxs").eval(), tmp_path / "m.onnx", img_size=SIZE)
    assert ort_session(tmp_path / "m.onnx", threads=1).get_session_options().intra_op_num_threads == 1
    default = ort_session(tmp_path / "m.onnx").get_session_options().intra_op_num_threads
    assert default == torch.get_num_threads()
