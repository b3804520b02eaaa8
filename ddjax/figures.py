"""Every figure ddjax draws, with matplotlib: each `*_figure` function returns a `Figure` (tests
read its texts back), and `save(figure, path)` writes it as PNG (200 dpi) and PDF beside each other,
atomically.

Sizes follow a paper's columns: 3.4 in (one column) or 7 in (two), 7-8 pt text. No pyplot: figures
are plain `matplotlib.figure.Figure` objects, so nothing global changes and no display is needed.

Point clouds are drawn as 3-D scatters with one fixed camera: the cloud's y axis (ModelNet's and
ShapeNet's up) is drawn vertical, elevation 20 degrees, azimuth -60 degrees, orthographic
projection, equal axes spanning [-1, 1] (clouds are normalised to the unit ball first).
"""

from __future__ import annotations

import io
import pathlib
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ddjax import run_folder

ONE_COLUMN, TWO_COLUMNS = 3.4, 7.0  # inches
FONT = 7
CAMERA = {"elev": 20.0, "azim": -60.0}


def save(figure: Figure, path) -> list[pathlib.Path]:
    """Writes `path` with the suffixes .png and .pdf (atomically); returns both paths."""
    written = []
    for suffix, options in ((".png", {"dpi": 200}), (".pdf", {})):
        target = pathlib.Path(path).with_suffix(suffix)
        buf = io.BytesIO()
        figure.savefig(buf, format=suffix[1:], bbox_inches="tight", **options)
        run_folder.write_bytes(target, buf.getvalue())
        written.append(target)
    return written


def texts(figure: Figure) -> list[str]:
    """Every non-empty text a figure shows: titles, axis labels, tick labels, annotations, legend
    entries."""
    figure.canvas.draw()  # tick labels exist only once drawn
    shown = figure.findobj(lambda a: hasattr(a, "get_text") and a.get_visible())
    return [t.get_text() for t in shown if t.get_text().strip()]


def _small(ax) -> None:
    ax.tick_params(labelsize=FONT - 1)
    for item in (ax.title, ax.xaxis.label, ax.yaxis.label):
        item.set_fontsize(FONT)


# ------------------------------------------------------------------------------------------
# confusion matrix
def confusion_figure(
    labels: np.ndarray, predictions: np.ndarray, class_names: Sequence[str], *, title: str
) -> Figure:
    """Row-normalised confusion matrix (true rows, predicted columns), class names on both axes,
    each class's accuracy in the right margin, a colour bar. Readable up to ModelNet40's 40 classes.
    """
    c = len(class_names)
    counts = np.zeros((c, c))
    np.add.at(counts, (np.asarray(labels), np.asarray(predictions)), 1)
    totals = counts.sum(axis=1, keepdims=True)
    rows = counts / np.maximum(totals, 1)
    side = min(max(ONE_COLUMN, 0.16 * c + 1.6), 9.0)
    label_size = FONT - 1 if c <= 20 else 5
    figure = Figure(figsize=(side + 1.0, side))
    ax = figure.add_subplot()
    image = ax.imshow(rows, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(c), class_names, rotation=90, fontsize=label_size)
    ax.set_yticks(range(c), class_names, fontsize=label_size)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    overall = counts.trace() / max(counts.sum(), 1)
    ax.set_title(f"{title} (top-1 {100 * overall:.1f}%)")
    accuracy = ax.secondary_yaxis("right")  # per-class accuracy beside each row
    accuracy.set_yticks(
        range(c),
        [f"{100 * rows[i, i]:.0f}" if totals[i, 0] else "-" for i in range(c)],
        fontsize=label_size,
    )
    accuracy.set_ylabel("class accuracy (%)", fontsize=FONT)
    if c <= 15:  # few classes: the fractions in the cells
        for i in range(c):
            for j in range(c):
                if counts[i, j]:
                    ax.text(
                        j,
                        i,
                        f"{rows[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=FONT - 2,
                        color="white" if rows[i, j] > 0.6 else "black",
                    )
    bar = figure.colorbar(image, ax=ax, shrink=0.5, aspect=25, pad=0.14)
    bar.set_label("fraction of the true class", fontsize=FONT)
    bar.ax.tick_params(labelsize=FONT - 1)
    _small(ax)
    return figure


