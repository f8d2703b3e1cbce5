"""The paper's ablations, asked again with one command: ``mobilevit ablate STUDY``.

Four studies from the paper's appendix, each a YAML file in ``configs/ablations/`` that names
the classification recipe it starts from and, per variant, the value of the one knob it turns:

- ``weight-decay``: AdamW weight decay 0.1 / 0.01 / 0.001 / 0.0001;
- ``skip-connection``: the MobileViT block's concat of its input before the fusion conv, on / off;
- ``patch-size``: the patch sizes of the three MobileViT stages, with batch-1 latency beside
  the accuracy;
- ``ema-label-smoothing``: EMA on / off x label smoothing 0 / 0.1.

Every variant is trained with everything else equal (same recipe, same data, same seeds: the
data order and augmentation draws of seed k are the same in every variant, and so is the
model initialisation where the variants share an architecture), one run per (variant, seed)
in ``OUT/<variant>/seed<k>/`` (a normal training run folder). A study writes ``study.json``
(its plan and the command that made it) first, trains the runs one after another, and at the
end ``results.csv`` / ``results.md`` (mean and spread over seeds), ``runs.csv`` (one row per
run), ``curves.csv`` (every run's epochs), ``<variant>/curves.png`` and one figure
``<study>.png`` in the manner of the paper.

Rerunning the same command resumes an interrupted study: finished runs are kept, a stopped run
continues from its ``resume.pt``, the rest start. ``--replot`` redraws the tables and figures of
a finished study from its files, without training. Everything that can be wrong with a request
(unknown study or variant, a patch larger than its stage's feature map, contradictory flags, an
override of the studied knob itself, an output folder made with other settings) is an
:class:`AblationError` raised before any training.
"""

from __future__ import annotations

import csv
import json
import math
import re
import shlex
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .engine import load_config, train
from .engine.config import parse_overrides
from .engine.trainer import VOLATILE_KEYS  # settings that do not change what a run computes

REPO = Path(__file__).resolve().parents[2]
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
    """Where study names are looked up: ./configs/ablations, then the source tree's."""
    out: list[Path] = []
    for d in (Path.cwd() / "configs" / "ablations", REPO / "configs" / "ablations"):
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


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{str(k).replace('-', '_')}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _sections(cfg: dict[str, Any]) -> dict[str, Any]:
    """``{"optim": {"lr": 1}}`` -> ``{"optim.lr": 1}``; values inside a section (e.g. the
    model.overrides mapping) stay whole."""
    out: dict[str, Any] = {}
    for sec, body in cfg.items():
        if isinstance(body, dict):
            out.update({f"{sec}.{k}": v for k, v in body.items()})
        else:
            out[sec] = body
    return out


def _touches(key: str, knob: str) -> bool:
    return key == knob or key.startswith(knob + ".")


# ------------------------------------------------------------------ checks
def feature_map_sides(model: Any, img_size: int) -> dict[int, int]:
    """Side of each MobileViT stage's feature map (stage index -> pixels) for a square input.

    Every stride-2 conv here (3x3, padding 1) maps n to ceil(n / 2), so a stage with reduction r
    sees ceil(img_size / r) pixels.
    """
    return {i: math.ceil(img_size / model.feature_info[i].reduction) for i in model.config.vit_stage_indices}


def check_patch_sizes(model: Any, img_size: int, where: str) -> list[str]:
    """Reject a patch larger than its stage's feature map at ``img_size``; return notes on the rest.

    The block resizes a map whose side is not a multiple of the patch up to the next multiple
    (and back). A patch larger than the map would blow the map up just to make a single patch:
    that is not the architecture being studied, so it is an error. A patch that fits but does
    not divide the map is allowed (the paper's rule) and noted.
    """
    notes = []
    for i, side in feature_map_sides(model, img_size).items():
        ph, pw = model.config.stages[i].patch_size
        if ph > side or pw > side:
            need = max(
                max(model.config.stages[j].patch_size) * model.feature_info[j].reduction
                for j in model.config.vit_stage_indices
            )
            raise AblationError(
                f"{where}: patch size {ph}x{pw} of stage {i + 1} does not fit its {side}x{side} feature map "
                f"(data.img_size={img_size}, stage {i + 1} reduces by {model.feature_info[i].reduction}): the "
                f"block would interpolate the map up to {ph}x{pw} just to form one patch. Use patches of at "
                f"most {side} there, or data.img_size >= {need}"
            )
        if side % ph or side % pw:
            notes.append(
                f"{where}: stage {i + 1}'s {side}x{side} map is resized to "
                f"{math.ceil(side / ph) * ph}x{math.ceil(side / pw) * pw} for {ph}x{pw} patches"
            )
    return notes


