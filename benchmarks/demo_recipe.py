"""Demo recipe trials: train config variants on the demo data at equal step counts, side by side.

Each variant is ``NAME=CONFIG[,key=value,...]``; it is trained with ``vipseg train`` in a child
process on one thread (``OMP_NUM_THREADS=1``, ``train.num_workers=0``, so data loading is in the
measured process) and validated once at the end. Printed per variant: steps, process CPU
seconds (user + sys of the child, which a loaded machine inflates far less than wall time),
CPU seconds per step, val mask AP / AP50 / AP75 and box AP. The first variant is the reference;
the last column is each variant's mask AP over the reference's.

    python benchmarks/demo_recipe.py --data data/demo \\
        base=configs/exp/mask_rcnn/demo_cpu.yaml \\
        lr4=configs/exp/mask_rcnn/demo_cpu.yaml,optimizer.lr=0.004

``--steps N`` sets ``train.max_iters`` and ``train.epochs`` so that the LR schedule ends at step N
(``max_iters`` alone stops a run without shortening its schedule), so variants compare at
equal iteration counts with a complete schedule; without it each config's own schedule runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def epochs_for(config: str, overrides: list[str], steps: int) -> int:
    """Epochs whose schedule ends at ``steps`` iterations (or just after: ``train.max_iters``
    stops there but does not shorten the LR schedule): ceil(steps / iterations per epoch),
    with an epoch of ceil(training images / batch size) iterations."""
    from vipseg.config import load_config
    from vipseg.data.build import build_dataset

    cfg = load_config(REPO / config, overrides)  # an absolute config stays itself
    per_epoch = math.ceil(len(build_dataset(cfg, "train", train=True)) / cfg.train.batch_size)
    return math.ceil(steps / per_epoch)


def run_variant(spec: str, data: str, steps: int | None, work: Path, timeout: float) -> dict:
    name, _, rest = spec.partition("=")
    config, *overrides = rest.split(",")
    overrides += ["train.num_workers=0", "train.checkpoint_interval=0", "train.log_interval=10"]
    if steps is not None:
        epochs = epochs_for(config, [*overrides, f"dataset.root={data}"], steps)
        overrides += [f"train.max_iters={steps}", f"train.epochs={epochs}",
                      "train.val_interval=1000"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "vipseg", "train", config, name, "--work-dir", str(work),
           "--data-root", data, "--device", "cpu", *overrides]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    tic = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - tic
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"name": name, "error": " | ".join(tail)}
    runs = sorted((work / name).glob("exp_*"))
    rows = [json.loads(line) for line in (runs[-1] / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["type"] == "train"]
    val = [r for r in rows if r["type"] == "val"][-1]
    return {"name": name, "spec": rest, "steps": train_rows[-1]["iteration"] if train_rows else 0,
            "cpu_s": cpu, "wall_s": wall, "segm_ap": val.get("segm/AP"),
            "segm_ap50": val.get("segm/AP50"), "segm_ap75": val.get("segm/AP75"),
            "bbox_ap": val.get("bbox/AP"), "segm_human": val.get("segm/AP/human"),
            "segm_ball": val.get("segm/AP/ball"), "run_dir": str(runs[-1]),
            "final_loss": train_rows[-1]["loss"] if train_rows else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+", metavar="NAME=CONFIG[,key=value,...]")
    ap.add_argument("--data", default="data/demo", help="demo data root (vipseg data demo)")
    ap.add_argument("--steps", type=int, default=None, help="train.max_iters for every variant")
    ap.add_argument("--timeout", type=float, default=3600, help="wall seconds per variant")
    ap.add_argument("--json", default=None, help="also append each result to this JSONL file")
    ap.add_argument("--work-dir", default=None,
                    help="keep the runs (checkpoints, metrics) here; default: a temporary folder")
    args = ap.parse_args(argv)
    data = str(Path(args.data).resolve())
    base_ap = None
    print(f"{'variant':<14} {'steps':>5} {'cpu s':>7} {'cpu s/step':>10} {'wall s':>7} "
          f"{'mask AP':>7} {'AP50':>6} {'AP75':>6} {'box AP':>6} {'human':>6} {'ball':>6} {'ratio':>6}",
          flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.work_dir or scratch
        for spec in args.variants:
            try:
                r = run_variant(spec, data, args.steps, Path(tmp), args.timeout)
            except subprocess.TimeoutExpired:
                name = spec.partition("=")[0]
                r = {"name": name, "error": f"timeout after {args.timeout:g} s"}
                logged = sorted((Path(tmp) / name).glob("exp_*/metrics.jsonl"))
                rows = logged[-1].read_text().splitlines() if logged else []
                if rows:  # how far it got
                    last = json.loads(rows[-1])
                    r["error"] += f" at iteration {last.get('iteration')} (loss {last.get('loss')})"
            if args.json:
                with open(args.json, "a", encoding="utf-8") as f:
                    f.write(json.dumps(r) + "\n")
            if "error" in r:
                print(f"{r['name']:<14} error: {r['error']}", flush=True)
                continue
            base_ap = r["segm_ap"] if base_ap is None else base_ap
            ratio = r["segm_ap"] / base_ap if base_ap else float("nan")
            print(f"{r['name']:<14} {r['steps']:>5} {r['cpu_s']:>7.0f} "
                  f"{r['cpu_s'] / max(1, r['steps']):>10.2f} {r['wall_s']:>7.0f} "
                  f"{r['segm_ap']:>7.3f} {r['segm_ap50']:>6.3f} {r['segm_ap75']:>6.3f} "
                  f"{r['bbox_ap']:>6.3f} {r['segm_human'] or 0:>6.3f} {r['segm_ball'] or 0:>6.3f} "
                  f"{ratio:>6.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
