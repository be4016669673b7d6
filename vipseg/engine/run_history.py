"""What a run folder holds, read back: metrics.jsonl records, results.csv, val predictions.

``metrics.jsonl`` has one JSON object per line with a ``type``: ``train`` (every
``log_interval`` iterations: ``iteration``, ``lr``, the losses, ``sec_per_iter``,
``data_time``, ``eta_s``, ``memory_mb``), ``epoch`` (the epoch's mean losses, ``seconds``,
``completed``) and ``val`` (``iteration``, ``epoch`` and the flat COCO metrics). A resumed run
appends to the same file and repeats the iterations after its checkpoint; :func:`read_metrics`
keeps the later copy. ``results.csv`` is one row per epoch (losses and the validation of that
epoch), rewritten from metrics.jsonl after every epoch. The last validation's predictions are
``val_predictions.segm.json`` (a COCO result list) with ``val_predictions.meta.json`` (the
ground-truth file, image folder and classes they were scored against), so a report needs no
model run.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vipseg.errors import DataError
from vipseg.utils.io import atomic_write_json, atomic_write_text

METRICS = "metrics.jsonl"
RESULTS_CSV = "results.csv"
VAL_PREDICTIONS = "val_predictions.segm.json"
VAL_META = "val_predictions.meta.json"
KINDS = ("train", "epoch", "val")


@dataclass
class MetricsLog:
    """The records of one metrics.jsonl by type, in iteration order; ``skipped``: one line
    ``"<file>:<line>: <why>"`` per line that could not be read."""

    train: list[dict] = field(default_factory=list)
    epoch: list[dict] = field(default_factory=list)
    val: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def read_metrics(path: str | Path) -> MetricsLog:
    """Read ``metrics.jsonl``; unreadable lines are skipped and named in ``skipped``; a
    missing file gives an empty log. Rows repeated by a resumed run keep their later copy."""
    path = Path(path)
    out = MetricsLog()
    if not path.is_file():
        return out
    rows: list[dict] = []
    last_train = -1
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            out.skipped.append(f"{path}:{n}: not JSON ({e.msg})")
            continue
        if not isinstance(row, dict) or row.get("type") not in KINDS \
                or not isinstance(row.get("iteration"), int):
            out.skipped.append(f"{path}:{n}: not a train/epoch/val record with an iteration")
            continue
        if row["type"] == "train":
            if row["iteration"] <= last_train:  # a resumed session redoes these iterations
                rows = [r for r in rows if r["iteration"] < row["iteration"]]
            last_train = row["iteration"]
        rows.append(row)
    latest: dict[tuple[str, Any], dict] = {}
    for row in rows:
        key = row.get("epoch") if row["type"] == "epoch" else row["iteration"]
        latest[(row["type"], key)] = row
    for (kind, _), row in sorted(latest.items(), key=lambda kv: kv[1]["iteration"]):
        getattr(out, kind).append(row)
    return out


def results_table(log: MetricsLog) -> tuple[list[str], list[list[Any]]]:
    """(header, rows) of results.csv: one row per epoch record, with the numbers of the
    validation at that iteration (empty cells where there was none)."""
    val_at = {r["iteration"]: r for r in log.val}
    loss_keys = _keys(log.epoch, lambda k: k.startswith("loss"))
    val_keys = _keys(log.val, lambda k: "/" in k)
    header = ["epoch", "iteration", "completed", "seconds", "lr", *loss_keys, *val_keys]
    rows = []
    for r in log.epoch:
        v = val_at.get(r["iteration"], {})
        rows.append([r.get("epoch"), r["iteration"], r.get("completed", True),
                     _cell(r.get("seconds")), _cell(r.get("lr")),
                     *(_cell(r.get(k)) for k in loss_keys), *(_cell(v.get(k)) for k in val_keys)])
    return header, rows


def write_results_csv(run_dir: str | Path) -> Path:
    """(Re)write ``run_dir/results.csv`` from its metrics.jsonl; returns its path."""
    run_dir = Path(run_dir)
    header, rows = results_table(read_metrics(run_dir / METRICS))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(run_dir / RESULTS_CSV, buf.getvalue())
    return run_dir / RESULTS_CSV


def save_val_predictions(run_dir: str | Path, results: list[dict], *, ann_file: str | Path,
                         images_dir: str | Path, classes: Sequence[str]) -> None:
    """Write the last validation's COCO ``results`` and what they were scored against."""
    run_dir = Path(run_dir)
    atomic_write_json(run_dir / VAL_PREDICTIONS, results)
    atomic_write_json(run_dir / VAL_META, {
        "ann_file": str(Path(ann_file).resolve()), "images_dir": str(Path(images_dir).resolve()),
        "classes": list(classes)})


def _keys(rows: list[dict], keep: Any) -> list[str]:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if keep(k) and k not in keys]
    return keys


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if not math.isfinite(value) else f"{value:.6g}"
    return "" if value is None else value


def check_run_dir(path: str | Path) -> Path:
    """``path`` as a run folder; ``DataError`` (one line) when it is not one."""
    p = Path(path)
    if not p.is_dir():
        raise DataError(f"{p}: no such run folder")
    if not (p / "config.yaml").is_file():
        raise DataError(f"{p}: not a vipseg run folder (no config.yaml; runs are "
                        f"WORK_DIR/NAME/exp_<timestamp>/)")
    return p
