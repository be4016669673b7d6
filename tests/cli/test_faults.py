"""Fault injection: every command on every class of bad input, generated, not hand-listed.

Each case copies a pristine tiny world (a 64 px shapes dataset, a config, an untrained tiny
model, predictions), breaks one thing, runs the command in-process through
``vipseg.cli.main.main`` and checks the promises of docs/reliability.md: exit code 2, the
last stderr line starts with ``error:``, no traceback, and the whole world (inputs and any
existing output) byte-identical afterwards. A few cases check that a good run succeeds and
writes files readable by group and others under umask 022.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import stat
from pathlib import Path
from typing import Callable

import cv2
import pytest
import torch

from tests.helpers import make_shapes_dataset, one_torch_thread, perturbed_predictions  # noqa: F401
from vipseg.cli.main import main

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_torch_thread")
SIZE = (64, 64)


# ----------------------------------------------------------------------------------- the world
@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    w = tmp_path_factory.mktemp("world")
    data = w / "data"
    for split, seed in (("train", 0), ("val", 1), ("test", 2)):
        make_shapes_dataset(data, split, n_images=3, size=SIZE, seed=seed, max_objects=2)
    test = json.loads((data / "test.json").read_text())
    (data / "test.json").write_text(json.dumps({"images": test["images"],
                                                "categories": test["categories"]}))
    (w / "config.yaml").write_text(
        f"_base_: [{REPO / 'configs/exp/mask_rcnn/tiny_cpu.yaml'}]\n"
        "dataset: {test_scale: [64, 64]}\naugment: {scales: [[64, 64]]}\n"
        "train: {epochs: 1, batch_size: 2, val_interval: 0, num_workers: 0}\n")
    from vipseg.config import load_config
    from vipseg.models.build import build_model

    torch.manual_seed(0)
    model = build_model(load_config(w / "config.yaml"))
    torch.save({"model": model.state_dict()}, w / "model.pth")
    gt = json.loads((data / "val.json").read_text())
    (w / "preds.json").write_text(json.dumps(perturbed_predictions(gt)))
    return w


@pytest.fixture
def world(pristine, tmp_path) -> Path:
    w = tmp_path / "w"
    shutil.copytree(pristine, w)
    return w


def tree_hash(root: Path) -> dict[str, str]:
    """Every path under ``root`` -> content hash (files), 'dir' (folders) and mode."""
    out = {}
    for p in sorted(root.rglob("*")):
        kind = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        out[str(p.relative_to(root))] = f"{kind} {stat.S_IMODE(p.lstat().st_mode):o}"
    return out


def run(argv: list, capsys) -> tuple[int, str]:
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse usage errors
        code = e.code
    return code, capsys.readouterr().err


def assert_refused(world: Path, argv: list, capsys, expect: str | None = None) -> str:
    """Run ``argv``: exit 2, one ``error:`` last line, no traceback, world unchanged."""
    before = tree_hash(world)
    code, err = run(argv, capsys)
    lines = err.rstrip("\n").split("\n")
    assert code == 2, (argv, err)
    assert lines[-1].startswith("error: "), err
    assert "Traceback" not in err and "WARN" not in err and "UserWarning" not in err, err
    if expect is not None:
        assert expect in lines[-1], lines[-1]
    assert tree_hash(world) == before, "a refused command changed files"
    return lines[-1]


# ----------------------------------------------------------------------------------- commands
# Each builder: (world, out path or None for the default, force) -> argv, with the kind of
# output ("file"; "dir": a folder written whole; "files": a folder that receives the files of
# FILES_WRITTEN) and its default path under the world.
def _data(w: Path) -> Path:
    return w / "data"


COMMANDS: dict[str, tuple[str | None, str | None, Callable[[Path, Path, bool], list]]] = {
    "check": ("file", "out.json", lambda w, o, f: [
        "data", "check", _data(w) / "train.json", "--images", _data(w) / "train", "--json", o,
        *(["--force"] if f else [])]),
    "rle2poly": ("file", "out.json", lambda w, o, f: [
        "data", "rle2poly", _data(w) / "train.json", o, *(["--force"] if f else [])]),
    "poly2rle": ("file", "out.json", lambda w, o, f: [
        "data", "poly2rle", _data(w) / "train.json", o, *(["--force"] if f else [])]),
    "merge": ("dir", "merged_images", lambda w, o, f: [
        "data", "merge", _data(w) / "train.json", _data(w) / "val.json", "--out",
        w / "merged.json", "--images-out", o, *(["--force"] if f else [])]),
    "extract-objects": ("dir", "bank", lambda w, o, f: [
        "data", "extract-objects", _data(w) / "train.json", "--images", _data(w) / "train",
        "--out", o, "--no-progress", *(["--force"] if f else [])]),
    "images-json": ("file", "out.json", lambda w, o, f: [
        "data", "images-json", _data(w) / "train", "--out", o, "--ids-from",
        _data(w) / "train.json", *(["--force"] if f else [])]),
    "norm": ("file", "out.json", lambda w, o, f: [
        "data", "norm", _data(w) / "train.json", "--images", _data(w) / "train", "--json", o,
        "--no-progress", *(["--force"] if f else [])]),
    "render": ("dir", "rendered", lambda w, o, f: [
        "data", "render", "--annotations", _data(w) / "train.json", "--out", o, "--quiet",
        *(["--force"] if f else [])]),
    "demo": ("dir", "demo", lambda w, o, f: [
        "data", "demo", "--out", o, "--train", 1, "--val", 0, "--test", 0, "--size", "64x64",
        "--quiet", *(["--force"] if f else [])]),
    "browse": ("dir", "browse", lambda w, o, f: [
        "data", "browse", w / "config.yaml", "--data-root", _data(w), "--output-dir", o,
        "--num", 3, *(["--force"] if f else [])]),
    "eval": (None, None, lambda w, o, f: ["eval", _data(w) / "train.json", w / "preds.json"]),
    "train": ("dir", "runs", lambda w, o, f: [
        "train", w / "config.yaml", "run", "--work-dir", o, "--data-root", _data(w),
        "--device", "cpu"]),
    "test": ("files", "test_out", lambda w, o, f: [
        "test", w / "config.yaml", w / "model.pth", "--valid", "--data-root", _data(w),
        "--device", "cpu", "--out", o, "dataset.val.ann=train.json", "dataset.val.images=train",
        *(["--force"] if f else [])]),
    "predict": ("files", "pred", lambda w, o, f: [
        "predict", w / "config.yaml", w / "model.pth", _data(w) / "train", "--out", o,
        "--data-root", _data(w), "--device", "cpu", *(["--force"] if f else [])]),
}


def argv_of(name: str, w: Path, out: Path | None = None, force: bool = False) -> list:
    kind, default, build = COMMANDS[name]
    return build(w, out if out is not None else (w / default if default else None), force)


# ------------------------------------------------------------------------- bad COCO files
def _ann(d: dict) -> dict:
    return d["annotations"][0]


COCO_FAULTS: dict[str, Callable[[dict], object]] = {
    "duplicate annotation id": lambda d: d["annotations"][1].update(id=_ann(d)["id"]),
    "annotation on a missing image": lambda d: _ann(d).update(image_id=999),
    "unknown category": lambda d: _ann(d).update(category_id=77),
    "wrong-size RLE": lambda d: _ann(d)["segmentation"].update(size=[3, 3]),
    "corrupt RLE": lambda d: _ann(d)["segmentation"].update(counts="\x01\x02"),
    "odd polygon": lambda d: _ann(d).update(segmentation=[[1, 2, 3, 4, 5, 6, 7]]),
    "duplicate file_name": lambda d: d["images"][1].update(file_name=d["images"][0]["file_name"]),
    "no categories": lambda d: d.pop("categories"),
}
RAW_FAULTS: dict[str, Callable[[str], bytes]] = {
    "duplicate JSON key": lambda t: (t[:-1] + ', "annotations": []}').encode(),
    "truncated JSON": lambda t: t[: len(t) // 2].encode(),
    "not UTF-8": lambda t: b"\xff\xfe" + t.encode("utf-16-le"),
}
READS_TRAIN_JSON = ["check", "rle2poly", "poly2rle", "merge", "extract-objects", "images-json",
                    "norm", "render", "eval", "train", "test", "browse"]


def _break_json(path: Path, fault: str) -> None:
    text = path.read_text()
    if fault in RAW_FAULTS:
        path.write_bytes(RAW_FAULTS[fault](text))
    else:
        d = json.loads(text)
        COCO_FAULTS[fault](d)
        path.write_text(json.dumps(d))


#: commands that build a model or a dataset pipeline get one fault of each class (invalid
#: content, a file listed twice, a repeated key, broken JSON): the validator is the same one.
HEAVY = {"train", "test", "browse"}
ONE_PER_CLASS = ["annotation on a missing image", "duplicate file_name", "duplicate JSON key",
                 "truncated JSON"]


@pytest.mark.parametrize("command, fault",
                         [(c, f) for c in READS_TRAIN_JSON for f in [*COCO_FAULTS, *RAW_FAULTS]
                          if c not in HEAVY or f in ONE_PER_CLASS])
def test_bad_coco_file(world, capsys, command, fault):
    if command == "images-json" and fault == "no categories":
        pytest.skip("images-json reads --ids-from as an images-only file: categories optional")
    _break_json(world / "data" / "train.json", fault)
    assert_refused(world, argv_of(command, world), capsys, expect="train.json")


# ------------------------------------------------------------------------------ bad images
def _first_image(w: Path) -> Path:
    return sorted((w / "data" / "train").glob("*.png"))[0]


IMAGE_FAULTS: dict[str, Callable[[Path], None]] = {
    "truncated PNG": lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),
    "missing image": lambda p: p.unlink(),
    "wrong size": lambda p: cv2.imwrite(str(p), cv2.resize(cv2.imread(str(p)), (32, 40))),
    "not an image": lambda p: p.write_text("hello"),
}
READS_IMAGES = {  # command -> the faults it must refuse (a folder listing has no "missing")
    "check": list(IMAGE_FAULTS), "merge": list(IMAGE_FAULTS),
    "extract-objects": list(IMAGE_FAULTS), "norm": list(IMAGE_FAULTS),
    "train": list(IMAGE_FAULTS), "test": list(IMAGE_FAULTS), "browse": list(IMAGE_FAULTS),
    "images-json": ["truncated PNG", "wrong size", "not an image"],
    "predict": ["truncated PNG", "not an image"],
}


@pytest.mark.parametrize("command, fault",
                         [(c, f) for c, faults in READS_IMAGES.items() for f in faults])
def test_bad_image(world, capsys, command, fault):
    image = _first_image(world)
    IMAGE_FAULTS[fault](image)
    assert_refused(world, argv_of(command, world), capsys, expect=image.name)


# ----------------------------------------------------------------------------- bad outputs
WRITERS = [c for c, (kind, _, _) in COMMANDS.items() if kind is not None and c != "train"]


FILES_WRITTEN = {"test": "metrics.json", "predict": "predictions.json"}


def _existing(world: Path, name: str) -> Path:
    kind, default, _ = COMMANDS[name]
    out = world / default
    if kind == "file":
        out.write_text("precious")
    elif kind == "files":
        out.mkdir()
        (out / FILES_WRITTEN[name]).write_text("precious")
    else:
        out.mkdir()
        (out / "precious.txt").write_text("precious")
    return out


OUTPUT_FAULTS = {
    "exists, no --force": lambda w, c: (_existing(w, c), False, "already exists"),
    "foreign folder or wrong kind, --force": lambda w, c: (_foreign(w, c), True, None),
    "under a file": lambda w, c: (_blocker(w) / "out", False, "is a file, not a folder"),
    "is an input, --force": lambda w, c: (_an_input(w, c), True, "the input"),
}


def _foreign(w: Path, name: str) -> Path:
    """A folder vipseg did not write where a folder goes, a folder where a file goes."""
    kind, default, _ = COMMANDS[name]
    out = w / default
    inner = out / FILES_WRITTEN[name] if kind == "files" else out
    inner.mkdir(parents=True)
    (inner / "precious.txt").write_text("precious")
    return out


def _blocker(w: Path) -> Path:
    (w / "blocker").write_text("a file")
    return w / "blocker"


def _an_input(w: Path, name: str) -> Path:
    kind, _, _ = COMMANDS[name]
    if kind == "file":
        return w / "data" / "train.json"
    if name in ("browse", "render"):
        return w / "data"  # holds the inputs
    return w / "data" / "train"  # is the input (predict: its files would land in it)


@pytest.mark.parametrize("fault", list(OUTPUT_FAULTS))
@pytest.mark.parametrize("command", WRITERS)
def test_bad_output(world, capsys, command, fault):
    if command == "demo" and fault == "is an input, --force":
        pytest.skip("demo reads no input")
    out, force, expect = OUTPUT_FAULTS[fault](world, command)
    assert_refused(world, argv_of(command, world, out, force), capsys, expect=expect)


def test_train_work_dir_under_a_file_is_refused_before_any_work(world, capsys):
    assert_refused(world, argv_of("train", world, _blocker(world) / "runs"), capsys,
                   expect="is a file, not a folder")


def test_test_out_file_is_refused_before_predicting(world, capsys, monkeypatch):
    import vipseg.engine.submission as submission

    monkeypatch.setattr(submission, "predict_dataset", lambda *a, **k: pytest.fail("predicted"))
    (world / "result.txt").write_text("x")
    assert_refused(world, argv_of("test", world, world / "result.txt"), capsys,
                   expect="is a file, not a folder")


# ------------------------------------------------------------------------------ bad configs
CONFIG_FAULTS = {
    "empty file": "",
    "NaN lr": "optimizer: {lr: .nan}\n",
    "negative lr": "optimizer: {lr: -0.1}\n",
    "batch size 0": "train: {batch_size: 0}\n",
    "repeated key": "train: {epochs: 1}\ntrain: {epochs: 2}\n",
    "unknown key": "train: {epochz: 1}\n",
    "not YAML": "train: [1, 2\n",
}
READS_CONFIG = ["train", "test", "predict", "browse"]


@pytest.mark.parametrize("fault", list(CONFIG_FAULTS))
@pytest.mark.parametrize("command", READS_CONFIG)
def test_bad_config(world, capsys, command, fault):
    cfg = world / "config.yaml"
    cfg.rename(world / "base.yaml")
    cfg.write_text("" if fault == "empty file" else "_base_: [base.yaml]\n" + CONFIG_FAULTS[fault])
    line = assert_refused(world, argv_of(command, world), capsys, expect="config.yaml")
    words = {"empty file": "no 'model'", "NaN lr": "finite",
             "negative lr": "optimizer.lr", "batch size 0": "train.batch_size",
             "repeated key": "repeated"}
    assert words.get(fault, "") in line


# -------------------------------------------------------------------------- bad checkpoints
CKPT_FAULTS: dict[str, Callable[[Path], None]] = {
    "text file": lambda p: p.write_text("not a checkpoint\n"),
    "folder": lambda p: (p.unlink(), p.mkdir()),
    "raw pickle": lambda p: p.write_bytes(pickle.dumps({"model": {}}, protocol=4)),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:1000]),
    "other model": lambda p: torch.save({"model": {"w": torch.zeros(2)}}, p),
}


@pytest.mark.parametrize("fault", list(CKPT_FAULTS))
@pytest.mark.parametrize("command", ["test", "predict", "train"])
def test_bad_checkpoint(world, capsys, command, fault):
    ckpt = world / "model.pth"
    CKPT_FAULTS[fault](ckpt)
    argv = argv_of(command, world)
    if command == "train":
        argv += ["--resume", ckpt]
    line = assert_refused(world, argv, capsys, expect="model.pth")
    assert "pop from empty list" not in line and "not found" not in line


# ---------------------------------------------------------------- good runs and permissions
@pytest.mark.parametrize("command", ["check", "rle2poly", "merge", "extract-objects",
                                     "images-json", "norm", "render", "demo", "browse"])
def test_good_run_writes_outputs_readable_by_all_and_reruns_with_force(world, capsys, command):
    old = os.umask(0o022)
    try:
        before = {k: v for k, v in tree_hash(world).items()}
        code, err = run(argv_of(command, world), capsys)
        assert code == 0, err
        after = tree_hash(world)
        written = [world / k for k in after if k not in before]
        assert written, "the command wrote nothing"
        for p in written:
            mode = stat.S_IMODE(p.stat().st_mode)
            assert mode & 0o044 == 0o044, (p, oct(mode))
            assert not p.name.endswith((".tmp", ".old")), p
        assert {k: v for k, v in after.items() if k in before} == before  # inputs untouched
        code, err = run(argv_of(command, world, force=True), capsys)  # replaces its own output
        assert code == 0, err
    finally:
        os.umask(old)


def test_browse_failing_midway_leaves_nothing_and_reruns(world, capsys, monkeypatch):
    import vipseg.data.tools.browse as browse

    calls = []

    def flaky(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return original(*args, **kw)

    original = browse.draw_sample
    monkeypatch.setattr(browse, "draw_sample", flaky)
    with pytest.raises(RuntimeError):
        main([str(a) for a in argv_of("browse", world)])
    assert not (world / "browse").exists()
    assert [p.name for p in world.iterdir() if p.name.startswith(".")] == []
    monkeypatch.setattr(browse, "draw_sample", original)
    code, err = run(argv_of("browse", world), capsys)
    assert code == 0, err and len(list((world / "browse").glob("*.png"))) == 3


@pytest.mark.parametrize("command", ["test", "predict", "train"])
def test_an_error_after_a_progress_bar_starts_its_own_line(world, capsys, monkeypatch, command):
    if command == "train":  # every file is checked before training: fail in the second step
        from vipseg.data.dataset import CocoInstanceDataset
        from vipseg.errors import DataError

        calls, load_raw = [], CocoInstanceDataset.load_raw

        def failing(self, index):
            calls.append(index)
            if len(calls) == 3:
                raise DataError("disk gone")
            return load_raw(self, index)

        monkeypatch.setattr(CocoInstanceDataset, "load_raw", failing)
    else:
        IMAGE_FAULTS["truncated PNG"](sorted((world / "data" / "train").glob("*.png"))[-1])
    # bars are drawn on terminals only (training logs one line per interval elsewhere)
    monkeypatch.setattr("vipseg.engine.progress.is_terminal", lambda stream: True)
    monkeypatch.setattr("vipseg.engine.predict.is_terminal", lambda stream: True)
    code, err = run(argv_of(command, world), capsys)
    assert code == 2 and "%|" in err, err  # a progress bar was drawn
    last = err.rstrip("\n").split("\n")[-1]
    assert last.startswith("error: ") and "\r" not in last, repr(err[-300:])


def test_render_refuses_an_escaping_file_name_before_creating_anything(world, capsys):
    path = world / "data" / "train.json"
    d = json.loads(path.read_text())
    d["images"][-1]["file_name"] = "../escape.png"
    path.write_text(json.dumps(d))
    out = world / "new" / "rendered"  # not even its parent folder may appear
    assert_refused(world, argv_of("render", world, out), capsys,
                   expect="must be a relative path without '..'")


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_usage_error_also_ends_with_one_error_line(world, capsys, command):
    argv = [str(a) for a in argv_of(command, world)] + ["--no-such-option"]
    assert_refused(world, argv, capsys, expect="unrecognized arguments: --no-such-option")


def _scramble(p: Path) -> None:
    """Corrupt a PNG's pixel data but keep its header and end chunk."""
    b = bytearray(p.read_bytes())
    for i in range(60, len(b) - 20):
        b[i] = (b[i] * 7 + 3) % 256
    p.write_bytes(bytes(b))


@pytest.mark.parametrize("command, fault", [("check", _scramble), ("predict", _scramble),
                                            ("predict", IMAGE_FAULTS["truncated PNG"])])
def test_no_library_message_reaches_the_terminal_before_the_error(world, capfd, command, fault):
    """File-descriptor level: libpng / OpenCV print from C, past Python's sys.stderr."""
    fault(_first_image(world))
    capfd.readouterr()
    assert main([str(a) for a in argv_of(command, world)]) == 2
    lines = [ln for ln in capfd.readouterr().err.replace("\r", "\n").split("\n") if ln.strip()
             and not ln.lstrip().startswith("predict:")]  # the progress bar's own redraws
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
