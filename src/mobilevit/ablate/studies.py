"""The studies as data: what each varies (its knobs), what the paper found, and the study YAML
files that ship with the package (``mobilevit/recipes/ablations/``), parsed and checked."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

PACKAGED = Path(str(resources.files("mobilevit") / "recipes" / "ablations"))  # shipped with the package


DEFAULT_OUT = Path("runs") / "ablations"


class AblationError(ValueError):
    """A study that cannot be run as asked; raised before any training."""


@dataclass(frozen=True)
class StudyKind:
    """What a study varies (config keys, its "knobs"), what the paper found, how it is drawn."""

    name: str
    title: str
    knobs: tuple[str, ...]
    paper: str
    latency: bool = False  # measure batch-1 latency of every variant beside the accuracy


KINDS: dict[str, StudyKind] = {
    k.name: k
    for k in (
        StudyKind(
            "weight-decay",
            "Weight decay",
            ("optim.weight_decay",),
            "MobileViT-S on ImageNet-1k with AdamW: weight decay 0.01, 0.001 and 0.0001 converge "
            "alike (training and validation curves on top of each other); 0.1 is the odd one out.",
        ),
        StudyKind(
            "skip-connection",
            "Skip connection of the MobileViT block",
            ("model.overrides.skip_connection",),
            "The block's skip connection (its input concatenated before the fusion conv) adds "
            "about 0.5 top-1.",
        ),
        StudyKind(
            "patch-size",
            "Patch sizes of the MobileViT stages",
            ("model.overrides.patch_size",),
            "Smaller patches are more accurate, larger patches are faster: {8,4,2} runs faster "
            "than the default {2,2,2} and loses some top-1.",
            latency=True,
        ),
        StudyKind(
            "fusion",
            "Fusion in the MobileViT block (v1 vs v3)",
            (
                "model.overrides.fusion",
                "model.overrides.fusion_residual",
                "model.overrides.local_depthwise",
            ),
            "MobileViTv3 (Wadekar & Chaurasia 2022, Section 3 and its ablation): fusing the local "
            "and global features with a 1x1 conv instead of the input and global ones with a 3x3, "
            "adding the block input, and a depthwise local conv give v3-XXS 70.98 top-1 against "
            "v1-XXS's 69.0 on ImageNet-1k, with fewer parameters in the fusion.",
            latency=True,
        ),
        StudyKind(
            "ema-label-smoothing",
            "EMA and label smoothing",
            ("ema.enabled", "optim.label_smoothing"),
            "EMA of the weights adds about 0.2-0.3 top-1; label smoothing (0.1) helps slightly.",
        ),
    )
}


KNOB_LABELS = {
    "optim.weight_decay": "weight decay",
    "model.overrides.skip_connection": "skip connection",
    "model.overrides.patch_size": "patch sizes",
    "model.overrides.fusion": "fusion",
    "model.overrides.fusion_residual": "input residual",
    "model.overrides.local_depthwise": "depthwise local conv",
    "ema.enabled": "EMA",
    "optim.label_smoothing": "label smoothing",
}


MODEL_OVERRIDES = "model.overrides."


OUTPUT_FILES = ("results.csv", "results.md", "runs.csv", "curves.csv")


_VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


_STUDY_KEYS = {"study", "recipe", "reference", "variants"}


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def format_value(key: str, value: Any) -> str:
    """A knob value as people write it: on/off, 8,4,2, 0.0001."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list | tuple):
        parts = []
        for v in value:
            if isinstance(v, list | tuple):
                parts.append(str(v[0]) if len(set(v)) == 1 else "x".join(map(str, v)))
            else:
                parts.append(str(v))
        return ",".join(parts)
    return str(value)


@dataclass(frozen=True)
class Variant:
    name: str
    settings: dict[str, Any]  # knob -> value

    @property
    def label(self) -> str:
        return ", ".join(f"{KNOB_LABELS.get(k, k)} {format_value(k, v)}" for k, v in self.settings.items())


@dataclass
class StudySpec:
    """A study file: its kind, the recipe its variants start from, and the variants."""

    kind: StudyKind
    path: Path
    recipe: Path
    reference: str
    variants: dict[str, Variant]


def study_dirs() -> list[Path]:
    """Where study names are looked up: ./configs/ablations, then the package's own studies."""
    out: list[Path] = []
    for d in (Path.cwd() / "configs" / "ablations", PACKAGED):
        if d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def load_study(study: str | Path) -> StudySpec:
    """A study by name (``weight-decay``, ...) or by the path of a study YAML file."""
    text = str(study)
    if text.endswith((".yaml", ".yml")) or Path(text).is_file():
        path = Path(text)
        if not path.is_file():
            raise AblationError(f"study file {path} not found")
    elif text in KINDS:
        found = [d / f"{text}.yaml" for d in study_dirs() if (d / f"{text}.yaml").is_file()]
        if not found:
            raise AblationError(
                f"the config of study {text!r} ({text}.yaml) is in none of "
                f"{', '.join(map(str, study_dirs()))}; give the path of its YAML file instead"
            )
        path = found[0]
    else:
        raise AblationError(f"unknown study {text!r}; studies: {', '.join(KINDS)} (or a study YAML file)")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise AblationError(f"{path}: a study file is a mapping with keys {', '.join(sorted(_STUDY_KEYS))}")
    unknown = sorted(set(data) - _STUDY_KEYS)
    if unknown:
        raise AblationError(f"{path}: unknown key(s) {unknown}; accepted: {', '.join(sorted(_STUDY_KEYS))}")
    kind_name = data.get("study")
    if kind_name not in KINDS:
        raise AblationError(f"{path}: study {kind_name!r} is not one of {', '.join(KINDS)}")
    if text in KINDS and kind_name != text:
        raise AblationError(f"{path} declares study {kind_name!r}, not {text!r}")
    kind = KINDS[kind_name]
    if not data.get("recipe"):
        raise AblationError(
            f"{path}: 'recipe' (the classification recipe the variants start from) is missing"
        )
    recipe = (path.parent / str(data["recipe"])).resolve()
    raw = data.get("variants")
    if not isinstance(raw, dict) or not raw:
        raise AblationError(f"{path}: 'variants' must map variant names to their knob values")
    variants: dict[str, Variant] = {}
    for name, settings in raw.items():
        name = str(name)
        if not _VARIANT_NAME.match(name):
            raise AblationError(f"{path}: variant name {name!r} must be letters, digits, '.', '_', '+', '-'")
        if not isinstance(settings, dict) or set(settings) != set(kind.knobs):
            got = sorted(settings) if isinstance(settings, dict) else settings
            raise AblationError(
                f"{path}: variant {name!r} must set exactly the study's knob(s) {list(kind.knobs)} "
                f"and nothing else, got {got}"
            )
        variants[name] = Variant(name, {k: settings[k] for k in kind.knobs})
    reference = str(data.get("reference") or next(iter(variants)))
    if reference not in variants:
        raise AblationError(f"{path}: reference {reference!r} is not a variant ({', '.join(variants)})")
    return StudySpec(kind, path, recipe, reference, variants)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)
