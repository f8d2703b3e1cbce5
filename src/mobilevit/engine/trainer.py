"""The one training loop, for every task: the paper's recipe (Section 4.1) on one CPU, one GPU or
many (torchrun), with the task (classification, segmentation, detection) as a plug-in.

AdamW + per-step linear warmup then cosine, gradient accumulation (``optim.accum_steps``), EMA
of weights and BN buffers evaluated beside the raw model (the best kept as
``best.safetensors``), the multi-scale variable-batch sampler (one shape for the downstream
tasks), optional bf16 autocast and channels_last, DDP. Faults: unreadable samples are skipped
and logged (fatal past ``data.max_bad_fraction`` where the task has it); a non-finite loss on
any rank skips that optimizer step on every rank, and ``run.max_nonfinite`` in a row stop the
run; SIGINT / SIGTERM and ``run.max_steps`` stop at the next optimizer step and write a resume
file; a run folder that holds a resume file of the same config continues from it
(``run.auto_resume``), so restarted torchrun workers pick up where they died.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from contextlib import nullcontext, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data import MultiScaleBatchSampler
from ..layout import channels_last_pays
from ..models import create_model
from ..weights import WeightsMeta, write_weights
from . import dist as D
from .checkpoint import RESUME_NAME, load_resume, rng_state, save_resume, set_rng_state
from .config import AnyTrainConfig, save_config
from .ema import ModelEMA, recalibrated_copy
from .errors import TrainingError
from .memory import keep_freed_memory
from .metrics import MetricsLog, plot_curves
from .optim import build_scheduler
from .tasks import TASKS, RunContext, Task

log = logging.getLogger("mobilevit.train")

# Settings that do not change what a run computes: a run folder made with other values of these
# is still the same run (e.g. one stopped by run.max_steps continues without it).
VOLATILE_KEYS = frozenset(
    {
        "run.max_steps",
        "run.progress",
        "run.log_every",
        "run.threads",
        "run.keep_freed_memory",
        "run.max_nonfinite",
        "run.auto_resume",
        "run.device",
        "run.out_dir",
        "data.num_workers",
    }
)


@dataclass
class TrainState:
    """The loop's counters; saved in the resume file."""

    epoch: int = 0  # current epoch (0-based)
    step_in_epoch: int = 0  # micro-batches already done in this epoch
    global_step: int = 0  # optimizer steps (skipped ones included: the schedule stays on time)
    best_score: float = -1.0
    best_epoch: int = -1
    best_weights: str = ""  # raw | ema: which weights best.safetensors holds
    nonfinite_in_row: int = 0
    skipped_steps: int = 0  # optimizer steps skipped for a non-finite loss
    bad_files: list[str] = field(default_factory=list)
    seen_files: int = 0
    epoch_seconds: float = 0.0  # time earlier processes spent in the current epoch (a stopped run)


def use_channels_last(setting: str, device: torch.device, bf16: bool = False) -> bool:
    """``run.channels_last`` resolved: ``auto`` is on for CPU runs where PyTorch has oneDNN (its
    channels-last convolution kernels skip the layout reorders of its NCHW path, forward and
    backward) and for bf16 on CUDA (tensor-core convolutions are NHWC).

    Args:
        setting: ``auto``, ``true`` or ``false``.
        device: the run's device.
        bf16: bf16 autocast is on.

    Returns:
        Whether the run uses channels-last memory.
    """
    if setting != "auto":
        return setting == "true"
    if device.type == "cpu":
        return channels_last_pays()  # the inference path's rule: oneDNN runs the convolutions
    return device.type == "cuda" and bf16


@dataclass
class Window:
    """The micro-batches of one optimizer step: all finite so far, and any trained on."""

    ok: bool = True
    used: bool = False


