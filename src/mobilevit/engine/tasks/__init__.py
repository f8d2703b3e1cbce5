"""The task table: every task the engine trains and evaluates, by the name recipes give as ``task``."""

from __future__ import annotations

from .base import Batching, KeyedDataset, RunContext, StepOutput, Task
from .classification import Classification
from .detection import Detection
from .segmentation import Segmentation

TASKS: dict[str, type[Task]] = {t.name: t for t in (Classification, Segmentation, Detection)}

__all__ = ["TASKS", "Batching", "KeyedDataset", "RunContext", "StepOutput", "Task"]
