"""Built-in datasets written to disk as image folders, so the real folder loader is what runs.

- ``digits``: scikit-learn's 1,797 real handwritten digits (8x8, 10 classes), scaled up and
  split into train / val with a fixed stratified split.
- ``shapes``: generated coloured shapes (ellipse, rectangle, triangle, star) on textured
  backgrounds, of random size, position and rotation.
- ``shapes_voc``: several shapes an image with class masks, in PASCAL VOC segmentation layout.
- ``shapes_coco``: several shapes an image (some images empty) with boxes, in COCO detection
  format (``train/``, ``val/``, ``annotations/instances_{train,val}.json``), with small, medium
  and large objects under COCO's area rules.

Each writer leaves a ``.complete`` marker with its parameters and does nothing when a folder
made with the same parameters exists.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

MARKER = ".complete"


def _up_to_date(root: Path, params: dict) -> bool:
    marker = root / MARKER
    return marker.is_file() and json.loads(marker.read_text()) == params


def _clear(root: Path) -> None:
    """Remove an earlier built-in set (ours: it has the marker) before writing another one.

    A non-empty folder without the marker was not written here: refuse rather than delete it.
    """
    if root.is_dir() and any(root.iterdir()) and not (root / MARKER).is_file():
        from .folders import DataError

        raise DataError(
            f"{root} is not empty and was not written by mobilevit's built-in dataset writers; "
            "refusing to overwrite it (choose an empty or new folder for the built-in data)"
        )
    shutil.rmtree(root, ignore_errors=True)


def _finish(root: Path, params: dict) -> Path:
    (root / MARKER).write_text(json.dumps(params))
    return root


def write_digits(root: str | Path, size: int = 32, val_fraction: float = 0.2, seed: int = 0) -> Path:
    """scikit-learn's digits as ``root/{train,val}/<digit>/<n>.png`` (RGB, ``size`` x ``size``).

    Args:
        root: folder to write into; an earlier built-in set there is replaced, a folder made with
            the same parameters is kept as it is.
        size: image side, pixels (the 8x8 digits are scaled up, bicubic).
        val_fraction: share of the 1,797 images in ``val/`` (stratified by digit).
        seed: the train / val split's random state.

    Returns:
        ``root``, as a `Path`.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    root = Path(root)
    params = {"dataset": "digits", "size": size, "val_fraction": val_fraction, "seed": seed}
    if _up_to_date(root, params):
        return root
    _clear(root)
    digits = load_digits()
    images = (digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)  # [1797, 8, 8]
    idx = np.arange(len(images))
    train_idx, val_idx = train_test_split(
        idx, test_size=val_fraction, random_state=seed, stratify=digits.target
    )
    for split, ids in (("train", train_idx), ("val", val_idx)):
        for i in ids:
            folder = root / split / str(digits.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            img = Image.fromarray(images[i], mode="L").resize((size, size), Image.Resampling.BICUBIC)
            img.convert("RGB").save(folder / f"{i:04d}.png")
    return _finish(root, params)


SHAPES = ("ellipse", "rectangle", "triangle", "star")


def _texture(rng: np.random.Generator, size: int) -> Image.Image:
    """A smooth random colour field plus fine noise: a background with structure, not a flat fill."""
    coarse = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    img = Image.fromarray(coarse, "RGB").resize((size, size), Image.Resampling.BICUBIC)
    noise = rng.normal(0, 18, size=(size, size, 3))
    arr = np.asarray(img, dtype=np.float64) * 0.6 + 50 + noise
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")


def shape_polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of a shape of ``kind`` centred at (cx, cy) with radius r, rotated by ``angle``.

    Args:
        kind: one of `SHAPES`: ``ellipse`` (48 vertices, squashed to 0.6 r on its minor axis),
            ``rectangle`` (a square, 4), ``triangle`` (3) or ``star`` (5 points, inner radius 0.45 r).
        cx: centre x, pixels.
        cy: centre y, pixels.
        r: radius (centre to outer vertex), pixels.
        angle: rotation, radians.

    Returns:
        The vertices as ``(x, y)`` pixel pairs, ready for ``ImageDraw.polygon``.
    """
    if kind == "triangle":
        radii, n = [r], 3
    elif kind == "rectangle":
        radii, n = [r], 4
    elif kind == "star":
        radii, n = [r, 0.45 * r], 10
    elif kind == "ellipse":
        radii, n = [r], 48
    else:
        raise ValueError(f"unknown shape {kind!r}; choose from {SHAPES}")
    pts = []
    squash = 0.6 if kind == "ellipse" else 1.0  # ellipses: a squashed circle, then rotated
    for k in range(n):
        t = 2 * math.pi * k / n
        rr = radii[k % len(radii)]
        x, y = rr * math.cos(t), squash * rr * math.sin(t)
        pts.append(
            (cx + x * math.cos(angle) - y * math.sin(angle), cy + x * math.sin(angle) + y * math.cos(angle))
        )
    return pts


def draw_shape(
    img: Image.Image, kind: str, rng: np.random.Generator, min_r: float, max_r: float
) -> tuple[float, float, float, float]:
    """Draw one randomly placed, coloured shape; return its bounding box (x0, y0, x1, y1).

    Args:
        img: the image to draw on (in place).
        kind: the shape, one of `SHAPES`.
        rng: the source of radius, position, rotation and colour.
        min_r: smallest radius, pixels.
        max_r: largest radius, pixels; the shape's centre keeps at least its radius from the edges.

    Returns:
        The polygon's vertex extent clipped to the image, pixels.
    """
    w, h = img.size
    r = rng.uniform(min_r, max_r)
    cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
    pts = shape_polygon(kind, cx, cy, r, rng.uniform(0, 2 * math.pi))
    colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
    ImageDraw.Draw(img).polygon(pts, fill=colour, outline=(0, 0, 0))
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return max(0.0, min(xs)), max(0.0, min(ys)), min(float(w), max(xs)), min(float(h), max(ys))


def write_shapes(
    root: str | Path, size: int = 64, train_per_class: int = 150, val_per_class: int = 40, seed: int = 0
) -> Path:
    """A generated classification set: one shape per image, ``root/{train,val}/<shape>/<n>.png``.

    Args:
        root: folder to write into; an earlier built-in set there is replaced, a folder made with
            the same parameters is kept as it is.
        size: image side, pixels; shape radii are 0.18 to 0.42 of it.
        train_per_class: training images per shape.
        val_per_class: validation images per shape.
        seed: the generator's seed (the same seed writes the same images).

    Returns:
        ``root``, as a `Path`.
    """
    root = Path(root)
    params = {"dataset": "shapes", "size": size, "train": train_per_class, "val": val_per_class, "seed": seed}
    if _up_to_date(root, params):
        return root
    _clear(root)
    rng = np.random.default_rng(seed)
    for split, n in (("train", train_per_class), ("val", val_per_class)):
        for kind in SHAPES:
            folder = root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = _texture(rng, size)
                draw_shape(img, kind, rng, size * 0.18, size * 0.42)
                img = img.filter(ImageFilter.GaussianBlur(0.5))
                img.save(folder / f"{i:04d}.png")
    return _finish(root, params)


def write_shapes_voc(
    root: str | Path,
    size: int = 128,
    n_train: int = 160,
    n_val: int = 40,
    max_objects: int = 3,
    seed: int = 0,
) -> Path:
    """A generated segmentation set in PASCAL VOC layout: classes background + SHAPES (5 in all).

    Each image holds 1..``max_objects`` shapes on a textured background; the mask marks each
    shape with its class index and, like VOC, a 1-pixel ignore (255) border around objects.

    Args:
        root: folder to write into (``JPEGImages/``, ``SegmentationClass/``,
            ``ImageSets/Segmentation/{train,val}.txt`` and ``classes.txt``); an earlier built-in set
            there is replaced, one made with the same parameters is kept as it is.
        size: image side, pixels; shape radii are 0.1 to 0.25 of it.
        n_train: training images.
        n_val: validation images.
        max_objects: most shapes an image (at least one).
        seed: the generator's seed (the same seed writes the same images).

    Returns:
        ``root``, as a `Path`.
    """
    from .voc import IGNORE_INDEX, voc_palette

    root = Path(root)
    params = {
        "dataset": "shapes_voc",
        "size": size,
        "train": n_train,
        "val": n_val,
        "objects": max_objects,
        "seed": seed,
    }
    if _up_to_date(root, params):
        return root
    _clear(root)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    palette = voc_palette()
    for split, n in (("train", n_train), ("val", n_val)):
        ids = []
        for i in range(n):
            sid = f"{split}_{i:05d}"
            img = _texture(rng, size)
            mask = Image.new("P", (size, size), 0)
            mask.putpalette(palette)
            draw_img, draw_mask = ImageDraw.Draw(img), ImageDraw.Draw(mask)
            for _ in range(int(rng.integers(1, max_objects + 1))):
                cls = int(rng.integers(len(SHAPES)))
                r = rng.uniform(size * 0.1, size * 0.25)
                cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
                pts = shape_polygon(SHAPES[cls], cx, cy, r, rng.uniform(0, 2 * math.pi))
                colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
                draw_img.polygon(pts, fill=colour)
                draw_mask.polygon(pts, fill=cls + 1, outline=IGNORE_INDEX)
            img.save(root / "JPEGImages" / f"{sid}.jpg", quality=95)
            mask.save(root / "SegmentationClass" / f"{sid}.png")
            ids.append(sid)
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    (root / "classes.txt").write_text("\n".join(["background", *SHAPES]) + "\n")
    return _finish(root, params)


def _box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _place_shapes(
    rng: np.random.Generator, size: int, n: int, max_iou: float = 0.2, tries: int = 10
) -> list[tuple[int, list[tuple[float, float]], tuple[float, float, float, float]]]:
    """Up to ``n`` shapes as (class index, polygon, xyxy box), no box overlapping another by IoU > max_iou,
    largest box first (the drawing order).

    Radii are log-uniform in [0.04, 0.3] * size: at 320 px that gives about 20% small, 55% medium
    and 25% large boxes by COCO's area rules (< 32^2, < 96^2, above).
    """
    placed: list[tuple[int, list[tuple[float, float]], tuple[float, float, float, float]]] = []
    for _ in range(n):
        for _ in range(tries):
            cls = int(rng.integers(len(SHAPES)))
            r = size * math.exp(rng.uniform(math.log(0.04), math.log(0.3)))
            cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
            pts = shape_polygon(SHAPES[cls], cx, cy, r, rng.uniform(0, 2 * math.pi))
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            box = (max(0.0, min(xs)), max(0.0, min(ys)), min(float(size), max(xs)), min(float(size), max(ys)))
            if all(_box_iou(box, other) <= max_iou for _, _, other in placed):
                placed.append((cls, pts, box))
                break
    # largest first: a shape drawn later is smaller, so none is hidden behind a bigger one (a small
    # box inside a large one passes the IoU test, and would otherwise be an invisible ground truth)
    return sorted(placed, key=lambda item: -(item[2][2] - item[2][0]) * (item[2][3] - item[2][1]))


def write_shapes_coco(
    root: str | Path,
    size: int = 320,
    n_train: int = 400,
    n_val: int = 100,
    max_objects: int = 4,
    empty_fraction: float = 0.1,
    seed: int = 0,
) -> Path:
    """A generated detection set in COCO format: ``root/{train,val}/*.jpg`` and
    ``root/annotations/instances_{train,val}.json`` with categories 1..4 named after SHAPES.

    Each image holds 1..``max_objects`` shapes of random class, size, rotation and colour on a
    textured background, except ``round(empty_fraction * n)`` images of each split, which hold
    none. Boxes are the drawn polygons' vertex extents (xywh in COCO, ``area`` = w * h).

    Args:
        root: folder to write into; an earlier built-in set there is replaced, one made with the
            same parameters is kept as it is.
        size: image side, pixels; shape radii are log-uniform in 0.04 to 0.3 of it.
        n_train: training images.
        n_val: validation images.
        max_objects: most shapes an image; fewer may fit, as boxes may overlap by at most 0.2 IoU.
        empty_fraction: share of each split's images with no shapes at all.
        seed: the generator's seed (the same seed writes the same images).

    Returns:
        ``root``, as a `Path`.
    """
    root = Path(root)
    params = {
        "dataset": "shapes_coco",
        "size": size,
        "train": n_train,
        "val": n_val,
        "objects": max_objects,
        "empty": empty_fraction,
        "seed": seed,
    }
    if _up_to_date(root, params):
        return root
    _clear(root)
    (root / "annotations").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPES)]
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split).mkdir()
        empty = set(rng.choice(n, size=round(empty_fraction * n), replace=False).tolist())
        images, annotations = [], []
        for i in range(n):
            image_id, file_name = i + 1, f"{split}_{i:05d}.jpg"
            img = _texture(rng, size)
            draw = ImageDraw.Draw(img)
            shapes = [] if i in empty else _place_shapes(rng, size, int(rng.integers(1, max_objects + 1)))
            for cls, pts, (x0, y0, x1, y1) in shapes:
                colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
                draw.polygon(pts, fill=colour, outline=(0, 0, 0))
                w, h = x1 - x0, y1 - y0
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": cls + 1,
                        "bbox": [x0, y0, w, h],
                        "area": w * h,
                        "iscrowd": 0,
                    }
                )
            img.filter(ImageFilter.GaussianBlur(0.5)).save(root / split / file_name, quality=95)
            images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
        coco = {
            "info": {"description": "mobilevit generated shapes (detection)", "version": "1.0"},
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    return _finish(root, params)