def _count_classes(cfg: Any) -> int:
    from .data.folders import find_split
    from .data.synthetic import SHAPES

    if cfg.model.num_classes:
        return int(cfg.model.num_classes)
    if cfg.data.dataset == "digits":
        return 10
    if cfg.data.dataset == "shapes":
        return len(SHAPES)
    find_split(cfg.data.root, cfg.data.val_split)
    train_dir = find_split(cfg.data.root, cfg.data.train_split)
    n = sum(1 for p in train_dir.iterdir() if p.is_dir())
    if n == 0:
        raise AblationError(f"{train_dir} holds no class folders")
    return n


def _config_diff(stored_path: Path, planned: Any) -> list[str]:
    """Settings in which the run folder's config.yaml differs from the planned run's config.

    The stored file is read through the config loader, so fields added to the engine since it
    was written take their defaults; keys in ``VOLATILE_KEYS`` do not count.
    """
    try:
        stored = load_config(stored_path).to_dict()
    except ValueError as e:
        return [f"its config.yaml no longer loads: {e}"]
    a, b = _sections(stored), _sections(planned.to_dict())
    missing = "(not set)"
    return [
        f"{k}: {a.get(k, missing)!r} there, {b.get(k, missing)!r} now"
        for k in sorted(set(a) | set(b))
        if k not in VOLATILE_KEYS and a.get(k, missing) != b.get(k, missing)
    ]


# -------------------------------------------------------------------- plan
@dataclass
class RunSpec:
    variant: str
    seed: int
    dir: Path
    overrides: list[str]  # on top of the recipe: `mobilevit train --config RECIPE <overrides>`
    cfg: Any

    def status(self) -> str:
        if (self.dir / "summary.json").is_file():
            return "finished"
        if (self.dir / "resume.pt").is_file():
            return "interrupted"
        return "new"


