"""A study's tables (results.csv / .md, runs.csv, curves.csv) and figures, from its files alone."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .latency import measure_latency_table
from .plots import plot_study, plot_variant
from .results import _pct, collect, read_manifest, summarize
from .studies import DEFAULT_OUT, KINDS, KNOB_LABELS, AblationError, _n, _write_json, format_value, load_study


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
    """Redraw the tables and figures of a finished study without training.

    Args:
        study: a built-in study's name or a study YAML's path (only its name is used).
        out_dir: the study's folder; ``None``: ``runs/ablations/STUDY``.
        echo: where progress lines go (the latency table is measured if it is missing).

    Returns:
        The written files by name (`write_outputs`).

    Raises:
        AblationError: no study in the folder, another study there, or unfinished runs.
    """
    name = study if study in KINDS else load_study(study).kind.name
    out = Path(out_dir) if out_dir else DEFAULT_OUT / name
    man = read_manifest(out)
    if man.get("study") != name:
        raise AblationError(f"{out} holds study {man.get('study')!r}, not {name}")
    return write_outputs(out, echo=echo)
