"""Weights out to the Hugging Face Hub: ``save_pretrained(weights, folder)`` and ``push_to_hub``.

The folder is a Hub model repo in this package's layout, what ``create_model("hf-hub:ORG/REPO")``
reads back: ``model.safetensors`` (our weights file, its metadata included), ``config.json``
(everything that rebuilds the exact model: architecture, config overrides, classes, input
convention and preprocessing) and ``README.md``, a model card generated from the weights and the
run that made them (task, data, the validation metric and the command that measured it,
parameters, GMACs, a batch-1 latency measured here, the licence of the source weights). A field
that would be empty is an error before anything is written; the folder is written whole or not
at all. ``push_to_hub`` uploads that folder with ``huggingface_hub`` (its token handling).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml

from .bench.summary import count_flops, count_params
from .errors import MobileViTError
from .export.optimize import optimize_for_inference
from .loading import class_names, load_model
from .timing import measure_latency
from .weights.serialization import WeightsMeta, write_weights

CARD_TASKS = {
    "classification": "image-classification",
    "segmentation": "image-segmentation",
    "detection": "object-detection",
}
_METRIC_NAMES = {"top1": "top-1 accuracy", "miou": "mIoU", "map": "COCO box mAP"}


class PublishError(MobileViTError):
    """A folder or upload that cannot be made as asked (said before anything is written)."""


def _run_config(weights: Path) -> dict[str, Any]:
    """The resolved training config next to weights a run wrote (``config.yaml``), else {}."""
    cfg = weights.parent / "config.yaml"
    if not cfg.is_file():
        return {}
    loaded = yaml.safe_load(cfg.read_text())
    return loaded if isinstance(loaded, dict) else {}


def _metrics(meta: WeightsMeta) -> dict[str, float]:
    """The validation metrics the weights file records (training writes ``val_<metric>``)."""
    return {
        k.removeprefix("val_"): float(v)
        for k, v in meta.extra.items()
        if k.startswith("val_") and isinstance(v, int | float)
    }


def _dataset(meta: WeightsMeta, run: dict[str, Any], dataset: str | None) -> str | None:
    if dataset:
        return dataset
    data = run.get("data") or {}
    if data.get("dataset"):
        return str(data["dataset"]) + (
            f" ({data['root']})" if data.get("root") and data["dataset"] == "folder" else ""
        )
    if meta.extra.get("converted_from"):
        return f"as released ({meta.extra['converted_from']}: {meta.extra.get('source_file', '')})"
    return None


def _latency_ms(model: torch.nn.Module, size: int) -> float:
    """Batch-1 median of the optimized eager path, as ``mobilevit bench`` measures it."""
    with torch.inference_mode():
        return measure_latency(optimize_for_inference(model), (size, size), iters=10).p50_ms


def model_config(model: torch.nn.Module, meta: WeightsMeta) -> dict[str, Any]:
    """``config.json``: what rebuilds the exact model and feeds it as it was trained."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return {
        "library_name": "mobilevit",
        "format": meta.format,
        "arch": meta.arch,
        "task": meta.task,
        "num_classes": meta.num_classes,
        "classes": class_names(meta),
        "model_overrides": meta.model_overrides,
        "channel_order": meta.channel_order,  # RGB unless converted with --keep-bgr
        "preprocessing": {
            "crop_size": int(cfg.get("crop_size") or 256),
            "resize_size": int(cfg.get("resize_size") or int(cfg.get("crop_size") or 256) + 32),
            "interpolation": cfg.get("interpolation", "bilinear"),
            "mean": list(cfg.get("mean", (0.0, 0.0, 0.0))),
            "std": list(cfg.get("std", (1.0, 1.0, 1.0))),
            "scale": "1/255",
        },
    }


