"""Resume semantics: never overwrite newer results, honour the config or refuse it, write
nothing before the checks pass."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch

from tests.helpers import make_shapes_dataset, one_torch_thread  # noqa: F401 (fixture)
from vipseg.config import load_config
from vipseg.engine.checkpoint import load_checkpoint
from vipseg.engine.resume import HONOURED, config_changes, plan_resume
from vipseg.engine.trainer import train
from vipseg.errors import ConfigError, DataError, OutputExistsError

TINY = Path(__file__).resolve().parents[2] / "configs/exp/mask_rcnn/tiny_cpu.yaml"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cfg_of(root: Path, *overrides: str):
    return load_config(TINY, [f"dataset.root={root}", "augment.scales=[[64,64]]",
                              "dataset.test_scale=[64,64]", "train.epochs=2",
                              "train.batch_size=2", "train.val_interval=0",
                              "train.checkpoint_interval=1", "train.log_interval=1", *overrides])


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """(dataset root, run folder of a finished 2-epoch run with epoch_1.pth, epoch_2.pth)."""
    base = tmp_path_factory.mktemp("resume")
    root = base / "data"
    make_shapes_dataset(root, "train", n_images=4, size=(64, 64), max_objects=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tests that resume it (one_torch_thread)
    try:
        result = train(cfg_of(root), "run", work_dir=base / "work", device="cpu")
    finally:
        torch.set_num_threads(threads)
    return root, result.run_dir


@pytest.fixture
def run(finished, tmp_path) -> tuple[Path, Path]:
    root, run_dir = finished
    copy = tmp_path / "work" / "run" / run_dir.name
    shutil.copytree(run_dir, copy)
    return root, copy


def tree_hash(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resuming_an_older_checkpoint_is_refused_and_writes_nothing(run):
    root, run_dir = run
    before = tree_hash(run_dir)
    with pytest.raises(OutputExistsError, match="iteration 2 is older than .*iteration 4.*"
                       "--resume-from-older"):
        train(cfg_of(root), "run", work_dir=run_dir.parents[1], resume=run_dir / "epoch_1.pth",
              device="cpu")
    assert tree_hash(run_dir) == before
    assert [p.name for p in run_dir.parent.iterdir()] == [run_dir.name]


def test_resume_from_older_continues_in_a_new_run_folder(run):
    root, run_dir = run
    before = tree_hash(run_dir)
    result = train(cfg_of(root), "run", work_dir=run_dir.parents[1],
                   resume=run_dir / "epoch_1.pth", device="cpu", resume_from_older=True)
    assert result.run_dir != run_dir and result.run_dir.parent == run_dir.parent
    assert (result.epoch, result.iteration) == (2, 4)
    assert tree_hash(run_dir) == before  # the original run is untouched
    log = (result.run_dir / "log.txt").read_text()
    assert "older than" in log and "continuing in a new run folder" in log
    assert load_config(result.run_dir / "config.yaml").train.epochs == 2
    # the branch repeats the original's last epoch exactly
    ours = load_checkpoint(result.run_dir / "last.pth")["model"]
    theirs = load_checkpoint(run_dir / "last.pth")["model"]
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_a_change_resume_cannot_honour_is_a_one_line_error_before_any_write(run):
    root, run_dir = run
    before = tree_hash(run_dir)
    for override in ("optimizer.lr=0.02", "train.seed=3", "train.batch_size=1",
                     "model.neck.channels=32"):
        with pytest.raises(ConfigError) as err:
            train(cfg_of(root, override), "run", work_dir=run_dir.parents[1],
                  resume=run_dir / "last.pth", device="cpu")
        key = override.split("=")[0]
        assert f"resume cannot honour {key}:" in str(err.value) and "\n" not in str(err.value)
    assert tree_hash(run_dir) == before


def test_an_honoured_change_is_applied_and_recorded(run):
    root, run_dir = run
    result = train(cfg_of(root, "train.epochs=3"), "run", work_dir=run_dir.parents[1],
                   resume=run_dir / "last.pth", device="cpu")
    assert result.run_dir == run_dir and (result.epoch, result.iteration) == (3, 6)
    assert load_config(run_dir / "config_resume_4.yaml").train.epochs == 3
    assert load_config(run_dir / "config.yaml").train.epochs == 2
    assert "changed: train.epochs 2 -> 3" in (run_dir / "log.txt").read_text()


def test_a_failed_resume_writes_nothing_into_the_run(run):
    root, run_dir = run
    state = torch.load(run_dir / "last.pth", weights_only=True)
    state["model"].pop(next(iter(state["model"])))
    torch.save(state, run_dir / "last.pth")
    before = tree_hash(run_dir)
    with pytest.raises(DataError, match="weights do not match the config's model"):
        train(cfg_of(root), "run", work_dir=run_dir.parents[1], resume=run_dir / "last.pth",
              device="cpu")
    assert tree_hash(run_dir) == before  # no config_resume_*.yaml, no TensorBoard file


def test_plan_lists_every_difference_and_honours_only_the_whitelist(finished):
    root, run_dir = finished
    state = load_checkpoint(run_dir / "last.pth")
    plan = plan_resume(run_dir / "last.pth", state, cfg_of(root, "train.max_iters=7",
                                                           "augment.hflip_prob=0"))
    assert plan.run_dir == run_dir and not plan.branch
    assert plan.changes == {"augment.hflip_prob": (0.5, 0.0), "train.max_iters": (None, 7)}
    # Never honoured: what the checkpoint's state depends on (the optimizer's state, the
    # weights, the sampler's draws).
    refused = ("model.", "optimizer.", "train.seed", "train.batch_size", "train.ema.",
               "swa.optimizer.", "swa.update_every")
    assert not [k for k in HONOURED for r in refused if k.startswith(r) or r.startswith(k)]
    assert config_changes(cfg_of(root), cfg_of(root)) == {}
