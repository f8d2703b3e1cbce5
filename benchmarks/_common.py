"""Shared bits of the benchmark scripts: the machine header, writing docs tables, and the demo
benchmarks' one train -> evaluate the kept weights -> epoch table helper."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def write_doc(name: str, title: str, body: str, command: str) -> Path:
    from mobilevit.bench import machine_info

    info = machine_info()
    DOCS.mkdir(exist_ok=True)
    text = (
        f"# {title}\n\n"
        f"Machine: {info['cpu']} ({', '.join(info['extensions']) or 'no AVX'}), {info['threads']} torch threads; "
        f"torch {info['torch']}, Python {info['python']}.\n\n"
        f"Command: `{command}`\n\nDate: {time.strftime('%Y-%m-%d')}\n\n{body}\n"
    )
    path = DOCS / name
    path.write_text(text)
    return path


def print_json_last(figures: dict[str, Any]) -> None:
    sys.stdout.flush()
    print(json.dumps(figures), flush=True)


@dataclass
class DemoRun:
    """A recipe trained to the end, and its kept weights evaluated on the held-out split."""

    trainer: Any
    summary: dict[str, Any]
    best: Any  # the model loaded from best.safetensors
    classes: list[str]
    final: dict[str, Any]  # the task's metrics of ``best``
    minutes: float  # data generation + training + evaluation
    rows: list[dict[str, Any]]  # metrics.jsonl


def demo_args(doc: str, out_name: str) -> argparse.Namespace:
    """The demo benchmarks' command line: config overrides and the run folder."""
    p = argparse.ArgumentParser(description=doc)
    p.add_argument("overrides", nargs="*", help="extra config overrides, e.g. optim.epochs=10")
    p.add_argument("--out-dir", default=str(REPO / "runs" / out_name))
    return p.parse_args()


def train_and_evaluate(recipe: str | Path, overrides: list[str], out_dir: str) -> DemoRun:
    """Train ``recipe`` (with ``overrides``) in ``out_dir``, then load ``best.safetensors`` the way
    ``mobilevit eval`` does and evaluate it on the held-out split; copies the curves into docs/."""
    from mobilevit.engine import Trainer, load_config
    from mobilevit.loading import class_names, load_model

    logging.basicConfig(level=logging.WARNING)
    cfg = load_config(recipe, [*overrides, f"run.out_dir={out_dir}", "run.progress=false"])
    start = time.perf_counter()
    trainer = Trainer(cfg)
    summary = trainer.fit()
    best, meta = load_model(trainer.out / "best.safetensors")
    best = best.eval().to(trainer.info.device)
    final = trainer.evaluate(best)
    rows = trainer.metrics.rows() if trainer.metrics else []
    return DemoRun(trainer, summary, best, class_names(meta), final, (time.perf_counter() - start) / 60, rows)


def epoch_table(
    rows: list[dict[str, Any]], columns: list[tuple[str, str]], only_if: str | None = None
) -> str:
    """A Markdown table of ``rows``: one ``(header, key)`` per column (floats to 4 places, missing: nan);
    ``only_if``: keep the rows that hold this key (epochs that were evaluated)."""
    lines = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "---:|" * len(columns)]
    for r in rows:
        if only_if is not None and only_if not in r:
            continue
        cells = [r.get(k, float("nan")) for _, k in columns]
        lines.append("| " + " | ".join(f"{c:.4f}" if isinstance(c, float) else str(c) for c in cells) + " |")
    return "\n".join(lines)


def copy_curves(run: DemoRun, name: str) -> None:
    shutil.copy(run.trainer.out / "curves.png", DOCS / name)
