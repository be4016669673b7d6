"""Matplotlib figures of a run report, returned as PNG bytes (no pyplot, no display needed).

Each ``*_png`` function takes plain series and returns PNG bytes, or None when there is
nothing to draw. ``runs`` arguments are ``[(label, MetricsLog)]``: one entry for a run's own
report, several (overlaid, one colour per run) for a comparison.
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from vipseg.engine.error_analysis import ERROR_TYPES, ErrorBreakdown, PRCurves
from vipseg.engine.run_history import MetricsLog

Runs = Sequence[tuple[str, MetricsLog]]
# Error-breakdown fills, from C75 (best) to FN, as in the COCO analyze() plots.
ERROR_COLOURS = ["#1d3557", "#457b9d", "#a8dadc", "#2a9d8f", "#e9c46a", "#f4a261", "#e76f51"]


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def _grid(n: int, cols: int = 3, size: tuple[float, float] = (4.2, 3.0)) -> tuple[Figure, list]:
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(size[0] * cols, size[1] * rows))
    # Fixed margins (inches): a constrained layout costs seconds per figure.
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=0.9 / w, right=1 - 0.2 / w, bottom=0.5 / h, top=1 - 0.35 / h,
                        wspace=0.35, hspace=0.5)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n)]
    return fig, axes


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["iteration"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pts], [float(p[1]) for p in pts]


def training_curves_png(runs: Runs) -> bytes | None:
    """Total loss, each ``loss_*``, the learning rate and s/iter against the iteration."""
    keys: list[str] = ["loss"]
    for _, log in runs:
        for r in log.train:
            keys += [k for k in r if k.startswith("loss_") and k not in keys]
    keys += ["lr", "sec_per_iter"]
    present = [k for k in keys if any(_series(log.train, k)[0] for _, log in runs)]
    if not present:
        return None
    fig, axes = _grid(len(present))
    for ax, key in zip(axes, present):
        for label, log in runs:
            x, y = _series(log.train, key)
            if x:
                ax.plot(x, y, label=label, linewidth=1.2)
        ax.set_title({"sec_per_iter": "s/iter", "lr": "learning rate"}.get(key, key))
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    if len(runs) > 1:
        axes[0].legend(fontsize=8)
    return _png(fig)


def validation_curves_png(runs: Runs, classes: Sequence[str]) -> bytes | None:
    """Mask and box AP (AP, AP50, AP75; per class) against the iteration of each validation."""
    panels = []
    for iou, title in (("segm", "mask"), ("bbox", "box")):
        panels.append((f"{title} AP", [f"{iou}/AP", f"{iou}/AP50", f"{iou}/AP75"]))
        panels.append((f"{title} AP per class", [f"{iou}/AP/{c}" for c in classes]))
    panels = [(t, ks) for t, ks in panels
              if any(_series(log.val, k)[0] for _, log in runs for k in ks)]
    if not panels:
        return None
    fig, axes = _grid(len(panels), cols=2, size=(5.0, 3.2))
    for ax, (title, ks) in zip(axes, panels):
        for label, log in runs:
            for k in ks:
                x, y = _series(log.val, k)
                if x:
                    name = k.split("/", 1)[1]
                    ax.plot(x, [max(v, 0.0) for v in y], marker="o", markersize=3,
                            label=name if len(runs) == 1 else f"{label} {name}")
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _png(fig)


def pr_curves_png(pr: PRCurves) -> bytes | None:
    """One panel per class: precision against recall at IoU 0.5 and 0.75."""
    names = [n for n, curves in pr.precision.items() if curves[0.5][0] >= 0]
    if not names:
        return None
    fig, axes = _grid(len(names), size=(4.0, 3.4))
    for ax, name in zip(axes, names):
        for iou, curve in pr.precision[name].items():
            ax.plot(pr.recall, np.clip(curve, 0, 1),
                    label=f"IoU {iou:g} (AP {np.clip(curve, 0, 1).mean():.3f})")
        ax.set_title(name)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    return _png(fig)


def error_breakdown_png(eb: ErrorBreakdown) -> bytes | None:
    """COCO analyze() plots: per class, the area between successive curves is the AP lost
    to each kind of error (legend: area under each curve)."""
    names = list(eb.curves)
    if not names:
        return None
    fig, axes = _grid(len(names), size=(4.2, 3.4))
    for ax, name in zip(axes, names):
        curves = eb.curves[name]
        below = np.zeros_like(eb.recall)
        for i in range(len(ERROR_TYPES)):
            ax.fill_between(eb.recall, below, curves[i], color=ERROR_COLOURS[i],
                            label=f"[{eb.areas[name][ERROR_TYPES[i]]:.3f}] {ERROR_TYPES[i]}",
                            edgecolor="#555555", linewidth=0.5)
            below = curves[i]
        ax.set_title(name)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7, loc="lower left")
    return _png(fig)
