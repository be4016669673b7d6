"""What weight averaging gains on the demo data, and what streamed averaging saves in memory.

Part 1 (val mask AP, one run): train ``configs/exp/mask_rcnn/demo_cpu.yaml`` on the demo data
(``vipseg data demo`` renders it when missing) for ``--train-epochs``, then the SWA stage from
its ``last.pth`` for ``--swa-epochs`` (the config's ``swa:`` defaults otherwise: AdamW lr 1e-4,
weight decay 0.02, constant rate, one update per epoch), then ``vipseg average`` of the SWA
run's ``epoch_*.pth`` and a greedy soup of them. Prints the val mask AP (segm/AP, AP50) of the
first stage's last checkpoint, the SWA stage's last raw weights, ``swa.pth``, the checkpoint
average and the soup, and each one's difference from the first stage's last checkpoint.

Part 2 (peak RSS): ``--mem-count`` checkpoints of the R50-FPN Mask R-CNN of
``configs/_base_/models/mask_rcnn_r50_fpn.yaml`` (model + an AdamW state of two tensors per
parameter, as training writes them) are averaged by :func:`average_checkpoints` (streamed,
memory-mapped) and, as the reference, loaded all at once (``torch.load`` each, keep every
``model``) and averaged; each in a fresh process, its peak resident memory above the RSS after
its imports (sampled every 2 ms).

    python benchmarks/swa_gain.py --data data/demo --work /tmp/swa_gain
    python benchmarks/swa_gain.py --train-epochs 4 --swa-epochs 3 --mem-count 12  # reduced
    python benchmarks/swa_gain.py --start output/demo/exp_.../last.pth  # stage 1 done before
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs/exp/mask_rcnn/demo_cpu.yaml"
R50 = ["configs/_base_/datasets/vipriors_instance.yaml",
       "configs/_base_/models/mask_rcnn_r50_fpn.yaml"]


def val_ap(cfg, checkpoint: Path, device: str) -> dict[str, float]:
    """segm/AP and AP50 of ``checkpoint`` on ``cfg``'s val split."""
    from vipseg.data.build import build_dataset
    from vipseg.engine.evaluation import evaluate_model
    from vipseg.engine.inference import load_model
    from vipseg.engine.predict import predict_options

    model = load_model(cfg, checkpoint, device)
    metrics = evaluate_model(model, build_dataset(cfg, "val", train=False), device=device,
                             options=predict_options(cfg, device))
    return {"AP": metrics["segm/AP"], "AP50": metrics["segm/AP50"]}


def part_ap(args: argparse.Namespace) -> None:
    from vipseg.config import load_config
    from vipseg.engine.averaging import average_to_file
    from vipseg.engine.checkpoint import load_checkpoint
    from vipseg.engine.swa import SWA_FILE, run_swa
    from vipseg.engine.trainer import train

    data = Path(args.data)
    if not (data / "train.json").exists():
        subprocess.run([sys.executable, "-m", "vipseg", "data", "demo", "--out", str(data)],
                       check=True)
    work = Path(args.work)
    # Both stages validate once, at their end.
    cfg = load_config(DEMO, [f"dataset.root={data}", f"train.epochs={args.train_epochs}",
                             f"swa.epochs={args.swa_epochs}", "train.val_interval=1000"])
    start = time.perf_counter()
    if args.start:  # a stage-1 checkpoint trained before
        last, first_iters = Path(args.start), int(load_checkpoint(args.start)["iteration"])
    else:
        first = train(cfg, "stage1", work_dir=work, device=args.device)
        last, first_iters = first.run_dir / "last.pth", first.iteration
    swa = run_swa(cfg, last, "stage2", work_dir=work, device=args.device)
    epochs = sorted(swa.run_dir.glob("epoch_*.pth"), key=lambda p: int(p.stem.split("_")[1]))
    average_to_file([swa.run_dir], work / "average.pth", force=True)
    average_to_file([swa.run_dir], work / "soup.pth", force=True, soup_cfg=cfg,
                    device=args.device)
    rows = [("stage 1 last.pth", last),
            (f"SWA stage {epochs[-1].name} (raw)", epochs[-1]),
            (f"SWA stage {SWA_FILE}", swa.run_dir / SWA_FILE),
            (f"average of {len(epochs)} epoch_*.pth", work / "average.pth"),
            ("greedy soup of them", work / "soup.pth")]
    scores = [(name, val_ap(cfg, path, args.device)) for name, path in rows]
    base = scores[0][1]["AP"]
    print(f"\n{first_iters} training + {swa.iteration} SWA iterations in "
          f"{time.perf_counter() - start:.0f} s")
    print(f"{'weights':34s} {'mask AP':>8s} {'AP50':>7s} {'AP - last':>10s}")
    for name, s in scores:
        print(f"{name:34s} {s['AP']:8.4f} {s['AP50']:7.4f} {s['AP'] - base:+10.4f}")


