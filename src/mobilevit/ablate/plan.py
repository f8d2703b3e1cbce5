"""Planning a study: the request checked against the study, the recipe and the data, and every
run's config resolved, before anything is trained or written."""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..engine import load_config
from ..engine.config import parse_overrides
from ..engine.trainer import VOLATILE_KEYS  # settings that do not change what a run computes
from .studies import DEFAULT_OUT, MODEL_OVERRIDES, AblationError, StudySpec, Variant, _n, load_study


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

    Args:
        model: a built MobileViT (its ``config`` and ``feature_info`` are read).
        img_size: the square training input side, pixels.
        where: what the messages call the model, e.g. ``"variant patch-2x2"``.

    Returns:
        One note per stage whose map is resized for its patches; empty when all divide.

    Raises:
        AblationError: a patch larger than its stage's feature map.
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
    from ..data.folders import find_split
    from ..data.synthetic import SHAPES

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


@dataclass
class RunSpec:
    variant: str
    seed: int
    dir: Path
    overrides: list[str]  # on top of the recipe: `mobilevit train --config RECIPE <overrides>`
    cfg: Any

    def status(self) -> str:
        """``finished`` (``summary.json`` in its folder), ``interrupted`` (``resume.pt``) or ``new``."""
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
        """A few lines for the terminal: the study's size and setting, each variant's parameters and
        per-seed `RunSpec.status`, then the notes."""
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


def _opt(flag: str, help: str, kind: type = str, training: bool = True) -> Any:
    return field(default=None, metadata={"flag": flag, "help": help, "type": kind, "training": training})


@dataclass(frozen=True)
class StudyOptions:
    """The options of a study request, declared once: `plan_study` takes them, the
    ``mobilevit ablate`` parser is built from them, `command_line` writes them back as
    flags, and ``--replot`` refuses the training ones."""

    data: str | None = _opt("--data", "digits, shapes, or a folder with train/ and val/ class folders")
    model: str | None = _opt("--model", "e.g. mobilevit_xxs (default: the recipe's)")
    epochs: int | None = _opt("--epochs", "epochs per run (default: the recipe's)", int)
    seeds: int | None = _opt("--seeds", "seeds per variant: run.seed, run.seed+1, ... (default 1)", int)
    variants: tuple[str, ...] | None = _opt("--variants", "comma-separated subset of the study's variants")
    recipe: str | None = _opt("--recipe", "classification recipe to start from (default: the study's)")
    latency_iters: int | None = _opt("--latency-iters", "timed passes per round (patch-size; 30)", int)
    out_dir: str | None = _opt(
        "--out-dir", "the study's folder (default: runs/ablations/STUDY)", training=False
    )
    overrides: tuple[str, ...] = ()  # section.key=value for every variant

    @staticmethod
    def flags() -> list[Any]:
        """The fields that are command-line flags (all but ``overrides``)."""
        return [f for f in fields(StudyOptions) if "flag" in f.metadata]

    def given_training_options(self) -> list[str]:
        """The flags (and overrides) set that only a training request takes."""
        given = [
            f.metadata["flag"]
            for f in self.flags()
            if f.metadata["training"] and getattr(self, f.name) is not None
        ]
        return given + (["section.key=value overrides"] if self.overrides else [])


def command_line(study: str, options: StudyOptions) -> str:
    """The ``mobilevit ablate`` command that makes this plan (recorded in study.json)."""
    parts = ["mobilevit", "ablate", str(study), *options.overrides]  # overrides right after STUDY
    for f in StudyOptions.flags():
        value = getattr(options, f.name)
        if value is not None:
            parts += [f.metadata["flag"], ",".join(value) if isinstance(value, tuple) else str(value)]
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


