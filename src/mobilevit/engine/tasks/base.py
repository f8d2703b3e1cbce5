"""What a task plugs into the training engine: its data, its loss, its metric, its weights metadata.

The trainer (`mobilevit.engine.trainer`) owns everything the tasks share: samplers and
loaders, the optimizer, schedule, accumulation, EMA, signals, resume, DDP, progress, metrics
files and the report. A task owns what differs: which datasets to read (and how to write a
built-in one), how a batch becomes a loss, how a model is scored, and what its weights file
records. A new task is one subclass of `Task` in one file, listed in ``tasks.TASKS``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import Dataset

from ...data.folders import BadSample
from ...data.sampler import SampleKey, sample_rng
from ..config import AnyTrainConfig
from ..dist import DistInfo

log = logging.getLogger("mobilevit.train")


@dataclass
class RunContext:
    """Where a model runs: the process (rank, device), the memory format and bf16 autocast."""

    info: DistInfo
    memory_format: torch.memory_format = torch.contiguous_format
    bf16: bool = False

    @property
    def device(self) -> torch.device:
        return self.info.device

    def autocast(self) -> Any:
        """bf16 autocast on the run's device, or a no-op context."""
        if not self.bf16:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)


@dataclass
class StepOutput:
    """A training batch's loss (mean over it), its image count, and sums reported per image."""

    loss: torch.Tensor
    count: int
    sums: dict[str, float] = field(default_factory=dict)  # e.g. {"top1": correct}: train_top1 = sum / count


@dataclass(frozen=True)
class Batching:
    """How the trainer batches a task's training data (the multi-scale sampler's arguments)."""

    base_size: tuple[int, int]
    batch_size: int
    resolutions: list[int] | None = None  # None: one shape
    val_batch_size: int = 1


class KeyedDataset(Dataset):
    """A dataset indexed by int, served by `SampleKey`: each sample's augmentation draws
    from its own seed, so an epoch is the same whatever the workers and wherever it resumes."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: SampleKey | int) -> Any:
        if isinstance(key, int):
            return self.dataset[key]
        with sample_rng(key.seed):
            return self.dataset[key.index]

    def __getattr__(self, name: str) -> Any:  # classes, cat_ids, stats, ... of the wrapped set
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


class Task:
    """Base class of the task plug-ins; see the module docstring for the split of work."""

    name: ClassVar[str] = ""
    config_cls: ClassVar[type]
    metric: ClassVar[str] = ""  # the key of evaluate()'s result that picks best.safetensors
    metric_label: ClassVar[str] = ""
    recalibration_forward: Callable[[nn.Module, torch.Tensor], Any] | None = None  # None: model(x)

    def __init__(self, cfg: AnyTrainConfig, ctx: RunContext, out: Path) -> None:
        self.cfg, self.ctx, self.out = cfg, ctx, out
        self.classes: list[str] = []
        self.num_classes = 0

    # ---- data
    def prepare_data(self) -> None:
        """Locate the data (and write a built-in set); runs on rank 0 first, then on the others."""

    def build_datasets(self, train: bool = True, classes: list[str] | None = None) -> tuple[Any, Any]:
        """``(train_ds or None, val_ds)``, both indexed by `SampleKey`. Sets ``classes``
        and ``num_classes`` (from ``classes`` when given: evaluating a weights file)."""
        raise NotImplementedError

    def batching(self) -> Batching:
        """How the trainer batches this task's training data (the multi-scale sampler's arguments)."""
        raise NotImplementedError

    @staticmethod
    def collate(batch: list[Any]) -> Any:
        raise NotImplementedError

    def bad_samples(self, batch: Any) -> tuple[list[BadSample], int]:
        """The unreadable samples a batch dropped, and how many it was drawn with."""
        return [], 0

    def usable(self, batch: Any) -> bool:
        """False when too little of the batch is left to train on (every rank then skips it)."""
        return True

    def max_bad_fraction(self) -> float:
        """The fraction of unreadable training files past which the run stops (1.0: never)."""
        return 1.0

    # ---- model
    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``create_model`` besides the name, classes and weights."""
        return dict(self.cfg.model.overrides)

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """AdamW's parameter groups: one group at ``optim.lr`` unless the task splits them."""
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": self.cfg.optim.lr}]

    def loss(self, model: nn.Module, batch: Any) -> StepOutput:
        """The loss of a training batch, its sample count and the per-sample sums reported."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, loader: Any) -> dict[str, Any]:
        """The validation metrics (``metric`` among them), reduced over every rank."""
        raise NotImplementedError

    def recalibration_batches(self, loader: Any) -> Iterator[torch.Tensor]:
        """Image batches to re-estimate an EMA model's BatchNorm statistics on."""
        raise NotImplementedError

    # ---- outputs
    def weights_extra(self) -> dict[str, Any]:
        """Task fields of the weights file's metadata (``WeightsMeta.extra``)."""
        return {}

    def report_lines(self, train_ds: Any, val_ds: Any) -> list[str]:
        """The task's lines of ``report.md`` (data, splits)."""
        return []

    def split_name(self) -> str:
        """Where the validation split was read (for reports and ``mobilevit eval``)."""
        return ""

    # ---- shared helpers
    @staticmethod
    def log_bad(bad: list[BadSample]) -> None:
        for b in bad:
            log.warning("skipping bad sample %s (%s)", b.path, b.error)

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` on the run's device, in the run's memory format."""
        return x.to(self.ctx.device, memory_format=self.ctx.memory_format)
