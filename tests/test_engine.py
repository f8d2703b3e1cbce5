"""The one training engine across tasks: resume files that cannot run code, SIGTERM + resume,
gradient accumulation, DDP agreement on non-finite losses, restarts under torchrun, atomic
resume writes, config keys that are all honoured, recipe errors, and the weights schema."""

import copy
import dataclasses
import json
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
from mobilevit.data import write_shapes
from mobilevit.data.synthetic import write_shapes_coco, write_shapes_voc
from mobilevit.engine import ConfigError, Trainer, TrainingError, load_config, train
from mobilevit.engine import config as C
from mobilevit.engine.checkpoint import ResumeError, load_resume
from mobilevit.loading import load_model
from mobilevit.weights.serialization import WeightsMeta, read_weights_meta, save_weights

REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).parent / "workers" / "engine_worker.py"


# ------------------------------------------------------------------------------- tiny runs
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine_data")
    return {
        "classification": write_shapes(root / "cls", size=32, train_per_class=8, val_per_class=2),
        "segmentation": write_shapes_voc(root / "voc", size=64, n_train=16, n_val=3),
        "detection": write_shapes_coco(root / "coco", size=96, n_train=16, n_val=3, seed=1),
    }


def overrides(task, data, out, *extra):
    """A few steps an epoch for each task (XXS backbones, 4 images a batch, no workers)."""
    common = ["optim.warmup_iters=2", "run.progress=false", "run.threads=1", f"run.out_dir={out}"]
    common += ["data.batch_size=4", "data.num_workers=0", "ema.momentum=0.1"]
    per_task = {
        "classification": [
            "data.dataset=folder", f"data.root={data['classification']}", "data.img_size=32",
            "data.eval_resize=32", "data.resolutions=[32]", "model.name=mobilevit_xxs",
        ],
        "segmentation": [
            "task=segmentation", "data.dataset=shapes", f"data.root={data['segmentation']}",
            "data.builtin_size=64", "data.builtin_train=16", "data.builtin_val=3", "data.crop_size=64",
            "data.eval_size=64", "model.name=deeplabv3_mobilevit_xxs", "model.num_classes=5",
        ],
        "detection": [
            "task=detection", "data.dataset=shapes", f"data.root={data['detection']}",
            "data.builtin_size=96", "data.builtin_train=16", "data.builtin_val=3", "data.image_size=96",
            "data.eval_batch_size=3", "model.name=ssdlite_mobilevit_xxs", "model.num_classes=5",
        ],
    }  # fmt: skip
    return [*common, *per_task[task], *extra]


def cfg_for(task, data, out, *extra):
    return load_config(None, overrides(task, data, out, *extra))


TASKS = ("classification", "segmentation", "detection")


def max_weight_diff(a: Path, b: Path) -> float:
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    return max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa)


