"""The ``vipseg test`` workflows: score the labelled val split, or export a test submission.

A submission is ``result.segm.json`` (a COCO result list: ``image_id``, ``category_id`` in the
dataset's own ids, ``segmentation`` RLE with str counts, ``score``, ``bbox`` [x, y, w, h]) and
``submission.zip`` holding the same list as ``submission.json``, the file the VIPriors server
expects. Every image id is checked against the test split before anything is written.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

import torch

from vipseg.config.schema import Config
from vipseg.data.build import build_dataset, split_paths
from vipseg.data.coco import load_coco, parse_json, read_json
from vipseg.engine.evaluation import coco_metrics
from vipseg.engine.predict import PredictOptions, predict_dataset, predict_options
from vipseg.engine.tta import Member
from vipseg.errors import DataError
from vipseg.utils.io import atomic_write_bytes, atomic_write_json, ensure_new_output

RESULT_JSON = "result.segm.json"
SUBMISSION_ZIP = "submission.zip"
SUBMISSION_JSON = "submission.json"
METRICS_JSON = "metrics.json"
Models = Union[torch.nn.Module, Sequence[Member]]  # one detector or ensemble members


def category_ids_from_config(cfg: Config, root: str | Path | None = None) -> list[Any]:
    """The file's category id of each class, read from the val or else the train annotation
    file (test files are images-only); ``DataError`` if neither names every class."""
    tried = []
    for split in ("val", "train"):
        ann, _ = split_paths(cfg, split, root)
        tried.append(str(ann))
        if not ann.is_file():
            continue
        by_name = {c["name"]: c["id"]
                   for c in load_coco(ann, require_annotations=False).categories}
        if all(name in by_name for name in cfg.dataset.classes):
            return [by_name[name] for name in cfg.dataset.classes]
    raise DataError(f"{' or '.join(tried)}: no annotation file names every class of "
                    f"{cfg.dataset.classes}, so category ids are unknown")


def check_image_ids(results: Iterable[dict], images: list[dict], source: str) -> None:
    """``DataError`` if a result's ``image_id`` is not one of ``images`` (from ``source``)."""
    known = {im["id"] for im in images}
    for r in results:
        if r["image_id"] not in known:
            raise DataError(f"{source}: prediction for image_id {r['image_id']!r}, which is not "
                            f"in this split")


def write_submission(results: list[dict], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``RESULT_JSON`` and ``SUBMISSION_ZIP`` (holding ``SUBMISSION_JSON``) atomically
    into ``out_dir``; returns both paths."""
    out = Path(out_dir)
    text = json.dumps(results, separators=(",", ":"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(SUBMISSION_JSON, text)
    atomic_write_bytes(out / RESULT_JSON, text.encode("utf-8"))
    atomic_write_bytes(out / SUBMISSION_ZIP, buf.getvalue())
    return out / RESULT_JSON, out / SUBMISSION_ZIP


def read_predictions(path: str | Path) -> Any:
    """A prediction file: COCO result JSON, or a submission zip holding one ``.json`` file."""
    p = Path(path)
    if p.suffix.lower() != ".zip":
        return read_json(p)
    try:
        with zipfile.ZipFile(p) as zf:
            names = [n for n in zf.namelist() if n.lower().endswith(".json")]
            if len(names) != 1:
                raise DataError(f"{p}: a submission zip must hold exactly one .json file, "
                                f"found {len(names)}")
            raw = zf.read(names[0])
    except FileNotFoundError:
        raise DataError(f"{p}: prediction file not found") from None
    except IsADirectoryError:
        raise DataError(f"{p}: is a folder, expected a prediction file") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as e:
        raise DataError(f"{p}: not a valid zip file ({e})") from None
    return parse_json(raw, f"{p}: {names[0]}")


def score_val_split(model: Models, cfg: Config, *, device: str | torch.device,
                    options: PredictOptions | None = None, protocol: str = "coco",
                    root: str | Path | None = None, out_dir: str | Path | None = None,
                    force: bool = False, progress: bool = True,
                    inputs: Sequence[str | Path] = ()) -> dict[str, float]:
    """Predict and score the val split; with ``out_dir``, also write ``metrics.json`` and the
    val predictions (``result.segm.json``) there (refused if present, unless ``force``, or if
    one is, or lies inside, one of ``inputs``: the files the command reads).

    ``model``: a detector or ensemble members; ``options`` default to
    ``predict_options(cfg, device)`` (pass ``tta=True`` ones for TTA)."""
    outputs = [Path(out_dir) / name for name in (METRICS_JSON, RESULT_JSON)] if out_dir else []
    for path in outputs:
        ensure_new_output(path, force, inputs=inputs)
    dataset = build_dataset(cfg, "val", train=False, root=root)
    gt = dataset.coco  # validated once, when the dataset was built
    options = options or predict_options(cfg, device)
    results = predict_dataset(model, dataset, device=device, options=options, progress=progress)
    metrics = coco_metrics(gt, results, protocol=protocol, class_names=cfg.dataset.classes)
    if outputs:
        atomic_write_json(outputs[0], metrics, indent=2)
        atomic_write_json(outputs[1], results)
    return metrics


def export_test_submission(model: Models, cfg: Config, out_dir: str | Path, *,
                           device: str | torch.device, options: PredictOptions | None = None,
                           root: str | Path | None = None, force: bool = False,
                           progress: bool = True,
                           inputs: Sequence[str | Path] = ()) -> dict[str, Any]:
    """Predict the (images-only) test split and write the submission into ``out_dir``
    (``model`` and ``options`` as for ``score_val_split``).

    Returns a summary: ``result`` and ``zip`` paths, ``images``, ``images_with_predictions``
    and ``predictions`` counts. Existing outputs are refused unless ``force``; ``inputs`` as
    in :func:`score_val_split`.
    """
    out = Path(out_dir)
    for name in (RESULT_JSON, SUBMISSION_ZIP):
        ensure_new_output(out / name, force, inputs=inputs)
    category_ids = category_ids_from_config(cfg, root)
    dataset = build_dataset(cfg, "test", train=False, root=root)
    options = options or predict_options(cfg, device)
    results = predict_dataset(model, dataset, device=device, options=options,
                              category_ids=category_ids, progress=progress)
    check_image_ids(results, dataset.images, str(dataset.ann_file))
    result_path, zip_path = write_submission(results, out)
    return {"result": result_path, "zip": zip_path, "images": len(dataset),
            "images_with_predictions": len({r["image_id"] for r in results}),
            "predictions": len(results)}
