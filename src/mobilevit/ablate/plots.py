"""The figures of a study: per-variant curves and one figure in the manner of the paper."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .results import RunResult
from .studies import _n, format_value


def _curve(runs: list[RunResult], key: str) -> tuple[list[int], list[float], list[float], list[float]]:
    by_epoch: dict[int, list[float]] = {}
    for r in runs:
        for row in r.rows:
            if key in row:
                by_epoch.setdefault(int(row["epoch"]), []).append(float(row[key]))
    epochs = sorted(by_epoch)
    return (
        epochs,
        [statistics.fmean(by_epoch[e]) for e in epochs],
        [min(by_epoch[e]) for e in epochs],
        [max(by_epoch[e]) for e in epochs],
    )


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_variant(man: dict[str, Any], variant: dict[str, Any], runs: list[RunResult], path: Path) -> Path:
    """Losses and top-1 per epoch of one variant: every seed (thin) and their mean (bold).

    Args:
        man: the study's manifest (``study.json``); its ``study`` names the figure.
        variant: the variant's manifest entry (``name``, ``label``).
        runs: the variant's finished runs, one per seed.
        path: the PNG to write.

    Returns:
        ``path``.
    """
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    names = {
        "val_ema_top1": "val top-1, EMA model",
        "val_top1": "val top-1, trained weights",
        "train_top1": "train top-1",
        "train_loss": "train loss",
        "val_loss": "val loss",
    }
    for ax, keys, scale in (
        (ax1, ("train_loss", "val_loss"), 1.0),
        (ax2, ("val_ema_top1", "val_top1", "train_top1"), 100.0),
    ):
        for j, key in enumerate(keys):
            if not any(key in row for r in runs for row in r.rows):
                continue
            for r in runs:
                pts = [(row["epoch"], scale * row[key]) for row in r.rows if key in row]
                ax.plot(*zip(*pts, strict=True), color=f"C{j}", alpha=0.35, lw=0.8)
            e, mean, _, _ = _curve(runs, key)
            ax.plot(
                e, [scale * m for m in mean], color=f"C{j}", marker=".", lw=1.8, label=f"{names[key]} (mean)"
            )
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(_int_ticks())
        ax.legend(fontsize=8)
    ax1.set_ylabel("loss")
    ax2.set_ylabel("top-1 %")
    fig.suptitle(f"{man['study']}: {variant['name']} ({variant['label']}), {_n(len(runs), 'seed')}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _int_ticks():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


_STYLES = ("-", "--", "-.", ":")


def plot_study(
    man: dict[str, Any], results: list[RunResult], table: list[dict[str, Any]], path: Path
) -> Path:
    """The study's figure, as the paper draws it: training loss and validation top-1 per epoch
    for every variant (mean over seeds, band min-max); for patch sizes also top-1 against
    latency, for EMA x label smoothing also the four final accuracies side by side.

    Args:
        man: the study's manifest (``study.json``), with ``_latency`` (the latency table) for
            the patch-size study.
        results: every finished run of the study.
        table: the per-variant summary rows (`summarize`), in the manifest's variant order.
        path: the PNG to write.

    Returns:
        ``path``.
    """
    plt = _plt()
    study = man["study"]
    extra = study in ("patch-size", "ema-label-smoothing")
    fig, axes = plt.subplots(1, 3 if extra else 2, figsize=(15.5 if extra else 10.5, 4.3))
    ax1, ax2 = axes[0], axes[1]
    for i, v in enumerate(man["variants"]):
        runs = [r for r in results if r.variant == v["name"]]
        style = dict(color=f"C{i}", ls=_STYLES[i % len(_STYLES)], marker=".")
        for ax, key, scale in ((ax1, "train_loss", 1.0), (ax2, runs[0].kept, 100.0)):
            e, mean, lo, hi = _curve(runs, key)
            ax.plot(e, [scale * m for m in mean], label=v["label"], **style)
            if len(runs) > 1:
                ax.fill_between(
                    e, [scale * x for x in lo], [scale * x for x in hi], color=f"C{i}", alpha=0.15
                )
    ax1.set(xlabel="epoch", ylabel="training loss", title="training loss")
    ax2.set(xlabel="epoch", ylabel="top-1 %", title="validation top-1 (EMA model when EMA is on)")
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(_int_ticks())
    ax2.legend(fontsize=8)
    if study == "patch-size":
        ax3 = axes[2]
        size = max((man.get("_latency") or {}).get("sizes", [man["img_size"]]))
        for i, r in enumerate(table):
            x, y = r.get(f"p50_ms@{size}"), r["top1_mean"]
            if x is None or y is None:
                continue
            ax3.errorbar(x, 100 * y, yerr=100 * (r["top1_std"] or 0), fmt="o", color=f"C{i}", capsize=3)
            ax3.annotate(
                "{" + format_value("p", r["model.overrides.patch_size"]) + "}",
                (x, 100 * y),
                textcoords="offset points",
                xytext=(6, 4),
                fontsize=9,
            )
        ax3.set(
            xlabel=f"batch-1 latency, ms at {size} px (CPU, median)",
            ylabel="top-1 %",
            title="accuracy vs latency",
        )
        ax3.margins(x=0.25, y=0.25)
    elif study == "ema-label-smoothing":
        ax3 = axes[2]
        ls_values = sorted({float(v["settings"]["optim.label_smoothing"]) for v in man["variants"]})
        width, tops = 0.38, []
        for j, ema in enumerate((False, True)):
            xs, ys, es = [], [], []
            for k, ls in enumerate(ls_values):
                for r, v in zip(table, man["variants"], strict=True):
                    s = v["settings"]
                    if bool(s["ema.enabled"]) == ema and float(s["optim.label_smoothing"]) == ls:
                        if r["top1_mean"] is None:
                            continue
                        xs.append(k + (j - 0.5) * width)
                        ys.append(100 * r["top1_mean"])
                        es.append(100 * (r["top1_std"] or 0))
            if xs:
                ax3.bar(
                    xs,
                    ys,
                    width,
                    yerr=es,
                    capsize=3,
                    color=f"C{j + 4}",
                    label=f"EMA {'on' if ema else 'off'}",
                )
                for x, y in zip(xs, ys, strict=True):
                    ax3.annotate(
                        f"{y:.2f}",
                        (x, y),
                        ha="center",
                        va="bottom",
                        fontsize=8,
                        textcoords="offset points",
                        xytext=(0, 2),
                    )
                tops += ys
        ax3.set_xticks(range(len(ls_values)), [f"label smoothing {ls:g}" for ls in ls_values])
        if tops:
            ax3.set_ylim(max(0.0, min(tops) - 5), min(100.0, max(tops) + 2))
        ax3.set(ylabel="top-1 % after the last epoch", title="final top-1 (mean over seeds)")
        ax3.legend(fontsize=8, loc="lower right")
    seeds = len(man["seeds"])
    fig.suptitle(
        f"{man['title']}: {man['model']} on {man['dataset']}, {_n(man['epochs'], 'epoch')}, {_n(seeds, 'seed')}"
        + (" (bands: min-max over seeds)" if seeds > 1 else "")
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