# ------------------------------------------------------------------ resume files run no code
class RunsCode:
    """Unpickling this opens (creates) a file: proof that the full unpickler ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def evil_file(path: Path, marker: Path) -> Path:
    torch.save({"model": {"w": torch.zeros(1)}, "payload": RunsCode(marker)}, path)
    return path


def test_resume_file_holds_tensors_and_plain_values_only(tmp_path, data):
    train(cfg_for("classification", data, tmp_path / "run", "optim.epochs=1"))
    state = torch.load(tmp_path / "run" / "resume.pt", weights_only=True)  # raises if anything else
    assert state["format"] == "mobilevit-resume" and state["task"] == "classification"
    assert {"model", "optimizer", "scheduler", "ema", "train_state", "rng", "config"} <= set(state)
    assert isinstance(state["rng"]["numpy"]["keys"], torch.Tensor)


def test_a_pickle_that_runs_code_is_refused_everywhere(tmp_path, data, capsys):
    marker = tmp_path / "pwned"
    evil = evil_file(tmp_path / "evil.pt", marker)
    run = tmp_path / "run"
    cls = overrides("classification", data, run, "optim.epochs=1")

    with pytest.raises(
        ResumeError, match=r"refused, it holds objects \(io.open\) that only the full unpickler"
    ):
        load_resume(evil)
    assert main(["train", *cls, "--resume", str(evil)]) == 2
    assert "evil.pt: refused" in capsys.readouterr().err
    assert main(["convert", str(evil), str(tmp_path / "out.safetensors")]) == 2
    assert "evil.pt: holds objects (io.open) other than tensors" in capsys.readouterr().err
    assert main(["eval", str(evil), *cls[4:]]) == 2
    assert "evil.pt" in capsys.readouterr().err
    assert main(["predict", str(REPO / "README.md"), "--weights", str(evil)]) == 2
    assert "evil.pt" in capsys.readouterr().err
    with pytest.raises(ValueError, match="evil.pt"):
        create_model("mobilevit_xxs", pretrained=evil)
    pytest.importorskip("torchao")
    from mobilevit.export import load_int8_torch

    with pytest.raises(ValueError, match="evil.pt2 is not a torch.export program"):
        load_int8_torch(evil_file(tmp_path / "evil.pt2", marker))
    assert not marker.exists()
    assert not (run / "last.safetensors").exists()  # refused before any training


def test_resume_files_that_are_not_ours(tmp_path):
    with pytest.raises(ResumeError, match="not found"):
        load_resume(tmp_path / "nothing.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x80\x04 not really")
    with pytest.raises(ResumeError, match="junk.pt: not a readable resume file"):
        load_resume(tmp_path / "junk.pt")
    torch.save({"model": {"w": torch.zeros(2)}}, tmp_path / "plain.pt")
    with pytest.raises(ResumeError, match="plain.pt: not a mobilevit resume file"):
        load_resume(tmp_path / "plain.pt")


# ------------------------------------------------------------------ SIGTERM, then resume
def _term_at(trainer: Trainer, call: int) -> None:
    loss, calls = trainer.task.loss, [0]

    def wrapped(model, batch):
        calls[0] += 1
        if calls[0] == call:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler flags it; the loop stops at the step's end
        return loss(model, batch)

    trainer.task.loss = wrapped


@pytest.mark.parametrize(
    "task", ["classification", *(pytest.param(t, marks=pytest.mark.slow) for t in TASKS[1:])]
)  # the everyday tier keeps one resume
def test_sigterm_mid_epoch_then_resume_equals_an_uninterrupted_run(task, tmp_path, data):
    extra = ("optim.epochs=2", "optim.accum_steps=2") if task == "classification" else ("optim.epochs=2",)
    full = train(cfg_for(task, data, tmp_path / "full", *extra))
    assert full["stopped"] is None

    first = Trainer(cfg_for(task, data, tmp_path / "cut", *extra))
    steps_per_epoch = len(first.train_sampler)
    _term_at(first, steps_per_epoch + 2)  # in the second epoch
    stopped = first.fit()
    assert stopped["stopped"] == "SIGTERM" and stopped["epochs_done"] == 1
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored

    resumed = train(cfg_for(task, data, tmp_path / "cut", *extra))  # run.auto_resume: same folder
    assert resumed["global_step"] == full["global_step"] and resumed["stopped"] is None
    assert (
        max_weight_diff(tmp_path / "full" / "last.safetensors", tmp_path / "cut" / "last.safetensors") <= 1e-6
    )
    ema_a = torch.load(tmp_path / "full" / "resume.pt", weights_only=True)["ema"]["module"]
    ema_b = torch.load(tmp_path / "cut" / "resume.pt", weights_only=True)["ema"]["module"]
    assert max((ema_a[k].double() - ema_b[k].double()).abs().max().item() for k in ema_a) <= 1e-6
    rows = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]


def test_a_resumed_epoch_records_the_time_of_every_part(tmp_path, data):
    out = tmp_path / "run"
    slow = Trainer(cfg_for("classification", data, out, "optim.epochs=1", "run.max_steps=3"))
    loss = slow.task.loss
    slow.task.loss = lambda model, batch: (time.sleep(1.0), loss(model, batch))[1]  # 3 slow steps
    first = slow.fit()
    assert first["stopped"] == "run.max_steps=3" and first["epochs_done"] == 0
    before = torch.load(out / "resume.pt", weights_only=True)["train_state"]["epoch_seconds"]
    assert 3.0 <= before <= first["seconds"]  # the stopped part, kept in the resume file
    assert train(cfg_for("classification", data, out, "optim.epochs=1"))["stopped"] is None
    (row,) = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert row["epoch_seconds"] > before  # both parts (the fast rest alone took well under 3 s)
    assert torch.load(out / "resume.pt", weights_only=True)["train_state"]["epoch_seconds"] == 0.0


def test_auto_resume_refuses_a_folder_of_another_config(tmp_path, data):
    out = tmp_path / "run"
    first = train(cfg_for("classification", data, out, "optim.epochs=2", "run.max_steps=3"))
    assert first["stopped"] == "run.max_steps=3"
    with pytest.raises(
        TrainingError, match=r"another config \(optim.lr: 0.002 -> 0.001\).*auto_resume=false"
    ):
        Trainer(cfg_for("classification", data, out, "optim.epochs=2", "optim.lr=1e-3"))
    fresh = Trainer(cfg_for("classification", data, out, "optim.epochs=2", "run.auto_resume=false"))
    assert fresh.state.global_step == 0
    again = Trainer(cfg_for("classification", data, out, "optim.epochs=2", "run.threads=2"))  # volatile key
    assert again.state.global_step == 3


def test_a_fresh_start_in_a_used_folder_keeps_only_its_own_metrics(tmp_path, data):
    out = tmp_path / "run"
    assert train(cfg_for("classification", data, out, "optim.epochs=1"))["stopped"] is None
    assert (
        train(cfg_for("classification", data, out, "optim.epochs=1", "run.auto_resume=false"))["stopped"]
        is None
    )
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1]  # not the first run's row and then its own
    assert len((out / "metrics.csv").read_text().splitlines()) == 2  # header + one row


# ------------------------------------------------------------------ gradient accumulation
@pytest.mark.parametrize("task", TASKS)
def test_accumulation_averages_its_micro_batches(task, tmp_path, data):
    trainer = Trainer(
        cfg_for(task, data, tmp_path / "run", "optim.epochs=1", "optim.accum_steps=4", "ema.enabled=false")
    )
    start = copy.deepcopy(trainer.model)
    loss, micro = trainer.task.loss, []

    def recording(model, batch):
        micro.append((batch, torch.get_rng_state()))
        return loss(model, batch)

    trainer.task.loss = recording
    first_update, steps = {}, [0]

    def before_step(opt, args, kwargs):
        steps[0] += 1
        if not first_update:
            first_update.update(
                {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
            )

    trainer.optimizer.register_step_pre_hook(before_step)
    summary = trainer.fit()
    n = len(micro)
    assert n == len(trainer.train_sampler) and steps[0] == summary["global_step"] == math.ceil(n / 4)

    # the first update's gradient is the mean of its four micro-batches' gradients
    start.train()
    expected = {k: torch.zeros_like(v) for k, v in first_update.items()}
    for batch, rng in micro[:4]:
        torch.set_rng_state(rng)  # the same dropout masks
        start.zero_grad(set_to_none=True)
        loss(start, batch).loss.backward()
        params = dict(start.named_parameters())
        for k in expected:
            expected[k] += params[k].grad / 4
    worst = max(
        ((first_update[k] - expected[k]).abs().max() / (expected[k].abs().max() + 1e-8)).item()
        for k in expected
    )
    assert worst <= 1e-4


# ------------------------------------------------------------------ torchrun: DDP and restarts
def _torchrun(nproc: int, args: list[str], *extra: str, timeout: int = 300) -> str:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *extra]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [*cmd, str(WORKER), *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_rank_local_nonfinite_loss_skips_the_same_step_on_both_ranks(tmp_path, data):
    res = tmp_path / "result.json"
    args = overrides("classification", data, tmp_path / "run", "optim.epochs=1")
    out = _torchrun(2, ["nonfinite", str(res), *args])
    r0, r1 = (json.loads(Path(f"{res}.rank{i}").read_text()) for i in range(2))
    assert r0["skipped_steps"] == r1["skipped_steps"] == 1
    assert r0["global_step"] == r1["global_step"] == 4  # 32 images, 2 ranks, batches of 4
    assert r0["checksum"] == pytest.approx(r1["checksum"], rel=1e-9, abs=1e-9)  # still in sync
    assert math.isfinite(r0["checksum"]) and "optimizer step skipped on every rank" in out


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_worker_killed_mid_run_is_restarted_by_torchrun_and_ends_as_an_uninterrupted_run(tmp_path, data):
    args = overrides("classification", data, tmp_path / "run", "optim.epochs=2")
    res = tmp_path / "result.json"
    _torchrun(1, ["kill-once", str(res), *args], "--max-restarts=1", timeout=400)
    r = json.loads(Path(f"{res}.rank0").read_text())
    assert r["attempt"] == 1 and r["stopped"] is None and r["epochs_done"] == 2
    assert r["calls"] == 8  # the restart continued from the end of epoch 1: one epoch of 8 micro-batches
    full = train(cfg_for("classification", data, tmp_path / "full", "optim.epochs=2"))
    assert r["global_step"] == full["global_step"]
    assert (
        max_weight_diff(tmp_path / "full" / "last.safetensors", tmp_path / "run" / "last.safetensors") <= 1e-6
    )


# ------------------------------------------------------------------ kill -9 while writing
BIG = torch.arange(4_000_000, dtype=torch.float64)
WRITER = """
import sys, torch
from mobilevit.engine.checkpoint import save_resume
path, i = sys.argv[1], 0
big = torch.arange(4_000_000, dtype=torch.float64)
while True:
    i += 1
    save_resume(path, {"i": i, "big": big + i})
    print(i, flush=True)
