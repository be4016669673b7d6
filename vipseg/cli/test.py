"""``vipseg test``, ``vipseg eval``, ``vipseg ensemble``, ``vipseg predict``: score, submit,
fuse and look at predictions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vipseg.errors import ConfigError, DataError


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
    """Add ``test``, ``eval``, ``ensemble`` and ``predict`` to the top-level commands."""
    p = sub.add_parser(
        "test", help="score a checkpoint on the val split or export a test submission",
        formatter_class=formatter,
        description="With --valid: predict the labelled val split and print mask and box AP "
        "(AP, AP50, AP75, APs/m/l, per class). Without: predict the test split and write "
        "result.segm.json and submission.zip (holding submission.json) for the VIPriors server.")
    p.add_argument("config", metavar="CONFIG", nargs="?",
                   help="YAML config the checkpoint was trained with (not with --ensemble)")
    p.add_argument("checkpoint", metavar="CKPT", nargs="?", help="checkpoint file (e.g. best.pth)")
    p.add_argument("--valid", action="store_true", help="score the val split instead of "
                   "exporting a test submission")
    p.add_argument("--tta", action="store_true", help="test-time augmentation: the views of the "
                   "config's tta: section (scales x flip), boxes merged, masks re-predicted in "
                   "every view and averaged (docs/testing.md)")
    p.add_argument("--ensemble", nargs="+", metavar="CONFIG:CKPT[:W]", default=None,
                   help="predict with several models at once (each built from its own config, "
                   "optional weight W); the first config gives the data, test and tta settings")
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
    p.add_argument("--metric", choices=("coco", "om", "all"), default="coco",
                   help="coco: COCO AP (COCOeval); om: the DeepSportradar occlusion metric "
                   "(OM = OIR x DPR, one line); all: both")
    p.set_defaults(func=run_eval)

    p = sub.add_parser(
        "ensemble", help="fuse several prediction files into one",
        formatter_class=formatter,
        description="Result-level ensemble of COCO result files of the same images: per image "
        "and category, overlapping predictions (mask IoU above --iou, at most one per file) are "
        "fused by a weighted majority vote of their masks; the score is the weighted sum of the "
        "files' scores over the total weight (docs/testing.md).")
    p.add_argument("predictions", nargs="+", metavar="PRED.json",
                   help="COCO result lists (.json) or submission zips, at least two")
    p.add_argument("--out", metavar="PRED.json", required=True, help="fused result file")
    p.add_argument("--weights", nargs="+", type=float, default=None, metavar="W",
                   help="one weight per file; none: all 1")
    p.add_argument("--iou", type=float, default=0.5,
                   help="mask IoU above which predictions of different files are fused")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.set_defaults(func=run_ensemble)

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
    p.add_argument("--tta", action="store_true", help="test-time augmentation as in `test --tta`")
    p.add_argument("--per-instance", action="store_true",
                   help="a distinct colour for each predicted instance (default: one per class)")
    _add_common_args(p)
    p.set_defaults(func=run_predict)


def _load(args: argparse.Namespace):
    from vipseg.config.loader import REQUIRED_SECTIONS, load_config
    from vipseg.engine.distributed import resolve_device
    from vipseg.engine.inference import load_model

    cfg = load_config(args.config, args.overrides, require=REQUIRED_SECTIONS)
    device = resolve_device(args.device)
    return cfg, load_model(cfg, args.checkpoint, device), device


def _load_test_models(args: argparse.Namespace):
    """(config, model or ensemble members, device, default output folder) for ``test``."""
    from vipseg.engine.distributed import resolve_device
    from vipseg.engine.ensemble import load_members

    if args.ensemble is None:
        if not args.config or not args.checkpoint:
            raise ConfigError("test needs CONFIG and CKPT (or --ensemble CONFIG:CKPT ...)")
        cfg, model, device = _load(args)
        return cfg, model, device, Path(args.checkpoint).resolve().parent / (
            "test_tta" if args.tta else "test")
    # argparse hands `key=value` overrides to the free CONFIG / CKPT slots or, after
    # `--ensemble A:a B:b`, to the member list: sort them out here.
    given = [a for a in (args.config, args.checkpoint, *args.ensemble) if a]
    members = [a for a in args.ensemble if "=" not in a]
    stray = [a for a in (args.config, args.checkpoint) if a and "=" not in a]
    if stray:
        raise ConfigError("test --ensemble takes its models as CONFIG:CKPT members only, not "
                          f"also CONFIG CKPT ({' '.join(stray)})")
    overrides = [a for a in given if "=" in a] + list(args.overrides or [])
    device = resolve_device(args.device)
    cfg, models = load_members(members, overrides, device, tta=args.tta)
    first_ckpt = members[0].split(":")[1]
    return cfg, models, device, Path(first_ckpt).resolve().parent / (
        "test_ensemble_tta" if args.tta else "test_ensemble")


def run_test(args: argparse.Namespace) -> int:
    from vipseg.engine.evaluation import format_metrics_table
    from vipseg.engine.predict import predict_options
    from vipseg.engine.submission import export_test_submission, score_val_split

    cfg, model, device, default_out = _load_test_models(args)
    inputs = [p for p in (args.config, args.checkpoint, *(
        part for m in (args.ensemble or []) if "=" not in m for part in m.split(":")[:2]),
        args.data_root or cfg.dataset.root) if p]
    options = predict_options(cfg, device, tta=args.tta)
    what = (" with TTA" if args.tta else "") + (
        f", ensemble of {len(model)}" if isinstance(model, list) else "")
    if args.valid:
        metrics = score_val_split(model, cfg, device=device, options=options,
                                  protocol=args.protocol, root=args.data_root, out_dir=args.out,
                                  force=args.force, inputs=inputs)
        print(f"val split, protocol {args.protocol}{what}:")
        print(format_metrics_table(metrics))
        if args.out:
            print(f"wrote {Path(args.out) / 'metrics.json'}")
        return 0
    out = Path(args.out) if args.out else default_out
    summary = export_test_submission(model, cfg, out, device=device, options=options,
                                     root=args.data_root, force=args.force, inputs=inputs)
    print(f"{summary['predictions']} predictions on {summary['images_with_predictions']}/"
          f"{summary['images']} test images{what}")
    print(f"wrote {summary['result']}")
    print(f"wrote {summary['zip']} (upload this)")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from vipseg.engine.evaluation import (coco_metrics, format_metrics_table, load_ground_truth,
                                          validate_results)
    from vipseg.engine.submission import read_predictions

    from vipseg.engine.occlusion import format_occlusion, occlusion_metric

    gt = load_ground_truth(args.gt)  # validated once, as data check / train / test do
    iou_types = args.iou_types if args.metric == "coco" else sorted({*args.iou_types, "segm"})
    results = validate_results(read_predictions(args.predictions), gt.to_dict(),
                               args.predictions, iou_types)
    metrics: dict = {}
    if args.metric in ("coco", "all"):
        metrics.update(coco_metrics(gt, results, protocol=args.protocol,
                                    iou_types=args.iou_types))
    occlusion = (occlusion_metric(gt.to_dict(), results) if args.metric in ("om", "all")
                 else None)
    if args.json:
        metrics.update({f"occlusion/{k}": v for k, v in (occlusion or {}).items()})
        print(json.dumps(metrics, indent=2))
        return 0
    if metrics:
        print(f"{len(results)} predictions, protocol {args.protocol}:")
        print(format_metrics_table(metrics))
    if occlusion is not None:
        print(format_occlusion(occlusion))
    return 0


def run_ensemble(args: argparse.Namespace) -> int:
    from vipseg.engine.ensemble import fuse_predictions
    from vipseg.engine.submission import read_predictions
    from vipseg.utils.io import atomic_write_json, ensure_new_output

    ensure_new_output(Path(args.out), args.force, inputs=args.predictions)
    names = [str(p) for p in args.predictions]
    fused = fuse_predictions([read_predictions(p) for p in args.predictions], names,
                             weights=args.weights, iou_thresh=args.iou)
    atomic_write_json(Path(args.out), fused)
    print(f"{len(fused)} fused predictions from {len(names)} files; wrote {args.out}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from vipseg.engine.predict import predict_options
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
                             options=predict_options(cfg, device, tta=args.tta),
                             force=args.force, per_instance=args.per_instance)
    print(f"{summary['predictions']} predictions on {summary['images']} images; "
          f"overlays and predictions.json in {args.out}")
    if summary["overlays"]:
        print(f"first overlay: {summary['overlays'][0]}")
    return 0
