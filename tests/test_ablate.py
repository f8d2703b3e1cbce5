"""``mobilevit ablate``: the paper's four ablations end to end on the built-in digits (a couple of
steps per run), redrawing a finished study without training, resuming an interrupted one, and
the bad requests that are refused before any training."""

import csv
import json
import shlex
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from mobilevit import create_model
from mobilevit.ablate import KINDS, AblationError, feature_map_sides, load_study, plan_study
from mobilevit.ablate import report as ablate_report
from mobilevit.ablate import run as ablate_run
from mobilevit.ablate.plan import _config_diff
from mobilevit.cli import build_parser, main
from mobilevit.cli.ablate import plan_from_args
from mobilevit.data import write_digits
from mobilevit.engine import load_config

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "demo_digits.yaml"


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory):
    """The built-in digits exactly as ``data.dataset=digits`` writes them, thinned to 4 train and
    2 val images per class. The writer leaves a folder whose marker matches alone, so runs with
    ``data.dataset=digits data.root=<this>`` read these 40 / 20 images: 2 steps an epoch."""
    root = write_digits(tmp_path_factory.mktemp("digits") / "digits", size=32)
    for split, keep in (("train", 4), ("val", 2)):
        for c in (root / split).iterdir():
            for f in sorted(c.iterdir())[keep:]:
                f.unlink()
    assert write_digits(root, size=32) == root and len(list((root / "train").rglob("*.png"))) == 40
    return root


def tiny(root):
    return [
        f"data.root={root}",
        "data.multiscale=false",
        "data.batch_size=16",
        "data.num_workers=0",
        "optim.warmup_iters=1",
        "ema.recalibrate_bn=1",
        "run.progress=false",
        "run.threads=1",
    ]


# the four studies as the fixture runs them: extra flags per study
STUDY_FLAGS = {
    "weight-decay": ["--epochs", "1"],
    "skip-connection": ["--epochs", "1", "--seeds", "2"],
    "patch-size": ["--epochs", "1", "--latency-iters", "2"],
    "fusion": ["--epochs", "1", "--latency-iters", "2"],
    "ema-label-smoothing": ["--epochs", "2"],
}


@pytest.fixture(scope="module")
def studies(tiny_digits, tmp_path_factory):
    """Every study, run once through the command line on the built-in digits."""
    base = tmp_path_factory.mktemp("studies")
    out = {}
    for study, flags in STUDY_FLAGS.items():
        out[study] = base / study
        argv = ["ablate", study, *tiny(tiny_digits), "--data", "digits", *flags, "--out-dir", str(out[study])]
        assert main(argv) == 0, study
    return out


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):  # an empty mapping (no model overrides) adds no key
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def run_config(run_dir):
    return flat(yaml.safe_load((run_dir / "config.yaml").read_text()))


# ------------------------------------------------------------------ end to end
@pytest.mark.slow
@pytest.mark.parametrize("study", list(STUDY_FLAGS))
def test_study_end_to_end_on_the_digits(study, studies, tiny_digits):
    out = studies[study]
    spec = load_study(study)
    man = json.loads((out / "study.json").read_text())
    seeds = [0, 1] if "--seeds" in STUDY_FLAGS[study] else [0]
    epochs = int(STUDY_FLAGS[study][STUDY_FLAGS[study].index("--epochs") + 1])
    assert man["complete"] and man["seeds"] == seeds and man["dataset"] == "digits"

    # outputs: tables (mean and spread over seeds), per-run and per-epoch files, figures
    table = read_csv(out / "results.csv")
    assert [r["variant"] for r in table] == list(spec.variants)
    for r in table:
        assert int(r["seeds"]) == len(seeds)
        assert 0 <= float(r["top1_mean"]) <= 1 and float(r["top1_min"]) <= float(r["top1_max"])
        assert (r["top1_std"] != "") == (len(seeds) > 1)
        assert float(r["train_loss_mean"]) > 0 and int(r["params"]) > 0
    ref = next(r for r in table if r["variant"] == spec.reference)
    assert float(ref["delta_top1"]) == 0.0
    runs = read_csv(out / "runs.csv")
    assert sorted((r["variant"], int(r["seed"])) for r in runs) == sorted(
        (v, s) for v in spec.variants for s in seeds
    )
    curves = read_csv(out / "curves.csv")
    assert len(curves) == len(runs) * epochs
    md = (out / "results.md").read_text()
    assert man["command"] in md and f"]({study}.png)" in md
    assert all(f"| {v} |" in md for v in spec.variants)
    assert (out / f"{study}.png").stat().st_size > 10_000
    for v in spec.variants:
        assert (out / v / "curves.png").is_file()

    # the variants differ from the recipe, and from each other, in the studied knob only
    recipe = flat(
        load_config(RECIPE, [*tiny(tiny_digits), "data.dataset=digits", f"optim.epochs={epochs}"]).to_dict()
    )
    knobs = set(KINDS[study].knobs)
    for name, variant in spec.variants.items():
        for seed in seeds:
            cfg = run_config(out / name / f"seed{seed}")
            changed = {k for k in set(cfg) | set(recipe) if cfg.get(k) != recipe.get(k)}
            assert changed <= knobs | {"run.out_dir", "run.seed"}, (name, changed)
            assert cfg["run.seed"] == seed
            for k, value in variant.settings.items():
                assert cfg[k] == value, (name, k)
        # the kept model's accuracy: the EMA model's when EMA is on
        ema_on = run_config(out / name / "seed0")["ema.enabled"]
        rows = [json.loads(x) for x in (out / name / "seed0" / "metrics.jsonl").read_text().splitlines()]
        assert len(rows) == epochs
        top1 = float(next(r for r in runs if r["variant"] == name and r["seed"] == "0")["top1"])
        assert top1 == pytest.approx(rows[-1]["val_ema_top1" if ema_on else "val_top1"])


