"""``vipseg test``, ``vipseg eval``, ``vipseg predict``: score, submit and look at predictions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vipseg.errors import DataError


def _add_protocol_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--protocol", choices=("coco", "vipriors"), default="coco",
                   help="coco: score every ground-truth image (an image without predictions "
                   "counts as all missed); vipriors: exactly the official VIPriors script, which "
                   "scores only images that have at least one prediction")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", metavar="CONFIG", help="YAML config the checkpoint was trained with")
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint file (e.g. best.pth)")


def _add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", metavar="DIR", default=None,
                   help="dataset root folder; none: the config's dataset.root")
    p.add_argument("--device", default=None,
                   help="cpu or cuda; none: cuda if available")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. test.score_thresh=0.05")


def register(sub: argparse._SubParsersAction, formatter: type) -> None:
    """Add ``test``, ``eval`` and ``predict`` to the top-level commands."""
    p = sub.add_parser(
        "test", help="score a checkpoint on the val split or export a test submission",
        formatter_class=formatter,
        description="With --valid: predict the labelled val split and print mask and box AP "
        "(AP, AP50, AP75, APs/m/l, per class). Without: predict the test split and write "
        "result.segm.json and submission.zip (holding submission.json) for the VIPriors server.")
    _add_model_args(p)
    p.add_argument("--valid", action="store_true", help="score the val split instead of "
                   "exporting a test submission")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="output folder; none: <checkpoint folder>/test for a submission, nothing "
                   "written for --valid (given: metrics.json and the val predictions)")
    _add_protocol_arg(p)
    _add_common_args(p)
    p.set_defaults(func=run_test)

    p = sub.add_parser(
        "eval", help="score a prediction file against a ground-truth file",
        formatter_class=formatter,
        description="Score any COCO result list (JSON, or a submission zip holding one) against "
        "a labelled COCO file with pycocotools COCOeval (all categories, maxDets 100).")
    p.add_argument("gt", metavar="GT.json", help="labelled COCO annotation file")
    p.add_argument("predictions", metavar="PRED.json",
                   help="COCO result list (.json) or submission zip")
    _add_protocol_arg(p)
    p.add_argument("--iou-types", nargs="+", choices=("segm", "bbox"), default=["segm", "bbox"],
                   help="what to score: masks (segm) and/or boxes (bbox)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON, not a table")
    p.set_defaults(func=run_eval)

    p = sub.add_parser(
        "predict", help="draw a checkpoint's predictions on images",
        formatter_class=formatter,
        description="Predict one image or every image of a folder; write overlay PNGs (masks, "
        "boxes, class and score) and predictions.json (COCO results; image_id = file name).")
    _add_model_args(p)
    p.add_argument("inputs", metavar="IMAGE_OR_DIR", help="an image file or a folder of images")
    p.add_argument("--out", metavar="DIR", required=True, help="output folder")
    p.add_argument("--score-thr", type=float, default=0.5,
                   help="draw detections scoring at least this (the JSON keeps all)")
    p.add_argument("--per-instance", action="store_true",
                   help="a distinct colour for each predicted instance (default: one per class)")
    _add_common_args(p)
    p.set_defaults(func=run_predict)


def _load(args: argparse.Namespace):
    from vipseg.config.loader import load_config
    from vipseg.engine.distributed import resolve_device
    from vipseg.engine.inference import load_model

    cfg = load_config(args.config, args.overrides)
    device = resolve_device(args.device)
    return cfg, load_model(cfg, args.checkpoint, device), device


def run_test(args: argparse.Namespace) -> int:
    from vipseg.engine.evaluation import format_metrics_table
    from vipseg.engine.submission import export_test_submission, score_val_split

    cfg, model, device = _load(args)
    if args.valid:
        metrics = score_val_split(model, cfg, device=device, protocol=args.protocol,
                                  root=args.data_root, out_dir=args.out, force=args.force)
        print(f"val split, protocol {args.protocol}:")
        print(format_metrics_table(metrics))
        if args.out:
            print(f"wrote {Path(args.out) / 'metrics.json'}")
        return 0
    out = Path(args.out) if args.out else Path(args.checkpoint).resolve().parent / "test"
    summary = export_test_submission(model, cfg, out, device=device, root=args.data_root,
                                     force=args.force)
    print(f"{summary['predictions']} predictions on {summary['images_with_predictions']}/"
          f"{summary['images']} test images")
    print(f"wrote {summary['result']}")
    print(f"wrote {summary['zip']} (upload this)")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from vipseg.engine.evaluation import (coco_metrics, format_metrics_table, load_ground_truth,
                                          validate_results)
    from vipseg.engine.submission import read_predictions

    gt = load_ground_truth(args.gt)
    results = validate_results(read_predictions(args.predictions), gt, args.predictions,
                               args.iou_types)
    metrics = coco_metrics(gt, results, protocol=args.protocol, iou_types=args.iou_types)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(f"{len(results)} predictions, protocol {args.protocol}:")
        print(format_metrics_table(metrics))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from vipseg.engine.submission import category_ids_from_config
    from vipseg.engine.visualize import predict_images

    cfg, model, device = _load(args)
    try:
        category_ids = category_ids_from_config(cfg, args.data_root)
    except DataError as e:
        category_ids = list(range(1, cfg.num_classes + 1))
        print(f"note: {e}; using ids 1..{cfg.num_classes} in class order", file=sys.stderr)
    summary = predict_images(model, cfg, args.inputs, args.out, device=device,
                             category_ids=category_ids, score_thr=args.score_thr,
                             force=args.force, per_instance=args.per_instance)
    print(f"{summary['predictions']} predictions on {summary['images']} images; "
          f"overlays and predictions.json in {args.out}")
    if summary["overlays"]:
        print(f"first overlay: {summary['overlays'][0]}")
    return 0