@dataclass
class Plan:
    spec: StudySpec
    recipe: Path
    variants: list[Variant]
    seeds: list[int]
    out_dir: Path
    runs: list[RunSpec]
    command: str
    num_classes: int
    params: dict[str, int]
    model_overrides: dict[str, dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    latency_iters: int = 30

    @property
    def base(self) -> Any:
        return self.runs[0].cfg

    def describe(self) -> str:
        c = self.base
        lines = [
            f"study {self.spec.kind.name}: {len(self.variants)} variant(s) x {len(self.seeds)} seed(s) "
            f"{self.seeds} = {len(self.runs)} runs of {c.model.name} on {c.data.dataset} "
            f"({self.num_classes} classes, {c.data.img_size} px, {_n(c.optim.epochs, 'epoch')}) -> {self.out_dir}"
        ]
        for v in self.variants:
            states = [r.status() for r in self.runs if r.variant == v.name]
            lines.append(
                f"  {v.name:14s} {v.label:40s} {self.params[v.name]:>10,d} params  "
                + ", ".join(f"seed {s}: {st}" for s, st in zip(self.seeds, states, strict=True))
            )
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def command_line(
    study: str,
    *,
    data: str | None = None,
    model: str | None = None,
    epochs: int | None = None,
    seeds: int | None = None,
    variants: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
    recipe: str | None = None,
    out_dir: str | None = None,
    latency_iters: int | None = None,
) -> str:
    """The ``mobilevit ablate`` command that makes this plan (recorded in study.json)."""
    parts = ["mobilevit", "ablate", str(study), *overrides]  # overrides right after STUDY
    for flag, value in (
        ("--data", data),
        ("--model", model),
        ("--epochs", epochs),
        ("--seeds", seeds),
        ("--variants", ",".join(variants) if variants else None),
        ("--recipe", recipe),
        ("--latency-iters", latency_iters),
        ("--out-dir", out_dir),
    ):
        if value is not None:
            parts += [flag, str(value)]
    return shlex.join(parts)


def _resolve_data(data: str) -> list[str]:
    if data in ("digits", "shapes"):
        return [f"data.dataset={data}"]
    p = Path(data)
    if not p.is_dir():
        raise AblationError(
            f"--data {data!r} is neither a built-in set (digits, shapes) nor a folder with train/ and val/"
        )
    return ["data.dataset=folder", f"data.root={p}"]


def plan_study(
    study: str,
    *,
    data: str | None = None,
    model: str | None = None,
    epochs: int | None = None,
    seeds: int | None = None,
    variants: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
    recipe: str | None = None,
    out_dir: str | None = None,
    latency_iters: int | None = None,
) -> Plan:
    """Check a request and resolve every run's config; nothing is trained or written."""
    from .bench import count_params
    from .models import create_model

    spec = load_study(study)
    kind = spec.kind
    if seeds is not None and seeds < 1:
        raise AblationError(f"--seeds must be at least 1, got {seeds}")
    if epochs is not None and epochs < 1:
        raise AblationError(f"--epochs must be at least 1, got {epochs}")
    if latency_iters is not None:
        if not kind.latency:
            raise AblationError(
                f"--latency-iters only applies to studies that time their variants (patch-size), not {kind.name}"
            )
        if latency_iters < 1:
            raise AblationError(f"--latency-iters must be at least 1, got {latency_iters}")

    if variants:
        unknown = [v for v in variants if v not in spec.variants]
        if unknown:
            raise AblationError(
                f"unknown variant(s) {unknown} of study {kind.name}; variants: {', '.join(spec.variants)}"
            )
        dup = sorted({v for v in variants if list(variants).count(v) > 1})
        if dup:
            raise AblationError(f"--variants lists {dup} more than once")
        chosen = [spec.variants[v] for v in variants]
    else:
        chosen = list(spec.variants.values())

    # user overrides: not the studied knob, not what a flag already says, not the run folders
    flat = _flatten(parse_overrides(list(overrides)))
    for key, value in flat.items():
        for knob in kind.knobs:
            if _touches(key, knob):
                raise AblationError(
                    f"override {key}={value!r} sets {knob}, the knob study {kind.name} varies "
                    f"({'; '.join(f'{v.name}: {v.label}' for v in spec.variants.values())}); drop it "
                    "(pick variants with --variants)"
                )
    for flag, value, keys in (
        ("--model", model, ("model.name",)),
        ("--epochs", epochs, ("optim.epochs",)),
        ("--data", data, ("data.dataset",) + (() if data in (None, "digits", "shapes") else ("data.root",))),
    ):
        clash = [k for k in keys if k in flat]
        if value is not None and clash:
            raise AblationError(
                f"contradictory: {flag} {value} and {clash[0]}={flat[clash[0]]!r}; give only one of them"
            )
    if any(k.startswith("run.out_dir") for k in flat):
        raise AblationError("run.out_dir is set per run by the study; use --out-dir for the study's folder")

    recipe_path = Path(recipe) if recipe else spec.recipe
    if not recipe_path.is_file():
        raise AblationError(f"recipe {recipe_path} not found")
    common: list[str] = []
    if data is not None:
        common += _resolve_data(data)
    if model is not None:
        common.append(f"model.name={model}")
    if epochs is not None:
        common.append(f"optim.epochs={epochs}")
    common += list(overrides)
    try:
        base = load_config(recipe_path, common)
    except ValueError as e:
        raise AblationError(f"recipe {recipe_path} with {common}: {e}") from e
    if getattr(base, "task", "classification") != "classification":
        raise AblationError(f"ablations train classifiers; the recipe is a {base.task} recipe")
    out = Path(out_dir) if out_dir else DEFAULT_OUT / kind.name
    if base.data.dataset in ("digits", "shapes") and not base.data.root:
        common.append(f"data.root={out / 'data' / base.data.dataset}")  # written once, shared by all runs
    num_classes = _count_classes(base)

    params: dict[str, int] = {}
    model_overrides: dict[str, dict[str, Any]] = {}
    variant_overrides: dict[str, list[str]] = {}
    notes: list[str] = []
    for v in chosen:
        items = [
            f"{k}={json.dumps(val)}" for k, val in v.settings.items() if not k.startswith(MODEL_OVERRIDES)
        ]
        mo = {
            k[len(MODEL_OVERRIDES) :]: val for k, val in v.settings.items() if k.startswith(MODEL_OVERRIDES)
        }
        if mo:
            items.append(f"model.overrides={json.dumps({**base.model.overrides, **mo})}")
        try:
            vcfg = load_config(recipe_path, common + items)
        except ValueError as e:
            raise AblationError(f"variant {v.name}: {e}") from e
        try:
            net = create_model(vcfg.model.name, num_classes=num_classes, **vcfg.model.overrides)
        except (TypeError, ValueError) as e:
            raise AblationError(f"variant {v.name}: {e}") from e
        notes += check_patch_sizes(net, vcfg.data.img_size, f"variant {v.name}")
        params[v.name] = count_params(net)
        model_overrides[v.name] = dict(vcfg.model.overrides)
        variant_overrides[v.name] = items

    first_seed = base.run.seed
    seed_list = [first_seed + i for i in range(seeds or 1)]
    runs: list[RunSpec] = []
    for seed in seed_list:  # seed-major: an interrupted study has whole seeds done first
        for v in chosen:
            run_dir = out / v.name / f"seed{seed}"
            ovr = common + variant_overrides[v.name] + [f"run.seed={seed}", f"run.out_dir={run_dir}"]
            runs.append(RunSpec(v.name, seed, run_dir, ovr, load_config(recipe_path, ovr)))

    # an output folder made with other settings is not silently mixed with this request
    manifest = out / "study.json"
    if manifest.is_file():
        other = json.loads(manifest.read_text()).get("study")
        if other != kind.name:
            raise AblationError(f"{out} holds study {other!r}, not {kind.name}; use another --out-dir")
    for r in runs:
        stored = r.dir / "config.yaml"
        if stored.is_file():
            diff = _config_diff(stored, r.cfg)
            if diff:
                raise AblationError(
                    f"{r.dir} was trained with other settings ({'; '.join(diff[:4])}); use another "
                    "--out-dir, or delete that folder to train it again"
                )

    command = command_line(
        study,
        data=data,
        model=model,
        epochs=epochs,
        seeds=seeds,
        variants=variants,
        overrides=overrides,
        recipe=recipe,
        out_dir=out_dir,
        latency_iters=latency_iters,
    )
    return Plan(
        spec,
        recipe_path,
        chosen,
        seed_list,
        out,
        runs,
        command,
        num_classes,
        params,
        model_overrides,
        notes,
        latency_iters or 30,
    )


# --------------------------------------------------------------------- run
def _manifest(plan: Plan, complete: bool) -> dict[str, Any]:
    c = plan.base
    return {
        "study": plan.spec.kind.name,
        "title": plan.spec.kind.title,
        "paper": plan.spec.kind.paper,
        "study_file": str(plan.spec.path),
        "recipe": str(plan.recipe),
        "knobs": list(plan.spec.kind.knobs),
        "reference": plan.spec.reference,
        "command": plan.command,
        "model": c.model.name,
        "dataset": c.data.dataset,
        "data_root": c.data.root,
        "num_classes": plan.num_classes,
        "img_size": c.data.img_size,
        "epochs": c.optim.epochs,
        "threads": c.run.threads,
        "seeds": plan.seeds,
        "latency_iters": plan.latency_iters,
        "variants": [
            {
                "name": v.name,
                "label": v.label,
                "settings": v.settings,
                "params": plan.params[v.name],
                "model_overrides": plan.model_overrides[v.name],
            }
            for v in plan.variants
        ],
        "runs": [
            {
                "variant": r.variant,
                "seed": r.seed,
                "dir": str(r.dir.relative_to(plan.out_dir)),
                "overrides": r.overrides,
            }
            for r in plan.runs
        ],
        "complete": complete,
    }


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def _clear_run(run_dir: Path) -> None:
    """A run that starts from scratch: leftovers of a run killed before its first epoch ended go."""
    import shutil

    for name in (
        "metrics.jsonl",
        "metrics.csv",
        "curves.png",
        "report.md",
        "last.safetensors",
        "best.safetensors",
    ):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)


