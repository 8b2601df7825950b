"""One figure style for the series: image grids, curves, bar charts, the Poincare disk, and table export.

Figures are written to ``figures/<notebook>/`` (``$GEODD_FIGURES`` overrides the root, which the tests use so
smoke runs never overwrite the committed ``cpu`` figures).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from .runs import REPO_ROOT


def use_style() -> None:
    """The series' plot style (seaborn whitegrid, readable fonts, 110 dpi on screen, 150 dpi saved).
    Shown in notebooks 00 (00_dm_baseline), 01 (01_manifold_embeddings), 02 (02_hdd_pruning), 03
    (03_csdm_amplitude_phase), 04 (04_geodm_product_space), 05 (05_ot_generative) and 06 (06_results)."""
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "savefig.bbox": "tight",
                         "axes.titlesize": 12, "axes.labelsize": 11})


def figure_dir(notebook: str) -> Path:
    """``figures/<notebook>`` (or under ``$GEODD_FIGURES``), created on demand."""
    root = Path(os.environ.get("GEODD_FIGURES", REPO_ROOT / "figures"))
    path = root / notebook
    path.mkdir(parents=True, exist_ok=True)
    return path


def save(fig: plt.Figure, notebook: str, name: str) -> Path:
    """Save ``fig`` as ``figures/<notebook>/<name>.png`` and return the path."""
    path = figure_dir(notebook) / f"{name}.png"
    fig.savefig(path, metadata={"Software": None})
    return path


def save_table(df: pd.DataFrame, notebook: str, name: str, floatfmt: str = ".2f") -> Path:
    """Write ``df`` as ``<name>.csv`` and ``<name>.md`` (a Markdown table) under ``figures/<notebook>``: float
    columns with ``floatfmt``, text cells exactly as given (tabulate would re-read "+1.20" as 1.2)."""
    folder = figure_dir(notebook)
    df.to_csv(folder / f"{name}.csv", index=False)
    shown = df.copy()
    for col in shown.columns:  # floats formatted here; text (e.g. "+1.20", "0.010") is kept as written
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = [format(v, floatfmt) if pd.notna(v) else "" for v in shown[col]]
    (folder / f"{name}.md").write_text(shown.to_markdown(index=False, disable_numparse=True) + "\n")
    return folder / f"{name}.md"


def to_display(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Denormalise ``[N, C, H, W]`` images to ``[N, H, W, C]`` in [0, 1] for plotting.
    Not called in a notebook; used by ``geodd.plots``."""
    m = torch.tensor(mean, dtype=images.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=images.dtype).view(1, -1, 1, 1)
    x = (images.detach().cpu() * s + m).clamp(0, 1)
    return x.permute(0, 2, 3, 1).numpy()