def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"run": {"seed": 0}}`` -> ``{"run.seed": 0}`` (config overrides stay one value)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and not key.endswith("overrides") and not key.endswith(".ssd"):
            out.update(flat(v, key + "."))
        else:
            out[key] = v
    return out


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The config keys (volatile ones aside) whose values differ, as ``key: saved -> current``."""
    a, b = flat(saved), flat(current)
    keys = sorted((set(a) | set(b)) - VOLATILE_KEYS)
    return [f"{k}: {a.get(k, '<unset>')!r} -> {b.get(k, '<unset>')!r}" for k in keys if a.get(k) != b.get(k)]


def _worker_in_its_own_process_group(worker_id: int) -> None:  # noqa: ARG001
    """A loader worker leaves the main process's group: Ctrl-C, or a scheduler or session that
    signals the whole group, then reaches the main process alone, which finishes its step and
    writes the resume file. A worker killed beside it would end the run in a "DataLoader worker
    killed" error first. The main process still stops its workers itself, and a worker exits on
    its own when the main process dies."""
    os.setpgrp()


def build_loader(ds: Any, sampler: MultiScaleBatchSampler, task: Task, workers: int, seed: int) -> DataLoader:
    """A loader over ``ds`` batched by ``sampler`` and collated by the task.

    Args:
        ds: a dataset indexed by the sampler's keys.
        sampler: the multi-scale batch sampler.
        task: the task plug-in (its ``collate``).
        workers: loader worker processes.
        seed: seeds the workers' base seed.

    Returns:
        The DataLoader.
    """
    # The loader draws its workers' base seed from this generator, not from the global RNG: a
    # resumed run then consumes the global RNG (dropout) exactly as an uninterrupted one. The
    # samples' own randomness comes from their keys' seeds.
    return DataLoader(
        ds,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=task.collate,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=workers > 0,  # not forked again every epoch
        worker_init_fn=_worker_in_its_own_process_group,
    )


class Trainer:
    """Builds a run from a config (``cfg.task`` picks the plug-in) and trains it with `fit`."""

    def __init__(self, cfg: AnyTrainConfig, resume: str | Path | None = None) -> None:
        self.cfg = cfg
        r = cfg.run
        self.info = D.init_distributed(r.device)
        if r.threads:
            torch.set_num_threads(r.threads)
        if r.keep_freed_memory and self.info.device.type == "cpu":
            keep_freed_memory()
        self.out = Path(r.out_dir)
        self._auto_state: dict[str, Any] | None = None
        self.resume_from = self._resume_source(resume)
        if self.info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out / "config.yaml")
        torch.manual_seed(r.seed + self.info.rank)
        channels_last = use_channels_last(r.channels_last, self.info.device, r.bf16)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        self.ctx = RunContext(self.info, fmt, r.bf16)
        self.task: Task = TASKS[cfg.task](cfg, self.ctx, self.out)
        # rank 0 writes a built-in set; the others then only read it
        D.main_first(self.info, self.task.prepare_data)
        self.train_ds, self.val_ds = self.task.build_datasets(train=True)
        self.classes = self.task.classes
        self._build_loaders()

        m, o = cfg.model, cfg.optim
        model = create_model(
            m.name,
            num_classes=self.task.num_classes,
            pretrained=m.pretrained or None,
            reset_classifier=m.reset_classifier,
            **self.task.model_kwargs(),
        )
        self.model, self.ddp, _ = D.place_model(model, self.info, channels_last)
        self.optimizer = torch.optim.AdamW(
            self.task.param_groups(self.model), lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay
        )
        self.accum = o.accum_steps
        self.steps_per_epoch = math.ceil(len(self.train_sampler) / self.accum)
        self.scheduler = build_scheduler(
            self.optimizer, self.steps_per_epoch * o.epochs, o.lr, o.min_lr, o.warmup_iters, o.warmup_start_lr
        )
        e = cfg.ema
        self.ema = (
            ModelEMA(self.model, e.momentum, e.warmup, e.warmup_power, e.warmup_gamma) if e.enabled else None
        )
        self.recalibrate_bn = e.recalibrate_bn
        self.metrics = MetricsLog(self.out) if self.info.is_main else None
        self.max_nonfinite, self.max_steps, self.log_every = r.max_nonfinite, r.max_steps, r.log_every
        self.grad_clip = o.grad_clip
        self.bad_limit = self.task.max_bad_fraction() * len(self.train_ds)
        self.state = TrainState()
        self._stop_signal: str | None = None
        self._steps_at_start = 0
        self._epoch_start = time.perf_counter()  # when this process started the current epoch
        self.stopped: str | None = None
        if self.resume_from is not None:
            self._load_resume(self.resume_from)

    # ---------------------------------------------------------------- setup
    def _build_loaders(self) -> None:
        cfg, info, b = self.cfg, self.info, self.task.batching()
        if len(self.train_ds) < b.batch_size * info.world_size:
            raise TrainingError(
                f"{len(self.train_ds)} training images cannot fill one batch of {b.batch_size} x "
                f"{info.world_size} processes (the last incomplete batch is dropped: BatchNorm cannot "
                "train on one sample)"
            )
        kw = {"rank": info.rank, "world_size": info.world_size}
        self.train_sampler = MultiScaleBatchSampler(
            len(self.train_ds),
            b.base_size,
            b.batch_size,
            resolutions=b.resolutions,
            shuffle=True,
            drop_last=True,
            seed=cfg.run.seed,
            **kw,
        )
        self.val_sampler = MultiScaleBatchSampler(
            len(self.val_ds),
            b.base_size,
            b.val_batch_size,
            resolutions=None,
            shuffle=False,
            drop_last=False,
            pad=False,
            **kw,
        )
        workers, seed = cfg.data.num_workers, cfg.run.seed
        self.train_loader = build_loader(self.train_ds, self.train_sampler, self.task, workers, seed)
        self.val_loader = build_loader(self.val_ds, self.val_sampler, self.task, workers, seed)

    def _resume_source(self, resume: str | Path | None) -> Path | None:
        """The resume file to start from: the one given, else this folder's own when
        ``run.auto_resume`` is on and it was written with the same config (else an error)."""
        if resume is not None:
            return Path(resume)
        path = self.out / RESUME_NAME
        if not self.cfg.run.auto_resume or not path.is_file():
            return None
        saved = self._auto_state = load_resume(path)
        diff = config_differences(saved.get("config", {}), self.cfg.to_dict())
        if diff:
            raise TrainingError(
                f"{self.out} holds a run trained with another config ({'; '.join(diff)}). Use another "
                "run.out_dir, or run.auto_resume=false to start over in this folder"
            )
        return path

    # ---------------------------------------------------------------- state
    def resume_state(self) -> dict[str, Any]:
        """Everything a resumed run needs, as tensors and plain containers."""
        return {
            "task": self.task.name,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "train_state": asdict(self.state),
            "rng": rng_state(),
            "config": self.cfg.to_dict(),
            "classes": list(self.classes),
        }

    def write_resume(self) -> Path | None:
        """Write ``resume.pt`` (rank 0 only); its path, or None on other ranks."""
        if not self.info.is_main:
            return None
        return save_resume(self.out / RESUME_NAME, self.resume_state())

    def _load_resume(self, path: str | Path) -> None:
        st = self._auto_state if self._auto_state is not None else load_resume(path)
        self._auto_state = None
        if st.get("task", self.task.name) != self.task.name:
            raise TrainingError(
                f"resume file {path} is of a {st['task']} run, this is a {self.task.name} run"
            )
        if st["classes"] != self.classes:
            raise TrainingError(
                f"resume file {path} was trained on classes {st['classes']}, the data has {self.classes}"
            )
        self.model.load_state_dict(st["model"])
        self.optimizer.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        if self.ema is not None and st["ema"] is not None:
            self.ema.load_state_dict(st["ema"])
        self.state = TrainState(**st["train_state"])
        set_rng_state(st["rng"])
        if self.metrics is not None:
            self.metrics.truncate_after(self.state.epoch)  # rows of completed epochs only
        log.info("resumed from %s at epoch %d step %d", path, self.state.epoch, self.state.step_in_epoch)

    def weights_meta(self, extra: dict[str, Any] | None = None) -> WeightsMeta:
        """What this run's weights files record (architecture, task, classes, task fields, ``extra``)."""
        return WeightsMeta(
            arch=self.cfg.model.name,
            task=self.task.name,
            num_classes=self.task.num_classes,
            classes=list(self.classes),
            model_overrides=dict(self.cfg.model.overrides),
            extra={**self.task.weights_extra(), **(extra or {})},
        )

    def _save_weights(self, model: nn.Module, name: str, extra: dict[str, Any] | None = None) -> None:
        if self.info.is_main:
            write_weights(model.state_dict(), self.out / name, self.weights_meta(extra))

    # -------------------------------------------------------------- signals
    def _install_signals(self) -> dict:
        def handler(signum, frame):  # noqa: ARG001
            if self._stop_signal is not None:
                raise KeyboardInterrupt
            self._stop_signal = signal.Signals(signum).name
            log.warning("%s received: finishing this step, then writing a resume file", self._stop_signal)

        old = {}
        for s in (signal.SIGINT, signal.SIGTERM):
            with suppress(ValueError):  # not the main thread: no handlers
                old[s] = signal.signal(s, handler)
        return old

    # ----------------------------------------------------------------- loop
    def _agree(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank."""
        if not self.info.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.info.device)
        D.all_reduce_sum(t, self.info)
        return t.item() > 0

    def _account_bad(self, batch: Any) -> int:
        bad, seen = self.task.bad_samples(batch)
        self.task.log_bad(bad)
        st = self.state
        st.bad_files += [b.path for b in bad]
        st.seen_files += seen
        if len(st.bad_files) > self.bad_limit:
            raise TrainingError(
                f"{len(st.bad_files)} unreadable images in the training split exceed data.max_bad_fraction="
                f"{self.task.max_bad_fraction()} of {len(self.train_ds)} files; first ones: "
                f"{', '.join(st.bad_files[:5])}"
            )
        return seen

    def train_step(self, batch: Any, boundary: bool, sums: dict[str, Any]) -> bool:
        """Forward and backward of one micro-batch (no optimizer step). Returns False when its
        loss was non-finite on any rank: the caller then skips this optimizer step.

        Args:
            batch: the collated micro-batch.
            boundary: the last micro-batch of an optimizer step (DDP syncs gradients then).
            sums: the epoch's running sums, updated.

        Returns:
            Whether the micro-batch was trained on.
        """
        st = self.state
        sync = boundary or not self.info.distributed
        with nullcontext() if sync else self.ddp.no_sync():  # type: ignore[operator]
            out = self.task.loss(self.ddp, batch)
            if self._agree(not bool(torch.isfinite(out.loss.detach()))):
                st.nonfinite_in_row += 1
                log.warning(
                    "non-finite loss (%s on this rank) at epoch %d step %d: optimizer step skipped on every "
                    "rank (%d in a row)",
                    out.loss.item(),
                    st.epoch + 1,
                    st.step_in_epoch,
                    st.nonfinite_in_row,
                )
                if st.nonfinite_in_row >= self.max_nonfinite:
                    raise TrainingError(
                        f"{st.nonfinite_in_row} non-finite losses in a row; stopping. The last good "
                        f"checkpoint is {self.out / RESUME_NAME} (resume with --resume)"
                    )
                return False
            st.nonfinite_in_row = 0
            (out.loss / self.accum).backward()
        n = out.count
        sums["loss"] = sums.get("loss", 0.0) + out.loss.detach() * n
        sums["count"] = sums.get("count", 0) + n
        for k, v in out.sums.items():
            sums[k] = sums.get(k, 0.0) + v
        return True

    def optimizer_step(self, skip: bool = False) -> None:
        """One optimizer step over the accumulated gradients (or none, ``skip``): schedule,
        step count and EMA advance the same way on every rank."""
        if not skip:
            if self.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.model)
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.state.global_step += 1

    def process(self, batch: Any, boundary: bool, window: Window, sums: dict[str, Any]) -> int:
        """One micro-batch as the loop runs it: bad-sample accounting, the ranks' agreement that
        it is usable, forward and backward, and at an accumulation ``boundary`` the optimizer
        step (skipped when a loss of the window was non-finite). Returns the samples drawn.

        Args:
            batch: the collated micro-batch.
            boundary: the last micro-batch of an optimizer step.
            window: the current optimizer step's state, updated.
            sums: the epoch's running sums, updated.

        Returns:
            The samples drawn for this micro-batch.
        """
        st = self.state
        seen = self._account_bad(batch)
        if window.ok and not self._agree(not self.task.usable(batch)):
            window.ok = self.train_step(batch, boundary, sums)
            window.used = True
        st.step_in_epoch += 1
        if boundary:
            st.skipped_steps += not window.ok
            self.optimizer_step(skip=not (window.ok and window.used))
            window.ok, window.used = True, False
        return seen

    def train_one_epoch(self) -> dict[str, float] | None:
        """The epoch's train metrics, or None when stopped early (signal / max_steps)."""
        cfg, st = self.cfg, self.state
        self.ddp.train()
        self.train_sampler.set_epoch(st.epoch, st.step_in_epoch)
        n_batches = len(self.train_sampler) + st.step_in_epoch
        progress = None
        if self.info.is_main and cfg.run.progress:
            from tqdm import tqdm

            progress = tqdm(
                total=n_batches,
                initial=st.step_in_epoch,
                desc=f"epoch {st.epoch + 1}/{cfg.optim.epochs}",
                dynamic_ncols=True,
                leave=False,
            )
        sums: dict[str, Any] = {}
        t0, images, window = time.perf_counter(), 0, Window()
        for batch in self.train_loader:
            micro = st.step_in_epoch
            last = micro == n_batches - 1
            boundary = (micro + 1) % self.accum == 0 or last
            images += self.process(batch, boundary, window, sums)
            if micro % self.log_every == 0 or last:
                self._show(progress, sums, images, t0, micro, n_batches)
            elif progress is not None:
                progress.update(1)
            if boundary and self._should_stop():
                if progress is not None:
                    progress.close()
                return None
        if progress is not None:
            progress.close()
        count = float(sums.pop("count", 0))
        totals = torch.tensor([count, *(float(v) for v in sums.values())], dtype=torch.float64)
        D.all_reduce_sum(totals, self.info)
        row = {
            f"train_{k}": v / max(1.0, totals[0].item())
            for k, v in zip(sums, totals[1:].tolist(), strict=True)
        }
        row.setdefault("train_loss", 0.0)
        row["images_per_s"] = images * self.info.world_size / max(1e-9, time.perf_counter() - t0)
        return row

    def _show(self, progress: Any, sums: dict[str, Any], images: int, t0: float, micro: int, n: int) -> None:
        """Progress bar refresh (or, without a bar, a log line at INFO level)."""
        loss = float(sums.get("loss", 0.0)) / max(1, sums.get("count", 0))
        lr = self.optimizer.param_groups[0]["lr"]
        rate = images * self.info.world_size / max(1e-9, time.perf_counter() - t0)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", img_s=f"{rate:.0f}")
        elif self.info.is_main:
            log.info(
                "epoch %d step %d/%d: loss %.4f, lr %.2e, %.0f img/s",
                self.state.epoch + 1,
                micro + 1,
                n,
                loss,
                lr,
                rate,
            )

    def _should_stop(self) -> bool:
        reason = self._stop_signal
        if (
            reason is None
            and self.max_steps
            and self.state.global_step >= self._steps_at_start + self.max_steps
        ):
            reason = f"run.max_steps={self.max_steps}"
        if not self._agree(reason is not None):
            return False
        self.stopped = reason or "another rank stopped"
        self.state.epoch_seconds += time.perf_counter() - self._epoch_start
        path = self.write_resume()
        if self.info.is_main:
            log.warning(
                "stopping (%s) at epoch %d step %d; resume file: %s",
                self.stopped,
                self.state.epoch + 1,
                self.state.step_in_epoch,
                path,
            )
        return True

    # ---------------------------------------------------------------- fit
    def fit(self) -> dict[str, Any]:
        """Train to the end (or until stopped); returns a summary of the run."""
        cfg, st = self.cfg, self.state
        self.stopped = None
        self._steps_at_start = st.global_step
        if st.epoch >= cfg.optim.epochs and self.info.is_main:
            log.warning(
                "%s: the run already finished its %d epochs; nothing to train (run.auto_resume=false starts over)",
                self.out,
                cfg.optim.epochs,
            )
        if self.metrics is not None and st.epoch == 0 and st.step_in_epoch == 0:
            self.metrics.clear()  # a fresh start: an earlier run's rows in this folder go
        old = self._install_signals()
        start = time.perf_counter()
        try:
            while st.epoch < cfg.optim.epochs:
                self._epoch_start = time.perf_counter()
                train = self.train_one_epoch()
                if train is None:
                    break
                row: dict[str, Any] = {
                    "epoch": st.epoch + 1,
                    **train,
                    "lr": self.optimizer.param_groups[0]["lr"],
                }
                if (st.epoch + 1) % cfg.run.eval_every == 0 or st.epoch + 1 == cfg.optim.epochs:
                    self._evaluate_and_keep_best(row)
                # training + evaluation, with the part before a stop when the epoch was resumed
                row["epoch_seconds"] = st.epoch_seconds + time.perf_counter() - self._epoch_start
                st.epoch += 1
                st.step_in_epoch, st.epoch_seconds = 0, 0.0
                if self.metrics is not None:
                    self.metrics.append(row)
                    plot_curves(
                        self.metrics.rows(),
                        self.out / "curves.png",
                        f"{cfg.model.name} on {cfg.data.dataset}",
                        metric=self.task.metric,
                    )
                self._save_weights(self.model, "last.safetensors", {"epoch": st.epoch})
                self.write_resume()
                if self.info.is_main:
                    shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float))
                    print(f"epoch {st.epoch}/{cfg.optim.epochs}: {shown}", flush=True)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        summary = {
            "epochs_done": st.epoch,
            "global_step": st.global_step,
            f"best_{self.task.metric}": st.best_score,
            "best_epoch": st.best_epoch,
            "best_weights": st.best_weights,
            "bad_files": len(st.bad_files),
            "skipped_steps": st.skipped_steps,
            "stopped": self.stopped,
            "seconds": time.perf_counter() - start,
            "out_dir": str(self.out),
            "task": self.task.name,
        }
        if self.info.is_main and self.stopped is None and st.global_step > self._steps_at_start:
            self._write_report(summary)  # (a finished run resumed again trains nothing: its report stays)
        return summary

    def evaluate(self, model: nn.Module) -> dict[str, Any]:
        """The task's validation metrics of ``model`` on this run's validation split."""
        return self.task.evaluate(model, self.val_loader)

    def _evaluate_and_keep_best(self, row: dict[str, Any]) -> None:
        """Evaluate the raw (and EMA) weights into ``row``; ``best.safetensors`` keeps whichever of
        the two scored higher at this evaluation, when it beats every earlier one (its metadata
        says which: ``weights: raw`` or ``ema``). An EMA that has not caught up with a short run
        then never replaces better raw weights."""
        key = self.task.metric
        raw = self.task.evaluate(self.model, self.val_loader)
        row.update({f"val_{k}": v for k, v in raw.items() if isinstance(v, float)})
        candidates = [("raw", raw[key], self.model)]
        if self.ema is not None:
            ema_model = self.ema_model()
            ema = self.task.evaluate(ema_model, self.val_loader)
            row.update({f"val_ema_{k}": v for k, v in ema.items() if isinstance(v, float)})
            candidates.append(("ema", ema[key], ema_model))
        # the EMA model on a tie: the paper reports it
        kind, score, model = max(reversed(candidates), key=lambda c: c[1])
        row["best_of"] = kind
        if score > self.state.best_score:
            self.state.best_score, self.state.best_epoch = score, self.state.epoch + 1
            self.state.best_weights = kind
            self._save_weights(
                model,
                "best.safetensors",
                {"weights": kind, "epoch": self.state.epoch + 1, f"val_{key}": score},
            )

    def ema_model(self, recalibrate_bn: int | None = None) -> nn.Module | None:
        """The EMA model as the run evaluates it (None without EMA): with its averaged BatchNorm
        statistics, or a copy whose statistics are re-estimated on ``recalibrate_bn`` training
        batches (default: the config's ``ema.recalibrate_bn``; 0 keeps the averaged ones)."""
        if self.ema is None:
            return None
        n = self.recalibrate_bn if recalibrate_bn is None else recalibrate_bn
        if not n:
            return self.ema.module
        self.train_sampler.set_epoch(self.state.epoch)
        with self.ctx.autocast():
            return recalibrated_copy(
                self.ema.module,
                self.task.recalibration_batches(self.train_loader),
                n,
                self.info.device,
                self.ctx.memory_format,
                forward=self.task.recalibration_forward,
            )

    def _write_report(self, summary: dict[str, Any]) -> None:
        cfg, task = self.cfg, self.task
        rows = self.metrics.rows() if self.metrics else []
        last = rows[-1] if rows else {}
        lines = [
            f"# {task.name.capitalize()} report: {cfg.model.name} on {cfg.data.dataset}",
            "",
            *task.report_lines(self.train_ds, self.val_ds),
            f"- epochs: {summary['epochs_done']}, optimizer steps: {summary['global_step']} "
            f"({summary['skipped_steps']} skipped for a non-finite loss), processes: {self.info.world_size}, "
            f"time: {summary['seconds'] / 60:.1f} min",
            f"- best validation {task.metric_label}: {self.state.best_score:.4f} at epoch "
            f"{self.state.best_epoch}, {self.state.best_weights or 'raw'} weights "
            f"({'the better of raw and EMA at each evaluation' if self.ema else 'no EMA'}) -> best.safetensors",
            "- last epoch: " + ", ".join(f"{k} {v:.4f}" for k, v in last.items() if isinstance(v, float)),
            f"- unreadable files skipped: {summary['bad_files']}",
            "",
            "![curves](curves.png)",
            "",
            "Files: config.yaml (resolved config), metrics.csv / metrics.jsonl, last.safetensors, "
            "best.safetensors, resume.pt (tensors and plain values: loads with torch.load(weights_only=True)).",
        ]
        (self.out / "report.md").write_text("\n".join(lines) + "\n")


def train(cfg: AnyTrainConfig, resume: str | Path | None = None) -> dict[str, Any]:
    """Train ``cfg`` (any task) to the end or until stopped; returns the run's summary."""
    trainer = Trainer(cfg, resume)
    try:
        return trainer.fit()
    finally:
        D.cleanup(trainer.info)