def run_study(plan: Plan, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train what is not finished, then write the tables and figures; stops with a stopped run."""
    out = plan.out_dir
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "study.json", _manifest(plan, complete=False))
    if any(r.status() != "finished" for r in plan.runs):  # tables of an earlier request are stale now
        for name in (*OUTPUT_FILES, f"{plan.spec.kind.name}.png", "latency.json"):
            (out / name).unlink(missing_ok=True)
    n = len(plan.runs)
    for i, run in enumerate(plan.runs, 1):
        tag = f"[{i}/{n}] {plan.spec.kind.name} {run.variant} seed {run.seed}"
        status = run.status()
        if status == "finished":
            echo(f"{tag}: finished earlier, kept ({run.dir})")
            continue
        resume = None
        if status == "interrupted":
            resume = run.dir / "resume.pt"
            echo(f"{tag}: resuming from {resume}")
        else:
            _clear_run(run.dir)
            echo(f"{tag}: training -> {run.dir}")
        summary = train(run.cfg, resume=resume)
        if summary["stopped"] is not None:
            echo(
                f"{tag}: stopped ({summary['stopped']}); the study is interrupted after {i - 1} of {n} runs. "
                f"Run the same command again to resume it: {plan.command}"
            )
            return {"stopped": summary["stopped"], "out_dir": str(out), "runs_finished": i - 1, "runs": n}
        _write_json(run.dir / "summary.json", summary)
    if plan.spec.kind.latency:
        _write_json(out / "latency.json", measure_latency_table(_manifest(plan, complete=True), echo=echo))
    _write_json(out / "study.json", _manifest(plan, complete=True))
    paths = write_outputs(out)
    echo(f"study {plan.spec.kind.name} finished: {paths['results.md']}, {paths['figure']}")
    return {"stopped": None, "out_dir": str(out), "runs": n, **{k: str(v) for k, v in paths.items()}}


def latency_sizes(img_size: int) -> list[int]:
    """The study's own input size and, when smaller, the paper's 256 px."""
    return sorted({img_size, max(img_size, 256)})


def measure_latency_table(
    manifest: dict[str, Any], rounds: int = 3, echo: Callable[[str], None] = print
) -> dict[str, Any]:
    """Params, FLOPs and batch-1 latency of every variant, in this process, variants interleaved.

    Each of ``rounds`` rounds times every variant once (``latency_iters`` passes after a
    warm-up) and the median of the rounds' medians is kept, so slow drifts of a shared machine
    hit all variants alike.
    """
    import torch

    from .bench import count_flops, count_params, machine_info, measure_latency
    from .models import create_model

    if manifest.get("threads"):
        torch.set_num_threads(int(manifest["threads"]))
    sizes = latency_sizes(int(manifest["img_size"]))
    models = {
        v["name"]: create_model(
            manifest["model"], num_classes=manifest["num_classes"], **v["model_overrides"]
        ).eval()
        for v in manifest["variants"]
    }
    echo(f"timing {len(models)} variants at {sizes} px, batch 1, {torch.get_num_threads()} threads")
    p50: dict[str, dict[int, list[float]]] = {n: {s: [] for s in sizes} for n in models}
    for _ in range(rounds):
        for name, model in models.items():
            for s in sizes:
                lat = measure_latency(model, (s, s), batch=1, warmup=3, iters=int(manifest["latency_iters"]))
                p50[name][s].append(lat.p50_ms)
    variants = {}
    for name, model in models.items():
        variants[name] = {
            "params": count_params(model),
            **{f"mflops@{s}": count_flops(model, (s, s)) / 1e6 for s in sizes},
            **{f"p50_ms@{s}": statistics.median(p50[name][s]) for s in sizes},
        }
    return {
        "machine": machine_info(),
        "sizes": sizes,
        "rounds": rounds,
        "iters": manifest["latency_iters"],
        "variants": variants,
    }


# ----------------------------------------------------------------- results
@dataclass
class RunResult:
    variant: str
    seed: int
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    kept: str  # the accuracy column of the model the run keeps: val_ema_top1 (EMA on) or val_top1

    def last(self, key: str) -> float:
        vals = [r[key] for r in self.rows if key in r]
        return float(vals[-1]) if vals else float("nan")

    @property
    def top1(self) -> float:
        return self.last(self.kept)


def _stats(values: list[float]) -> dict[str, float | None]:
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return {"mean": None, "std": None, "min": None, "max": None}
    return {
        "mean": statistics.fmean(vals),
        "std": statistics.stdev(vals) if len(vals) > 1 else None,  # sample std over seeds
        "min": min(vals),
        "max": max(vals),
    }


def read_manifest(out_dir: str | Path) -> dict[str, Any]:
    path = Path(out_dir) / "study.json"
    if not path.is_file():
        raise AblationError(
            f"no study in {out_dir} ({path.name} missing); run `mobilevit ablate STUDY` first"
        )
    return json.loads(path.read_text())


def collect(out_dir: str | Path) -> tuple[dict[str, Any], list[RunResult]]:
    """The manifest and every run's epochs; an error naming the runs that are not finished."""
    out = Path(out_dir)
    man = read_manifest(out)
    results, missing = [], []
    for r in man["runs"]:
        d = out / r["dir"]
        if not (d / "summary.json").is_file():
            done = (
                len((d / "metrics.jsonl").read_text().splitlines()) if (d / "metrics.jsonl").is_file() else 0
            )
            missing.append(f"{r['variant']} seed {r['seed']} ({done} of {man['epochs']} epochs)")
            continue
        rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines() if x.strip()]
        kept = "val_ema_top1" if any("val_ema_top1" in x for x in rows) else "val_top1"
        results.append(
            RunResult(r["variant"], r["seed"], rows, json.loads((d / "summary.json").read_text()), kept)
        )
    if missing:
        raise AblationError(
            f"study {man['study']} in {out} is not finished: {', '.join(missing)}. Run its command again "
            f"to resume it: {man['command']}"
        )
    return man, results


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}"


