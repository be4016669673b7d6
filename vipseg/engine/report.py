"""``vipseg report``: one self-contained HTML page per run (or a comparison of runs).

A run's report (``RUN/report.html``, its plots also as PNG files in ``RUN/report/``) holds:
the config (collapsible), timings (s/iter, data time, peak memory, wall time), training
curves (total loss, each loss, LR, s/iter), validation AP curves (mask and box, overall and
per class), the final AP table (``id="ap-table"``), precision-recall curves per class at IoU
0.5 and 0.75, the COCO error breakdown (:mod:`vipseg.engine.error_analysis`) and the 8 worst
and 8 best validation images by mask AP, predictions beside ground truth. Everything is read
from the run folder (metrics.jsonl, config.yaml, the last validation's
``val_predictions.segm.json`` and its ground truth): no model is run. Images are embedded as
base64 data, so the page needs no network. What a run lacks (no validation yet, still
training, unreadable metrics lines) is said at the top and in place of the missing section.

A comparison (several runs) overlays their training and validation curves and puts their AP
tables and timings side by side.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from vipseg.config import load_config
from vipseg.data.dataset import read_image
from vipseg.data.masks import decode, encode, segmentation_to_rle
from vipseg.engine import report_plots as plots
from vipseg.engine.error_analysis import (ERROR_TYPES, error_breakdown, per_image_ap,
                                          pr_curves, rank_images)
from vipseg.engine.evaluation import IOU_TYPES, SUMMARY_KEYS, load_ground_truth
from vipseg.engine.progress import format_duration
from vipseg.engine.run_history import (METRICS, VAL_META, VAL_PREDICTIONS, MetricsLog,
                                       check_run_dir, read_metrics)
from vipseg.engine.visualize import draw_predictions
from vipseg.errors import DataError, OutputError, VipsegError
from vipseg.utils.io import atomic_dir, atomic_write_text, ensure_new_output

REPORT_HTML = "report.html"
REPORT_FILES = "report"  # folder of the PNG files beside report.html
N_IMAGES = 8
DRAW_SCORE = 0.5  # predictions drawn in the image pairs
PANEL_WIDTH = 300  # px of each side of an image pair


@dataclass
class RunData:
    """What a run folder holds, read once: ``notes`` say what is missing or was skipped."""

    path: Path
    label: str
    config_text: str
    classes: list[str]
    log: MetricsLog
    planned_epochs: int | None
    notes: list[str] = field(default_factory=list)
    val_results: list[dict] | None = None
    val_meta: dict | None = None


def load_run(path: str | Path) -> RunData:
    """Read a run folder (``DataError`` if it is not one)."""
    p = check_run_dir(path)
    text = (p / "config.yaml").read_text(encoding="utf-8")
    notes: list[str] = []
    classes: list[str] = []
    planned = None
    try:
        cfg = load_config(p / "config.yaml")
        classes = list(cfg.dataset.classes)
        planned = None if cfg.train.time_budget is not None else cfg.train.epochs
    except VipsegError as e:
        notes.append(f"config.yaml does not load ({e}); shown as text")
    log = read_metrics(p / METRICS)
    if not (p / METRICS).is_file():
        notes.append("no metrics.jsonl yet: nothing has been logged")
    notes += [f"skipped {s}" for s in log.skipped]
    run = RunData(p, f"{p.parent.name}/{p.name}", text, classes, log, planned, notes)
    if (p / VAL_PREDICTIONS).is_file() and (p / VAL_META).is_file():
        try:
            run.val_results = json.loads((p / VAL_PREDICTIONS).read_text(encoding="utf-8"))
            run.val_meta = json.loads((p / VAL_META).read_text(encoding="utf-8"))
            run.classes = run.classes or list(run.val_meta.get("classes", []))
        except (OSError, json.JSONDecodeError) as e:
            notes.append(f"{p / VAL_PREDICTIONS}: unreadable ({e}); no error analysis")
    elif log.val:
        notes.append(f"no {VAL_PREDICTIONS}: PR curves, error breakdown and images need the "
                     f"predictions a validation writes (runs trained before this report existed)")
    else:
        notes.append("no validation yet: AP curves, AP table, PR curves, error breakdown and "
                     "best/worst images appear after the first validation")
    last = log.epoch[-1] if log.epoch else None
    if last is not None and planned is not None and last["epoch"] < planned:
        notes.append(f"training not finished: {last['epoch']} of {planned} epochs logged "
                     f"(still running, stopped early, or train.max_iters)")
    if last is not None and not last.get("completed", True):
        notes.append(f"the last epoch ({last['epoch']}) was cut short at iteration "
                     f"{last['iteration']}")
    return run


# ----------------------------------------------------------------------------------- pieces
def _img(data: bytes, mime: str, alt: str) -> str:
    return (f'<img alt="{html.escape(alt)}" src="data:{mime};base64,'
            f'{base64.b64encode(data).decode()}">')


def _fmt(value: Any) -> str:
    if not isinstance(value, (int, float)) or value < 0:
        return "-"
    return f"{value:.3f}"


def ap_table(metrics: dict[str, Any], classes: Sequence[str], caption: str = "") -> str:
    """The AP table: rows mask/box, columns AP..APl and AP per class; each cell carries its
    metric key (``data-key``) and the value with 3 decimals (``-``: nothing scored)."""
    cols = [*SUMMARY_KEYS, *(f"AP/{c}" for c in classes)]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    rows = []
    for iou in IOU_TYPES:
        if f"{iou}/AP" not in metrics:
            continue
        cells = "".join(f'<td data-key="{html.escape(f"{iou}/{c}")}">'
                        f"{_fmt(metrics.get(f'{iou}/{c}'))}</td>" for c in cols)
        rows.append(f"<tr><th>{'mask' if iou == 'segm' else 'box'}</th>{cells}</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f'<table class="ap-table">{cap}<tr><th></th>{head}</tr>{"".join(rows)}</table>'


def timings(log: MetricsLog) -> dict[str, str]:
    """Mean s/iter and data time, peak memory, training and validation wall time."""
    def mean(key: str) -> float | None:
        vals = [r[key] for r in log.train if isinstance(r.get(key), (int, float))]
        return sum(vals) / len(vals) if vals else None

    out: dict[str, str] = {}
    last = max([r["iteration"] for r in log.train + log.epoch] or [0])
    out["iterations"] = str(last)
    out["epochs logged"] = str(log.epoch[-1]["epoch"]) if log.epoch else "0"
    spi, data = mean("sec_per_iter"), mean("data_time")
    out["s/iter"] = f"{spi:.3f}" if spi is not None else "-"
    out["data time (s/iter)"] = f"{data:.3f}" if data is not None else "-"
    if spi and data is not None:
        out["data share"] = f"{100 * data / spi:.0f}%"
    mem = [r["memory_mb"] for r in log.train if isinstance(r.get("memory_mb"), (int, float))]
    out["peak memory"] = f"{max(mem):.0f} MiB" if mem else "-"
    out["training time"] = format_duration(sum(r.get("seconds") or 0 for r in log.epoch))
    val_s = [r["seconds"] for r in log.val if isinstance(r.get("seconds"), (int, float))]
    out["validations"] = f"{len(log.val)}" + (f" ({format_duration(sum(val_s))})" if val_s else "")
    return out


def _kv_table(rows: dict[str, str]) -> str:
    return "<table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                               for k, v in rows.items()) + "</table>"


def _rescaled(objects: list[dict], size: tuple[int, int]) -> list[dict]:
    """COCO objects (RLE masks, xywh boxes) of one image, resized to ``size`` (w, h)."""
    out = []
    for o in objects:
        mask = decode(o["segmentation"])
        small = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        sx, sy = size[0] / mask.shape[1], size[1] / mask.shape[0]
        x, y, w, h = o["bbox"]
        out.append({**o, "segmentation": encode(small), "bbox": [x * sx, y * sy, w * sx, h * sy]})
    return out


def _pair(image: np.ndarray, preds: list[dict], gts: list[dict], classes: list[str],
          cat_label: dict[Any, int]) -> bytes:
    """JPEG of predictions (left) beside ground truth (right), drawn PANEL_WIDTH wide (the
    image and masks are resized first, so labels keep their size)."""
    h, w = image.shape[:2]
    size = (PANEL_WIDTH, max(1, round(h * PANEL_WIDTH / w)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    preds, gts = _rescaled(preds, size), _rescaled(gts, size)
    left = draw_predictions(small, preds, [cat_label[p["category_id"]] for p in preds], classes)
    right = draw_predictions(small, gts, [cat_label[g["category_id"]] for g in gts], classes,
                             show_scores=False)
    both = np.hstack([left, np.full((size[1], 6, 3), 255, np.uint8), right])
    ok, jpg = cv2.imencode(".jpg", both, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise OutputError("cannot encode a report image as JPEG")
    return jpg.tobytes()


def image_pairs(run: RunData, gt: dict, ap: dict[Any, float]) -> str:
    """HTML of the worst and best validation images by mask AP (image pairs)."""
    meta = run.val_meta or {}
    images_dir = Path(meta.get("images_dir", ""))
    info = {im["id"]: im for im in gt["images"]}
    cat_label = {c["id"]: i for i, c in enumerate(gt["categories"])}
    classes = [c["name"] for c in gt["categories"]]
    preds: dict[Any, list[dict]] = {}
    for r in run.val_results or []:
        if r["score"] >= DRAW_SCORE:
            preds.setdefault(r["image_id"], []).append(r)
    gts: dict[Any, list[dict]] = {}
    for a in gt["annotations"]:
        if not a.get("iscrowd", 0):
            im = info[a["image_id"]]
            rle = segmentation_to_rle(a["segmentation"], int(im["height"]), int(im["width"]))
            gts.setdefault(a["image_id"], []).append({**a, "segmentation": rle, "score": 1.0})
    worst, best = rank_images(ap, N_IMAGES)
    parts = []
    for title, chosen in (("worst", worst), ("best", best)):
        figs = []
        for image_id, value in chosen:
            name = info[image_id]["file_name"]
            try:
                image = read_image(images_dir / name)
            except VipsegError as e:
                figs.append(f'<p class="missing">{html.escape(str(e))}</p>')
                continue
            data = _pair(image, preds.get(image_id, []), gts.get(image_id, []), classes,
                         cat_label)
            figs.append(f"<figure>{_img(data, 'image/jpeg', name)}<figcaption>"
                        f"{html.escape(str(name))}: mask AP {value:.3f}</figcaption></figure>")
        parts.append(f"<h3>{N_IMAGES} {title} images</h3><div class=\"pairs\">{''.join(figs)}</div>")
    return ("<p>Left: predictions scoring at least "
            f"{DRAW_SCORE:g}; right: ground truth. Images without ground truth are not ranked.</p>"
            + "".join(parts))


def _breakdown_table(eb: Any) -> str:
    head = "".join(f"<th>{t}</th>" for t in ERROR_TYPES)
    rows = "".join(f"<tr><th>{html.escape(n)}</th>"
                   + "".join(f"<td>{a[t]:.3f}</td>" for t in ERROR_TYPES) + "</tr>"
                   for n, a in eb.areas.items())
    return f'<table class="errors"><tr><th></th>{head}</tr>{rows}</table>'


# ------------------------------------------------------------------------------- documents
CSS = """body{font-family:sans-serif;margin:1.5em auto;max-width:1400px;color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f3f3f3}caption{font-weight:bold;text-align:left}
img{max-width:100%}.notes{background:#fff6db;border:1px solid #e0c36a;padding:.5em 1em}
.missing{color:#8a5a00;font-style:italic}.pairs{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0}figcaption{font-size:.85em}.side{display:flex;flex-wrap:wrap;gap:24px}
pre{background:#f7f7f7;padding:.6em;overflow:auto;max-height:40em}"""


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>"
            f"<body>{body}</body></html>\n")


def _missing(text: str) -> str:
    return f'<p class="missing">{html.escape(text)}</p>'


def _figure(files: dict[str, bytes], name: str, data: bytes | None, alt: str,
            missing: str) -> str:
    if data is None:
        return _missing(missing)
    files[name] = data
    return _img(data, "image/png", alt)


def build_run_report(run: RunData) -> tuple[str, dict[str, bytes]]:
    """(HTML text, PNG files by name) of one run's report."""
    files: dict[str, bytes] = {}
    log = run.log
    body = [f"<h1>vipseg run {html.escape(run.label)}</h1>",
            f"<p>{html.escape(str(run.path))}</p>"]
    if run.notes:
        body.append('<div class="notes"><b>Missing or skipped</b><ul>'
                    + "".join(f"<li>{html.escape(n)}</li>" for n in run.notes) + "</ul></div>")
    body.append(f"<h2>Config</h2><details><summary>config.yaml</summary><pre>"
                f"{html.escape(run.config_text)}</pre></details>")
    body.append(f"<h2>Timings</h2>{_kv_table(timings(log))}")
    body.append("<h2>Training curves</h2>" + _figure(
        files, "training_curves.png", plots.training_curves_png([(run.label, log)]),
        "training curves", "no training records yet"))
    body.append("<h2>Validation AP</h2>" + _figure(
        files, "validation_ap.png", plots.validation_curves_png([(run.label, log)], run.classes),
        "validation AP curves", "no validation yet"))
    if log.val:
        last = log.val[-1]
        body.append(ap_table(last, run.classes, f"last validation: epoch {last.get('epoch')}, "
                                                f"iteration {last['iteration']}"))
    if run.val_results is not None and run.val_meta is not None:
        body += _analysis(run, files)
    else:
        body.append("<h2>Precision-recall, errors, images</h2>"
                    + _missing("no validation predictions in the run folder"))
    return _page(f"vipseg report {run.label}", "".join(body)), files


def _analysis(run: RunData, files: dict[str, bytes]) -> list[str]:
    """PR curves, error breakdown and image pairs from the last validation's predictions."""
    assert run.val_meta is not None and run.val_results is not None
    try:
        gt = load_ground_truth(run.val_meta["ann_file"]).to_dict()
    except VipsegError as e:
        return ["<h2>Precision-recall, errors, images</h2>", _missing(str(e))]
    results = run.val_results
    out = ["<h2>Precision-recall curves (mask)</h2>", _figure(
        files, "pr_curves.png", plots.pr_curves_png(pr_curves(gt, results)),
        "precision-recall curves", "no class has ground truth")]
    eb = error_breakdown(gt, results)
    out += ["<h2>Error breakdown (mask)</h2>",
            "<p>Area under each PR curve: C75/C50 at IoU 0.75/0.5; Loc at IoU 0.1; Sim and Oth "
            "forgive confusion with classes of the same supercategory / any class; BG removes "
            "background false positives; FN is the perfect curve (the rest is missed "
            "objects).</p>", _breakdown_table(eb),
            _figure(files, "error_breakdown.png", plots.error_breakdown_png(eb),
                    "error breakdown", "no class has ground truth")]
    ap = per_image_ap(gt, results)
    out.append("<h2>Worst and best validation images (mask AP)</h2>")
    out.append(image_pairs(run, gt, ap) if ap else _missing("no image has ground truth"))
    return out


def build_comparison(runs: Sequence[RunData]) -> tuple[str, dict[str, bytes]]:
    """(HTML text, PNG files) comparing runs: overlaid curves, AP tables side by side."""
    files: dict[str, bytes] = {}
    series = [(r.label, r.log) for r in runs]
    classes: list[str] = []
    for r in runs:
        classes += [c for c in r.classes if c not in classes]
    body = [f"<h1>vipseg comparison of {len(runs)} runs</h1><ol>"
            + "".join(f"<li>{html.escape(r.label)} ({html.escape(str(r.path))})</li>" for r in runs)
            + "</ol>"]
    notes = [f"{r.label}: {n}" for r in runs for n in r.notes]
    if notes:
        body.append('<div class="notes"><b>Missing or skipped</b><ul>'
                    + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul></div>")
    tables = [ap_table(r.log.val[-1], r.classes, r.label) if r.log.val
              else f"<div><b>{html.escape(r.label)}</b>{_missing('no validation yet')}</div>"
              for r in runs]
    body.append(f'<h2>Last validation</h2><div class="side">{"".join(tables)}</div>')
    body.append('<h2>Timings</h2><div class="side">' + "".join(
        f"<div><b>{html.escape(r.label)}</b>{_kv_table(timings(r.log))}</div>" for r in runs)
        + "</div>")
    body.append("<h2>Training curves</h2>" + _figure(
        files, "training_curves.png", plots.training_curves_png(series), "training curves",
        "no training records"))
    body.append("<h2>Validation AP</h2>" + _figure(
        files, "validation_ap.png", plots.validation_curves_png(series, classes),
        "validation AP curves", "no validation in any run"))
    body.append("<h2>Configs</h2>" + "".join(
        f"<details><summary>{html.escape(r.label)}</summary><pre>{html.escape(r.config_text)}"
        f"</pre></details>" for r in runs))
    return _page("vipseg comparison", "".join(body)), files


def write_report(run_dirs: Sequence[str | Path], out: str | Path | None = None, *,
                 force: bool = False) -> Path:
    """Write the report of one run (default ``RUN/report.html``) or the comparison of several
    (``out`` needed); the plots go beside it in ``<out stem>/`` as PNG files. Refuses to
    replace existing outputs unless ``force``. Returns the HTML path."""
    runs = [load_run(p) for p in run_dirs]
    if not runs:
        raise DataError("report: no run folder given")
    if out is None:
        if len(runs) > 1:
            raise OutputError(f"report: comparing {len(runs)} runs needs --out FILE.html")
        out = runs[0].path / REPORT_HTML
    out = Path(out)
    folder = out.with_name(REPORT_FILES if out.name == REPORT_HTML else out.stem)
    ensure_new_output(out, force)
    text, files = build_run_report(runs[0]) if len(runs) == 1 else build_comparison(runs)
    with atomic_dir(folder, force, command="report") as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
    atomic_write_text(out, text)
    return out
