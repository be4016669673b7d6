"""Rendered demo scenes against the real DeepSport annotations: the statistics side by side.

Renders ``--images`` scenes at the challenge's sizes (as ``vipseg data demo --native``) into a
temporary folder and summarises their ``human`` instances with the same function as
``vipseg data check`` (``vipseg.data.tools.check.summarize``), next to the summary of
``../shared/data/deepsport/train.json``: humans per image, mask area percentiles, and the share
of masks split into several connected parts by occlusion.

    .venv/bin/python benchmarks/demo_stats.py [--images 60] [--seed 0]

Prints a Markdown table (the one in docs/demo.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vipseg.cli.data_demo import NATIVE_SIZES, parse_size  # noqa: E402
from vipseg.data.tools.check import summarize  # noqa: E402
from vipseg.data.tools.demo.writer import write_demo_dataset  # noqa: E402

REAL = REPO.parent / "shared" / "data" / "deepsport" / "train.json"


def humans_only(ann_file: Path, out: Path) -> Path:
    """Copy of a COCO file keeping only the ``human`` category and its annotations."""
    coco = json.loads(ann_file.read_text())
    ids = {c["id"] for c in coco["categories"] if c["name"] == "human"}
    coco["categories"] = [c for c in coco["categories"] if c["id"] in ids]
    coco["annotations"] = [a for a in coco["annotations"] if a["category_id"] in ids]
    out.write_text(json.dumps(coco))
    return out


def rows(s: dict) -> list[str]:
    """The table cells of one summary, in the order of ``LABELS``."""
    per, area, split = s["instances_per_image"], s["mask_area"], s["split_instances"]
    return [str(s["images"]), str(s["annotations"]), f"{per['mean']:.2f}",
            f"{per['min']}–{per['max']}", f"{area['p10']:.0f}", f"{area['median']:.0f}",
            f"{area['p90']:.0f}", f"{split['percent']:.1f}%"]


LABELS = ["images", "human instances", "humans per image (mean)", "humans per image (range)",
          "mask area p10 (px)", "mask area median (px)", "mask area p90 (px)",
          "split into several parts"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60, help="rendered scenes")
    parser.add_argument("--seed", type=int, default=0, help="demo seed")
    args = parser.parse_args()
    sizes = [parse_size(s) for s in NATIVE_SIZES.split(",")]
    real = summarize(REAL)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo"
        write_demo_dataset(out, {"train": args.images}, sizes, seed=args.seed)
        demo = summarize(humans_only(out / "train.json", Path(tmp) / "humans.json"))
    print(f"| statistic | real (DeepSport train.json) | rendered (`vipseg data demo --native`, "
          f"{args.images} images, seed {args.seed}) |")
    print("|---|---|---|")
    for label, a, b in zip(LABELS, rows(real), rows(demo)):
        print(f"| {label} | {a} | {b} |")


if __name__ == "__main__":
    main()
