"""Training and evaluating DeepLabv3-MobileViT (Section 4.2.2 of the paper).

AdamW with the head (ASPP + classifier) at ``optim.head_lr_mult`` x the backbone's learning
rate, per-step warmup then cosine, cross-entropy with ignore index 255, EMA (evaluated beside
the raw model, best EMA kept), joint image/mask augmentation, mIoU from a dataset-level
confusion matrix. Training drops the last incomplete batch (BatchNorm in the ASPP pooling branch
cannot train on one sample). DDP through torchrun as for classification.
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

from ..data.synthetic import SHAPES, write_shapes_voc
from ..data.voc import (
    IGNORE_INDEX,
    SegEvalTransform,
    SegTrainTransform,
    VOCSegmentation,
    collate_segmentation,
)
from ..registry import create_model
from ..serialization import save_weights
from . import dist as D
from .checkpoint import load_resume, rng_state, save_resume, set_rng_state, start_run
from .config import SegTrainConfig
from .ema import ModelEMA, recalibrated_copy
from .loop import TrainingError
from .metrics import ConfusionMatrix, MetricsLog, plot_curves
from .optim import build_scheduler

log = logging.getLogger("mobilevit.segment")


def prepare_seg_root(cfg: SegTrainConfig, out_dir: Path) -> tuple[Path, list[str]]:
    d = cfg.data
    if d.dataset == "voc":
        return Path(d.root), []
    root = Path(d.root) if d.root else out_dir / "data" / "shapes_voc"
    return write_shapes_voc(root, size=d.builtin_size, n_train=d.builtin_train, n_val=d.builtin_val), [
        "background",
        *SHAPES,
    ]


class SegTrainer:
    def __init__(self, cfg: SegTrainConfig, resume: str | Path | None = None) -> None:
        self.cfg = cfg
        self.info, self.out = start_run(cfg)
        self.root, names = D.main_first(self.info, lambda: prepare_seg_root(cfg, self.out))
        d, m = cfg.data, cfg.model
        if d.dataset == "shapes" and m.num_classes != len(names):
            raise TrainingError(
                f"the built-in shapes set has {len(names)} classes; set model.num_classes={len(names)}"
            )
        k = m.num_classes
        self.train_ds = VOCSegmentation(
            self.root,
            d.train_split,
            SegTrainTransform(d.crop_size, tuple(d.scale_range), d.hflip),
            k,  # type: ignore[arg-type]
            d.on_bad_sample,
            names or None,
        )
        self.val_ds = VOCSegmentation(
            self.root, d.val_split, SegEvalTransform(d.eval_size), k, d.on_bad_sample, names or None
        )
        self.classes = self.train_ds.classes
        if len(self.train_ds) < d.batch_size * self.info.world_size:
            raise TrainingError(
                f"{len(self.train_ds)} training images cannot fill one batch of {d.batch_size} x {self.info.world_size} "
                "processes (the last incomplete batch is dropped: BatchNorm cannot train on one sample)"
            )
        if self.info.distributed:
            self.train_sampler: Any = DistributedSampler(
                self.train_ds, shuffle=True, seed=cfg.run.seed, drop_last=True
            )
            val_sampler: Any = DistributedSampler(self.val_ds, shuffle=False, drop_last=False)
        else:
            g = torch.Generator().manual_seed(cfg.run.seed)
            self.train_sampler, val_sampler = (
                RandomSampler(self.train_ds, generator=g),
                SequentialSampler(self.val_ds),
            )
        self.train_loader = DataLoader(
            self.train_ds,
            batch_size=d.batch_size,
            sampler=self.train_sampler,
            num_workers=d.num_workers,
            collate_fn=collate_segmentation,
            drop_last=True,
        )
        self.val_loader = DataLoader(
            self.val_ds,
            batch_size=1,
            sampler=val_sampler,
            num_workers=d.num_workers,
            collate_fn=collate_segmentation,
        )
        model = create_model(
            m.name,
            num_classes=k,
            pretrained=m.pretrained or None,
            reset_classifier=m.reset_classifier,
            backbone_weights=m.backbone_weights or None,
            **m.overrides,
        )
        self.model, self.ddp, self.memory_format = D.place_model(model, self.info, cfg.run.channels_last)
        o = cfg.optim
        head = [p for n, p in self.model.named_parameters() if not n.startswith("backbone.")]
        body = [p for n, p in self.model.named_parameters() if n.startswith("backbone.")]
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
        self.criterion = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX, label_smoothing=o.label_smoothing)
        self.metrics = MetricsLog(self.out) if self.info.is_main else None
        self.epoch, self.global_step, self.best_miou, self.best_epoch = 0, 0, -1.0, -1
        self.nonfinite_in_row, self.bad = 0, 0
        if resume is not None:
            st = load_resume(resume)
            self.model.load_state_dict(st["model"])
            self.optimizer.load_state_dict(st["optimizer"])
            self.scheduler.load_state_dict(st["scheduler"])
            if self.ema is not None and st["ema"] is not None:
                self.ema.load_state_dict(st["ema"])
            self.epoch, self.global_step = st["epoch"], st["global_step"]
            self.best_miou, self.best_epoch = st["best_miou"], st["best_epoch"]
            set_rng_state(st["rng"])
            if self.metrics is not None:
                self.metrics.truncate_after(self.epoch)

    def _autocast(self):
        if not self.cfg.run.bf16:
            return nullcontext()
        return torch.autocast(device_type=self.info.device.type, dtype=torch.bfloat16)

    def _log_bad(self, batch: dict[str, Any]) -> None:
        for b in batch["bad"]:
            log.warning("skipping bad sample %s (%s)", b.path, b.error)
        self.bad += len(batch["bad"])

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, Any]:
        """mIoU, per-class IoU and pixel accuracy on the validation split, at the masks' own sizes."""
        model.eval()
        cm = ConfusionMatrix(self.cfg.model.num_classes)
        for batch in self.val_loader:
            self._log_bad(batch)
            for image, mask in zip(batch["images"], batch["masks"], strict=True):
                x = image[None].to(self.info.device, memory_format=self.memory_format)
                with self._autocast():
                    logits = model.forward_lowres(x) if hasattr(model, "forward_lowres") else model(x)
                logits = F.interpolate(
                    logits.float(), size=mask.shape[-2:], mode="bilinear", align_corners=False
                )
                cm.update(logits.argmax(1)[0].cpu(), mask)
        D.all_reduce_sum(cm.matrix, self.info)
        return cm.compute()

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
            self._log_bad(batch)
            if batch["count"] < 2 or not isinstance(batch["images"], torch.Tensor):
                if progress is not None:
                    progress.update(1)
                continue  # too few good samples left for BatchNorm
            x = batch["images"].to(self.info.device, memory_format=self.memory_format)
            y = batch["masks"].to(self.info.device)
            with self._autocast():
                logits = self.ddp(x)
            loss = self.criterion(logits.float(), y)
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
            images += x.shape[0]
            if progress is not None:
                progress.update(1)
                progress.set_postfix(
                    loss=f"{loss_sum / n:.4f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}"
                )
        if progress is not None:
            progress.close()
        return {
            "train_loss": loss_sum / max(1, n),
            "images_per_s": images * self.info.world_size / (time.perf_counter() - t0),
        }

    def fit(self) -> dict[str, Any]:
        cfg, start = self.cfg, time.perf_counter()
        while self.epoch < cfg.optim.epochs:
            row: dict[str, Any] = {"epoch": self.epoch + 1, **self.train_one_epoch()}
            last = self.epoch + 1 == cfg.optim.epochs
            if (self.epoch + 1) % cfg.run.eval_every == 0 or last:
                raw = self.evaluate(self.model)
                row.update(val_miou=raw["miou"], val_pixel_acc=raw["pixel_acc"])
                kind, score, model = "raw", raw["miou"], self.model
                if self.ema is not None:
                    ema_model = self.ema.module
                    if cfg.ema.recalibrate_bn:
                        batches = (
                            b["images"] for b in self.train_loader if isinstance(b["images"], torch.Tensor)
                        )
                        with self._autocast():
                            ema_model = recalibrated_copy(
                                ema_model,
                                batches,
                                cfg.ema.recalibrate_bn,
                                self.info.device,
                                self.memory_format,
                            )
                    ema = self.evaluate(ema_model)
                    row.update(val_ema_miou=ema["miou"], val_ema_pixel_acc=ema["pixel_acc"])
                    kind, score, model = "ema", ema["miou"], ema_model
                if score > self.best_miou:
                    self.best_miou, self.best_epoch = score, self.epoch + 1
                    self._save(model, "best.safetensors", {"weights": kind, "val_miou": f"{score:.6f}"})
            self.epoch += 1
            if self.info.is_main:
                assert self.metrics is not None
                self.metrics.append(row)
                plot_curves(
                    self.metrics.rows(),
                    self.out / "curves.png",
                    f"{cfg.model.name} on {cfg.data.dataset}",
                    metric="miou",
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
                        "best_miou": self.best_miou,
                        "best_epoch": self.best_epoch,
                        "rng": rng_state(),
                        "config": cfg.to_dict(),
                    },
                )
        summary = {
            "epochs_done": self.epoch,
            "global_step": self.global_step,
            "best_miou": self.best_miou,
            "best_epoch": self.best_epoch,
            "bad_samples": self.bad,
            "seconds": time.perf_counter() - start,
            "out_dir": str(self.out),
            "stopped": None,
        }
        if self.info.is_main:
            (self.out / "report.md").write_text(
                f"# Segmentation report: {cfg.model.name} on {cfg.data.dataset}\n\n"
                f"- data: {self.root} ({len(self.train_ds)} train / {len(self.val_ds)} val images, "
                f"{len(self.classes)} classes), processes: {self.info.world_size}\n"
                f"- best validation mIoU ({'EMA' if self.ema else 'raw'}): {self.best_miou:.4f} at epoch "
                f"{self.best_epoch} -> best.safetensors\n- time: {summary['seconds'] / 60:.1f} min\n\n![curves](curves.png)\n"
            )
        return summary

    def _save(self, model: nn.Module, name: str, extra: dict | None = None) -> None:
        if not self.info.is_main:
            return
        d = self.cfg.data
        meta = {
            "format": "mobilevit",
            "task": "segmentation",
            "arch": self.cfg.model.name,
            "num_classes": self.cfg.model.num_classes,
            "classes": self.classes,
            "model_overrides": self.cfg.model.overrides,
            "channel_order": "RGB",
            "eval_size": d.eval_size,
            **(extra or {}),
        }
        save_weights(model.state_dict(), self.out / name, meta)


def train_segmentation(cfg: SegTrainConfig, resume: str | Path | None = None) -> dict[str, Any]:
    trainer = SegTrainer(cfg, resume)
    try:
        return trainer.fit()
    finally:
        D.cleanup(trainer.info)
