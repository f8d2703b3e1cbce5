"""The training engine: sampler, EMA, schedule, resume, DDP, bad data, non-finite loss, CLI."""

import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mobilevit import create_model
from mobilevit.cli import main
from mobilevit.data import DataError, MultiScaleBatchSampler, write_shapes
from mobilevit.data.sampler import batch_size_for
from mobilevit.engine import ConfigError, Trainer, TrainingError, load_config, train
from mobilevit.engine.ema import ModelEMA
from mobilevit.engine.optim import warmup_cosine

REPO = Path(__file__).resolve().parents[1]


def tiny_cfg(tmp_path, root, *extra):
    """An XXS run on a tiny folder at 32 px: a few steps an epoch, no workers."""
    return load_config(
        None,
        [
            "data.dataset=folder",
            f"data.root={root}",
            "data.img_size=32",
            "data.eval_resize=32",
            "data.batch_size=8",
            "data.resolutions=[32,48]",
            "data.num_workers=0",
            "model.name=mobilevit_xxs",
            "optim.epochs=2",
            "optim.warmup_iters=2",
            "ema.momentum=0.1",
            "run.progress=false",
            "run.threads=2",
            f"run.out_dir={tmp_path / 'run'}",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    return write_shapes(tmp_path_factory.mktemp("shapes"), size=32, train_per_class=8, val_per_class=3)


# ------------------------------------------------------------------------- sampler
def test_paper_batch_sizes():
    base = (256, 256)
    got = {r: batch_size_for(r, r, base, 128) for r in (160, 192, 256, 288, 320)}
    assert got == {160: 327, 192: 227, 256: 128, 288: 128, 320: 128} or got[160] in (327, 328)
    assert batch_size_for(160, 160, base, 128) == int(128 * 256 * 256 / (160 * 160))


def test_sampler_same_shapes_on_every_rank_disjoint_indices():
    kw = dict(num_samples=103, base_size=(64, 64), base_batch=4, resolutions=[48, 64, 80], seed=3)
    ranks = [MultiScaleBatchSampler(rank=r, world_size=2, **kw) for r in range(2)]
    for s in ranks:
        s.set_epoch(5)
    b0, b1 = list(ranks[0]), list(ranks[1])
    assert len(b0) == len(b1) > 0
    for x, y in zip(b0, b1, strict=True):
        assert (x[0].height, x[0].width, len(x)) == (y[0].height, y[0].width, len(y))
        assert len({(k.height, k.width) for k in x}) == 1
    i0 = {k.index for b in b0 for k in b}
    i1 = {k.index for b in b1 for k in b}
    assert not i0 & i1
    assert {len(b) for b in b0} <= {4, 7}  # 64*64*4/(48*48) = 7.1 -> 7; never below the base batch
    assert len({b[0].height for b in b0}) > 1  # the shape changes between steps
    # another epoch: another order; the same epoch again: the same batches
    ranks[0].set_epoch(6)
    assert [k.index for k in list(ranks[0])[0]] != [k.index for k in b0[0]]
    ranks[0].set_epoch(5, start_step=2)
    assert list(ranks[0]) == b0[2:]


def test_sampler_without_padding_covers_each_sample_once():
    parts = [
        MultiScaleBatchSampler(
            10, (32, 32), 3, shuffle=False, drop_last=False, rank=r, world_size=3, pad=False
        )
        for r in range(3)
    ]
    seen = sorted(k.index for p in parts for b in p for k in b)
    assert seen == list(range(10))


# -------------------------------------------------------------------- EMA, schedule
def test_ema_of_weights_and_buffers():
    model = create_model("mobilevit_xxs", num_classes=3)
    ema = ModelEMA(model, momentum=0.25)
    before = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        bn = model.stem.norm
        bn.running_mean.add_(2.0)
        bn.num_batches_tracked.fill_(7)
    ema.update(model)
    after = ema.module.state_dict()
    w = "stem.conv.weight"
    assert torch.allclose(after[w], before[w] + 0.25, atol=1e-6)
    assert torch.allclose(after["stem.norm.running_mean"], before["stem.norm.running_mean"] + 0.5, atol=1e-6)
    assert after["stem.norm.num_batches_tracked"].item() == 7
    assert not any(p.requires_grad for p in ema.module.parameters())
    warm = ModelEMA(model, momentum=5e-4, warmup=True)
    assert warm.current_momentum() == 1.0


def test_ema_warmup_is_timms_and_forgets_the_start():
    from timm.utils import ModelEmaV3

    model = torch.nn.Linear(2, 1, bias=False)
    ours = ModelEMA(model, momentum=5e-4, warmup=True)
    theirs = ModelEmaV3(model, decay=1 - 5e-4, use_warmup=True)  # timm's default power, 2/3
    for done in (0, 1, 10, 100, 1000, 30_000):  # updates done; timm's loop passes the 1-based count
        ours.updates = done
        assert ours.current_momentum() == pytest.approx(1 - theirs.get_decay(done + 1), rel=1e-9), done
    # a model that moves from 0 to 1 at its first step and stays there: after 1,000 updates the
    # EMA holds almost nothing of the start (the old 1 / (n + 1) ramp kept 1 / 1001 of it: 1e-3)
    ema = ModelEMA(model, momentum=1e-3, warmup=True)
    with torch.no_grad():
        ema.module.weight.zero_()
        model.weight.fill_(1.0)
    for _ in range(1000):
        ema.update(model)
    assert 1 - ema.module.weight.min().item() < 1e-6
    constant = ModelEMA(model, momentum=1e-3, warmup=False)
    assert constant.current_momentum() == 1e-3


def test_best_keeps_the_better_of_raw_and_ema_in_a_run_the_ema_cannot_follow(tmp_path, shapes_root):
    """An EMA far too slow for the run (constant momentum 1e-4: it stays the random start) must
    never be kept as best over better raw weights; the file records which weights it holds."""
    from mobilevit.engine.evaluate import evaluate_weights
    from mobilevit.weights import read_weights_meta

    cfg = tiny_cfg(
        tmp_path,
        shapes_root,
        "optim.epochs=3",
        "optim.lr=5e-3",
        "ema.momentum=1e-4",
        "ema.warmup=false",
    )
    summary = train(cfg)
    out = Path(summary["out_dir"])
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    best_meta = read_weights_meta(out / "best.safetensors").extra
    assert best_meta["weights"] in ("raw", "ema")
    ev = [f"data.root={shapes_root}", "data.img_size=32", "data.eval_resize=32", "data.num_workers=0"]
    best = evaluate_weights(out / "best.safetensors", overrides=ev + [f"run.out_dir={tmp_path / 'e1'}"])[
        "top1"
    ]
    last = evaluate_weights(out / "last.safetensors", overrides=ev + [f"run.out_dir={tmp_path / 'e2'}"])[
        "top1"
    ]
    assert best >= last
    kept = max(max(r["val_top1"], r["val_ema_top1"]) for r in rows)
    assert float(best_meta["val_top1"]) == pytest.approx(kept) == pytest.approx(best)
    chosen = max(rows, key=lambda r: max(r["val_top1"], r["val_ema_top1"]))
    expected = "raw" if chosen["val_top1"] > chosen["val_ema_top1"] else "ema"
    assert best_meta["weights"] == expected == summary["best_weights"]
    assert f"{expected} weights" in (out / "report.md").read_text()


def test_ema_model_recalibrates_a_copy_and_leaves_the_average(tmp_path, shapes_root):
    """``Trainer.ema_model(n)``: the averaged model as is for n = 0, else a copy whose BatchNorm
    statistics come from n training batches (the EMA itself untouched); None without EMA."""
    trainer = Trainer(tiny_cfg(tmp_path, shapes_root, "optim.epochs=1", "ema.recalibrate_bn=0"))
    trainer.fit()
    averaged = {k: v.clone() for k, v in trainer.ema.module.state_dict().items()}
    assert trainer.ema_model() is trainer.ema.module
    copy = trainer.ema_model(2)
    assert copy is not trainer.ema.module and not copy.training
    stats = [k for k in averaged if k.endswith("running_mean")]
    assert stats and any(not torch.equal(copy.state_dict()[k], averaged[k]) for k in stats)
    weights = [k for k in averaged if k.endswith("weight")]
    assert all(torch.equal(copy.state_dict()[k], averaged[k]) for k in weights)
    assert all(torch.equal(trainer.ema.module.state_dict()[k], v) for k, v in averaged.items())
    no_ema = Trainer(tiny_cfg(tmp_path / "b", shapes_root, "optim.epochs=1", "ema.enabled=false"))
    assert no_ema.ema_model(2) is None


def test_warmup_cosine_schedule_of_the_paper():
    total, warm = 10_000, 3000
    lr = [warmup_cosine(s, total, 2e-3, 2e-4, warm, 2e-4) for s in range(total + 1)]
    assert lr[0] == pytest.approx(2e-4)
    assert lr[1500] == pytest.approx(1.1e-3)
    assert lr[warm] == pytest.approx(2e-3)
    assert max(lr) == pytest.approx(2e-3)
    assert lr[warm + (total - warm) // 2] == pytest.approx(1.1e-3, rel=1e-3)
    assert lr[total] == pytest.approx(2e-4)
    assert all(a >= b for a, b in zip(lr[warm:], lr[warm + 1 :], strict=False))


# ---------------------------------------------------------------------- the loop
def test_train_writes_run_files_and_cli_eval_predict(tmp_path, shapes_root, capsys):
    cfg = tiny_cfg(tmp_path, shapes_root)
    summary = train(cfg)
    out = Path(summary["out_dir"])
    assert summary["epochs_done"] == 2 and summary["stopped"] is None
    for name in (
        "config.yaml",
        "metrics.csv",
        "metrics.jsonl",
        "curves.png",
        "report.md",
        "last.safetensors",
        "best.safetensors",
        "resume.pt",
    ):
        assert (out / name).is_file(), name
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"train_loss", "val_top1", "val_ema_top1", "lr"} <= set(rows[0])
    assert load_config(out / "config.yaml").data.root == str(shapes_root)  # resolved config, reloadable

    assert (
        main(
            [
                "eval",
                str(out / "best.safetensors"),
                f"data.root={shapes_root}",
                "data.img_size=32",
                "data.eval_resize=32",
                "data.num_workers=0",
                f"run.out_dir={tmp_path / 'ev'}",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["count"] == 12 and 0 <= res["top1"] <= 1
    img = next((shapes_root / "val" / "star").iterdir())
    assert main(["predict", str(img), "--weights", str(out / "best.safetensors")]) == 0
    printed = capsys.readouterr().out
    assert (
        str(img) in printed and sum(c in printed for c in ("star", "ellipse", "triangle", "rectangle")) == 4
    )
    # --json: standard output is the JSON alone (a missing file: its entry's error, a line on stderr)
    assert (
        main(
            [
                "predict",
                str(img),
                str(tmp_path / "gone.png"),
                "--weights",
                str(out / "best.safetensors"),
                "--json",
            ]
        )
        == 2
    )
    captured = capsys.readouterr()
    got = json.loads(captured.out)
    assert got[0]["image"] == str(img) and len(got[0]["top"]) == 4 and "error" in got[1]
    assert "gone.png: error" in captured.err


def test_resume_matches_an_uninterrupted_run(tmp_path, shapes_root):
    full = train(tiny_cfg(tmp_path / "a", shapes_root, "optim.accum_steps=2"))
    stopped = train(tiny_cfg(tmp_path / "b", shapes_root, "optim.accum_steps=2", "run.max_steps=2"))
    assert stopped["stopped"] == "run.max_steps=2" and stopped["epochs_done"] == 0
    resumed_cfg = tiny_cfg(tmp_path / "b", shapes_root, "optim.accum_steps=2")
    resumed = train(resumed_cfg, resume=tmp_path / "b" / "run" / "resume.pt")
    assert resumed["global_step"] == full["global_step"]
    a = load_file(str(tmp_path / "a" / "run" / "last.safetensors"))
    b = load_file(str(tmp_path / "b" / "run" / "last.safetensors"))
    assert a.keys() == b.keys()
    assert max((a[k].double() - b[k].double()).abs().max().item() for k in a) <= 1e-6
    ea = torch.load(tmp_path / "a" / "run" / "resume.pt", weights_only=True)["ema"]["module"]
    eb = torch.load(tmp_path / "b" / "run" / "resume.pt", weights_only=True)["ema"]["module"]
    assert max((ea[k].double() - eb[k].double()).abs().max().item() for k in ea) <= 1e-6


def test_bad_images_are_skipped_and_logged_then_fatal_past_the_limit(tmp_path, shapes_root, caplog):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(shapes_root, root)
    (root / "train" / "star" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # truncated
    (root / "train" / "ellipse" / "notes.jpg").write_text("not an image")
    caplog.set_level(logging.WARNING)
    summary = train(tiny_cfg(tmp_path, root, "data.max_bad_fraction=0.1", "optim.epochs=1"))
    assert summary["bad_files"] == 2
    assert "broken.png" in caplog.text and "notes.jpg" in caplog.text
    with pytest.raises(TrainingError, match="unreadable images .* exceed data.max_bad_fraction=0.0"):
        train(tiny_cfg(tmp_path / "strict", root, "data.max_bad_fraction=0", "optim.epochs=1"))


def test_empty_class_folder_and_missing_split_are_named(tmp_path, shapes_root):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(shapes_root, root)
    (root / "train" / "hexagon").mkdir()
    with pytest.raises(DataError, match="hexagon.*holds no images"):
        train(tiny_cfg(tmp_path, root))
    (root / "train" / "hexagon").rmdir()
    shutil.rmtree(root / "val")
    with pytest.raises(DataError, match="split 'val' not found.*found: \\['train'\\]"):
        train(tiny_cfg(tmp_path, root))


class FlakyLoss(torch.nn.Module):
    """Cross-entropy that returns NaN on the calls listed (or always)."""

    def __init__(self, nan_calls):
        super().__init__()
        self.calls, self.nan_calls = 0, nan_calls

    def forward(self, logits, y):
        self.calls += 1
        loss = torch.nn.functional.cross_entropy(logits, y)
        bad = self.nan_calls == "all" or self.calls in self.nan_calls
        return loss * float("nan") if bad else loss


def test_nonfinite_loss_skips_the_step(tmp_path, shapes_root, caplog):
    trainer = Trainer(tiny_cfg(tmp_path, shapes_root, "optim.epochs=1"))
    trainer.task.criterion = FlakyLoss({2})
    caplog.set_level(logging.WARNING)
    summary = trainer.fit()
    assert summary["stopped"] is None and "non-finite loss" in caplog.text and "step skipped" in caplog.text
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_nonfinite_losses_in_a_row_stop_the_run_keeping_the_checkpoint(tmp_path, shapes_root):
    trainer = Trainer(tiny_cfg(tmp_path, shapes_root, "optim.epochs=3", "run.max_nonfinite=2"))
    trainer.task.criterion = FlakyLoss(set())
    trainer.train_one_epoch()  # one good epoch, then a checkpoint as fit() would write it
    trainer.state.epoch, trainer.state.step_in_epoch = 1, 0
    trainer.write_resume()
    good = (trainer.out / "resume.pt").read_bytes()
    trainer.task.criterion = FlakyLoss("all")
    with pytest.raises(TrainingError, match="2 non-finite losses in a row; stopping.*resume.pt"):
        trainer.fit()
    assert (trainer.out / "resume.pt").read_bytes() == good


@pytest.mark.parametrize(
    "override, msg",
    [
        ("optim.lr=-0.1", "optim.lr must be positive"),
        ("data.img_size=0", "data.img_size must be positive"),
        (
            "optim.learning_rate=1",
            "unknown config key 'optim.learning_rate'; accepted under optim.: epochs, lr",
        ),
        ("model.name=resnet50", "model.name 'resnet50' is not a model"),
        ("data.dataset=imagenet", "data.dataset must be folder, digits or shapes"),
    ],
)
def test_bad_config_fails_before_any_work(tmp_path, override, msg, capsys):
    out = tmp_path / "never"
    assert main(["train", "data.dataset=digits", f"run.out_dir={out}", override]) == 2
    assert msg in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(ConfigError):
        load_config(None, ["data.dataset=digits", override])


def test_recipes_load():
    from mobilevit.engine.config import read_recipe

    for path in sorted((REPO / "configs").glob("*.yaml")):
        needs_root = read_recipe(path).get("data", {}).get("root") == ""  # "required: data.root=..."
        cfg = load_config(path, ["data.root=/data/imagenet"] if needs_root else [])
        assert cfg.optim.epochs > 0, path


# ------------------------------------------------------------------- processes
def _run_cli(args, env_extra=None, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    return subprocess.Popen(
        [sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw
    )


def _tiny_args(tmp_path, root, *extra):
    return [
        "data.dataset=folder",
        f"data.root={root}",
        "data.img_size=32",
        "data.eval_resize=32",
        "data.batch_size=4",
        "data.resolutions=[32,48]",
        "data.num_workers=0",
        "model.name=mobilevit_xxs",
        "optim.warmup_iters=2",
        "run.progress=false",
        "run.threads=1",
        f"run.out_dir={tmp_path / 'run'}",
        *extra,
    ]


@pytest.mark.subprocess
def test_ddp_two_processes_on_cpu(tmp_path, shapes_root):
    args = [
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "mobilevit.cli",
        "train",
        *_tiny_args(tmp_path, shapes_root, "optim.epochs=1"),
    ]
    proc = _run_cli(args)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    report = (tmp_path / "run" / "report.md").read_text()
    assert "processes: 2" in report
    summary = json.loads([line for line in out.splitlines() if line.startswith('{"epochs_done"')][0])
    # 32 training images over 2 ranks: 16 each, in batches of 4 (48 px would give fewer than
    # the base batch, so it stays 4) -> 4 steps; one process alone would take 8
    assert summary["epochs_done"] == 1 and summary["global_step"] == 4
    assert (tmp_path / "run" / "best.safetensors").is_file()


@pytest.mark.slow
@pytest.mark.subprocess
def test_sigterm_writes_a_resume_file(tmp_path, shapes_root):
    proc = _run_cli(["-m", "mobilevit.cli", "train", *_tiny_args(tmp_path, shapes_root, "optim.epochs=200")])
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while not metrics.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3, out
    assert "SIGTERM received" in out and "resume file" in out
    state = torch.load(tmp_path / "run" / "resume.pt", weights_only=True)["train_state"]
    assert state["epoch"] >= 1 and math.isfinite(state["best_score"])


@pytest.mark.slow
@pytest.mark.subprocess
def test_sigterm_to_the_process_group_spares_the_loader_workers(tmp_path, shapes_root):
    # Ctrl-C, a batch scheduler or a session's end signal every process of the group, the
    # loader workers included: the run must still finish its step and write the resume file
    args = _tiny_args(tmp_path, shapes_root, "optim.epochs=200", "data.num_workers=2")
    proc = _run_cli(["-m", "mobilevit.cli", "train", *args], start_new_session=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while not metrics.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 3, out
    assert "SIGTERM received" in out and "Traceback" not in out and "killed by signal" not in out
    assert torch.load(tmp_path / "run" / "resume.pt", weights_only=True)["train_state"]["epoch"] >= 1


def test_bf16_autocast_and_channels_last_run(tmp_path, shapes_root):
    summary = train(
        tiny_cfg(tmp_path, shapes_root, "optim.epochs=1", "run.bf16=true", "run.channels_last=true")
    )
    assert summary["epochs_done"] == 1 and summary["stopped"] is None
    w = load_file(str(tmp_path / "run" / "last.safetensors"))
    assert all(torch.isfinite(v).all() for v in w.values() if v.is_floating_point())


def test_overrides_may_follow_options(tmp_path, capsys):
    # `train --config X key=value` (argparse alone refuses positionals after an option)
    out = tmp_path / "never"
    assert (
        main(
            [
                "train",
                "--config",
                str(REPO / "configs" / "demo_digits.yaml"),
                f"run.out_dir={out}",
                "optim.lr=-1",
            ]
        )
        == 2
    )
    assert "optim.lr must be positive" in capsys.readouterr().err and not out.exists()
    with pytest.raises(SystemExit):
        main(["train", "--config", str(REPO / "configs" / "demo_digits.yaml"), "--no-such-flag"])