def image_grid(images: torch.Tensor, labels: torch.Tensor, mean, std, *, class_names: Sequence[str] | None = None,
               per_class: int | None = None, title: str | None = None, scale: float = 0.9) -> plt.Figure:
    """One row per class, ``per_class`` images per row (all of the class's images by default).
    Shown in notebooks 00 (00_dm_baseline), 01 (01_manifold_embeddings), 02 (02_hdd_pruning), 03
    (03_csdm_amplitude_phase), 04 (04_geodm_product_space) and 05 (05_ot_generative)."""
    classes = sorted(set(labels.tolist()))
    rows = [torch.nonzero(labels == c).flatten() for c in classes]
    ncol = per_class or max(len(r) for r in rows)
    pix = to_display(images, mean, std)
    fig, axes = plt.subplots(len(classes), ncol, figsize=(scale * ncol + 1.2, scale * len(classes)), squeeze=False)
    for i, (c, idx) in enumerate(zip(classes, rows)):
        for j in range(ncol):
            ax = axes[i, j]
            ax.axis("off")
            if j < len(idx):
                img = pix[idx[j]]
                ax.imshow(img.squeeze(-1) if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                          vmin=0, vmax=1)
        name = class_names[c] if class_names else str(c)
        axes[i, 0].text(-0.1, 0.5, name, transform=axes[i, 0].transAxes, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(wspace=0.04, hspace=0.04)
    return fig


def loss_curves(curves: dict[str, Sequence[float]], *, title: str = "matching loss", smooth: int = 10,
                logy: bool = True) -> plt.Figure:
    """Loss against iteration, one line per run, with a moving average of ``smooth`` iterations.
    Shown in notebook 00 (00_dm_baseline)."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name, ys in curves.items():
        ys = np.asarray(ys, dtype=float)
        k = max(1, min(smooth, len(ys)))
        sm = np.convolve(ys, np.ones(k) / k, mode="valid")
        ax.plot(np.arange(k, len(ys) + 1), sm, label=name)
    ax.set(xlabel="iteration", ylabel="loss per class", title=title)
    if logy:
        ax.set_yscale("log")
    ax.legend()
    return fig


def accuracy_bars(df: pd.DataFrame, *, x: str, y: str = "acc", hue: str | None = None,
                  title: str = "", ylabel: str = "test accuracy (%)") -> plt.Figure:
    """Bars of the mean with the individual seeds as dots (so the spread is visible, not just an error bar).
    Shown in notebooks 00 (00_dm_baseline), 02 (02_hdd_pruning), 04 (04_geodm_product_space), 05 (05_ot_generative)
    and 06 (06_results)."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    sns.barplot(data=df, x=x, y=y, hue=hue, errorbar=("sd", 1), capsize=0.1, ax=ax, alpha=0.85)
    sns.stripplot(data=df, x=x, y=y, hue=hue, dodge=hue is not None, ax=ax, color="k", size=3, legend=False)
    ax.set(title=title, ylabel=ylabel, xlabel=x)
    return fig


def poincare_disk(ax: plt.Axes | None = None) -> plt.Axes:
    """An empty unit disk (the Poincare model) to draw points on.
    Shown in notebooks 01 (01_manifold_embeddings) and 02 (02_hdd_pruning)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="k", lw=1))
    ax.set(xlim=(-1.05, 1.05), ylim=(-1.05, 1.05), aspect="equal")
    ax.axis("off")
    return ax


def accuracy_by_budget(df: pd.DataFrame, *, x: str = "budget", y: str = "acc", hue: str = "method",
                       facet: str | None = "ipc", marks: dict[str, float] | None = None, title: str = "",
                       ylabel: str = "test accuracy (%)") -> plt.Figure:
    """Mean over seeds against the budget (image steps), one line per ``hue``, with a 95 % t-interval band over
    the seeds (n is in the legend; a line with one seed has no band and says n = 1); one panel per ``facet``
    value. ``marks`` draws labelled vertical lines (e.g. each notebook's budget). The legend sits outside the
    axes. Shown in notebooks 00 (00_dm_baseline) and 06 (06_results)."""
    from scipy import stats as st
    panels = list(dict.fromkeys(df[facet])) if facet else [None]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels) + 1.6, 3.8), squeeze=False)
    colours = dict(zip(dict.fromkeys(df[hue]), sns.color_palette("colorblind", df[hue].nunique())))
    for ax, panel in zip(axes[0], panels):
        part = df if panel is None else df[df[facet] == panel]
        for name, g in part.groupby(hue, sort=False):
            agg = g.groupby(x)[y].agg(["mean", "std", "count"]).reset_index().sort_values(x)
            half = [st.t.ppf(0.975, n - 1) * s / np.sqrt(n) if n > 1 else np.nan
                    for s, n in zip(agg["std"], agg["count"])]
            n = int(agg["count"].min())
            ax.plot(agg[x], agg["mean"], marker="o", ms=4, color=colours[name], label=f"{name} (n = {n})")
            if n > 1:
                ax.fill_between(agg[x], agg["mean"] - half, agg["mean"] + half, color=colours[name], alpha=0.18)
        for label, value in (marks or {}).items():
            ax.axvline(value, color="0.4", ls=":", lw=1)
            ax.text(value, 1.0, f" {label}", transform=ax.get_xaxis_transform(), rotation=90, va="top",
                    ha="right", fontsize=8, color="0.3")
        ax.set(xlabel="image steps" if x == "budget" else x, ylabel=ylabel,
               title=(f"{facet.upper() if facet == 'ipc' else facet} {panel}" if panel is not None else title))
    axes[0, -1].legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize=8, title=hue)
    if title and panels != [None]:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def comparison_intervals(table: pd.DataFrame, *, label: str = "comparison", unit: str = "points",
                         title: str = "") -> plt.Figure:
    """Each paired comparison of a ``geodd.stats.compare_table``-style table (columns ``mean diff``, ``CI low``,
    ``CI high``, ``verdict``, ``n``) as a dot with its 95 % interval and a line at 0: the figure form of the
    verdict table (green: supported, red: contradicted, grey: inconclusive). Shown in notebook 06 (06_results)."""
    colour = {"supported": "tab:green", "contradicted": "tab:red", "inconclusive": "0.45"}
    t = table.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(t) + 1.2))
    ys = np.arange(len(t))[::-1]
    for yv, (_, r) in zip(ys, t.iterrows()):
        c = colour.get(r["verdict"], "0.45")
        if np.isfinite(r["CI low"]):
            ax.plot([r["CI low"], r["CI high"]], [yv, yv], color=c, lw=2)
        ax.plot(r["mean diff"], yv, "o", color=c)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(ys, [f"{r[label]} (n = {r['n']})" for _, r in t.iterrows()], fontsize=8)
    ax.set(xlabel=f"paired difference ({unit}), 95 % CI", title=title)
    return fig
