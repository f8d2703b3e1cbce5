"""COCO detection data: the loader's bad-input rules, the SSD transforms, the generated shapes
set, and COCO mAP through pycocotools on tiny sets with known answers."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from mobilevit.data import DataError, write_shapes_coco
from mobilevit.data.coco import (
    CocoDetection,
    DetEvalTransform,
    DetTrainTransform,
    collate_detection,
)
from mobilevit.engine.metrics import coco_evaluate

CATEGORIES = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]  # non-contiguous on purpose


def _ann(ann_id: int, image_id: int, cat: int, bbox: list[float], **extra: Any) -> dict[str, Any]:
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": cat,
        "bbox": bbox,
        "area": bbox[2] * bbox[3],
        "iscrowd": 0,
        **extra,
    }


# three 60x40 images (width 60, height 40); image 3 holds no objects
GOOD_ANNOTATIONS = [
    _ann(1, 1, 3, [5, 5, 20, 15]),
    _ann(2, 1, 7, [30, 10, 25, 25]),
    _ann(3, 2, 7, [10, 8, 30, 20]),
]


def write_coco(
    root: Path,
    annotations: list[dict[str, Any]] | None = None,
    n_images: int = 3,
    categories: list[dict[str, Any]] | None = None,
    name: str = "instances_tiny.json",
    skip_files: tuple[int, ...] = (),
) -> tuple[Path, Path]:
    """A tiny COCO set: ``n_images`` 60x40 PNGs in ``root/images`` and its annotation file."""
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = []
    for i in range(1, n_images + 1):
        file_name = f"img{i}.png"
        if i not in skip_files:
            Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(images_dir / file_name)
        images.append({"id": i, "file_name": file_name, "width": 60, "height": 40})
    data = {
        "images": images,
        "annotations": GOOD_ANNOTATIONS if annotations is None else annotations,
        "categories": CATEGORIES if categories is None else categories,
    }
    (root / "annotations").mkdir(exist_ok=True)
    ann_file = root / "annotations" / name
    ann_file.write_text(json.dumps(data))
    return images_dir, ann_file


# ---- loader -------------------------------------------------------------------------------------


def test_loader_items_and_label_mapping(tmp_path):
    ds = CocoDetection(*write_coco(tmp_path))
    assert len(ds) == 3 and ds.image_ids == [1, 2, 3]
    assert ds.cat_ids == [3, 7] and ds.classes == ["background", "cat", "dog"]
    assert ds.label_to_cat_id == {1: 3, 2: 7}
    assert ds.stats == {"clipped": 0, "dropped": 0, "crowd": 0}
    image, target = ds[0]
    assert image.dtype == torch.float32 and image.shape == (3, 40, 60)
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert type(target["boxes"]) is torch.Tensor and target["boxes"].dtype == torch.float32
    torch.testing.assert_close(target["boxes"], torch.tensor([[5.0, 5, 25, 20], [30, 10, 55, 35]]))
    assert target["labels"].tolist() == [1, 2] and target["image_id"] == 1


def test_image_without_objects(tmp_path):
    ds = CocoDetection(*write_coco(tmp_path))
    image, target = ds[2]
    assert target["boxes"].shape == (0, 4) and target["boxes"].dtype == torch.float32
    assert target["labels"].shape == (0,) and target["labels"].dtype == torch.int64
    ds.transform = DetTrainTransform(size=32)
    for _ in range(5):  # RandomIoUCrop would spin on an image without boxes: it must be skipped
        image, target = ds[2]
        assert image.shape == (3, 32, 32)
        assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)


def test_boxes_partly_outside_are_clipped_and_warned(tmp_path, caplog):
    anns = [
        _ann(1, 1, 3, [-5, 5, 20, 15]),  # left edge outside
        _ann(2, 1, 7, [50, 30, 20, 20]),  # right and bottom edges outside
        _ann(3, 2, 7, [10, 8, 30, 20]),
    ]
    with caplog.at_level(logging.WARNING, logger="mobilevit.data"):
        ds = CocoDetection(*write_coco(tmp_path, anns))
    assert ds.stats == {"clipped": 2, "dropped": 0, "crowd": 0}
    torch.testing.assert_close(ds[0][1]["boxes"], torch.tensor([[0.0, 5, 15, 20], [50, 30, 60, 40]]))
    warnings = [r for r in caplog.records if r.name == "mobilevit.data" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    msg = warnings[0].getMessage()
    assert "instances_tiny.json" in msg and "2 boxes clipped" in msg and "annotation ids 1, 2" in msg


def test_degenerate_boxes_are_dropped(tmp_path, caplog):
    anns = [
        _ann(1, 1, 3, [5, 5, 0, 10]),  # zero width
        _ann(2, 1, 3, [5, 5, 10, -4]),  # inverted
        _ann(3, 1, 7, [70, 50, 10, 10]),  # fully outside the 60x40 image
        _ann(4, 1, 7, [10, 10, 10, 10]),  # kept
        _ann(5, 2, 7, [10, 8, 30, 20], iscrowd=1),  # crowd: left out of the targets
    ]
    with caplog.at_level(logging.WARNING, logger="mobilevit.data"):
        ds = CocoDetection(*write_coco(tmp_path, anns))
    assert ds.stats == {"clipped": 0, "dropped": 3, "crowd": 1}
    assert ds[0][1]["labels"].tolist() == [2]
    assert ds[1][1]["boxes"].shape == (0, 4)
    msg = " ".join(r.getMessage() for r in caplog.records if r.name == "mobilevit.data")
    assert "3 zero-area, inverted or outside boxes dropped" in msg and "annotation ids 1, 2, 3" in msg


def test_label_outside_class_range(tmp_path):
    anns = [*GOOD_ANNOTATIONS, _ann(42, 2, 99, [1, 1, 5, 5])]
    with pytest.raises(DataError) as err:
        CocoDetection(*write_coco(tmp_path, anns))
    msg = str(err.value)
    assert "instances_tiny.json" in msg and "annotation id 42" in msg and "99" in msg


def test_annotation_for_unknown_image(tmp_path):
    anns = [*GOOD_ANNOTATIONS, _ann(17, 12345, 3, [1, 1, 5, 5])]
    with pytest.raises(DataError) as err:
        CocoDetection(*write_coco(tmp_path, anns))
    msg = str(err.value)
    assert "instances_tiny.json" in msg and "annotation id 17" in msg and "12345" in msg


def test_missing_image_file(tmp_path):
    with pytest.raises(DataError) as err:
        CocoDetection(*write_coco(tmp_path, skip_files=(2,)))
    msg = str(err.value)
    assert "img2.png" in msg and "image id 2" in msg


def test_unreadable_image_file(tmp_path):
    images_dir, ann_file = write_coco(tmp_path)
    (images_dir / "img1.png").write_bytes(b"not an image")
    ds = CocoDetection(images_dir, ann_file)
    with pytest.raises(DataError, match=r"img1\.png.*image id 1"):
        ds[0]


def test_num_classes_too_small(tmp_path):
    paths = write_coco(tmp_path)
    assert len(CocoDetection(*paths, num_classes=3).classes) == 3
    with pytest.raises(DataError, match="num_classes=2"):
        CocoDetection(*paths, num_classes=2)


@pytest.mark.parametrize(
    ("content", "match"),
    [("{not json", "cannot read"), (json.dumps({"images": [], "annotations": []}), "categories")],
)
def test_malformed_annotation_file(tmp_path, content, match):
    images_dir, ann_file = write_coco(tmp_path)
    ann_file.write_text(content)
    with pytest.raises(DataError, match=match) as err:
        CocoDetection(images_dir, ann_file)
    assert "instances_tiny.json" in str(err.value)


# ---- transforms ---------------------------------------------------------------------------------


def test_train_transform_outputs(tmp_path):
    ds = CocoDetection(*write_coco(tmp_path), transform=DetTrainTransform(size=320))
    torch.manual_seed(0)
    for _ in range(20):
        image, target = ds[0]
        assert image.shape == (3, 320, 320) and image.dtype == torch.float32
        assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
        boxes, labels = target["boxes"], target["labels"]
        assert boxes.ndim == 2 and boxes.shape[1] == 4 and boxes.dtype == torch.float32
        assert labels.dtype == torch.int64 and len(labels) == len(boxes)
        assert set(labels.tolist()) <= {1, 2}
        assert bool((boxes >= 0).all() and (boxes <= 320).all())
        assert bool((boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all())


def test_eval_transform_keeps_original_size_and_boxes(tmp_path):
    ds = CocoDetection(*write_coco(tmp_path), transform=DetEvalTransform())
    image, target = ds[1]
    assert image.shape == (3, 40, 60) and image.dtype == torch.float32 and float(image.max()) <= 1.0
    torch.testing.assert_close(target["boxes"], torch.tensor([[10.0, 8, 40, 28]]))
    images, targets = collate_detection([ds[0], ds[1], ds[2]])
    assert len(images) == len(targets) == 3 and [t["image_id"] for t in targets] == [1, 2, 3]


# ---- generated shapes set -----------------------------------------------------------------------


def test_write_shapes_coco(tmp_path):
    from pycocotools.coco import COCO

    root = write_shapes_coco(tmp_path / "a", size=64, n_train=6, n_val=3, seed=1)
    for split, n in (("train", 6), ("val", 3)):
        ann_file = root / "annotations" / f"instances_{split}.json"
        assert len(list((root / split).glob("*.jpg"))) == n
        coco = COCO(str(ann_file))
        assert sorted(coco.getCatIds()) == [1, 2, 3, 4]
        ds = CocoDetection(root / split, ann_file, num_classes=5)
        assert len(ds) == n and ds.stats == {"clipped": 0, "dropped": 0, "crowd": 0}
    train = json.loads((root / "annotations" / "instances_train.json").read_text())
    with_objects = {a["image_id"] for a in train["annotations"]}
    assert len(with_objects) < len(train["images"])  # some images are empty
    assert [c["name"] for c in train["categories"]] == ["ellipse", "rectangle", "triangle", "star"]
    # drawn largest first, so no object hides behind a bigger one drawn after it
    for image in train["images"]:
        areas = [a["area"] for a in train["annotations"] if a["image_id"] == image["id"]]
        assert areas == sorted(areas, reverse=True)
    again = write_shapes_coco(tmp_path / "b", size=64, n_train=6, n_val=3, seed=1)
    for split in ("train", "val"):
        name = f"annotations/instances_{split}.json"
        assert (root / name).read_text() == (again / name).read_text()
    assert write_shapes_coco(root, size=64, n_train=6, n_val=3, seed=1) == root  # up to date: no rewrite


# ---- COCO mAP -----------------------------------------------------------------------------------


def _gt_detections(ds: CocoDetection, shift: float = 0.0, label_offset: int = 0) -> list[dict[str, Any]]:
    """The ground truth as detections (score 1), boxes shifted right by ``shift`` of their width."""
    dets = []
    for i in range(len(ds)):
        _, target = ds[i]
        boxes = target["boxes"].clone()
        dx = shift * (boxes[:, 2] - boxes[:, 0])  # [N]
        boxes[:, 0] += dx
        boxes[:, 2] += dx
        labels = target["labels"] + label_offset
        dets.append(
            {
                "image_id": target["image_id"],
                "boxes": boxes,
                "scores": torch.ones(len(boxes)),
                "labels": labels,
            }
        )
    return dets


@pytest.fixture
def eval_set(tmp_path):
    return CocoDetection(*write_coco(tmp_path))


def test_coco_map_perfect(eval_set):
    res = coco_evaluate(eval_set.annotation_file, _gt_detections(eval_set), eval_set.label_to_cat_id)
    assert res["map"] == pytest.approx(1.0) and res["map50"] == pytest.approx(1.0)
    assert res["map75"] == pytest.approx(1.0) and res["mar_100"] == pytest.approx(1.0)
    assert res["map_large"] == -1.0  # no large objects in these 60x40 images
    assert "Average Precision" in res["summary"]
    as_list = coco_evaluate(eval_set.annotation_file, _gt_detections(eval_set), eval_set.cat_ids)
    assert as_list["map"] == pytest.approx(1.0)


def test_coco_map_shifted_boxes(eval_set):
    small = coco_evaluate(eval_set.annotation_file, _gt_detections(eval_set, 0.1), eval_set.label_to_cat_id)
    large = coco_evaluate(eval_set.annotation_file, _gt_detections(eval_set, 0.5), eval_set.label_to_cat_id)
    assert 0.0 < small["map"] < 1.0 and small["map50"] == pytest.approx(1.0)  # IoU 0.82
    assert large["map"] < small["map"] and large["map50"] < small["map50"]  # IoU 0.33


def test_coco_map_wrong_labels_and_empty(eval_set):
    swapped = _gt_detections(eval_set)
    for d in swapped:
        d["labels"] = 3 - d["labels"]  # 1 <-> 2
    res = coco_evaluate(eval_set.annotation_file, swapped, eval_set.label_to_cat_id)
    assert res["map"] == 0.0 and res["map50"] == 0.0
    empty = [
        {"image_id": i, "boxes": np.zeros((0, 4)), "scores": [], "labels": []} for i in eval_set.image_ids
    ]
    res = coco_evaluate(eval_set.annotation_file, empty, eval_set.label_to_cat_id)
    assert res["map"] == 0.0 and res["map50"] == 0.0 and res["mar_100"] == 0.0
    assert coco_evaluate(eval_set.annotation_file, [], eval_set.label_to_cat_id)["map"] == 0.0


def test_coco_map_restricted_to_listed_images(eval_set):
    dets = _gt_detections(eval_set)
    only_first = coco_evaluate(eval_set.annotation_file, dets[:1], eval_set.label_to_cat_id)
    assert only_first["map"] == pytest.approx(1.0)  # image 2's objects are not counted as missed
    dets[1] = {"image_id": 2, "boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0)}
    missed = coco_evaluate(eval_set.annotation_file, dets, eval_set.label_to_cat_id)
    assert missed["map"] < 1.0  # listed with no detections: its object is missed