def summarize(man: dict[str, Any], results: list[RunResult]) -> list[dict[str, Any]]:
    """One row per variant: knob values, mean / std / min / max over seeds, size and speed."""
    latency = man.get("_latency") or {}
    rows = []
    ref_top1 = None
    for v in man["variants"]:
        runs = [r for r in results if r.variant == v["name"]]
        top1 = _stats([r.top1 for r in runs])
        row: dict[str, Any] = {"variant": v["name"], "label": v["label"]}
        for k in man["knobs"]:
            val = v["settings"][k]
            row[k] = val
        row["seeds"] = len(runs)
        row.update({f"top1_{s}": x for s, x in top1.items()})
        raw = _stats([r.last("val_top1") for r in runs])
        row.update({"top1_raw_mean": raw["mean"], "top1_raw_std": raw["std"]})
        best = _stats([float(r.summary["best_top1"]) for r in runs])
        row.update({"best_top1_mean": best["mean"], "best_top1_std": best["std"]})
        loss = _stats([r.last("train_loss") for r in runs])
        row.update({"train_loss_mean": loss["mean"], "train_loss_std": loss["std"]})
        vloss = _stats([r.last("val_loss") for r in runs])
        row["val_loss_mean"] = vloss["mean"]
        row["params"] = v["params"]
        for k, x in (latency.get("variants", {}).get(v["name"]) or {}).items():
            if k != "params":
                row[k] = x
        if v["name"] == man["reference"]:
            ref_top1 = top1["mean"]
        rows.append(row)
    out = []
    for row in rows:  # delta_top1 (vs the reference variant) right after the top-1 columns
        delta = None if ref_top1 is None or row["top1_mean"] is None else row["top1_mean"] - ref_top1
        items = list(row.items())
        at = [k for k, _ in items].index("top1_max") + 1
        out.append(dict(items[:at] + [("delta_top1", delta)] + items[at:]))
    return out


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    return json.dumps(v) if isinstance(v, bool | list | tuple | dict) else v


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_value(r.get(k)) for k in keys})