# ---------------------------------------------------------------------------------------- Table 5
# heatmap
def _heatmap(figure: Figure, ax, grid: np.ndarray, ns, ts, title: str, label: str) -> None:
    image = ax.imshow(100 * grid, cmap="viridis", aspect="auto", origin="upper")
    ax.set_xticks(range(len(ts)), [str(t) for t in ts])
    ax.set_yticks(range(len(ns)), [str(n) for n in ns])
    ax.set_xlabel("noise step t")
    ax.set_ylabel("noise paths N")
    ax.set_title(title)
    span = np.nanmax(grid) - np.nanmin(grid)
    for i in range(len(ns)):
        for j in range(len(ts)):
            bright = span > 0 and (grid[i, j] - np.nanmin(grid)) / span > 0.6
            ax.text(
                j,
                i,
                f"{100 * grid[i, j]:.1f}",
                ha="center",
                va="center",
                fontsize=FONT - 2,
                color="black" if bright else "white",
            )
    best = np.unravel_index(np.nanargmax(grid), grid.shape)
    ax.add_patch(
        Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5)
    )
    bar = figure.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    bar.set_label(label, fontsize=FONT)
    bar.ax.tick_params(labelsize=FONT - 1)
    _small(ax)


def _grid(rows: list[dict], key: str):
    ns, ts = sorted({r["num_paths"] for r in rows}), sorted({r["t"] for r in rows})
    values = {(r["num_paths"], r["t"]): r[key] for r in rows}
    return np.array([[values.get((n, t), np.nan) for t in ts] for n in ns]), ns, ts


def sweep_figure(
    rows: list[dict],
    *,
    title: str,
    key: str = "top1",
    adversarial: list[dict] | None = None,
    adversarial_key: str = "paper_robust_acc",
) -> Figure:
    """Table 5 as heatmaps: rows N, columns t, each cell's top-1 in %, the best cell outlined in
    red; the adversarial sweep (robust top-1 under PGD) beside it when given."""
    panels = [(rows, key, "clean", "top-1 (%)")]
    if adversarial:
        panels.append((adversarial, adversarial_key, "under PGD", "robust top-1 (%)"))
    figure = Figure(figsize=(TWO_COLUMNS if len(panels) == 2 else 4.2, 2.4), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for ax, (data, field, name, label) in zip(axes, panels):
        grid, ns, ts = _grid(data, field)
        _heatmap(figure, ax, grid, ns, ts, f"{title}: {name}", label)
    return figure


# ------------------------------------------------------------------------------------------------
# training curves
LOSSES = (
    ("loss", "total"),
    ("loss_rec", "reconstruction"),
    ("loss_image", "image"),
    ("loss_text", "text"),
)


def curves_figure(records: list[dict], evaluations: list[dict], *, title: str) -> Figure:
    """A pretraining's curves from its metrics.jsonl records: the losses against steps (log scale)
    above, the learning rate below; each evaluation (a dict with `step` and `top1`) a dotted
    vertical line, its zero-shot top-1 in the legend."""
    figure = Figure(figsize=(ONE_COLUMN + 0.6, 3.6), layout="constrained")
    loss_ax, lr_ax = figure.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    steps = [r["step"] for r in records]
    for i, (key, label) in enumerate(LOSSES):
        if any(key in r for r in records):
            points = [(r["step"], r[key]) for r in records if key in r and r[key] > 0]
            if points:
                xs, ys = zip(*points)
                loss_ax.plot(xs, ys, color=f"C{i}", linewidth=0.8, label=label)
    if any(line.get_xdata().size for line in loss_ax.get_lines()):
        loss_ax.set_yscale("log")
    lr_ax.plot(steps, [r.get("lr", np.nan) for r in records], color="C4", linewidth=0.8)
    for ev in evaluations:  # a dotted line, named in the legend
        loss_ax.axvline(
            ev["step"],
            color="0.3",
            linestyle=":",
            linewidth=0.8,
            label=f"zero-shot top-1 {100 * ev['top1']:.1f}%",
        )
        lr_ax.axvline(ev["step"], color="0.3", linestyle=":", linewidth=0.8)
    if loss_ax.get_legend_handles_labels()[0]:
        loss_ax.legend(fontsize=FONT - 2, frameon=False, loc="upper right")
    loss_ax.set_ylabel("loss")
    loss_ax.set_title(title)
    lr_ax.set_ylabel("learning rate")
    lr_ax.set_xlabel("step")
    for ax in (loss_ax, lr_ax):
        ax.grid(alpha=0.3, linewidth=0.5)
        _small(ax)
    return figure


# ------------------------------------------------------------------------------------------------
# Figure 8
def robustness_curve_figure(curves: list[dict], *, title: str) -> Figure:
    """Accuracy against attack steps: one line per (N, t, mode), EOT dashed, the spread over
    evaluation seeds (mean +- std) as a band; the y axis fitted to the data."""
    figure = Figure(figsize=(ONE_COLUMN + 0.6, 2.4), layout="constrained")
    ax = figure.add_subplot()
    low, high = np.inf, -np.inf
    colors = {}
    for c in curves:
        key = (c["num_paths"], c["t"])
        color = colors.setdefault(key, f"C{len(colors) % 10}")
        steps = np.asarray(c["steps"])
        mean = 100 * np.asarray(c["acc"])
        std = 100 * np.asarray(c.get("acc_std", np.zeros_like(mean)))
        ax.plot(
            steps,
            mean,
            color=color,
            linestyle="--" if c["mode"] == "eot" else "-",
            marker="o",
            markersize=2,
            linewidth=1,
            label=f"N={c['num_paths']}, t={c['t']}, {c['mode']}",
        )
        ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.15, linewidth=0)
        low, high = min(low, (mean - std).min()), max(high, (mean + std).max())
    if np.isfinite(low):
        pad = max(2.0, 0.08 * (high - low))
        ax.set_ylim(max(0.0, low - pad), min(100.0, high + pad))
    ax.set_xlabel("attack steps")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3, linewidth=0.5)
    ax.legend(fontsize=FONT - 2, frameon=False, loc="best")
    _small(ax)
    return figure


