"""Calibration and validation images for reduced-precision exports, and which images those are.

Every int8 / bf16 export is calibrated on training images and judged on labelled validation
images. Those must be the model's own data, seen through the preprocessing training evaluated
with: a model judged on another task's images gives a number about that task.
`int8_source` reads what a weights file trained here records (the data kind and root, the
eval resize and crop) and names the images to use; `load_int8_data` reads them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .batches import to_pixels
from .errors import ExportError

log = logging.getLogger(__name__)


@dataclass
class Int8Data:
    """Images for calibration and validation, and the validation labels.

    ``calib`` is ``[N, 3, H, W]`` float32 in [0, 1] (what the quantizers read); ``val`` holds the
    same preprocessing's 8-bit pixel values, ``[M, 3, H, W]`` uint8, a quarter of float32's memory
    (a whole validation split is held), which `padded_batches` turns into the same float32 batches
    one batch at a time (`to_float`, bit for bit).
    """

    calib: np.ndarray
    val: np.ndarray
    labels: np.ndarray
    classes: list[str]
    source: str
    calib_split: str
    skipped: list[str] = field(default_factory=list)  # unreadable files, by path and reason
    preprocessing: str = "resize"  # how the images were brought to the model's size, in words


@dataclass(frozen=True)
class Int8Source:
    """Which images calibrate and judge an export, and how they are preprocessed.

    ``data`` is ``"digits"`` or a folder with ``train/`` and ``val/`` class folders (named
    ``train_split`` / ``val_split``, as training recorded them); ``eval_resize`` the shorter side
    before the centre crop (None: each image resized whole to the export's size); ``why`` says where
    the choice came from, for the report.
    """

    data: str
    eval_resize: int | None = None
    interpolation: str = "bilinear"
    why: str = "given"
    train_split: str = "train"
    val_split: str = "val"


def _scaled_resize(extra: dict[str, Any], img_size: tuple[int, int]) -> int | None:
    """Training's eval resize, scaled to the export's crop (trained at 128 / 160, exported at 256:
    resize 320, crop 256). None when the file does not record it."""
    if "img_size" not in extra or "eval_resize" not in extra:
        return None
    return round(int(extra["eval_resize"]) * min(img_size) / int(extra["img_size"]))


def int8_source(
    data: str | Path | None, meta_extra: dict[str, Any] | None, img_size: tuple[int, int], weights: str = ""
) -> Int8Source:
    """The calibration / validation images of a weights file.

    Args:
        data: ``"digits"``, a folder, or None to take the images the weights were trained on
            (recorded in the file by training here).
        meta_extra: the file's ``WeightsMeta.extra`` (None for foreign checkpoints).
        img_size: the export's input size (the recorded eval resize is scaled to it).
        weights: the file's name, for messages.

    Returns:
        The `Int8Source`. Raises `ExportError` when ``data`` is None and the file does
        not record its training data, or that data is not on this machine.
    """
    extra = meta_extra or {}
    resize = _scaled_resize(extra, img_size)
    interp = str(extra.get("interpolation", "bilinear"))
    if data is not None:
        return Int8Source(str(data), resize, interp, "given")
    trained = extra.get("train_data")
    if not isinstance(trained, dict):
        raise ExportError(
            f"{weights or 'these weights'} do not record the images they were trained on, so int8 / bf16 "
            "has no calibration data of its own: pass --int8-data with a folder of train/ and val/ "
            "class folders of the model's classes (or --int8-data digits for a digits model)"
        )
    kind, root = trained.get("dataset"), trained.get("root", "")
    if kind == "digits":
        return Int8Source("digits", resize, interp, "recorded: the built-in digits")
    train_split, val_split = str(trained.get("train_split", "train")), str(trained.get("val_split", "val"))
    if not (Path(root) / val_split).is_dir():
        raise ExportError(
            f"{weights or 'these weights'} were trained on {kind} images at {root}, which is not here "
            f"(no {val_split}/ folder): pass --int8-data with a folder of the same classes"
        )
    why = f"recorded: the {kind} data the weights were trained on"
    return Int8Source(str(root), resize, interp, why, train_split, val_split)


def check_classes(data: Int8Data, model_classes: list[str] | None, num_classes: int | None = None) -> None:
    """A model whose classes are not the data's cannot be judged (nor sensibly calibrated) on it:
    an error naming both. (`load_int8_data` given the model's classes checks this before it
    reads a single image.)

    Args:
        data: the loaded calibration / validation images.
        model_classes: the model's class names, when its weights record them.
        num_classes: the model's class count (with no names: a count that differs is logged, and
            accuracy is then not computed).

    Raises:
        ExportError: the names are known and are not the data's, naming both.
    """
    _check_classes(list(data.classes), data.source, model_classes, num_classes)


def _check_classes(
    classes: list[str], source: str, model_classes: list[str] | None, num_classes: int | None
) -> None:
    def shown(names: list[str]) -> str:
        head = ", ".join(names[:5])
        return f"{len(names)} classes ({head}{', ...' if len(names) > 5 else ''})"

    if model_classes is not None and list(model_classes) != classes:
        raise ExportError(
            f"the model was trained on {shown(list(model_classes))} but the calibration data "
            f"{source!r} has {shown(classes)}: calibrate on the model's own images "
            "(--int8-data FOLDER with its train/ and val/ class folders)"
        )
    if model_classes is None and num_classes is not None and num_classes != len(classes):
        log.warning(
            "the model has %d classes and records no names; the calibration data %r has %s: top-1 "
            "accuracy cannot be computed, the file is judged by agreement with fp32 alone",
            num_classes,
            source,
            shown(classes),
        )


def load_int8_data(
    data: str | Path | Int8Source,
    img_size: tuple[int, int],
    calib_images: int = 64,
    max_val: int | None = None,
    seed: int = 0,
    model_classes: list[str] | None = None,
    num_classes: int | None = None,
) -> Int8Data:
    """Calibration and validation images at ``img_size``.

    Args:
        data: ``"digits"`` (scikit-learn's handwritten digits, written once under the cache folder),
            a folder with ``val/`` (and ideally ``train/``) class folders, or an `Int8Source`
            (which also says how training preprocessed them for evaluation).
        img_size: the model's input ``(H, W)``.
        calib_images: images drawn (seeded) from ``train/`` (or ``val/`` when there is none).
        max_val: a seeded subset of ``val/`` of this size (None: all of it).
        seed: the draws' seed.
        model_classes: the model's class names: names that are not the data's are an `ExportError`
            (`check_classes`) raised before any image is read.
        num_classes: the model's class count (with no names, a count that differs is logged).

    Returns:
        The `Int8Data`. Class indices are those training assigns (the sorted class folders
        of ``train/``). Unreadable files are skipped, logged and listed in ``skipped``. Each image
        is resized to ``eval_resize`` on its shorter side and centre-cropped (the source's eval
        preprocessing), or resized whole when the source records none.
    """
    import torchvision.transforms.v2 as T

    from ..data.folders import BadSample, DataError, ImageFolderDataset
    from ..data.synthetic import write_digits
    from ..data.transforms import EvalTransform
    from ..weights.specs import cache_dir

    source = data if isinstance(data, Int8Source) else Int8Source(str(data))
    if calib_images < 1:
        raise ExportError(f"calibration needs at least one image, got calib_images={calib_images}")
    if source.data == "digits":
        root = write_digits(cache_dir() / "data" / "digits", size=32, seed=0)
    else:
        root = Path(source.data)
        if not (root / source.val_split).is_dir():
            raise ExportError(
                f"int8 validation data {source.data!r}: expected 'digits' or a folder with "
                f"{source.val_split}/ (and {source.train_split}/) class folders"
            )
    if source.eval_resize is not None and img_size[0] == img_size[1]:
        ops: Any = EvalTransform(img_size[0], source.eval_resize, source.interpolation)
        preprocessing = f"resize {source.eval_resize} + centre crop {img_size[0]} (training's eval)"
    else:
        resize = T.Compose(
            [T.ToImage(), T.Resize(tuple(img_size), antialias=True), T.ToDtype(torch.float32, scale=True)]
        )
        ops = lambda image, key=None: resize(image)  # noqa: E731
        preprocessing = f"whole image resized to {img_size[0]}x{img_size[1]}"

    skipped: list[str] = []

    def stack(ds: ImageFolderDataset, indices: list[int], pixels: bool) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        for i in indices:
            item = ds[i]
            if isinstance(item, BadSample):
                log.warning("skipping unreadable image %s (%s)", item.path, item.error)
                skipped.append(f"{item.path}: {item.error}")
                continue
            images.append(to_pixels(item[0].numpy()) if pixels else item[0].numpy())
            labels.append(item[1])
        if not images:
            raise ExportError(f"no readable images in {ds.root}")
        return np.stack(images), np.asarray(labels, dtype=np.int64)

    train_split, val_split = source.train_split, source.val_split
    has_train = (root / train_split).is_dir()
    try:  # class indices as training assigns them: the sorted folder names of train/
        calib_ds = ImageFolderDataset(root, train_split if has_train else val_split, ops)
        val_ds = ImageFolderDataset(root, val_split, ops, classes=calib_ds.classes) if has_train else calib_ds
    except DataError as e:
        raise ExportError(f"int8 validation data: {e}") from e
    _check_classes(list(val_ds.classes), source.data, model_classes, num_classes)
    rng = np.random.default_rng(seed)
    calib_idx = sorted(rng.permutation(len(calib_ds))[:calib_images].tolist())
    val_idx = list(range(len(val_ds)))
    if max_val is not None and max_val < len(val_ds):  # a seeded subset of every class, not the first ones
        val_idx = sorted(rng.permutation(len(val_ds))[:max_val].tolist())
    calib, _ = stack(calib_ds, calib_idx, pixels=False)
    val, labels = stack(val_ds, val_idx, pixels=True)
    return Int8Data(
        calib,
        val,
        labels,
        list(val_ds.classes),
        source.data,
        train_split if has_train else val_split,
        skipped,
        preprocessing,
    )


__all__ = ["Int8Data", "Int8Source", "check_classes", "int8_source", "load_int8_data"]