"""


@pytest.mark.slow
@pytest.mark.subprocess
def test_kill_9_never_leaves_a_broken_resume_file(tmp_path):
    path = tmp_path / "resume.pt"
    last = 0
    for delay in (0.0, 0.03, 0.07, 0.11, 0.19):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        written = [int(proc.stdout.readline())]  # one file written: from here on a kill lands anywhere
        time.sleep(delay)
        proc.kill()  # SIGKILL: often inside torch.save or the rename
        written += [int(x) for x in proc.communicate()[0].split()]
        state = load_resume(path)  # the previous file or the new one, whole
        assert state["i"] in (written[-1], written[-1] + 1)
        assert torch.equal(state["big"], BIG + state["i"])
        assert state["i"] >= last
        last = state["i"]
    assert len(list(tmp_path.glob(".resume.pt.*.tmp"))) <= 1  # stale temp files are cleared


# ------------------------------------------------------------------ every config key honoured
def _record_reads(monkeypatch):
    """Record which config fields the engine reads (validation and saving aside)."""
    reads: set[tuple[str, str]] = set()
    skip = (C.__file__, dataclasses.__file__)
    classes = [v for v in vars(C).values() if dataclasses.is_dataclass(v) and isinstance(v, type)]

    def getter(self, name):
        fields = type(self).__dataclass_fields__
        if name in fields and sys._getframe(1).f_code.co_filename not in skip:
            reads.add((type(self).__name__, name))
        return object.__getattribute__(self, name)

    for cls in classes:
        monkeypatch.setattr(cls, "__getattribute__", getter, raising=False)
    return classes, reads


def _fields_of(cfg) -> set[tuple[str, str]]:
    out = set()
    for f in dataclasses.fields(cfg):
        value = object.__getattribute__(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out |= {(type(value).__name__, g.name) for g in dataclasses.fields(value)}
    return out


# Some keys are read only in one mode (the builtin_* sizes for a generated set, the COCO paths for
# a COCO folder): each task trains in one mode and is evaluated in the other.
READS_RUNS = {
    "classification": (
        ["data.dataset=folder"],
        ["data.dataset=shapes", "data.root={tmp}/shapes", "data.builtin_size=32"],
    ),
    "segmentation": (["data.dataset=shapes"], ["data.dataset=voc"]),
    "detection": (
        [
            "data.dataset=coco", "data.train_images=train", "data.val_images=val",
            "data.train_annotations=annotations/instances_train.json",
            "data.val_annotations=annotations/instances_val.json",
        ],
        ["data.dataset=shapes"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("task", TASKS)
def test_every_config_key_is_read_by_the_engine(task, tmp_path, data, monkeypatch):
    train_mode, eval_mode = READS_RUNS[task]
    extra = ["optim.epochs=1", "ema.recalibrate_bn=1", "run.max_steps=1000", *train_mode]
    cfg = cfg_for(task, data, tmp_path / "run", *extra)
    _, reads = _record_reads(monkeypatch)
    train(cfg)
    weights = tmp_path / "run" / "best.safetensors"
    ev = [o.format(tmp=tmp_path) for o in eval_mode]
    assert main(["eval", str(weights), *overrides(task, data, tmp_path / "ev")[3:], *ev]) == 0
    never = sorted(f"{cls}.{name}" for cls, name in _fields_of(cfg) - reads)
    assert never == [], f"accepted but never read: {never}"


KEPT_MEMORY = """
import resource, sys, torch
from mobilevit.engine.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):  # the first rounds settle where the block lands (torch's own first allocations)
    x = torch.ones(64 << 18)  # 64 Mi floats: 256 MiB, far above glibc's own mmap threshold (32 MiB at most)
    del x
