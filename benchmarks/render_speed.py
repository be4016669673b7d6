"""Seconds per rendered demo scene on one CPU core, at the challenge's image sizes.

A scene is what ``vipseg data demo`` makes of one image: court, people, ball, camera effects
and the COCO RLE masks of every instance (``render_scene`` + ``scene_annotations``). PNG
encoding, which depends on the compression level and not on the renderer, is timed apart.
OpenCV (and torch, if loaded) run on one thread; times are CPU seconds of this process (robust
on a shared machine), wall seconds alongside. The target is well under 1 s per 1624×1234 scene.

    .venv/bin/python benchmarks/render_speed.py [--scenes 8] [--no-record]

Prints seconds per scene and the ratio to the 1 s target for each size, and appends the lines
to the ``## Demo renderer`` section of ``benchmarks/RESULTS.md`` (machine and date included).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vipseg.data.tools.demo.scene import render_scene  # noqa: E402
from vipseg.data.tools.demo.writer import encode_png, scene_annotations  # noqa: E402

SIZES = [(1624, 1234), (2456, 2054)]
TARGET_S = 1.0
SECTION = "## Demo renderer"


def machine() -> str:
    """CPU model name from ``lscpu`` (or 'unknown CPU')."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def time_size(size: tuple[int, int], scenes: int) -> dict[str, float]:
    """Median CPU and wall seconds per scene (render + masks) and per PNG encode at ``size``."""
    render_scene(np.random.default_rng(10_000), size)  # warm-up
    cpu, wall, png = [], [], []
    for i in range(scenes):
        c0, w0 = time.process_time(), time.perf_counter()
        scene = render_scene(np.random.default_rng(i), size)
        scene_annotations(scene.owner, scene.categories, 1, 1)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        p0 = time.process_time()
        encode_png(scene.image)
        png.append(time.process_time() - p0)
    return {"cpu": float(np.median(cpu)), "wall": float(np.median(wall)), "png": float(np.median(png))}


def record(lines: list[str]) -> None:
    """Append ``lines`` under the ``## Demo renderer`` section of benchmarks/RESULTS.md."""
    path = REPO / "benchmarks" / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    block = "\n".join(lines) + "\n"
    if SECTION not in text:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n\n{block}"
    else:
        start = text.index(SECTION) + len(SECTION)
        nxt = text.find("\n## ", start)
        end = len(text) if nxt < 0 else nxt + 1
        body = text[start:end].rstrip("\n") + "\n\n" + block
        text = text[:start] + body + ("\n" + text[end:] if nxt >= 0 else "")
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=8, help="scenes timed per size")
    parser.add_argument("--no-record", action="store_true", help="do not touch RESULTS.md")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [f"`benchmarks/render_speed.py --scenes {args.scenes}`, {machine()}, one core, {stamp}:"]
    for w, h in SIZES:
        t = time_size((w, h), args.scenes)
        lines.append(f"- {w}×{h}: {t['cpu']:.3f} s CPU per scene (wall {t['wall']:.3f} s), "
                     f"{t['cpu'] / TARGET_S:.2f}× the {TARGET_S:.0f} s target; "
                     f"PNG encoding {t['png']:.3f} s more")
    print("\n".join(lines))
    if not args.no_record:
        record(lines)


if __name__ == "__main__":
    main()
