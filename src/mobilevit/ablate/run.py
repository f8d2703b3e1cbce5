"""Running a plan: one training run per (variant, seed) through the engine, resumable, then the outputs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..engine import train
from .latency import measure_latency_table
from .plan import Plan
from .report import write_outputs
from .studies import OUTPUT_FILES, _write_json


def _manifest(plan: Plan, complete: bool) -> dict[str, Any]:
    c = plan.base
    return {
        "study": plan.spec.kind.name,
        "title": plan.spec.kind.title,
        "paper": plan.spec.kind.paper,
        "study_file": str(plan.spec.path),
        "recipe": str(plan.recipe),
        "knobs": list(plan.spec.kind.knobs),
        "reference": plan.spec.reference,
        "command": plan.command,
        "model": c.model.name,
        "dataset": c.data.dataset,
        "data_root": c.data.root,
        "num_classes": plan.num_classes,
        "img_size": c.data.img_size,
        "epochs": c.optim.epochs,
        "threads": c.run.threads,
        "seeds": plan.seeds,
        "latency_iters": plan.latency_iters,
        "variants": [
            {
                "name": v.name,
                "label": v.label,
                "settings": v.settings,
                "params": plan.params[v.name],
                "model_overrides": plan.model_overrides[v.name],
            }
            for v in plan.variants
        ],
        "runs": [
            {
                "variant": r.variant,
                "seed": r.seed,
                "dir": str(r.dir.relative_to(plan.out_dir)),
                "overrides": r.overrides,
            }
            for r in plan.runs
        ],
        "complete": complete,
    }


def _clear_run(run_dir: Path) -> None:
    """A run that starts from scratch: leftovers of a run killed before its first epoch ended go."""
    import shutil

    for name in (
        "metrics.jsonl",
        "metrics.csv",
        "curves.png",
        "report.md",
        "last.safetensors",
        "best.safetensors",
    ):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)


def run_study(plan: Plan, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Train what is not finished, then write the tables and figures; stops with a stopped run."""
    out = plan.out_dir
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "study.json", _manifest(plan, complete=False))
    if any(r.status() != "finished" for r in plan.runs):  # tables of an earlier request are stale now
        for name in (*OUTPUT_FILES, f"{plan.spec.kind.name}.png", "latency.json"):
            (out / name).unlink(missing_ok=True)
    n = len(plan.runs)
    for i, run in enumerate(plan.runs, 1):
        tag = f"[{i}/{n}] {plan.spec.kind.name} {run.variant} seed {run.seed}"
        status = run.status()
        if status == "finished":
            echo(f"{tag}: finished earlier, kept ({run.dir})")
            continue
        resume = None
        if status == "interrupted":
            resume = run.dir / "resume.pt"
            echo(f"{tag}: resuming from {resume}")
        else:
            _clear_run(run.dir)
            echo(f"{tag}: training -> {run.dir}")
        summary = train(run.cfg, resume=resume)
        if summary["stopped"] is not None:
            echo(
                f"{tag}: stopped ({summary['stopped']}); the study is interrupted after {i - 1} of {n} runs. "
                f"Run the same command again to resume it: {plan.command}"
            )
            return {"stopped": summary["stopped"], "out_dir": str(out), "runs_finished": i - 1, "runs": n}
        _write_json(run.dir / "summary.json", summary)
    if plan.spec.kind.latency:
        _write_json(out / "latency.json", measure_latency_table(_manifest(plan, complete=True), echo=echo))
    _write_json(out / "study.json", _manifest(plan, complete=True))
    paths = write_outputs(out)
    echo(f"study {plan.spec.kind.name} finished: {paths['results.md']}, {paths['figure']}")
    return {"stopped": None, "out_dir": str(out), "runs": n, **{k: str(v) for k, v in paths.items()}}
