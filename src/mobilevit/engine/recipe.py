"""Loading a training recipe: the task's config class (from the task table), the YAML, the overrides."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from .config import ConfigError, build_config, parse_overrides, read_recipe
from .tasks import TASKS


def builtin_recipes() -> dict[str, Path]:
    """The recipes that ship inside the package (``mobilevit/recipes/*.yaml``), by name."""
    folder = Path(str(resources.files("mobilevit") / "recipes"))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def find_recipe(name: str | Path) -> Path:
    """``name`` as a path, or the built-in recipe of that name (``demo_digits``, ...)."""
    path = Path(name)
    if path.is_file() or path.suffix in (".yaml", ".yml") or path.parent != Path("."):
        return path  # a path (a missing one is reported by read_recipe)
    found = builtin_recipes()
    if str(name) in found:
        return found[str(name)]
    raise ConfigError(f"config {name!r} is neither a file nor a built-in recipe ({', '.join(found)})")


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, base: dict[str, Any] | None = None
) -> Any:
    """Defaults, then ``base`` (e.g. what a weights file records), then the YAML recipe at
    ``path`` (a file, or a built-in recipe's name such as ``demo_digits``), then ``key=value``
    ``overrides``; validated.

    The ``task`` key (override, recipe, then base; default classification) picks the config class
    from the task table: `TrainConfig`, `SegTrainConfig` or
    `DetTrainConfig` for the built-in tasks.

    Args:
        path: a recipe file or a built-in recipe's name, or None.
        overrides: ``section.key=value`` strings (values read as YAML).
        base: a nested mapping applied before the recipe.

    Returns:
        The validated config of the task's class; `ConfigError` naming the key otherwise.
    """
    data = read_recipe(find_recipe(path)) if path is not None else {}
    extra = parse_overrides(overrides or [])
    base = base or {}
    task = extra.get("task", data.get("task", base.get("task", "classification")))
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return build_config(TASKS[task].config_cls, base, data, extra)