@pytest.mark.slow
def test_patch_size_reports_accuracy_and_latency_side_by_side(studies):
    table = {r["variant"]: r for r in read_csv(studies["patch-size"] / "results.csv")}
    assert {"p2-2-2", "p8-4-2"} <= set(table) and len(table) >= 3
    for r in table.values():
        assert float(r["p50_ms@64"]) > 0 and float(r["p50_ms@256"]) > 0
        assert r["params"] == table["p2-2-2"]["params"]  # patch sizes change no weights
    # larger patches: fewer tokens to attend over, fewer FLOPs
    assert float(table["p8-4-2"]["mflops@256"]) < float(table["p2-2-2"]["mflops@256"])
    assert json.loads(table["p8-4-2"]["model.overrides.patch_size"]) == [8, 4, 2]
    md = (studies["patch-size"] / "results.md").read_text()
    assert "p50 ms @64" in md and "p50 ms @256" in md


@pytest.mark.slow
def test_ema_study_holds_everything_else_equal(studies):
    """EMA only watches the weights: with the same seed and label smoothing, the trained weights
    follow the same path with EMA on and off, epoch for epoch."""
    out = studies["ema-label-smoothing"]

    def rows(v):
        return [json.loads(x) for x in (out / v / "seed0" / "metrics.jsonl").read_text().splitlines()]

    for ls in ("0.1", "0"):
        on, off = rows(f"ema-ls{ls}"), rows(f"no_ema-ls{ls}")
        assert [r["train_loss"] for r in on] == [r["train_loss"] for r in off]
        assert [r["val_top1"] for r in on] == [r["val_top1"] for r in off]
        assert "val_ema_top1" in on[0] and "val_ema_top1" not in off[0]
    assert rows("ema-ls0.1")[0]["train_loss"] != rows("ema-ls0")[0]["train_loss"]  # the knob does act


@pytest.mark.slow
def test_skip_connection_variants_and_seed_spread(studies):
    table = {r["variant"]: r for r in read_csv(studies["skip-connection"] / "results.csv")}
    assert int(table["no-skip"]["params"]) < int(table["skip"]["params"])  # fusion conv takes C, not 2C
    assert all(r["top1_std"] != "" for r in table.values())
    assert "±" in (studies["skip-connection"] / "results.md").read_text()


@pytest.mark.slow
def test_recorded_command_reproduces_the_study(studies):
    """study.json's command, parsed again, plans exactly the runs that were trained (all done)."""
    for study, out in studies.items():
        man = json.loads((out / "study.json").read_text())
        argv = shlex.split(man["command"])
        assert argv[:3] == ["mobilevit", "ablate", study]
        plan = plan_from_args(build_parser().parse_args(argv[1:]))
        assert len(plan.runs) == len(man["runs"])
        for run in plan.runs:
            assert run.status() == "finished"
            assert run_config(run.dir) == flat(run.cfg.to_dict())