def model_card(
    model: torch.nn.Module,
    meta: WeightsMeta,
    weights: Path,
    *,
    license: str | None,
    dataset: str | None,
    repo_id: str | None,
    metrics: dict[str, float] | None = None,
    latency: bool = True,
) -> str:
    """``README.md`` for the repo; `PublishError` when a field would be empty.

    ``metrics`` (e.g. ``{"top1": 0.69}``) are the uploader's figures, used when the weights file
    records none; the card says so."""
    run = _run_config(weights)
    licence = license or meta.extra.get("license")
    data = _dataset(meta, run, dataset)
    recorded = _metrics(meta)
    measured_by = (
        f"`mobilevit eval {weights.name} --config config.yaml` (in the training run's folder)"
        if recorded and run
        else f"`mobilevit eval {weights.name}` on the data above"
        if recorded
        else "the uploader (not measured by this package)"
    )
    metrics = recorded or dict(metrics or {})
    missing = [
        what
        for what, value in (
            ("licence (--license)", licence),
            ("training data (--dataset)", data),
            ("validation metric (--metric NAME=VALUE)", metrics),
        )
        if not value
    ]
    if missing:
        raise PublishError(
            f"{weights}: the model card would leave these empty: {'; '.join(missing)} (weights from "
            "`mobilevit train` record their data and validation metric; nothing was written)"
        )
    cfg = model_config(model, meta)
    size = cfg["preprocessing"]["crop_size"]
    params = count_params(model)
    gmacs = count_flops(model, (size, size)) / 2e9
    name = repo_id or meta.arch
    lines = [
        "---",
        yaml.safe_dump(
            {
                "library_name": "mobilevit",
                "license": str(licence),
                "pipeline_tag": CARD_TASKS[meta.task],
                "tags": ["mobilevit", meta.arch, meta.task],
            },
            sort_keys=False,
        ).strip(),
        "---",
        "",
        f"# {name}",
        "",
        f"{meta.arch} ({meta.task}, {meta.num_classes} classes) in the `mobilevit` library's layout.",
        "",
        "| | |",
        "|---|---|",
        f"| data | {data} |",
        *(f"| validation {_METRIC_NAMES.get(k, k)} | {v:.4f} |" for k, v in metrics.items()),
        f"| measured by | {measured_by} |",
        f"| parameters | {params:,} |",
        f"| GMACs at {size}x{size} | {gmacs:.3f} |",
    ]
    if latency:
        threads = torch.get_num_threads()
        lines.append(
            f"| batch-1 latency, eager optimized, {threads} CPU threads | {_latency_ms(model, size):.1f} ms |"
        )
    lines += [
        f"| input | {meta.channel_order} in [0, 1], resize {cfg['preprocessing']['resize_size']}, centre crop {size} |",
        f"| licence | {licence} |",
        "",
        "```python",
        "import mobilevit",
        "",
        f'model = mobilevit.create_model("hf-hub:{name}").eval()',
        "```",
        "",
    ]
    return "\n".join(lines)


def save_pretrained(
    weights: str | Path,
    folder: str | Path,
    *,
    license: str | None = None,
    dataset: str | None = None,
    repo_id: str | None = None,
    metrics: dict[str, float] | None = None,
    latency: bool = True,
) -> Path:
    """Write a Hub repo folder for a weights file (any format ``load_model`` reads)."""
    weights, folder = Path(weights), Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise PublishError(f"{folder} exists and is not empty; give a new folder")
    model, meta = load_model(weights)
    card = model_card(
        model,
        meta,
        weights,
        license=license,
        dataset=dataset,
        repo_id=repo_id,
        metrics=metrics,
        latency=latency,
    )
    if isinstance(meta.extra.get("train_data"), dict):  # a local path is no use to (nor for) others
        meta.extra["train_data"] = {k: v for k, v in meta.extra["train_data"].items() if k != "root"}
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        write_weights(model.state_dict(), tmp / "model.safetensors", meta)
        (tmp / "config.json").write_text(json.dumps(model_config(model, meta), indent=2) + "\n")
        (tmp / "README.md").write_text(card)
        if folder.exists():
            folder.rmdir()
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def push_to_hub(
    weights: str | Path,
    repo_id: str,
    *,
    license: str | None = None,
    dataset: str | None = None,
    metrics: dict[str, float] | None = None,
    private: bool = False,
    token: str | None = None,
    latency: bool = True,
) -> str:
    """Make the repo folder for ``weights`` and upload it to ``repo_id``; returns the commit URL."""
    from huggingface_hub import HfApi

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise PublishError(f"repo id must be ORG/NAME, got {repo_id!r}")
    with tempfile.TemporaryDirectory(prefix="mobilevit-hub-") as tmp:
        folder = save_pretrained(
            weights,
            Path(tmp) / "repo",
            license=license,
            dataset=dataset,
            repo_id=repo_id,
            metrics=metrics,
            latency=latency,
        )
        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id, folder_path=folder, commit_message=f"mobilevit: {folder.name}"
        )
    return str(getattr(info, "commit_url", info))
