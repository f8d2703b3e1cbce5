"""Loading a training recipe: the task's config class (from the task table), the YAML, the overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import ConfigError, build_config, parse_overrides, read_recipe
from .tasks import TASKS


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, base: dict[str, Any] | None = None
) -> Any:
    """Defaults, then ``base`` (e.g. what a weights file records), then the YAML recipe at
    ``path``, then ``key=value`` ``overrides``; validated.

    The ``task`` key (override, recipe, then base; default classification) picks the config class
    from the task table: :class:`~.config.TrainConfig`, :class:`~.config.SegTrainConfig` or
    :class:`~.config.DetTrainConfig` for the built-in tasks.
    """
    data = read_recipe(path) if path is not None else {}
    extra = parse_overrides(overrides or [])
    base = base or {}
    task = extra.get("task", data.get("task", base.get("task", "classification")))
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return build_config(TASKS[task].config_cls, base, data, extra)