# ---------------------------------------------------------------------- replot
@pytest.mark.slow
def test_replot_redraws_a_finished_study_without_training(studies, tmp_path, monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("replot must not train")

    def no_timing(*a, **k):
        raise AssertionError("replot must reuse the recorded latencies")

    monkeypatch.setattr(ablate_run, "train", no_training)
    monkeypatch.setattr(ablate_report, "measure_latency_table", no_timing)
    monkeypatch.setattr(ablate_run, "measure_latency_table", no_timing)
    for study in ("patch-size", "skip-connection"):
        out = tmp_path / study
        shutil.copytree(studies[study], out)
        before = (out / "results.csv").read_text()
        outputs = ["results.csv", "results.md", "runs.csv", "curves.csv", f"{study}.png"]
        for name in outputs:
            (out / name).unlink()
        for v in load_study(study).variants:
            (out / v / "curves.png").unlink()
        assert main(["ablate", study, "--replot", "--out-dir", str(out)]) == 0
        assert all((out / name).is_file() for name in outputs)
        assert all((out / v / "curves.png").is_file() for v in load_study(study).variants)
        assert (out / "results.csv").read_text() == before


# ---------------------------------------------------------------------- resume
@pytest.mark.slow
def test_an_interrupted_study_resumes_the_runs_it_had_not_finished(
    studies, tiny_digits, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "skip"
    cmd = [
        "ablate",
        "skip-connection",
        *tiny(tiny_digits),
        "--data",
        "digits",
        "--epochs",
        "1",
        "--out-dir",
        str(out),
    ]
    assert main([*cmd, "--variants", "skip"]) == 0  # one variant done ...
    done = out / "skip" / "seed0"
    kept = {
        n: ((done / n).read_bytes(), (done / n).stat().st_mtime_ns)
        for n in ("metrics.jsonl", "last.safetensors")
    }
    cmd_i = [*cmd[:2], "run.max_steps=1", *cmd[2:]]  # overrides come right after STUDY
    assert main(cmd_i) == 3  # ... the next one interrupted after one step (as by Ctrl-C)
    stopped = out / "no-skip" / "seed0"
    assert (stopped / "resume.pt").is_file() and not (stopped / "summary.json").exists()
    assert not (out / "results.csv").exists()
    capsys.readouterr()

    assert main(["ablate", "skip-connection", "--replot", "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not finished: no-skip seed 0 (0 of 1 epochs)" in err
    assert "Run its command again to resume it: mobilevit ablate skip-connection" in err

    assert main(cmd) == 0  # the same command again: resumes
    printed = capsys.readouterr().out
    assert "skip seed 0: finished earlier, kept" in printed and "no-skip seed 0: resuming from" in printed
    for n, (data, mtime) in kept.items():
        assert (done / n).read_bytes() == data and (done / n).stat().st_mtime_ns == mtime
    rows = [json.loads(x) for x in (stopped / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]
    assert json.loads((stopped / "summary.json").read_text())["global_step"] == 2
    # the resumed run ends where the uninterrupted one (the fixture's, same settings) ended
    a = load_file(str(stopped / "last.safetensors"))
    b = load_file(str(studies["skip-connection"] / "no-skip" / "seed0" / "last.safetensors"))
    assert max((a[k].double() - b[k].double()).abs().max().item() for k in a) <= 1e-6
    assert [r["variant"] for r in read_csv(out / "results.csv")] == ["skip", "no-skip"]

    # a folder holding runs made with other settings is refused, not mixed
    monkeypatch.setattr(ablate_run, "train", lambda *a, **k: pytest.fail("trained"))
    assert main([*cmd[:-4], "--epochs", "2", "--out-dir", str(out)]) == 2
    assert "was trained with other settings (optim.epochs: 1 there, 2 now)" in capsys.readouterr().err


# ------------------------------------------------------------------- bad input
BAD = [
    (["dropout"], "unknown study 'dropout'; studies: weight-decay, skip-connection, patch-size"),
    (["weight-decay", "--variants", "wd0.5"], "unknown variant(s) ['wd0.5'] of study weight-decay"),
    (["weight-decay", "--variants", "wd0.1,wd0.1"], "--variants lists ['wd0.1'] more than once"),
    (
        ["patch-size", "data.img_size=48", "--variants", "p8-4-2"],
        "variant p8-4-2: patch size 8x8 of stage 3 does not fit its 6x6 feature map (data.img_size=48",
    ),
    (
        ["patch-size", "data.img_size=48"],
        "variant p4-4-2: patch size 4x4 of stage 4 does not fit its 3x3 feature map",
    ),
    (["weight-decay", "--seeds", "0"], "--seeds must be at least 1, got 0"),
    (["weight-decay", "--epochs", "0"], "--epochs must be at least 1, got 0"),
    (
        ["weight-decay", "optim.weight_decay=0.05"],
        "sets optim.weight_decay, the knob study weight-decay varies",
    ),
    (
        ["skip-connection", "model.overrides={skip_connection: false}"],
        "sets model.overrides.skip_connection, the knob",
    ),
    (["patch-size", "model.overrides.patch_size=4"], "sets model.overrides.patch_size, the knob"),
    (["ema-label-smoothing", "ema.enabled=false"], "sets ema.enabled, the knob"),
    (["ema-label-smoothing", "optim={label_smoothing: 0.2}"], "sets optim.label_smoothing, the knob"),
    (["weight-decay", "optim.epochs=3", "--epochs", "2"], "contradictory: --epochs 2 and optim.epochs=3"),
    (
        ["weight-decay", "model.name=mobilevit_s", "--model", "mobilevit_xs"],
        "contradictory: --model mobilevit_xs",
    ),
    (
        ["weight-decay", "data.dataset=shapes", "--data", "digits"],
        "contradictory: --data digits and data.dataset",
    ),
    (["weight-decay", "--replot", "--epochs", "2"], "--replot redraws the study in its folder as it was run"),
    (["weight-decay", "run.out_dir=elsewhere"], "use --out-dir for the study's folder"),
    (
        ["weight-decay", "--data", "/no/such/folder"],
        "is neither a built-in set (digits, shapes) nor a folder",
    ),
    (["weight-decay", "--latency-iters", "5"], "--latency-iters only applies to studies that time"),
    (["weight-decay", "optim.bogus=1"], "unknown config key 'optim.bogus'"),
    (["weight-decay", "--model", "mobilevit_xxxl"], "model.name 'mobilevit_xxxl' is not a model"),
    (["weight-decay", "--replot"], "no study in"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_requests_fail_clearly_before_any_training(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ablate_run, "train", lambda *a, **k: pytest.fail("trained"))
    out = tmp_path / "out"
    assert main(["ablate", *args, "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mobilevit ablate: error: ") and message in err, err
    assert not out.exists()  # nothing written either


def test_a_study_file_may_change_its_knob_only(tmp_path):
    bad = tmp_path / "wd.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "study": "weight-decay",
                "recipe": str(RECIPE),
                "variants": {"a": {"optim.weight_decay": 0.1, "optim.lr": 1e-3}},
            }
        )
    )
    with pytest.raises(
        AblationError, match=r"variant 'a' must set exactly the study's knob\(s\) \['optim.weight_decay'\]"
    ):
        load_study(bad)
    bad.write_text(yaml.safe_dump({"study": "dropout", "recipe": str(RECIPE), "variants": {}}))
    with pytest.raises(AblationError, match="study 'dropout' is not one of"):
        load_study(bad)


# ---------------------------------------------------------------- study configs
def test_study_configs_are_the_recipe_with_only_the_knob_changed(tmp_path):
    """configs/ablations/*.yaml: the paper's variants, each the classification recipe with only
    the studied knob changed, the reference variant being the recipe itself."""
    assert sorted(p.stem for p in (REPO / "configs" / "ablations").glob("*.yaml")) == sorted(KINDS)
    recipe = flat(load_config(RECIPE).to_dict())
    values = {}
    for study, kind in KINDS.items():
        plan = plan_study(study, out_dir=str(tmp_path / study))
        assert plan.recipe == RECIPE.resolve() and plan.seeds == [0]
        for run in plan.runs:
            cfg = flat(run.cfg.to_dict())
            changed = {k for k in set(cfg) | set(recipe) if cfg.get(k) != recipe.get(k)}
            assert changed - {"run.out_dir", "data.root"} <= set(kind.knobs), (study, run.variant, changed)
            if run.variant == plan.spec.reference:
                assert changed <= {"run.out_dir", "data.root"} | {
                    k for k in kind.knobs if k.startswith("model.")
                }
        values[study] = [tuple(json.dumps(v.settings[k]) for k in kind.knobs) for v in plan.variants]
    assert sorted(values["weight-decay"]) == sorted([("0.1",), ("0.01",), ("0.001",), ("0.0001",)])
    assert sorted(values["skip-connection"]) == [("false",), ("true",)]
    assert {("[2, 2, 2]",), ("[8, 4, 2]",)} < set(values["patch-size"])
    assert sorted(values["ema-label-smoothing"]) == sorted(
        [("true", "0.1"), ("true", "0.0"), ("false", "0.1"), ("false", "0.0")]
    )


@pytest.mark.parametrize("output_stride", [32, 16])
def test_feature_map_sides_match_the_network(output_stride):
    model = create_model("mobilevit_xxs", output_stride=output_stride).eval()
    for size in (64, 70, 33, 96):
        with torch.no_grad():
            feats = model.forward_stages(torch.rand(1, 3, size, size), [2, 3, 4])
        sides = feature_map_sides(model, size)
        assert [sides[i] for i in (2, 3, 4)] == [f.shape[-1] for f in feats], size


def test_run_folders_are_compared_setting_by_setting(tmp_path):
    from mobilevit.engine.config import save_config

    save_config(load_config(RECIPE), tmp_path / "config.yaml")
    same = load_config(RECIPE, ["run.max_steps=3", "run.progress=false", "run.threads=1"])
    assert _config_diff(tmp_path / "config.yaml", same) == []  # how a run is driven: not a setting
    other = load_config(RECIPE, ["model.overrides={classifier_dropout: 0.2}", "data.img_size=80"])
    assert _config_diff(tmp_path / "config.yaml", other) == [
        "data.img_size: 64 there, 80 now",
        "model.overrides: {} there, {'classifier_dropout': 0.2} now",
    ]
