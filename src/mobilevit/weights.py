"""Weight specs as data, and loading weights into a model with strict, readable checks.

Each released checkpoint is described by a :class:`WeightSpec`: where it is published, the
format it is in, and its input convention (channel order, mean/std, resize and crop). The
convention matters: Apple's and transformers' weights were trained on BGR images scaled to
[0, 1] with no normalisation. Loading a BGR checkpoint through this module flips the stem's
input channels (an exact rewrite), so every model built here takes RGB.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .serialization import read_state_dict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightSpec:
    tag: str  # "<arch>.<source>_in1k"
    arch: str
    source_format: str  # mobilevit | timm | transformers | cvnets
    url: str
    filename: str
    channel_order: str  # of the published file: "RGB" or "BGR"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    resize_size: int = 288  # shorter side before the centre crop
    crop_size: int = 256
    interpolation: str = "bilinear"
    num_classes: int = 1000
    top1: float | None = None  # ImageNet-1k val top-1 as published
    miou: float | None = None  # PASCAL VOC 2012 val mIoU as published (segmentation)
    box_map: float | None = None  # COCO val2017 box mAP@[.5:.95] as published (detection)
    sha256: str | None = None
    license: str = "apple-sample-code-license (ml-cvnets)"
    notes: str = ""


def _specs() -> dict[str, WeightSpec]:
    apple = "https://docs-assets.developer.apple.com/ml-research/models/cvnets/classification/{}.pt"
    hub = "https://huggingface.co/{}/resolve/main/{}"
    variants = {  # arch: (transformers repo, published top-1 of the released weights)
        "mobilevit_xxs": ("apple/mobilevit-xx-small", 68.9),
        "mobilevit_xs": ("apple/mobilevit-x-small", 74.6),
        "mobilevit_s": ("apple/mobilevit-small", 78.3),
    }
    out = {}
    for arch, (hf_repo, top1) in variants.items():
        specs = [
            WeightSpec(
                f"{arch}.cvnets_in1k",
                arch,
                "cvnets",
                apple.format(arch),
                f"{arch}.pt",
                "BGR",
                top1=top1,
                notes="Apple ml-cvnets v0.1 release; cv2 (BGR) input, resize 288 bilinear, crop 256",
            ),
            WeightSpec(
                f"{arch}.timm_in1k",
                arch,
                "timm",
                hub.format(f"timm/{arch}.cvnets_in1k", "model.safetensors"),
                f"{arch}.timm.safetensors",
                "RGB",
                resize_size=284,
                interpolation="bicubic",
                top1=top1,
                notes="timm's copy of the Apple weights (timm/<arch>.cvnets_in1k); crop_pct 0.9, bicubic",
            ),
            WeightSpec(
                f"{arch}.hf_in1k",
                arch,
                "transformers",
                hub.format(hf_repo, "pytorch_model.bin"),
                f"{arch}.hf.bin",
                "BGR",
                top1=top1,
                notes=f"transformers {hf_repo}; its image processor flips RGB to BGR",
            ),
        ]
        out.update({s.tag: s for s in specs})
    seg = "https://docs-assets.developer.apple.com/ml-research/models/cvnets/segmentation/deeplabv3_{}.pt"
    seg_variants = {  # arch: (transformers repo, published VOC val mIoU of the released weights)
        "mobilevit_xxs": ("apple/deeplabv3-mobilevit-xx-small", 72.8),
        "mobilevit_xs": ("apple/deeplabv3-mobilevit-x-small", 77.1),
        "mobilevit_s": ("apple/deeplabv3-mobilevit-small", 79.3),
    }
    for arch, (hf_repo, miou) in seg_variants.items():
        name = f"deeplabv3_{arch}"
        common = dict(num_classes=21, resize_size=512, crop_size=512, miou=miou)
        specs = [
            WeightSpec(
                f"{name}.cvnets_voc",
                name,
                "cvnets",
                seg.format(arch),
                f"{name}.pt",
                "BGR",
                **common,
                notes="Apple ml-cvnets v0.1 release; cv2 (BGR) input, resized to 512x512",
            ),
            WeightSpec(
                f"{name}.hf_voc",
                name,
                "transformers",
                hub.format(hf_repo, "pytorch_model.bin"),
                f"{name}.hf.bin",
                "BGR",
                **common,
                notes=f"transformers {hf_repo}; BGR input",
            ),
        ]
        out.update({s.tag: s for s in specs})
    det = "https://docs-assets.developer.apple.com/ml-research/models/cvnets/detection/ssd_{}_320.pt"
    for arch, box_map in {"mobilevit_xxs": 19.9, "mobilevit_xs": 24.8, "mobilevit_s": 27.7}.items():
        name = f"ssdlite_{arch}"
        spec = WeightSpec(
            f"{name}.cvnets_coco",
            name,
            "cvnets",
            det.format(arch),
            f"{name}.pt",
            "BGR",
            num_classes=81,
            resize_size=320,
            crop_size=320,
            box_map=box_map,
            notes="Apple ml-cvnets v0.1 release; cv2 (BGR) input resized to 320x320; 80 COCO classes + background",
        )
        out[spec.tag] = spec
    return out


WEIGHTS: dict[str, WeightSpec] = _specs()


def list_weights(arch: str | None = None) -> list[str]:
    return sorted(t for t, s in WEIGHTS.items() if arch is None or s.arch == arch)


def cache_dir() -> Path:
    return Path(os.environ.get("MOBILEVIT_HOME", Path.home() / ".cache" / "mobilevit"))


def resolve_weights(tag: str, download: bool | None = None) -> Path:
    """Local path of a released checkpoint, downloading it into :func:`cache_dir` if allowed.

    Downloads are off when ``MOBILEVIT_OFFLINE=1`` (the test suite sets it); then a missing file
    is an error that says where to put it.
    """
    spec = WEIGHTS[tag]
    path = cache_dir() / spec.filename
    if path.is_file():
        return path
    if download is None:
        download = os.environ.get("MOBILEVIT_OFFLINE", "0") in ("", "0")
    if not download:
        raise FileNotFoundError(
            f"weights {tag!r} are not in the local cache ({path}) and downloads are off "
            f"(MOBILEVIT_OFFLINE). Fetch {spec.url} and save it as {path}, or pass a file path."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    log.info("downloading %s from %s", tag, spec.url)
    torch.hub.download_url_to_file(spec.url, str(tmp), progress=True)
    if spec.sha256:
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        if digest != spec.sha256:
            tmp.unlink()
            raise RuntimeError(f"{spec.url}: sha256 {digest} does not match the spec's {spec.sha256}")
    tmp.replace(path)
    return path


class CheckpointMismatchError(ValueError):
    """A state dict that does not fit the model: lists missing, unexpected and mis-shaped keys."""


def _summarise(keys: list[str], n: int = 12) -> str:
    return ", ".join(keys[:n]) + (f" ... (+{len(keys) - n} more)" if len(keys) > n else "")


def load_state_dict_checked(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    reset_classifier: bool = False,
    source: str = "checkpoint",
    classifier_prefixes: tuple[str, ...] = ("head.fc.",),
) -> None:
    """Strictly load ``state_dict``; on mismatch raise an error that lists every problem.

    With ``reset_classifier`` a classifier of another class count (or a checkpoint without one)
    is skipped and the model's freshly initialised classifier is kept.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    misshaped = [
        f"{k} (checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)})"
        for k in own
        if k in state_dict and state_dict[k].shape != own[k].shape
    ]
    if reset_classifier:

        def is_cls(k: str) -> bool:
            return k.startswith(classifier_prefixes)

        missing = [k for k in missing if not is_cls(k)]
        unexpected = [k for k in unexpected if not is_cls(k)]
        misshaped = [k for k in misshaped if not is_cls(k.split(" ")[0])]
        state_dict = {
            k: v
            for k, v in state_dict.items()
            if not (is_cls(k) and (k not in own or v.shape != own[k].shape))
        }
    if missing or unexpected or misshaped:
        parts = [f"{source} does not fit {type(model).__name__} ({_model_name(model)}):"]
        if missing:
            parts.append(f"  missing keys ({len(missing)}): {_summarise(missing)}")
        if unexpected:
            parts.append(f"  unexpected keys ({len(unexpected)}): {_summarise(unexpected)}")
        if misshaped:
            parts.append(f"  mis-shaped keys ({len(misshaped)}): {_summarise(misshaped)}")
        only_cls = (
            not missing and not unexpected and all(k.startswith(classifier_prefixes) for k in misshaped)
        )
        if only_cls:
            parts.append("  only the classifier differs: pass reset_classifier=True to re-initialise it")
        raise CheckpointMismatchError("\n".join(parts))
    model.load_state_dict(state_dict, strict=not reset_classifier)