def certified_accuracy_figure(per_sigma: list[dict], *, title: str) -> Figure:
    """Certified accuracy against the L2 radius (Cohen et al.'s plot): one curve per noise level
    sigma."""
    figure = Figure(figsize=(ONE_COLUMN + 0.6, 2.4), layout="constrained")
    ax = figure.add_subplot()
    for i, s in enumerate(per_sigma):
        radii = s["curve"]["radius"]
        acc = [100 * a for a in s["curve"]["accuracy"]]
        ax.plot(
            radii,
            acc,
            color=f"C{i % 10}",
            linewidth=1,
            drawstyle="steps-post",
            label=f"sigma = {s['sigma']:.3g} (t = {s['t']})",
        )
    ax.set_xlabel("L2 radius (whole cloud)")
    ax.set_ylabel("certified accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(left=0)
    ax.set_title(title)
    ax.grid(alpha=0.3, linewidth=0.5)
    ax.legend(fontsize=FONT - 2, frameon=False, loc="best")
    _small(ax)
    return figure


# -----------------------------------------------------------------------------------------------
# point clouds
def _cloud_axes(figure: Figure, rows: int, cols: int, index: int, title: str):
    ax = figure.add_subplot(rows, cols, index, projection="3d", proj_type="ortho")
    ax.view_init(**CAMERA)
    for setter in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
        setter(-1.0, 1.0)
    ax.set_box_aspect((1, 1, 1), zoom=1.35)
    ax.set_axis_off()
    ax.set_title(title, fontsize=FONT, pad=0)
    return ax


def _scatter(ax, points: np.ndarray, colors=None, size: float = 0.6, **kwargs):
    p = np.asarray(points)
    return ax.scatter(
        p[:, 0],
        p[:, 2],
        p[:, 1],
        c=colors if colors is not None else "#1f4e8c",
        s=size,
        linewidths=0,
        depthshade=False,
        **kwargs,
    )  # y drawn vertical


def clouds_figure(
    panels: Sequence[tuple[str, np.ndarray]], *, title: str, cols: int | None = None
) -> Figure:
    """A row (or grid) of clouds, one titled panel each: [(title, f32[N, 3]), ...]."""
    cols = cols or len(panels)
    rows = -(-len(panels) // cols)
    figure = Figure(figsize=(min(TWO_COLUMNS, 2.0 * cols), 1.5 * rows + 0.3))
    for i, (name, points) in enumerate(panels):
        _scatter(_cloud_axes(figure, rows, cols, i + 1, name), points)
    figure.suptitle(title, fontsize=FONT + 1)
    figure.subplots_adjust(left=0, right=1, bottom=0, top=0.85, wspace=0, hspace=0.1)
    return figure


def adversarial_figure(
    clean: np.ndarray, adversarial: np.ndarray, names: Sequence[str], *, title: str
) -> Figure:
    """Clean and adversarial clouds side by side per shape (f32[S, N, 3] each), the adversarial
    points coloured by how far the attack moved them, with a colour bar."""
    shapes = len(clean)
    figure = Figure(figsize=(ONE_COLUMN + 0.8, 1.5 * shapes + 0.4))
    moved = np.linalg.norm(np.asarray(adversarial) - np.asarray(clean), axis=-1)  # (S, N)
    top = max(float(moved.max()), 1e-12)
    scatter = None
    for s in range(shapes):
        _scatter(_cloud_axes(figure, shapes, 2, 2 * s + 1, f"{names[s]}: clean"), clean[s])
        scatter = _scatter(
            _cloud_axes(figure, shapes, 2, 2 * s + 2, f"{names[s]}: adversarial"),
            adversarial[s],
            colors=moved[s],
            cmap="magma_r",
            vmin=0.0,
            vmax=top,
            size=1.0,
        )
    bar = figure.colorbar(scatter, ax=figure.axes, fraction=0.04, pad=0.02)
    bar.set_label("perturbation per point (L2, unit-ball units)", fontsize=FONT)
    bar.ax.tick_params(labelsize=FONT - 1)
    figure.suptitle(title, fontsize=FONT + 1)
    return figure
