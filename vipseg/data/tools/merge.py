"""``vipseg data merge``: several COCO splits → one file (e.g. train + val → train_val).

Images and annotations get fresh ids (1, 2, ... in input order). Every input must have the same
category names (other category fields may differ); category ids are matched by name and mapped
to the first input's, so a 0-based and a 1-based file merge. With ``images_out`` the
images of every input are hard-linked (copied where linking fails, or with ``copy``) into one
folder; ``file_name`` clashes between inputs are resolved by renaming (``name__2.png``, ...) and
updating ``file_name``. With ``keep_ids`` the images keep their ids and file names (so rules
that read them, e.g. ``augment.copy_paste.side_rule``, still work on the merged file); an
image id or file name found in two inputs is then an error. Annotation ids are always fresh.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any, Sequence

from vipseg.data.coco import CocoFile, load_coco
from vipseg.utils.io import atomic_dir, atomic_write_json, ensure_new_output, link_or_copy
from vipseg.errors import DataError


COMMAND = "data merge"


def default_images_dir(ann_file: Path) -> Path:
    """The VIPriors layout: ``root/train.json`` ↔ ``root/train/``."""
    return ann_file.parent / ann_file.stem


def _unique_name(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    p = PurePosixPath(name)
    k = 2
    while True:
        cand = str(p.with_name(f"{p.stem}__{k}{p.suffix}"))
        if cand not in taken:
            return cand
        k += 1


def merge(inputs: Sequence[str | Path], out: str | Path, *, images_out: str | Path | None = None,
          images_dirs: Sequence[str | Path] | None = None, copy: bool = False,
          force: bool = False, keep_ids: bool = False) -> dict[str, Any]:
    """Merge ``inputs`` into ``out``; see the module doc. Returns a report."""
    inputs = [Path(p) for p in inputs]
    if len(inputs) < 2:
        raise DataError("merge needs at least two annotation files")
    if images_dirs is not None and len(images_dirs) != len(inputs):
        raise DataError(f"--images got {len(images_dirs)} folder(s) for {len(inputs)} "
                        "annotation files (give one per file, in the same order)")
    if images_dirs is not None and images_out is None:
        raise DataError("--images needs --images-out (the folder to link or copy images into)")
    if images_out is not None:
        dirs = [Path(d) for d in images_dirs] if images_dirs else [default_images_dir(p) for p in inputs]
    else:
        dirs = [None] * len(inputs)
    sources = [*inputs, *dirs]
    ensure_new_output(out, force, inputs=sources)
    if images_out is not None:
        ensure_new_output(images_out, force, folder=True, inputs=sources, command=COMMAND)
    cocos: list[CocoFile] = [load_coco(p, images_dir=d) for p, d in zip(inputs, dirs)]

    ref = cocos[0]
    ref_cats = {c["id"]: c["name"] for c in ref.categories}
    ref_ids = {name: cid for cid, name in ref_cats.items()}
    cat_maps = []  # per input: its category id -> the first input's id (same name)
    for c in cocos:
        cats = {k["id"]: k["name"] for k in c.categories}
        if set(cats.values()) != set(ref_ids):
            raise DataError(f"{ref.path} and {c.path}: categories differ by name "
                            f"({_fmt_cats(ref_cats)} vs {_fmt_cats(cats)})")
        cat_maps.append({cid: ref_ids[name] for cid, name in cats.items()})
    remapped = [str(c.path) for c, m in zip(cocos, cat_maps) if any(k != v for k, v in m.items())]

    if keep_ids:
        _check_unique(cocos, "id")
        _check_unique(cocos, "file_name")
    images, annotations, links = [], [], []
    taken: set[str] = set()
    renamed = []
    for k, c in enumerate(cocos):
        new_id = {}
        for img in c.images:
            new = dict(img)
            new["id"] = img["id"] if keep_ids else len(images) + 1
            new_id[img["id"]] = new["id"]
            name = _unique_name(img["file_name"], taken)
            if name != img["file_name"]:
                renamed.append((str(c.path), img["file_name"], name))
            new["file_name"] = name
            taken.add(name)
            images.append(new)
            if dirs[k] is not None:
                links.append((dirs[k] / img["file_name"], name))
        for ann in c.annotations:
            new = dict(ann)
            new["id"] = len(annotations) + 1
            new["image_id"] = new_id[ann["image_id"]]
            new["category_id"] = cat_maps[k][ann["category_id"]]
            annotations.append(new)

    merged: dict[str, Any] = {
        "info": {"description": "merged by vipseg data merge",
                 "sources": [str(p) for p in inputs]},
        "images": images, "annotations": annotations, "categories": ref.categories,
    }
    modes: dict[str, int] = {}
    if images_out is not None:
        with atomic_dir(images_out, force, command=COMMAND, inputs=sources) as tmp:
            for src, name in links:
                mode = link_or_copy(src, tmp / name, copy)
                modes[mode] = modes.get(mode, 0) + 1
    atomic_write_json(out, merged)
    return {"out": str(out), "inputs": [str(p) for p in inputs],
            "images": len(images), "annotations": len(annotations),
            "per_input": [{"file": str(c.path), "images": len(c.images),
                           "annotations": len(c.annotations)} for c in cocos],
            "renamed": renamed, "remapped": remapped, "images_out": str(images_out) if images_out else None,
            "linked": modes.get("link", 0), "copied": modes.get("copy", 0),
            "warnings": [f"{c.path}: {w}" for c in cocos for w in c.warnings]}


def _check_unique(cocos: Sequence[CocoFile], key: str) -> None:
    """``DataError`` naming the first image ``key`` (id or file_name) found in two inputs."""
    seen: dict[Any, Path] = {}
    for c in cocos:
        for img in c.images:
            other = seen.setdefault(img[key], c.path)
            if other != c.path:
                raise DataError(f"--keep-ids: image {key} {img[key]!r} is in both {other} and "
                                f"{c.path} (merge without --keep-ids to renumber)")


def _fmt_cats(cats: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(cats.items(), key=lambda kv: str(kv[0])))


def format_report(r: dict[str, Any]) -> str:
    lines = [f"{r['out']}: {r['images']} images, {r['annotations']} annotations from "
             + " + ".join(f"{p['file']} ({p['images']}/{p['annotations']})" for p in r["per_input"])]
    if r["images_out"]:
        lines.append(f"images in {r['images_out']}: {r['linked']} linked, {r['copied']} copied")
    elif r["renamed"]:
        lines.append("note: no --images-out, so renamed file names point to no file yet")
    for src in r["remapped"]:
        lines.append(f"category ids of {src} mapped by name to those of {r['inputs'][0]}")
    for src, old, new in r["renamed"]:
        lines.append(f"renamed {old} -> {new} (from {src}: name already used)")
    return "\n".join(lines)