def plan_study(study: str, options: StudyOptions | None = None, **kwargs: Any) -> Plan:
    """Check a request and resolve every run's config; nothing is trained or written.

    The request is ``options``, or `StudyOptions` fields given as keyword arguments.

    Args:
        study: a built-in study's name (``weight-decay``, ...) or a study YAML's path.
        options: the request; ``None``: built from ``kwargs``.
        **kwargs: `StudyOptions` fields, when ``options`` is not given.

    Returns:
        The `Plan`: one `RunSpec` per seed and variant (seed-major), with its config loaded.

    Raises:
        AblationError: an invalid or contradictory request, a variant that cannot be built, or an
            output folder holding another study or runs trained with other settings.
    """
    o = options if options is not None else StudyOptions(**kwargs)
    from ..bench import count_params
    from ..models import create_model

    spec = load_study(study)
    kind = spec.kind
    if o.seeds is not None and o.seeds < 1:
        raise AblationError(f"--seeds must be at least 1, got {o.seeds}")
    if o.epochs is not None and o.epochs < 1:
        raise AblationError(f"--epochs must be at least 1, got {o.epochs}")
    if o.latency_iters is not None:
        if not kind.latency:
            raise AblationError(
                f"--latency-iters only applies to studies that time their variants (patch-size), not {kind.name}"
            )
        if o.latency_iters < 1:
            raise AblationError(f"--latency-iters must be at least 1, got {o.latency_iters}")

    if o.variants:
        unknown = [v for v in o.variants if v not in spec.variants]
        if unknown:
            raise AblationError(
                f"unknown variant(s) {unknown} of study {kind.name}; variants: {', '.join(spec.variants)}"
            )
        dup = sorted({v for v in o.variants if list(o.variants).count(v) > 1})
        if dup:
            raise AblationError(f"--variants lists {dup} more than once")
        chosen = [spec.variants[v] for v in o.variants]
    else:
        chosen = list(spec.variants.values())

    # user overrides: not the studied knob, not what a flag already says, not the run folders
    flat = _flatten(parse_overrides(list(o.overrides)))
    for key, value in flat.items():
        for knob in kind.knobs:
            if _touches(key, knob):
                raise AblationError(
                    f"override {key}={value!r} sets {knob}, the knob study {kind.name} varies "
                    f"({'; '.join(f'{v.name}: {v.label}' for v in spec.variants.values())}); drop it "
                    "(pick variants with --variants)"
                )
    for flag, value, keys in (
        ("--model", o.model, ("model.name",)),
        ("--epochs", o.epochs, ("optim.epochs",)),
        (
            "--data",
            o.data,
            ("data.dataset",) + (() if o.data in (None, "digits", "shapes") else ("data.root",)),
        ),
    ):
        clash = [k for k in keys if k in flat]
        if value is not None and clash:
            raise AblationError(
                f"contradictory: {flag} {value} and {clash[0]}={flat[clash[0]]!r}; give only one of them"
            )
    if any(k.startswith("run.out_dir") for k in flat):
        raise AblationError("run.out_dir is set per run by the study; use --out-dir for the study's folder")

    recipe_path = Path(o.recipe) if o.recipe else spec.recipe
    if not recipe_path.is_file():
        raise AblationError(f"recipe {recipe_path} not found")
    common: list[str] = []
    if o.data is not None:
        common += _resolve_data(o.data)
    if o.model is not None:
        common.append(f"model.name={o.model}")
    if o.epochs is not None:
        common.append(f"optim.epochs={o.epochs}")
    common += list(o.overrides)
    try:
        base = load_config(recipe_path, common)
    except ValueError as e:
        raise AblationError(f"recipe {recipe_path} with {common}: {e}") from e
    if getattr(base, "task", "classification") != "classification":
        raise AblationError(f"ablations train classifiers; the recipe is a {base.task} recipe")
    out = Path(o.out_dir) if o.out_dir else DEFAULT_OUT / kind.name
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
    seed_list = [first_seed + i for i in range(o.seeds or 1)]
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

    command = command_line(study, o)
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
        o.latency_iters or 30,
    )
