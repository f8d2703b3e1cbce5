"""Weight specs as data: every released checkpoint this package knows, and the local cache.

Each released checkpoint is described by a `WeightSpec`: where it is published, the
format it is in, and its input convention (channel order, mean/std, resize and crop). The
convention matters: Apple's and transformers' weights were trained on BGR images scaled to
[0, 1] with no normalisation (loading one flips the stem's input channels, an exact rewrite, so
every model built here takes RGB).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

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
    # MobileViT v2: timm's copies of the ml-cvnets v0.2 releases (RGB, bicubic, crop_pct 0.888 at 256 and
    # 1.0 at 384); top-1 as the ml-cvnets model zoo publishes it
    v2_top1 = {
        "050": 70.18,
        "075": 75.56,
        "100": 78.09,
        "125": 79.65,
        "150": 80.38,
        "175": 80.84,
        "200": 81.17,
    }
    v2_22k = {"150": (81.46, 82.60), "175": (81.94, 82.93), "200": (82.36, 83.41)}  # @256, @384
    for w, top1 in v2_top1.items():
        arch = f"mobilevitv2_{w}"
        tags = [("cvnets_in1k", "timm_in1k", 288, 256, top1)]
        if w in v2_22k:
            tags += [
                ("cvnets_in22k_ft_in1k", "timm_in22k_ft_in1k", 288, 256, v2_22k[w][0]),
                ("cvnets_in22k_ft_in1k_384", "timm_in22k_ft_in1k_384", 384, 384, v2_22k[w][1]),
            ]
        for timm_tag, tag, resize, crop, acc in tags:
            spec = WeightSpec(
                f"{arch}.{tag}",
                arch,
                "timm",
                hub.format(f"timm/{arch}.{timm_tag}", "model.safetensors"),
                f"{arch}.{tag}.safetensors",
                "RGB",
                resize_size=resize,
                crop_size=crop,
                interpolation="bicubic",
                top1=acc,
                notes=f"timm/{arch}.{timm_tag}: the ml-cvnets v0.2 weights (trained on PIL RGB images)",
            )
            out[spec.tag] = spec
    # the transformers hub's v2 repos (Apple's uploads of the same ml-cvnets v0.2 weights). Their image
    # processor flips to BGR; the code that trained them read PIL RGB, which this library believes
    # (docs/guides/weights.md, "Input convention"): recorded as RGB, `mobilevit convert --trained-on bgr` for the other.
    hf_v2_note = (
        "transformers {}; its image processor flips to BGR (do_flip_channel_order), the training code "
        "(ml-cvnets v0.2) read RGB: loaded as RGB here"
    )
    for w, hf_w in (("100", "1.0"), ("200", "2.0")):
        arch, repo = f"mobilevitv2_{w}", f"apple/mobilevitv2-{hf_w}-imagenet1k-256"
        spec = WeightSpec(
            f"{arch}.hf_in1k",
            arch,
            "transformers",
            hub.format(repo, "pytorch_model.bin"),
            f"{arch}.hf.bin",
            "RGB",
            top1=v2_top1[w],
            notes=hf_v2_note.format(repo),
        )
        out[spec.tag] = spec
    for w, hf_w, miou in (("100", "1.0", 78.94), ("150", "1.5", 80.30)):
        name, repo = f"deeplabv3_mobilevitv2_{w}", f"apple/mobilevitv2-{hf_w}-voc-deeplabv3"
        spec = WeightSpec(
            f"{name}.hf_voc",
            name,
            "transformers",
            hub.format(repo, "pytorch_model.bin"),
            f"{name}.hf.bin",
            "RGB",
            num_classes=21,
            resize_size=512,
            crop_size=512,
            miou=miou,
            notes=hf_v2_note.format(repo) + "; 512x512 input, output stride 16, rates 6/12/18",
        )
        out[spec.tag] = spec
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


_HUB_URL = re.compile(r"https://huggingface\.co/(?P<repo>[^/]+/[^/]+)/resolve/main/(?P<file>.+)")


def _hub_file(tag: str, repo: str, filename: str, fallback: Path, download: bool) -> Path:
    import huggingface_hub as hh
    from huggingface_hub import errors as hh_errors

    try:
        return Path(hh.hf_hub_download(repo, filename, local_files_only=not download))
    except hh_errors.LocalEntryNotFoundError as e:
        raise FileNotFoundError(
            f"weights {tag!r} ({repo}/{filename}) are not in the Hugging Face cache "
            f"({hh.constants.HF_HUB_CACHE}) and downloads are off (MOBILEVIT_OFFLINE / HF_HUB_OFFLINE); "
            f"fetch them once online, save the file as {fallback}, or pass a file path"
        ) from e


def list_weights(arch: str | None = None) -> list[str]:
    """The released weight tags, sorted; only those of model ``arch`` when given."""
    return sorted(t for t, s in WEIGHTS.items() if arch is None or s.arch == arch)


def cache_dir() -> Path:
    """Where released weights are cached: ``$MOBILEVIT_HOME``, else ``~/.cache/mobilevit``."""
    return Path(os.environ.get("MOBILEVIT_HOME", Path.home() / ".cache" / "mobilevit"))


def resolve_weights(tag: str, download: bool | None = None) -> Path:
    """Local path of a released checkpoint, downloading it if allowed.

    Hub-hosted files go through huggingface_hub (its cache, the one timm and transformers users
    already have; ``HF_HUB_OFFLINE`` applies); the others (Apple's) into `cache_dir`,
    checked against the spec's sha256 where it records one. A file already in `cache_dir`
    is used as it is. Downloads are off when ``MOBILEVIT_OFFLINE=1`` (the test suite sets it);
    then a missing file is an error that says where to put it.
    """
    spec = WEIGHTS[tag]
    path = cache_dir() / spec.filename
    if path.is_file():
        return path
    if download is None:
        download = os.environ.get("MOBILEVIT_OFFLINE", "0") in ("", "0")
    hub = _HUB_URL.fullmatch(spec.url)
    if hub:
        return _hub_file(tag, hub["repo"], hub["file"], path, download)
    if not download:
        raise FileNotFoundError(
            f"weights {tag!r} are not in the local cache ({path}) and downloads are off "
            f"(MOBILEVIT_OFFLINE). Fetch {spec.url} and save it as {path}, or pass a file path."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    log.info("downloading %s from %s", tag, spec.url)
    torch.hub.download_url_to_file(spec.url, str(tmp), progress=True)
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    if spec.sha256 and digest != spec.sha256:
        tmp.unlink()
        raise ValueError(f"{spec.url}: sha256 {digest} does not match the spec's {spec.sha256}")
    if not spec.sha256:  # read with weights_only all the same; the digest is logged to be recorded
        log.warning("%s: no sha256 recorded for this file; downloaded one has sha256 %s", tag, digest)
    tmp.replace(path)
    return path
