"""The training loop of the paper's recipe (Section 4.1), on one CPU, one GPU or many (torchrun).

AdamW + warmup/cosine per step, label-smoothed cross-entropy, EMA evaluated beside the raw
model (best EMA kept), multi-scale variable batches, gradient accumulation, optional bf16
autocast and channels_last. Faults: unreadable images are skipped and logged (the run fails
past ``data.max_bad_fraction``); non-finite losses skip their step and stop the run after
``run.max_nonfinite`` in a row; SIGINT / SIGTERM write a resume file before exiting.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ..data import (
    EvalTransform,
    ImageFolderDataset,
    MultiScaleBatchSampler,
    TrainTransform,
    collate_skip_bad,
    write_digits,
    write_shapes,
)
from ..registry import create_model
from . import dist as D
from .checkpoint import load_resume, rng_state, save_model_weights, save_resume, set_rng_state, start_run
from .config import TrainConfig
from .ema import ModelEMA, recalibrated_copy
from .metrics import MetricsLog, plot_curves, topk_correct
from .optim import build_optimizer, build_scheduler

log = logging.getLogger("mobilevit.train")


class TrainingError(RuntimeError):
    """The run cannot go on (too many bad files, non-finite losses)."""


def prepare_data_root(cfg: TrainConfig, out_dir: Path) -> Path:
    """The folder the datasets read: ``data.root``, or a built-in set written there (or in the run)."""
    d = cfg.data
    if d.dataset == "folder":
        return Path(d.root)
    root = Path(d.root) if d.root else out_dir / "data" / d.dataset
    if d.dataset == "digits":
        return write_digits(root, size=d.builtin_size, seed=0)
    return write_shapes(root, size=d.builtin_size, seed=0)


def build_datasets(cfg: TrainConfig, root: Path) -> tuple[ImageFolderDataset, ImageFolderDataset]:
    d = cfg.data
    train = ImageFolderDataset(
        root,
        d.train_split,
        TrainTransform(tuple(d.rrc_scale), d.hflip, d.interpolation),  # type: ignore[arg-type]
    )
    val = ImageFolderDataset(
        root,
        d.val_split,
        EvalTransform(d.img_size, d.eval_resize or None, d.interpolation),
        classes=train.classes,
    )
    return train, val


def build_loader(
    ds: ImageFolderDataset, sampler: MultiScaleBatchSampler, workers: int, seed: int = 0
) -> DataLoader:
    # The loader draws its workers' base seed from this generator, not from the global RNG: a
    # resumed run then consumes the global RNG (dropout) exactly as an uninterrupted one.
    return DataLoader(
        ds,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate_skip_bad,
        persistent_workers=False,
        pin_memory=False,
        generator=torch.Generator().manual_seed(seed),
    )


@dataclass
class TrainState:
    epoch: int = 0  # current epoch (0-based)
    step_in_epoch: int = 0  # micro-batches already done in this epoch
    global_step: int = 0  # optimizer steps
    best_top1: float = -1.0
    best_epoch: int = -1
    nonfinite_in_row: int = 0
    bad_files: list[str] = field(default_factory=list)
    seen_files: int = 0


class Trainer:
    """Builds everything from a :class:`TrainConfig` and runs ``fit()``."""

    def __init__(self, cfg: TrainConfig, resume: str | Path | None = None) -> None:
        self.cfg = cfg
        self.info, self.out = start_run(cfg)
        # rank 0 writes a built-in set; the others then only check its marker
        self.root = D.main_first(self.info, lambda: prepare_data_root(cfg, self.out))
        self.train_ds, self.val_ds = build_datasets(cfg, self.root)
        self.classes = self.train_ds.classes
        num_classes = cfg.model.num_classes or len(self.classes)
        if num_classes != len(self.classes):
            raise TrainingError(
                f"model.num_classes={num_classes} but {self.root / cfg.data.train_split} has {len(self.classes)} classes"
            )

        d = cfg.data
        base = (d.img_size, d.img_size)
        self.train_sampler = MultiScaleBatchSampler(
            len(self.train_ds),
            base,
            d.batch_size,
            d.resolutions if d.multiscale else None,
            shuffle=True,
            drop_last=True,
            seed=cfg.run.seed,
            rank=self.info.rank,
            world_size=self.info.world_size,
        )
        self.val_sampler = MultiScaleBatchSampler(
            len(self.val_ds),
            base,
            d.eval_batch_size or d.batch_size,
            None,
            shuffle=False,
            drop_last=False,
            rank=self.info.rank,
            world_size=self.info.world_size,
            pad=False,
        )
        self.train_loader = build_loader(self.train_ds, self.train_sampler, d.num_workers, cfg.run.seed)
        self.val_loader = build_loader(self.val_ds, self.val_sampler, d.num_workers, cfg.run.seed)

        m = cfg.model
        model = create_model(
            m.name,
            num_classes=num_classes,
            pretrained=m.pretrained or None,
            reset_classifier=m.reset_classifier,
            **m.overrides,
        )
        self.model, self.ddp, self.memory_format = D.place_model(model, self.info, cfg.run.channels_last)

        o = cfg.optim
        self.optimizer = build_optimizer(self.model, o.lr, o.weight_decay, tuple(o.betas))  # type: ignore[arg-type]
        self.steps_per_epoch = math.ceil(len(self.train_sampler) / o.accum_steps)
        self.total_steps = self.steps_per_epoch * o.epochs
        self.scheduler = build_scheduler(
            self.optimizer, self.total_steps, o.lr, o.min_lr, o.warmup_iters, o.warmup_start_lr
        )
        self.ema = ModelEMA(self.model, cfg.ema.momentum, cfg.ema.warmup) if cfg.ema.enabled else None
        self.criterion = nn.CrossEntropyLoss(label_smoothing=o.label_smoothing)
        self.metrics = MetricsLog(self.out) if self.info.is_main else None
        self.state = TrainState()
        self._stop_signal: str | None = None
        self._steps_at_start = 0
        self.stopped: str | None = None
        if resume is not None:
            self._load_resume(resume)

    # ---------------------------------------------------------------- state
    def _resume_state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "train_state": self.state.__dict__.copy(),
            "rng": rng_state(),
            "config": self.cfg.to_dict(),
            "classes": self.classes,
        }

    def write_resume(self) -> Path | None:
        if not self.info.is_main:
            return None
        return save_resume(self.out / "resume.pt", self._resume_state())

    def _load_resume(self, path: str | Path) -> None:
        st = load_resume(path)
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

    def _save_weights(self, model: nn.Module, name: str, extra: dict | None = None) -> None:
        if self.info.is_main:
            d = self.cfg.data
            extra = {
                "img_size": str(d.img_size),
                "eval_resize": str(d.eval_resize or d.img_size + 32),
                **(extra or {}),
            }
            save_model_weights(
                model, self.out / name, self.cfg.model.name, self.classes, self.cfg.model.overrides, extra
            )

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

    # ----------------------------------------------------------------- eval
    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        model.eval()
        dev = self.info.device
        totals = torch.zeros(4, dtype=torch.float64)  # loss sum, top1, top5, count
        for batch in self.val_loader:
            self._account_bad(batch, training=False)
            if batch["targets"].numel() == 0:
                continue
            x = batch["images"].to(dev, memory_format=self.memory_format)
            y = batch["targets"].to(dev)
            with self._autocast():
                logits = model(x)
            logits = logits.float()
            totals[0] += F.cross_entropy(logits, y, reduction="sum").item()
            c1, c5 = topk_correct(logits, y)
            totals[1] += c1
            totals[2] += c5
            totals[3] += y.numel()
        D.all_reduce_sum(totals, self.info)
        n = max(1.0, totals[3].item())
        return {
            "loss": totals[0].item() / n,
            "top1": totals[1].item() / n,
            "top5": totals[2].item() / n,
            "count": int(n),
        }

    def _autocast(self):
        if not self.cfg.run.bf16:
            return nullcontext()
        return torch.autocast(device_type=self.info.device.type, dtype=torch.bfloat16)

    # ---------------------------------------------------------------- train
    def _account_bad(self, batch: dict[str, Any], training: bool = True) -> None:
        for bad in batch["bad"]:
            log.warning("skipping unreadable image %s (%s)", bad.path, bad.error)
        if not training:
            return
        self.state.bad_files += [b.path for b in batch["bad"]]
        self.state.seen_files += batch["seen"]
        limit = self.cfg.data.max_bad_fraction * len(self.train_ds)
        if len(self.state.bad_files) > limit:
            raise TrainingError(
                f"{len(self.state.bad_files)} unreadable images in {self.root / self.cfg.data.train_split} exceed "
                f"data.max_bad_fraction={self.cfg.data.max_bad_fraction} of {len(self.train_ds)} files; "
                f"first ones: {', '.join(self.state.bad_files[:5])}"
            )

    def _agree(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank."""
        if not self.info.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0])
        D.all_reduce_sum(t, self.info)
        return t.item() > 0

    def train_one_epoch(self) -> dict[str, float] | None:
        """Returns the epoch's train metrics, or None when stopped early (signal / max_steps)."""
        cfg, st = self.cfg, self.state
        accum = cfg.optim.accum_steps
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
        loss_sum, loss_n, correct, seen, t0, images = 0.0, 0, 0, 0, time.perf_counter(), 0
        for batch in self.train_loader:
            micro = st.step_in_epoch
            self._account_bad(batch)
            last_micro = micro == n_batches - 1
            boundary = (micro + 1) % accum == 0 or last_micro
            empty = self._agree(batch["targets"].numel() == 0)
            if not empty:
                x = batch["images"].to(self.info.device, memory_format=self.memory_format)
                y = batch["targets"].to(self.info.device)
                sync = boundary or not self.info.distributed
                ctx = nullcontext() if sync else self.ddp.no_sync()  # type: ignore[operator]
                with ctx:
                    with self._autocast():
                        logits = self.ddp(x)
                        loss = self.criterion(logits.float(), y)
                    bad_loss = self._agree(not torch.isfinite(loss).item())
                    if bad_loss:
                        st.nonfinite_in_row += 1
                        log.warning(
                            "non-finite loss (%s) at epoch %d step %d: step skipped (%d in a row)",
                            loss.item(),
                            st.epoch + 1,
                            micro,
                            st.nonfinite_in_row,
                        )
                        self.optimizer.zero_grad(set_to_none=True)
                        if st.nonfinite_in_row >= cfg.run.max_nonfinite:
                            raise TrainingError(
                                f"{st.nonfinite_in_row} non-finite losses in a row; stopping. The last good "
                                f"checkpoint is {self.out / 'resume.pt'} (resume with --resume)"
                            )
                    else:
                        st.nonfinite_in_row = 0
                        (loss / accum).backward()
                        loss_sum += loss.item() * y.numel()
                        loss_n += y.numel()
                        correct += int((logits.argmax(1) == y).sum())
                        seen += y.numel()
                images += batch["seen"]
            st.step_in_epoch += 1
            if boundary:
                self._optimizer_step()
            if progress is not None:
                progress.update(1)
                if micro % cfg.run.log_every == 0 or last_micro:
                    rate = images * self.info.world_size / max(1e-9, time.perf_counter() - t0)
                    progress.set_postfix(
                        loss=f"{loss_sum / max(1, loss_n):.4f}",
                        lr=f"{self.optimizer.param_groups[0]['lr']:.2e}",
                        img_s=f"{rate:.0f}",
                    )
            if boundary and self._should_stop():
                if progress is not None:
                    progress.close()
                return None
        if progress is not None:
            progress.close()
        totals = torch.tensor([loss_sum, float(loss_n), float(correct), float(seen)], dtype=torch.float64)
        D.all_reduce_sum(totals, self.info)
        elapsed = time.perf_counter() - t0
        return {
            "train_loss": totals[0].item() / max(1.0, totals[1].item()),
            "train_top1": totals[2].item() / max(1.0, totals[3].item()),
            "images_per_s": images * self.info.world_size / max(1e-9, elapsed),
        }

    def _optimizer_step(self) -> None:
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        has_grad = any(p.grad is not None for p in self.model.parameters())
        if has_grad:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.state.global_step += 1
        if self.ema is not None and has_grad:
            self.ema.update(self.model)

    def _should_stop(self) -> bool:
        cfg = self.cfg
        reason = self._stop_signal
        if (
            reason is None
            and cfg.run.max_steps
            and self.state.global_step >= self._steps_at_start + cfg.run.max_steps
        ):
            reason = f"run.max_steps={cfg.run.max_steps}"
        return self._agree(reason is not None) and self._stop(reason or "another rank stopped")

    def _stop(self, reason: str) -> bool:
        path = self.write_resume()
        if self.info.is_main:
            log.warning(
                "stopping (%s) at epoch %d step %d; resume file: %s",
                reason,
                self.state.epoch + 1,
                self.state.step_in_epoch,
                path,
            )
        self.stopped = reason
        return True

    def fit(self) -> dict[str, Any]:
        """Train to the end (or until stopped); returns a summary of the run."""
        cfg, st = self.cfg, self.state
        self.stopped = None
        self._steps_at_start = st.global_step
        old = self._install_signals()
        start = time.perf_counter()
        try:
            while st.epoch < cfg.optim.epochs:
                train = self.train_one_epoch()
                if train is None:
                    break
                row: dict[str, Any] = {
                    "epoch": st.epoch + 1,
                    **train,
                    "lr": self.optimizer.param_groups[0]["lr"],
                }
                last = st.epoch + 1 == cfg.optim.epochs
                if (st.epoch + 1) % cfg.run.eval_every == 0 or last:
                    self._evaluate_and_keep_best(row)
                st.epoch += 1
                st.step_in_epoch = 0
                if self.metrics is not None:
                    self.metrics.append(row)
                    plot_curves(
                        self.metrics.rows(),
                        self.out / "curves.png",
                        f"{cfg.model.name} on {cfg.data.dataset}",
                    )
                self._save_weights(self.model, "last.safetensors")
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
            "best_top1": st.best_top1,
            "best_epoch": st.best_epoch,
            "bad_files": len(st.bad_files),
            "stopped": self.stopped,
            "seconds": time.perf_counter() - start,
            "out_dir": str(self.out),
        }
        if self.info.is_main and self.stopped is None:
            self._write_report(summary)
        return summary

    def _evaluate_and_keep_best(self, row: dict[str, Any]) -> None:
        raw = self.evaluate(self.model)
        row.update({"val_loss": raw["loss"], "val_top1": raw["top1"], "val_top5": raw["top5"]})
        candidates = [("raw", raw["top1"], self.model)]
        if self.ema is not None:
            ema_model = self._recalibrated_ema() if self.cfg.ema.recalibrate_bn else self.ema.module
            ema = self.evaluate(ema_model)
            row.update(
                {"val_ema_loss": ema["loss"], "val_ema_top1": ema["top1"], "val_ema_top5": ema["top5"]}
            )
            candidates = [("ema", ema["top1"], ema_model)]  # the EMA model is the one reported
        kind, top1, model = candidates[0]
        if top1 > self.state.best_top1:
            self.state.best_top1, self.state.best_epoch = top1, self.state.epoch + 1
            self._save_weights(
                model,
                "best.safetensors",
                {"weights": kind, "epoch": str(self.state.epoch + 1), "val_top1": f"{top1:.6f}"},
            )

    def _recalibrated_ema(self) -> nn.Module:
        """A copy of the EMA model whose BatchNorm statistics are re-estimated on training batches."""
        self.train_sampler.set_epoch(self.state.epoch)
        batches = (b["images"] for b in self.train_loader if b["targets"].numel() > 1)
        with self._autocast():
            return recalibrated_copy(
                self.ema.module,  # type: ignore[union-attr]
                batches,
                self.cfg.ema.recalibrate_bn,
                self.info.device,
                self.memory_format,
            )

    def _write_report(self, summary: dict[str, Any]) -> None:
        rows = self.metrics.rows() if self.metrics else []
        last = rows[-1] if rows else {}
        lines = [
            f"# Training report: {self.cfg.model.name} on {self.cfg.data.dataset}",
            "",
            f"- data: {self.root} ({len(self.train_ds)} train / {len(self.val_ds)} val images, {len(self.classes)} classes)",
            f"- epochs: {summary['epochs_done']}, optimizer steps: {summary['global_step']}, "
            f"processes: {self.info.world_size}, time: {summary['seconds'] / 60:.1f} min",
            f"- best validation top-1 ({'EMA' if self.ema else 'raw'}): {summary['best_top1']:.4f} "
            f"at epoch {summary['best_epoch']} -> best.safetensors",
            "- last epoch: " + ", ".join(f"{k} {v:.4f}" for k, v in last.items() if isinstance(v, float)),
            f"- unreadable files skipped: {summary['bad_files']}",
            "",
            "![curves](curves.png)",
            "",
            "Files: config.yaml (resolved config), metrics.csv / metrics.jsonl, last.safetensors, "
            "best.safetensors, resume.pt.",
        ]
        (self.out / "report.md").write_text("\n".join(lines) + "\n")


def train(cfg: TrainConfig, resume: str | Path | None = None) -> dict[str, Any]:
    trainer = Trainer(cfg, resume)
    try:
        return trainer.fit()
    finally:
        D.cleanup(trainer.info)
