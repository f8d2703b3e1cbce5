"""The training loop shared by the downstream tasks (segmentation, detection; Section 4.2).

A backbone + head model trained with AdamW, the head at ``optim.head_lr_mult`` x the backbone's
learning rate, per-step warmup then cosine, EMA (evaluated beside the raw model; the best of
them kept as ``best.safetensors``), resume files, metrics CSV and curves, DDP through torchrun.
A task subclass supplies its data (:meth:`build_data`), the loss of one batch
(:meth:`batch_loss`), the validation metric (:meth:`evaluate`) and what goes in the weights'
metadata.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

from ..registry import create_model
from ..serialization import save_weights
from . import dist as D
from .checkpoint import load_resume, rng_state, save_resume, set_rng_state, start_run
from .ema import ModelEMA, recalibrated_copy
from .loop import TrainingError
from .metrics import MetricsLog, plot_curves
from .optim import build_scheduler

log = logging.getLogger("mobilevit.train")


class HeadTrainer:
    """Base trainer; subclasses set ``task``, ``metric`` (the key :meth:`evaluate` returns and
    the best checkpoint is chosen by) and ``metric_label``."""

    task = ""
    metric = ""
    metric_label = ""

    def __init__(self, cfg: Any, resume: str | Path | None = None) -> None:
        self.cfg = cfg
        self.info, self.out = start_run(cfg)
        self.classes: list[str] = []
        self.build_data()  # sets root, classes, train_ds, val_ds, train_sampler, *_loader
        m = cfg.model
        model = create_model(
            m.name,
            num_classes=m.num_classes,
            pretrained=m.pretrained or None,
            reset_classifier=m.reset_classifier,
            backbone_weights=m.backbone_weights or None,
            **self.model_kwargs(),
        )
        self.model, self.ddp, self.memory_format = D.place_model(model, self.info, cfg.run.channels_last)
        o = cfg.optim
        head = [p for n, p in self.model.named_parameters() if not self.is_backbone(n)]
        body = [p for n, p in self.model.named_parameters() if self.is_backbone(n)]
        self.optimizer = torch.optim.AdamW(
            [{"params": body, "lr": o.lr}, {"params": head, "lr": o.lr * o.head_lr_mult}],
            lr=o.lr,
            betas=tuple(o.betas),
            weight_decay=o.weight_decay,  # type: ignore[arg-type]
        )
        self.steps_per_epoch = len(self.train_loader)
        self.scheduler = build_scheduler(
            self.optimizer, self.steps_per_epoch * o.epochs, o.lr, o.min_lr, o.warmup_iters, o.warmup_start_lr
        )
        self.ema = ModelEMA(self.model, cfg.ema.momentum, cfg.ema.warmup) if cfg.ema.enabled else None
        self.metrics = MetricsLog(self.out) if self.info.is_main else None
        self.epoch, self.global_step, self.best_score, self.best_epoch = 0, 0, -1.0, -1
        self.nonfinite_in_row, self.bad = 0, 0
        if resume is not None:
            st = load_resume(resume)
            self.model.load_state_dict(st["model"])
            self.optimizer.load_state_dict(st["optimizer"])
            self.scheduler.load_state_dict(st["scheduler"])
            if self.ema is not None and st["ema"] is not None:
                self.ema.load_state_dict(st["ema"])
            self.epoch, self.global_step = st["epoch"], st["global_step"]
            self.best_score, self.best_epoch = st["best_score"], st["best_epoch"]
            set_rng_state(st["rng"])
            if self.metrics is not None:
                self.metrics.truncate_after(self.epoch)

    # ------------------------------------------------------------------ task hooks
    def build_data(self) -> None:
        raise NotImplementedError

    def model_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments for ``create_model`` (config overrides)."""
        return dict(self.cfg.model.overrides)

    @staticmethod
    def is_backbone(name: str) -> bool:
        return name.startswith("backbone.")

    def batch_loss(self, batch: Any) -> tuple[torch.Tensor, int] | None:
        """The loss of one training batch and its image count; None skips the batch."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module) -> dict[str, Any]:
        raise NotImplementedError

    def recalibration_batches(self) -> Iterator[torch.Tensor]:
        """Image batches to re-estimate the EMA model's BatchNorm statistics on."""
        raise NotImplementedError

    recalibration_forward = None  # (model, batch) -> outputs; None: model(batch)

    def weights_metadata(self) -> dict[str, Any]:
        return {}

    def report_lines(self) -> list[str]:
        return []

    def make_loaders(self, collate_fn: Any, val_batch_size: int) -> None:
        """Samplers and loaders over ``train_ds`` / ``val_ds`` (DDP-aware, seeded; training drops
        the last incomplete batch: BatchNorm cannot train on one sample)."""
        d, info = self.cfg.data, self.info
        if len(self.train_ds) < d.batch_size * info.world_size:
            raise TrainingError(
                f"{len(self.train_ds)} training images cannot fill one batch of {d.batch_size} x {info.world_size} "
                "processes (the last incomplete batch is dropped: BatchNorm cannot train on one sample)"
            )
        if info.distributed:
            self.train_sampler: Any = DistributedSampler(
                self.train_ds, shuffle=True, seed=self.cfg.run.seed, drop_last=True
            )
            val_sampler: Any = DistributedSampler(self.val_ds, shuffle=False, drop_last=False)
        else:
            g = torch.Generator().manual_seed(self.cfg.run.seed)
            self.train_sampler = RandomSampler(self.train_ds, generator=g)
            val_sampler = SequentialSampler(self.val_ds)
        self.train_loader = DataLoader(
            self.train_ds,
            batch_size=d.batch_size,
            sampler=self.train_sampler,
            num_workers=d.num_workers,
            collate_fn=collate_fn,
            drop_last=True,
        )
        self.val_loader = DataLoader(
            self.val_ds,
            batch_size=val_batch_size,
            sampler=val_sampler,
            num_workers=d.num_workers,
            collate_fn=collate_fn,
        )

    # ------------------------------------------------------------------ the loop
    def autocast(self):
        if not self.cfg.run.bf16:
            return nullcontext()
        return torch.autocast(device_type=self.info.device.type, dtype=torch.bfloat16)

    def log_bad(self, bad: list[Any]) -> None:
        for b in bad:
            log.warning("skipping bad sample %s (%s)", b.path, b.error)
        self.bad += len(bad)

    def train_one_epoch(self) -> dict[str, float]:
        cfg = self.cfg
        self.ddp.train()
        if isinstance(self.train_sampler, DistributedSampler):
            self.train_sampler.set_epoch(self.epoch)
        loss_sum, n, t0, images = 0.0, 0, time.perf_counter(), 0
        progress = None
        if self.info.is_main and cfg.run.progress:
            from tqdm import tqdm

            progress = tqdm(
                total=self.steps_per_epoch, desc=f"epoch {self.epoch + 1}/{cfg.optim.epochs}", leave=False
            )
        for batch in self.train_loader:
            if progress is not None:
                progress.update(1)
            out = self.batch_loss(batch)
            if out is None:
                continue
            loss, count = out
            if not torch.isfinite(loss):
                self.nonfinite_in_row += 1
                log.warning(
                    "non-finite loss at epoch %d: step skipped (%d in a row)",
                    self.epoch + 1,
                    self.nonfinite_in_row,
                )
                self.optimizer.zero_grad(set_to_none=True)
                if self.nonfinite_in_row >= cfg.run.max_nonfinite:
                    raise TrainingError(f"{self.nonfinite_in_row} non-finite losses in a row; stopping")
                continue
            self.nonfinite_in_row = 0
            loss.backward()
            if cfg.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            self.global_step += 1
            if self.ema is not None:
                self.ema.update(self.model)
            loss_sum += loss.item()
            n += 1
            images += count
            if progress is not None:
                progress.set_postfix(
                    loss=f"{loss_sum / n:.4f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}"
                )
        if progress is not None:
            progress.close()
        return {
            "train_loss": loss_sum / max(1, n),
            "images_per_s": images * self.info.world_size / (time.perf_counter() - t0),
        }

    def _validate(self, row: dict[str, Any]) -> None:
        """Evaluate raw (and EMA) weights into ``row``; keep the best as best.safetensors."""
        cfg, key = self.cfg, self.metric
        raw = self.evaluate(self.model)
        row.update({f"val_{k}": v for k, v in raw.items() if isinstance(v, float)})
        kind, score, model = "raw", raw[key], self.model
        if self.ema is not None:
            ema_model = self.ema.module
            if cfg.ema.recalibrate_bn:
                with self.autocast():
                    ema_model = recalibrated_copy(
                        ema_model,
                        self.recalibration_batches(),
                        cfg.ema.recalibrate_bn,
                        self.info.device,
                        self.memory_format,
                        forward=self.recalibration_forward,
                    )
            ema = self.evaluate(ema_model)
            row.update({f"val_ema_{k}": v for k, v in ema.items() if isinstance(v, float)})
            kind, score, model = "ema", ema[key], ema_model
        if score > self.best_score:
            self.best_score, self.best_epoch = score, self.epoch + 1
            self._save(model, "best.safetensors", {"weights": kind, f"val_{key}": f"{score:.6f}"})

    def fit(self) -> dict[str, Any]:
        cfg, start = self.cfg, time.perf_counter()
        while self.epoch < cfg.optim.epochs:
            row: dict[str, Any] = {"epoch": self.epoch + 1, **self.train_one_epoch()}
            if (self.epoch + 1) % cfg.run.eval_every == 0 or self.epoch + 1 == cfg.optim.epochs:
                self._validate(row)
            self.epoch += 1
            if self.info.is_main:
                assert self.metrics is not None
                self.metrics.append(row)
                plot_curves(
                    self.metrics.rows(),
                    self.out / "curves.png",
                    f"{cfg.model.name} on {cfg.data.dataset}",
                    metric=self.metric,
                )
                shown = ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float))
                print(f"epoch {self.epoch}/{cfg.optim.epochs}: {shown}", flush=True)
            self._save(self.model, "last.safetensors")
            if self.info.is_main:
                save_resume(
                    self.out / "resume.pt",
                    {
                        "model": self.model.state_dict(),
                        "optimizer": self.optimizer.state_dict(),
                        "scheduler": self.scheduler.state_dict(),
                        "ema": self.ema.state_dict() if self.ema else None,
                        "epoch": self.epoch,
                        "global_step": self.global_step,
                        "best_score": self.best_score,
                        "best_epoch": self.best_epoch,
                        "rng": rng_state(),
                        "config": cfg.to_dict(),
                    },
                )
        summary = {
            "epochs_done": self.epoch,
            "global_step": self.global_step,
            f"best_{self.metric}": self.best_score,
            "best_epoch": self.best_epoch,
            "bad_samples": self.bad,
            "seconds": time.perf_counter() - start,
            "out_dir": str(self.out),
            "stopped": None,
        }
        if self.info.is_main:
            lines = [
                f"# {self.task.capitalize()} report: {cfg.model.name} on {cfg.data.dataset}",
                "",
                *self.report_lines(),
                f"- processes: {self.info.world_size}",
                f"- best validation {self.metric_label} ({'EMA' if self.ema else 'raw'}): {self.best_score:.4f} "
                f"at epoch {self.best_epoch} -> best.safetensors",
                f"- time: {summary['seconds'] / 60:.1f} min",
                "",
                "![curves](curves.png)",
            ]
            (self.out / "report.md").write_text("\n".join(lines) + "\n")
        return summary

    def _save(self, model: nn.Module, name: str, extra: dict | None = None) -> None:
        if not self.info.is_main:
            return
        meta = {
            "format": "mobilevit",
            "task": self.task,
            "arch": self.cfg.model.name,
            "num_classes": self.cfg.model.num_classes,
            "classes": self.classes,
            "model_overrides": self.cfg.model.overrides,
            "channel_order": "RGB",
            **self.weights_metadata(),
            **(extra or {}),
        }
        save_weights(model.state_dict(), self.out / name, meta)


def run_training(
    trainer_cls: type[HeadTrainer], cfg: Any, resume: str | Path | None = None
) -> dict[str, Any]:
    trainer = trainer_cls(cfg, resume)
    try:
        return trainer.fit()
    finally:
        D.cleanup(trainer.info)