def _model_name(model: nn.Module) -> str:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "name", type(model).__name__)


def load_pretrained(
    model: nn.Module, pretrained: str | Path, reset_classifier: bool = False
) -> dict[str, Any]:
    """Load a weight tag or a checkpoint path (ours or a foreign format) into ``model``.

    Sets and returns ``model.pretrained_cfg``: the input convention the loaded model expects.
    """
    spec = WEIGHTS.get(str(pretrained))
    path = resolve_weights(spec.tag) if spec else Path(pretrained)
    if spec is None and not path.exists():
        raise FileNotFoundError(
            f"pretrained={pretrained!r} is neither a weight tag ({', '.join(list_weights())}) nor an existing path"
        )
    sd, meta = read_state_dict(path)
    return apply_checkpoint(model, sd, meta, path, spec, reset_classifier)


def apply_checkpoint(
    model: nn.Module,
    state_dict: dict[str, torch.Tensor],
    metadata: dict[str, str],
    path: str | Path,
    spec: WeightSpec | None = None,
    reset_classifier: bool = False,
) -> dict[str, Any]:
    """Load a checkpoint already read (``read_state_dict``) into ``model``, converting a foreign
    layout first; sets and returns ``model.pretrained_cfg``."""
    from .convert import convert_state_dict, detect_source

    source = detect_source(state_dict, metadata)
    order = metadata.get("channel_order", "RGB")
    if source != "mobilevit":
        state_dict, order = convert_state_dict(state_dict, source, to_rgb=True)
    prefixes = getattr(model, "classifier_keys", ("head.fc.",))
    load_state_dict_checked(
        model, state_dict, reset_classifier=reset_classifier, source=str(path), classifier_prefixes=prefixes
    )
    cfg: dict[str, Any] = asdict(spec) if spec else {"tag": None, "mean": (0.0,) * 3, "std": (1.0,) * 3}
    cfg.update(file=str(path), source_format=source, channel_order=order)
    model.pretrained_cfg = cfg  # type: ignore[assignment]
    return cfg


def load_backbone_weights(backbone: nn.Module, weights: str | Path) -> None:
    """Load the backbone part of a classifier (or segmentation) checkpoint into a features-only
    MobileViT: the 1x1 expansion and classifier are dropped, everything else must fit exactly."""
    from .convert import convert_state_dict, detect_source

    spec = WEIGHTS.get(str(weights))
    path = resolve_weights(spec.tag) if spec else Path(weights)
    sd, meta = read_state_dict(path)
    source = detect_source(sd, meta)
    if source != "mobilevit":
        sd, _ = convert_state_dict(sd, source, to_rgb=True)
    if any(k.startswith("backbone.") for k in sd):
        sd = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
    sd = {k: v for k, v in sd.items() if not k.startswith(("conv_exp.", "head."))}
    load_state_dict_checked(backbone, sd, source=f"{path} (backbone)")
