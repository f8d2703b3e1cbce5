"""A study's results read back from its folder: per-run metrics, and mean / spread over seeds."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .studies import AblationError


@dataclass
class RunResult:
    variant: str
    seed: int
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    kept: str  # the accuracy column of the model the run keeps: val_ema_top1 (EMA on) or val_top1

    def last(self, key: str) -> float:
        """The last epoch's value of metric ``key``; NaN when no epoch recorded it."""
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
    """The study's ``study.json`` in ``out_dir``; an `AblationError` when there is none."""
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