def _markdown(man: dict[str, Any], table: list[dict[str, Any]], figure: str) -> str:
    n_seeds = len(man["seeds"])
    latency = man.get("_latency") or {}
    sizes = latency.get("sizes", [])
    knobs = man["knobs"]
    head = [
        "variant",
        *[KNOB_LABELS.get(k, k) for k in knobs],
        "top-1 %",
        *(["min-max %"] if n_seeds > 1 else []),
        f"Δ vs {man['reference']}",
        "top-1 % of the trained weights",
        "best top-1 %",
        "final train loss",
        "params",
    ]
    head += [f"MFLOPs @{s}" for s in sizes] + [f"p50 ms @{s}" for s in sizes]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(knobs) + "---|" + "---:|" * (len(head) - len(knobs) - 1),
    ]
    for r in table:
        spread = "" if r["top1_std"] is None else f" ± {100 * r['top1_std']:.2f}"
        raw_spread = "" if r["top1_raw_std"] is None else f" ± {100 * r['top1_raw_std']:.2f}"
        cells = [r["variant"]]
        cells += [format_value(k, r[k]) for k in knobs]
        cells += [f"{_pct(r['top1_mean'])}{spread}"]
        cells += [f"{_pct(r['top1_min'])}-{_pct(r['top1_max'])}"] if n_seeds > 1 else []
        cells += [
            "" if r["delta_top1"] is None else f"{100 * r['delta_top1']:+.2f}",
            f"{_pct(r['top1_raw_mean'])}{raw_spread}",
            _pct(r["best_top1_mean"]),
            f"{r['train_loss_mean']:.4f}",
            f"{r['params']:,}",
        ]
        cells += [f"{r[f'mflops@{s}']:.1f}" for s in sizes] + [f"{r[f'p50_ms@{s}']:.2f}" for s in sizes]
        lines.append("| " + " | ".join(cells) + " |")
    kept = "the EMA model when EMA is on, the trained weights otherwise"
    text = [
        f"# Ablation: {man['title']} (`{man['study']}`)",
        "",
        f"Command: `{man['command']}`",
        "",
        f"{man['model']} on {man['dataset']} ({man['num_classes']} classes, {man['img_size']} px), "
        f"{_n(man['epochs'], 'epoch')} per run, seeds {man['seeds']}; recipe `{man['recipe']}`, study file "
        f"`{man['study_file']}`. Each variant is the recipe with only {', '.join(knobs)} changed.",
        "",
        f"Top-1: held-out accuracy after the last epoch of the model the run keeps ({kept}); "
        + (f"mean ± sample std over {n_seeds} seeds, and min-max." if n_seeds > 1 else "1 seed (no spread).")
        + " Top-1 of the trained weights: the same runs' raw model (equal to top-1 where EMA is off)."
        + " Best top-1: the best epoch's, mean over seeds.",
        "",
        *lines,
        "",
    ]
    if sizes:
        m = latency["machine"]
        text += [
            f"Latency: batch 1, fp32, eager PyTorch, {_n(m['threads'], 'thread')} on {m['cpu']}; median of "
            f"{latency['rounds']} interleaved rounds of {latency['iters']} passes each, all variants in one process.",
            "",
        ]
    text += [
        f"The paper: {man['paper']}",
        "",
        f"![{man['study']}]({figure})",
        "",
        "Files: runs.csv (one row per run), curves.csv (every epoch of every run), "
        + ", ".join(f"{v['name']}/curves.png" for v in man["variants"])
        + " (per-variant curves, every seed), <variant>/seed<k>/ (the runs).",
    ]
    return "\n".join(text) + "\n"