def write_checkpoints(folder: Path, count: int) -> int:
    """``count`` R50 checkpoints (model + AdamW-like state); returns the model's bytes."""
    from vipseg.config import load_config
    from vipseg.engine.checkpoint import save_checkpoint
    from vipseg.models.build import build_model

    cfg = load_config(REPO / R50[1], [])
    model = build_model(cfg)
    params = list(model.parameters())
    optim = {"state": {i: {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)}
                       for i, p in enumerate(params)}, "param_groups": []}
    for k in range(count):
        with torch.no_grad():
            for p in params:
                p.add_(0.01)
        save_checkpoint(folder / f"epoch_{k + 1}.pth", {"model": model.state_dict(),
                                                        "optimizer": optim})
    return sum(v.numel() * v.element_size() for v in model.state_dict().values())


def rss_mib() -> float:
    """This process's resident memory now, in MiB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def mem_child(mode: str, folder: Path) -> None:
    """Average the folder's checkpoints one way; print the peak RSS above the RSS after the
    imports, in MiB (sampled every 2 ms by a thread: ``ru_maxrss`` would include the imports'
    own transient peak)."""
    from vipseg.engine.averaging import average_checkpoints, checkpoint_inputs

    paths = checkpoint_inputs([folder])
    base, peak, done = rss_mib(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib())
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    if mode == "streamed":
        avg = average_checkpoints(paths)["model"]
    else:  # the reference: every checkpoint's model in memory, then the mean
        models = [torch.load(p, map_location="cpu", weights_only=True)["model"] for p in paths]
        avg = {k: torch.stack([m[k].float() for m in models]).mean(0) for k in models[0]}
    peak[0] = max(peak[0], rss_mib())
    done.set()
    thread.join()
    assert avg
    print(peak[0] - base)


def part_memory(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.mem_dir) as tmp:
        folder = Path(tmp)
        size = write_checkpoints(folder, args.mem_count)
        peaks = {}
        for mode in ("streamed", "load-all"):
            out = subprocess.run([sys.executable, __file__, "--mem-child", mode, str(folder)],
                                 check=True, capture_output=True, text=True).stdout
            peaks[mode] = float(out.strip().splitlines()[-1])
    model_mib = size / 2**20
    print(f"\n{args.mem_count} checkpoints of a {model_mib:.0f} MiB model (+ AdamW state, "
          f"{3 * model_mib:.0f} MiB per file); peak RSS above the process after its imports:")
    for mode, peak in peaks.items():
        print(f"{mode:9s} +{peak:7.0f} MiB = {peak / model_mib:.1f} models")
    print(f"ratio load-all / streamed: {peaks['load-all'] / max(peaks['streamed'], 1):.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO / "data/demo"))
    parser.add_argument("--work", default=None, help="run folder (default: a temp folder)")
    parser.add_argument("--train-epochs", type=int, default=20)
    parser.add_argument("--swa-epochs", type=int, default=12)
    parser.add_argument("--start", default=None,
                        help="a stage-1 last.pth of this config: skip stage 1")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mem-count", type=int, default=12)
    parser.add_argument("--mem-dir", default=None, help="where the memory checkpoints go")
    parser.add_argument("--skip-ap", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--mem-child", nargs=2, metavar=("MODE", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mem_child:
        mem_child(args.mem_child[0], Path(args.mem_child[1]))
        return
    if not args.skip_ap:
        if args.work is None:
            args.work = tempfile.mkdtemp(prefix="swa_gain_")
        part_ap(args)
    if not args.skip_memory:
        part_memory(args)


if __name__ == "__main__":
    main()