before = faults()
x = torch.ones(64 << 18)  # the same size again, every page written
print(faults() - before)
"""
THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


@pytest.mark.subprocess
@pytest.mark.skipif(
    sys.platform != "linux" or os.confstr("CS_GNU_LIBC_VERSION") is None, reason="glibc's malloc only"
)
@pytest.mark.skipif(
    THP.exists() and "[always]" in THP.read_text(),
    reason="transparent huge pages always on: a block faults in 2 MiB at a time, uncountable here",
)
def test_keep_freed_memory_reuses_a_freed_block_without_page_faults():
    """A step's activations freed and allocated again: without the engine's malloc thresholds
    glibc unmaps the block and the next one faults in anew (256 MiB: 65,536 pages of 4 KiB, a
    fault per page or per few pages); with them the block is reused (engine/memory.py)."""

    def faults(mode: str) -> int:
        run = subprocess.run([sys.executable, "-c", KEPT_MEMORY, mode], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return int(run.stdout.split()[-1])

    # without: one fault per page or per small group of pages (the kernel's fault-around)
    assert faults("default") > 10_000  # what the test measures does happen without the setting
    assert faults("keep") < 1_000


# ------------------------------------------------------------------ recipes
def test_a_recipe_that_is_not_yaml_or_not_a_mapping_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: mobilevit_xxs\noptim: [lr: 1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: not valid YAML"):
        load_config(bad)
    assert main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.yaml:" in err and "Traceback" not in err
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="list.yaml:1: a recipe must be a mapping"):
        load_config(listed)
    with pytest.raises(ConfigError, match=r"override 'optim.betas=\[0.9': the value is not valid YAML"):
        load_config(None, ["data.dataset=digits", "optim.betas=[0.9"])


# ------------------------------------------------------------------ the weights schema
def test_weights_meta_round_trips_and_old_files_still_load(tmp_path):
    meta = WeightsMeta(
        "mobilevit_xxs", num_classes=3, classes=["a", "b", "c"], extra={"img_size": 64, "epoch": 2}
    )
    assert WeightsMeta.from_metadata(meta.to_metadata()) == meta
    # a classifier written by the writer before this schema: no task, numbers as strings
    model = create_model("mobilevit_xxs", num_classes=3)
    old = {"format": "mobilevit", "arch": "mobilevit_xxs", "num_classes": "3", "classes": '["a", "b", "c"]'}
    old |= {"model_overrides": "{}", "channel_order": "RGB", "img_size": "64", "eval_resize": "96"}
    save_weights(model.state_dict(), tmp_path / "old.safetensors", old)
    loaded, got = load_model(tmp_path / "old.safetensors")
    assert got.task == "classification" and got.classes == ["a", "b", "c"] and got.extra["img_size"] == 64
    assert loaded.pretrained_cfg["crop_size"] == 64 and loaded.pretrained_cfg["resize_size"] == 96
    assert read_weights_meta(tmp_path / "old.safetensors") == WeightsMeta.from_metadata(old)
    with pytest.raises(ValueError, match="would overwrite"):
        WeightsMeta("mobilevit_xxs", extra={"task": "x"}).to_metadata()


def test_eval_builds_no_trainer(tmp_path, data, monkeypatch, capsys):
    train(cfg_for("classification", data, tmp_path / "run", "optim.epochs=1"))

    def no_trainer(*a, **k):
        raise AssertionError("eval built a trainer")

    monkeypatch.setattr(Trainer, "__init__", no_trainer)
    ev = overrides("classification", data, tmp_path / "ev")[3:]
    assert main(["eval", str(tmp_path / "run" / "best.safetensors"), *ev]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["task"] == "classification" and res["count"] == 8 and 0 <= res["top1"] <= 1


# ------------------------------------------------------------------ the v2 recipe's augmentation
def test_randaugment_erasing_mixup_cutmix(tmp_path, data):
    from PIL import Image

    from mobilevit.data import BatchMix, TrainTransform
    from mobilevit.data.sampler import SampleKey

    image = Image.open(next((data["classification"] / "train" / "star").iterdir())).convert("RGB")
    strong, plain = TrainTransform(randaugment=True, random_erase=1.0), TrainTransform()
    key = SampleKey(0, 32, 32, 7)
    assert torch.equal(strong(image, key), strong(image, key))  # per-sample seeded, as before
    assert not torch.equal(strong(image, key), plain(image, key))
    x, y = torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 3, 0, 1])
    mixed, soft = BatchMix(4, mixup_alpha=0.2, cutmix_alpha=1.0)(x, y)
    assert soft.shape == (6, 4) and torch.allclose(soft.sum(1), torch.ones(6)) and not torch.equal(mixed, x)
    off = BatchMix(4)
    assert not off.enabled and off(x, y)[1] is y
    with pytest.raises(ConfigError, match="data.random_erase must be a probability"):
        load_config(None, ["data.dataset=digits", "data.random_erase=2"])
    aug = ["data.randaugment=true", "data.random_erase=0.25", "data.mixup_alpha=0.2", "data.cutmix_alpha=1.0"]
    full = train(cfg_for("classification", data, tmp_path / "full", "optim.epochs=2", *aug))
    assert full["stopped"] is None and math.isfinite(
        json.loads((tmp_path / "full" / "metrics.jsonl").read_text().splitlines()[-1])["train_loss"]
    )
    # the mixing draws come from the global RNG, which resume files carry: a cut run resumes exactly
    first = Trainer(cfg_for("classification", data, tmp_path / "cut", "optim.epochs=2", *aug))
    _term_at(first, len(first.train_sampler) + 2)
    assert first.fit()["stopped"] == "SIGTERM"
    train(cfg_for("classification", data, tmp_path / "cut", "optim.epochs=2", *aug))
    assert (
        max_weight_diff(tmp_path / "full" / "last.safetensors", tmp_path / "cut" / "last.safetensors") <= 1e-6
    )


def test_the_v2_recipe_loads():
    cfg = load_config("imagenet_mobilevitv2_100")  # a built-in recipe, by name
    assert cfg.model.name == "mobilevitv2_100" and cfg.data.interpolation == "bicubic"
    assert (cfg.data.mixup_alpha, cfg.data.cutmix_alpha, cfg.data.random_erase) == (0.2, 1.0, 0.25)
    assert cfg.optim.grad_clip == 10.0 and cfg.optim.warmup_iters == 20000 and not cfg.data.multiscale