def _curve(runs: list[RunResult], key: str) -> tuple[list[int], list[float], list[float], list[float]]:
    by_epoch: dict[int, list[float]] = {}
    for r in runs:
        for row in r.rows:
            if key in row:
                by_epoch.setdefault(int(row["epoch"]), []).append(float(row[key]))
    epochs = sorted(by_epoch)
    return (
        epochs,
        [statistics.fmean(by_epoch[e]) for e in epochs],
        [min(by_epoch[e]) for e in epochs],
        [max(by_epoch[e]) for e in epochs],
    )


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_variant(man: dict[str, Any], variant: dict[str, Any], runs: list[RunResult], path: Path) -> Path:
    """Losses and top-1 per epoch of one variant: every seed (thin) and their mean (bold)."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    names = {
        "val_ema_top1": "val top-1, EMA model",
        "val_top1": "val top-1, trained weights",
        "train_top1": "train top-1",
        "train_loss": "train loss",
        "val_loss": "val loss",
    }
    for ax, keys, scale in (
        (ax1, ("train_loss", "val_loss"), 1.0),
        (ax2, ("val_ema_top1", "val_top1", "train_top1"), 100.0),
    ):
        for j, key in enumerate(keys):
            if not any(key in row for r in runs for row in r.rows):
                continue
            for r in runs:
                pts = [(row["epoch"], scale * row[key]) for row in r.rows if key in row]
                ax.plot(*zip(*pts, strict=True), color=f"C{j}", alpha=0.35, lw=0.8)
            e, mean, _, _ = _curve(runs, key)
            ax.plot(
                e, [scale * m for m in mean], color=f"C{j}", marker=".", lw=1.8, label=f"{names[key]} (mean)"
            )
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(_int_ticks())
        ax.legend(fontsize=8)
    ax1.set_ylabel("loss")
    ax2.set_ylabel("top-1 %")
    fig.suptitle(f"{man['study']}: {variant['name']} ({variant['label']}), {_n(len(runs), 'seed')}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _int_ticks():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


_STYLES = ("-", "--", "-.", ":")


def plot_study(
    man: dict[str, Any], results: list[RunResult], table: list[dict[str, Any]], path: Path
) -> Path:
    """The study's figure, as the paper draws it: training loss and validation top-1 per epoch
    for every variant (mean over seeds, band min-max); for patch sizes also top-1 against
    latency, for EMA x label smoothing also the four final accuracies side by side."""
    plt = _plt()
    study = man["study"]
    extra = study in ("patch-size", "ema-label-smoothing")
    fig, axes = plt.subplots(1, 3 if extra else 2, figsize=(15.5 if extra else 10.5, 4.3))
    ax1, ax2 = axes[0], axes[1]
    for i, v in enumerate(man["variants"]):
        runs = [r for r in results if r.variant == v["name"]]
        style = dict(color=f"C{i}", ls=_STYLES[i % len(_STYLES)], marker=".")
        for ax, key, scale in ((ax1, "train_loss", 1.0), (ax2, runs[0].kept, 100.0)):
            e, mean, lo, hi = _curve(runs, key)
            ax.plot(e, [scale * m for m in mean], label=v["label"], **style)
            if len(runs) > 1:
                ax.fill_between(
                    e, [scale * x for x in lo], [scale * x for x in hi], color=f"C{i}", alpha=0.15
                )
    ax1.set(xlabel="epoch", ylabel="training loss", title="training loss")
    ax2.set(xlabel="epoch", ylabel="top-1 %", title="validation top-1 (EMA model when EMA is on)")
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(_int_ticks())
    ax2.legend(fontsize=8)
    if study == "patch-size":
        ax3 = axes[2]
        size = max((man.get("_latency") or {}).get("sizes", [man["img_size"]]))
        for i, r in enumerate(table):
            x, y = r.get(f"p50_ms@{size}"), r["top1_mean"]
            if x is None or y is None:
                continue
            ax3.errorbar(x, 100 * y, yerr=100 * (r["top1_std"] or 0), fmt="o", color=f"C{i}", capsize=3)
            ax3.annotate(
                "{" + format_value("p", r["model.overrides.patch_size"]) + "}",
                (x, 100 * y),
                textcoords="offset points",
                xytext=(6, 4),
                fontsize=9,
            )
        ax3.set(
            xlabel=f"batch-1 latency, ms at {size} px (CPU, median)",
            ylabel="top-1 %",
            title="accuracy vs latency",
        )
        ax3.margins(x=0.25, y=0.25)
    elif study == "ema-label-smoothing":
        ax3 = axes[2]
        ls_values = sorted({float(v["settings"]["optim.label_smoothing"]) for v in man["variants"]})
        width, tops = 0.38, []
        for j, ema in enumerate((False, True)):
            xs, ys, es = [], [], []
            for k, ls in enumerate(ls_values):
                for r, v in zip(table, man["variants"], strict=True):
                    s = v["settings"]
                    if bool(s["ema.enabled"]) == ema and float(s["optim.label_smoothing"]) == ls:
                        if r["top1_mean"] is None:
                            continue
                        xs.append(k + (j - 0.5) * width)
                        ys.append(100 * r["top1_mean"])
                        es.append(100 * (r["top1_std"] or 0))
            if xs:
                ax3.bar(
                    xs,
                    ys,
                    width,
                    yerr=es,
                    capsize=3,
                    color=f"C{j + 4}",
                    label=f"EMA {'on' if ema else 'off'}",
                )
                for x, y in zip(xs, ys, strict=True):
                    ax3.annotate(
                        f"{y:.2f}",
                        (x, y),
                        ha="center",
                        va="bottom",
                        fontsize=8,
                        textcoords="offset points",
                        xytext=(0, 2),
                    )
                tops += ys
        ax3.set_xticks(range(len(ls_values)), [f"label smoothing {ls:g}" for ls in ls_values])
        if tops:
            ax3.set_ylim(max(0.0, min(tops) - 5), min(100.0, max(tops) + 2))
        ax3.set(ylabel="top-1 % after the last epoch", title="final top-1 (mean over seeds)")
        ax3.legend(fontsize=8, loc="lower right")
    seeds = len(man["seeds"])
    fig.suptitle(
        f"{man['title']}: {man['model']} on {man['dataset']}, {_n(man['epochs'], 'epoch')}, {_n(seeds, 'seed')}"
        + (" (bands: min-max over seeds)" if seeds > 1 else "")
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(out_dir: str | Path, echo: Callable[[str], None] = print) -> dict[str, Path]:
    """Tables and figures of a finished study, from its files alone (this is ``--replot``)."""
    out = Path(out_dir)
    man, results = collect(out)
    kind = KINDS.get(man["study"])
    if kind is not None and kind.latency:
        lat_path = out / "latency.json"
        names = {v["name"] for v in man["variants"]}
        lat = json.loads(lat_path.read_text()) if lat_path.is_file() else {}
        if names - set(lat.get("variants", {})):  # never timed (or for other variants): time them now
            lat = measure_latency_table(man, echo=echo)
            _write_json(lat_path, lat)
        man["_latency"] = lat
    table = summarize(man, results)
    paths = {}
    _write_csv(out / "results.csv", table)
    paths["results.csv"] = out / "results.csv"
    per_run = []
    for r in results:
        v = next(x for x in man["variants"] if x["name"] == r.variant)
        per_run.append(
            {
                "variant": r.variant,
                "seed": r.seed,
                **{k: v["settings"][k] for k in man["knobs"]},
                "epochs": r.summary["epochs_done"],
                "top1": r.top1,
                "top1_raw": r.last("val_top1"),
                "best_top1": r.summary["best_top1"],
                "best_epoch": r.summary["best_epoch"],
                "train_loss": r.last("train_loss"),
                "val_loss": r.last("val_loss"),
                "minutes": r.summary.get("seconds", 0.0) / 60,
            }
        )
    _write_csv(out / "runs.csv", per_run)
    _write_csv(
        out / "curves.csv", [{"variant": r.variant, "seed": r.seed, **row} for r in results for row in r.rows]
    )
    paths["runs.csv"], paths["curves.csv"] = out / "runs.csv", out / "curves.csv"
    for v in man["variants"]:
        (out / v["name"]).mkdir(exist_ok=True)
        plot_variant(man, v, [r for r in results if r.variant == v["name"]], out / v["name"] / "curves.png")
    fig_name = f"{man['study']}.png"
    paths["figure"] = plot_study(man, results, table, out / fig_name)
    (out / "results.md").write_text(_markdown(man, table, fig_name))
    paths["results.md"] = out / "results.md"
    return paths


def replot(study: str, out_dir: str | None = None, echo: Callable[[str], None] = print) -> dict[str, Path]:
    """Redraw the tables and figures of a finished study without training."""
    name = study if study in KINDS else load_study(study).kind.name
    out = Path(out_dir) if out_dir else DEFAULT_OUT / name
    man = read_manifest(out)
    if man.get("study") != name:
        raise AblationError(f"{out} holds study {man.get('study')!r}, not {name}")
    return write_outputs(out, echo=echo)


# -------------------------------------------------------------------- CLI
def _variant_list(args: Any) -> list[str] | None:
    if args.variants is None:
        return None
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not names:
        raise AblationError("--variants needs at least one variant name (comma separated)")
    return names


def plan_from_args(args: Any) -> Plan:
    """The plan of a parsed ``mobilevit ablate`` command line (see :func:`command_line`)."""
    return plan_study(
        args.study,
        data=args.data,
        model=args.model,
        epochs=args.epochs,
        seeds=args.seeds,
        variants=_variant_list(args),
        overrides=args.overrides,
        recipe=args.recipe,
        out_dir=args.out_dir,
        latency_iters=args.latency_iters,
    )


def run_from_args(args: Any) -> int:
    """``mobilevit ablate``: plan, check, train what is left, write the results (or ``--replot``)."""
    if args.replot:
        given = [
            flag
            for flag, value in (
                ("--data", args.data),
                ("--model", args.model),
                ("--epochs", args.epochs),
                ("--seeds", args.seeds),
                ("--variants", args.variants),
                ("--recipe", args.recipe),
                ("--latency-iters", args.latency_iters),
            )
            if value is not None
        ] + (["section.key=value overrides"] if args.overrides else [])
        if given:
            raise AblationError(
                f"contradictory: --replot redraws the study in its folder as it was run, without "
                f"training; it takes no training options (got {', '.join(given)})"
            )
        paths = replot(args.study, args.out_dir)
        print(json.dumps({k: str(v) for k, v in paths.items()}))
        return 0
    plan = plan_from_args(args)
    print(plan.describe(), flush=True)
    result = run_study(plan, echo=lambda s: print(s, flush=True))
    print(json.dumps(result))
    return 0 if result["stopped"] is None else 3
