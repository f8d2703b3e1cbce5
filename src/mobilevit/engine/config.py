"""Training configuration: dataclass defaults <- YAML recipe <- ``key=value`` overrides.

The sections shared by every task (model, optim, ema, run) and the built-in tasks' data
sections; the machinery that merges a recipe and overrides into them (`build_config`).
Which config class a recipe builds is the task table's business (``engine.recipe``). Unknown
keys and bad values are errors that list what is accepted, raised before any work. The resolved
config is saved beside every run (``config.yaml``).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """An unknown key or an invalid value in a training config."""


@dataclass
class DataConfig:
    dataset: str = "folder"  # folder | digits | shapes
    root: str = ""  # folder root with train/ and val/ (built-in sets: where to write them)
    train_split: str = "train"  # sub-folder of root to train on
    val_split: str = "val"  # sub-folder of root to evaluate on
    img_size: int = 256  # base training resolution and eval crop
    eval_resize: int = 0  # shorter side before the eval centre crop (0: img_size + 32)
    batch_size: int = 128  # per process, at the base resolution
    eval_batch_size: int = 0  # 0: same as batch_size
    multiscale: bool = True  # the multi-scale variable-batch sampler: one of data.resolutions per batch
    # sides the multi-scale sampler draws from; batch size scales with the area
    resolutions: list[int] = field(default_factory=lambda: [160, 192, 256, 288, 320])
    rrc_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # RandomResizedCrop area range
    hflip: float = 0.5  # horizontal flip probability
    interpolation: str = "bilinear"  # bilinear | bicubic, for training and evaluation resizes
    # the MobileViT v2 recipe's stronger augmentation (all off in the v1 recipe)
    randaugment: bool = False  # torchvision RandAugment, 2 ops at magnitude 9
    random_erase: float = 0.0  # RandomErasing probability
    mixup_alpha: float = 0.0  # MixUp on each batch (0: off)
    cutmix_alpha: float = 0.0  # CutMix on each batch (0: off); with both on, one is picked per batch
    num_workers: int = 2  # DataLoader worker processes per rank
    max_bad_fraction: float = 0.01  # fail when more than this fraction of files is unreadable
    builtin_size: int = 32  # image side written for the built-in datasets

    def validate(self) -> None:
        """Raise `ConfigError` naming the first invalid ``data.*`` value."""
        if self.dataset not in ("folder", "digits", "shapes"):
            raise ConfigError(f"data.dataset must be folder, digits or shapes, got {self.dataset!r}")
        if self.dataset == "folder" and not self.root:
            raise ConfigError("data.root is required for data.dataset=folder")
        for name in ("img_size", "batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"data.{name} must be positive, got {getattr(self, name)}")
        if self.multiscale and any(r <= 0 for r in self.resolutions):
            raise ConfigError(f"data.resolutions must be positive, got {self.resolutions}")
        if len(self.rrc_scale) != 2 or not 0 < self.rrc_scale[0] <= self.rrc_scale[1] <= 1:
            raise ConfigError(f"data.rrc_scale must be [lo, hi] with 0 < lo <= hi <= 1, got {self.rrc_scale}")
        if not 0 <= self.hflip <= 1:
            raise ConfigError(f"data.hflip must be a probability, got {self.hflip}")
        if not 0 <= self.random_erase <= 1 or self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise ConfigError(
                "data.random_erase must be a probability, data.mixup_alpha and data.cutmix_alpha >= 0"
            )
        if self.interpolation not in ("bilinear", "bicubic"):
            raise ConfigError(f"data.interpolation must be bilinear or bicubic, got {self.interpolation!r}")
        if self.num_workers < 0 or not 0 <= self.max_bad_fraction <= 1:
            raise ConfigError("data.num_workers must be >= 0 and data.max_bad_fraction in [0, 1]")


@dataclass
class ModelConfig:
    name: str = "mobilevit_s"  # a registered model (mobilevit models)
    num_classes: int = 0  # 0: the number of class folders
    pretrained: str = ""  # weight tag or checkpoint path to start from
    reset_classifier: bool = True  # fine-tuning: a new class count gets a fresh classifier
    overrides: dict[str, Any] = field(default_factory=dict)  # MobileViTConfig fields

    def validate(self) -> None:
        """Raise `ConfigError` for an unknown ``model.name`` or a negative class count."""
        from ..models import list_models

        if self.name not in list_models():
            raise ConfigError(
                f"model.name {self.name!r} is not a model; available: {', '.join(list_models())}"
            )
        if self.num_classes < 0:
            raise ConfigError(f"model.num_classes must be >= 0, got {self.num_classes}")


@dataclass
class OptimConfig:
    epochs: int = 300  # passes over the training set
    lr: float = 2e-3  # peak learning rate (after warmup), for the effective batch
    min_lr: float = 2e-4  # end of the cosine
    warmup_start_lr: float = 2e-4  # learning rate at step 0, rising linearly to lr
    warmup_iters: int = 3000  # optimizer steps
    weight_decay: float = 0.01  # AdamW's decoupled weight decay, on every parameter
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW's (beta1, beta2)
    accum_steps: int = 1  # gradient accumulation to reach an effective batch
    label_smoothing: float = 0.1  # cross-entropy label smoothing (0: off)
    grad_clip: float = 0.0  # max grad norm, 0: off

    def validate(self) -> None:
        """Raise `ConfigError` naming the first invalid ``optim.*`` value."""
        if self.epochs <= 0:
            raise ConfigError(f"optim.epochs must be positive, got {self.epochs}")
        for name in ("lr", "min_lr", "warmup_start_lr"):
            if getattr(self, name) < 0 or (name == "lr" and self.lr == 0):
                raise ConfigError(
                    f"optim.{name} must be {'positive' if name == 'lr' else '>= 0'}, got {getattr(self, name)}"
                )
        if self.warmup_iters < 0 or self.accum_steps < 1:
            raise ConfigError("optim.warmup_iters must be >= 0 and optim.accum_steps >= 1")
        if self.weight_decay < 0 or not 0 <= self.label_smoothing < 1 or self.grad_clip < 0:
            raise ConfigError(
                "optim.weight_decay and optim.grad_clip must be >= 0, optim.label_smoothing in [0, 1)"
            )
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"optim.betas must be two numbers in [0, 1), got {self.betas}")


@dataclass
class EMAConfig:
    # keep an exponential moving average of weights and BN buffers, evaluated beside the raw model
    enabled: bool = True
    momentum: float = 5e-4  # ema = (1 - momentum) * ema + momentum * weights, every step (the floor)
    # Warmup that forgets the random start: momentum max(momentum, (1 + step / gamma) ** -power)
    # (timm's ModelEmaV3). Its horizon grows like step ** power, so it suits a run of any length;
    # false: the paper's constant momentum from the first step.
    warmup: bool = True
    warmup_power: float = 2 / 3  # power of the warmup ramp (timm's default; vs 3/4: docs/ema_horizon.md)
    warmup_gamma: float = 1.0  # step scale of the warmup ramp
    # Before evaluating the EMA model, re-estimate its BatchNorm statistics on this many training
    # batches (on a copy; "precise BN"). 0: off, the paper's setting. Short runs with large steps
    # need it: the average of BN statistics then no longer matches the averaged weights.
    recalibrate_bn: int = 0

    def validate(self) -> None:
        """Raise `ConfigError` naming the first invalid ``ema.*`` value."""
        if not 0 < self.momentum <= 1:
            raise ConfigError(f"ema.momentum must be in (0, 1], got {self.momentum}")
        if self.warmup_power <= 0 or self.warmup_gamma <= 0:
            raise ConfigError(
                f"ema.warmup_power and ema.warmup_gamma must be positive, got {self.warmup_power} "
                f"and {self.warmup_gamma}"
            )
        if self.recalibrate_bn < 0:
            raise ConfigError(f"ema.recalibrate_bn must be >= 0, got {self.recalibrate_bn}")


@dataclass
class RunConfig:
    out_dir: str = "runs/train"  # the run folder: weights, resume.pt, metrics, report.md, curves.png
    seed: int = 0  # seeds torch, Python and NumPy (and each sample's augmentation)
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool = False  # autocast to bfloat16
    # channels-last memory: auto = on for CPU runs where oneDNN runs the convolutions and for bf16 on
    # CUDA (measured faster for ours and timm alike: docs/train_throughput.md); true / false force it
    channels_last: str = "auto"
    eval_every: int = 1  # epochs
    log_every: int = 10  # steps between progress-bar refreshes of the loss
    max_nonfinite: int = 5  # stop after this many non-finite losses in a row
    max_steps: int = 0  # stop this process after N optimizer steps (writes a resume file); 0: off
    threads: int = 0  # torch CPU threads, 0: torch's default
    # CPU runs under glibc: freed memory stays in the process for the next step instead of going
    # back to the kernel and being page-faulted in again (engine/memory.py)
    keep_freed_memory: bool = True
    progress: bool = True  # a progress bar (off: a log line every log_every steps, at INFO level)
    # A run folder that already holds a resume file of the same config continues from it (what a
    # restarted torchrun worker needs); a folder trained with another config is an error. Off: start over.
    auto_resume: bool = True

    def validate(self) -> None:
        """Raise `ConfigError` naming the first invalid ``run.*`` value (normalises ``channels_last``)."""
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"run.device must be auto, cpu or cuda, got {self.device!r}")
        self.channels_last = str(self.channels_last).lower()
        if self.channels_last not in ("auto", "true", "false"):
            raise ConfigError(f"run.channels_last must be auto, true or false, got {self.channels_last!r}")
        if self.eval_every < 1 or self.log_every < 1 or self.max_nonfinite < 1 or self.max_steps < 0:
            raise ConfigError(
                "run.eval_every, run.log_every and run.max_nonfinite must be >= 1, run.max_steps >= 0"
            )


@dataclass
class TrainConfig:
    task: str = "classification"  # classification | segmentation | detection: picks the config class
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def validate(self) -> TrainConfig:
        """Validate every section; returns ``self``."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                value.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        """The config as nested plain values (what ``config.yaml`` and resume files hold)."""
        return dataclasses.asdict(self)


@dataclass
class SegDataConfig:
    dataset: str = "voc"  # voc (a PASCAL VOC-layout folder) | shapes (built-in, generated)
    root: str = ""  # VOC-layout folder (JPEGImages/, SegmentationClass/, ImageSets/Segmentation/)
    train_split: str = "train"  # ImageSets/Segmentation/<split>.txt to train on
    val_split: str = "val"  # ImageSets/Segmentation/<split>.txt to evaluate on
    crop_size: int = 512  # training crop side
    scale_range: list[float] = field(default_factory=lambda: [0.5, 2.0])  # random resize, x crop_size
    eval_size: int = 512  # shorter side at evaluation; predictions are resized back to the mask
    hflip: float = 0.5  # horizontal flip probability
    batch_size: int = 16  # per process
    num_workers: int = 4  # DataLoader worker processes per rank
    on_bad_sample: str = "error"  # error | skip (skip-and-log bad masks / missing files)
    builtin_size: int = 128  # image side of the built-in shapes set
    builtin_train: int = 160  # training images of the built-in shapes set
    builtin_val: int = 40  # validation images of the built-in shapes set

    def validate(self) -> None:
        """Raise `ConfigError` naming the first invalid ``data.*`` value."""
        if self.dataset not in ("voc", "shapes"):
            raise ConfigError(f"data.dataset must be voc or shapes, got {self.dataset!r}")
        if self.dataset == "voc" and not self.root:
            raise ConfigError("data.root is required for data.dataset=voc")
        for name in ("crop_size", "eval_size", "batch_size", "builtin_size", "builtin_train", "builtin_val"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"data.{name} must be positive, got {getattr(self, name)}")
        if len(self.scale_range) != 2 or not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ConfigError(f"data.scale_range must be [lo, hi] with 0 < lo <= hi, got {self.scale_range}")
        if self.on_bad_sample not in ("error", "skip"):
            raise ConfigError(f"data.on_bad_sample must be error or skip, got {self.on_bad_sample!r}")
        if not 0 <= self.hflip <= 1 or self.num_workers < 0:
            raise ConfigError("data.hflip must be a probability and data.num_workers >= 0")


@dataclass
class SegModelConfig(ModelConfig):
    name: str = "deeplabv3_mobilevit_s"  # a registered deeplabv3_* model
    num_classes: int = 21
    backbone_weights: str = ""  # ImageNet classifier weights for the backbone (tag or path)
    reset_classifier: bool = False


@dataclass
class SegOptimConfig(OptimConfig):
    epochs: int = 50  # passes over the training set
    lr: float = 9e-4
    min_lr: float = 1e-6
    warmup_start_lr: float = 9e-5
    warmup_iters: int = 500
    label_smoothing: float = 0.0
    head_lr_mult: float = 10.0  # ASPP and classifier learn faster than the pretrained backbone

    def validate(self) -> None:
        """The shared ``optim.*`` checks, and a positive ``head_lr_mult``."""
        super().validate()
        if self.head_lr_mult <= 0:
            raise ConfigError(f"optim.head_lr_mult must be positive, got {self.head_lr_mult}")


@dataclass
class SegTrainConfig:
    task: str = "segmentation"  # this table's task
    data: SegDataConfig = field(default_factory=SegDataConfig)
    model: SegModelConfig = field(default_factory=SegModelConfig)
    optim: SegOptimConfig = field(default_factory=SegOptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    run: RunConfig = field(default_factory=lambda: RunConfig(out_dir="runs/segmentation"))

    validate = TrainConfig.validate
    to_dict = TrainConfig.to_dict


@dataclass
class DetDataConfig:
    dataset: str = "coco"  # coco (instances_*.json + image folders) | shapes (built-in, generated)
    root: str = ""  # COCO-layout folder: image folders and annotation files below
    train_images: str = "train2017"  # relative to root
    train_annotations: str = "annotations/instances_train2017.json"  # COCO instances file, relative to root
    val_images: str = "val2017"  # relative to root
    # COCO instances file (crowd regions: ignored in training, kept for the mAP)
    val_annotations: str = "annotations/instances_val2017.json"
    image_size: int = 320  # training crops are resized to this square; the model resizes eval images
    hflip: float = 0.5  # horizontal flip probability
    photometric: float = 0.5  # probability of the SSD photometric distortion
    iou_crop: bool = True  # SSD's random IoU crop
    batch_size: int = 32  # per process
    eval_batch_size: int = 16  # images per evaluation batch
    num_workers: int = 4  # DataLoader worker processes per rank
    builtin_size: int = 320  # image side of the built-in shapes set
    builtin_train: int = 400  # training images of the built-in shapes set
    builtin_val: int = 100  # validation images of the built-in shapes set

    def validate(self) -> None:
        """Raise `ConfigError` naming the first invalid ``data.*`` value."""
        if self.dataset not in ("coco", "shapes"):
            raise ConfigError(f"data.dataset must be coco or shapes, got {self.dataset!r}")
        if self.dataset == "coco" and not self.root:
            raise ConfigError("data.root is required for data.dataset=coco")
        for name in (
            "image_size",
            "batch_size",
            "eval_batch_size",
            "builtin_size",
            "builtin_train",
            "builtin_val",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"data.{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.hflip <= 1 or not 0 <= self.photometric <= 1 or self.num_workers < 0:
            raise ConfigError("data.hflip and data.photometric must be probabilities, data.num_workers >= 0")


@dataclass
class DetModelConfig(SegModelConfig):
    name: str = "ssdlite_mobilevit_s"  # a registered ssdlite_* model
    num_classes: int = 81  # with the background: COCO's 80 + 1
    ssd: dict[str, Any] = field(default_factory=dict)  # SSDLiteConfig fields (image_size: data.image_size)


@dataclass
class DetOptimConfig(SegOptimConfig):
    epochs: int = 200  # passes over the training set
    head_lr_mult: float = 1.0  # learning-rate multiplier of the SSD heads over the backbone


@dataclass
class DetTrainConfig:
    task: str = "detection"  # this table's task
    data: DetDataConfig = field(default_factory=DetDataConfig)
    model: DetModelConfig = field(default_factory=DetModelConfig)
    optim: DetOptimConfig = field(default_factory=DetOptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    run: RunConfig = field(default_factory=lambda: RunConfig(out_dir="runs/detection"))

    validate = TrainConfig.validate
    to_dict = TrainConfig.to_dict


# the config of any built-in task: what the engine (Trainer, train, evaluate) takes
AnyTrainConfig = TrainConfig | SegTrainConfig | DetTrainConfig


def _accepted(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        try:
            out = hint(value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where} must be {hint.__name__}, got {value!r}") from e
        if hint is int and isinstance(value, float) and value != out:
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return out
    if hint is str:
        if isinstance(value, dict | list):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return str(value)
    if origin is list:
        (inner,) = typing.get_args(hint)
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, list | tuple):
            value = [value]
        return [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    return value


def _merge(obj: Any, updates: dict[str, Any], prefix: str) -> None:
    hints = typing.get_type_hints(type(obj))
    for key, value in updates.items():
        name = key.replace("-", "_")
        where = f"{prefix}{name}"
        if name not in hints:
            raise ConfigError(
                f"unknown config key {where!r}; accepted under {prefix or 'top level'}: "
                f"{', '.join(_accepted(type(obj)))}"
            )
        current = getattr(obj, name)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where} must be a mapping of {', '.join(_accepted(type(current)))}")
            _merge(current, value, f"{where}.")
        else:
            setattr(obj, name, _coerce(value, hints[name], where))


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["optim.lr=1e-3", "data.resolutions=[64,96]"]`` -> nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().lstrip("-").split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as e:
            raise ConfigError(
                f"override {item!r}: the value is not valid YAML ({getattr(e, 'problem', e)})"
            ) from None
    return out


def read_recipe(path: str | Path) -> dict[str, Any]:
    """A YAML recipe as a mapping; a missing file, bad YAML or a non-mapping is a one-line error."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} not found")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}:1: a recipe must be a mapping of sections, got {type(data).__name__}")
    return data


def build_config(cls: type, *layers: dict[str, Any]) -> Any:
    """``cls()`` defaults with each mapping of ``layers`` merged on top in turn; validated."""
    cfg = cls()
    for layer in layers:
        _merge(cfg, layer, "")
    return cfg.validate()


def save_config(cfg: AnyTrainConfig, path: str | Path) -> None:
    """Write the resolved ``cfg`` as YAML (the run folder's ``config.yaml``)."""
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
