"""``vipseg data images-json``: an images-only COCO file for a test set.

The images come from a folder (every image file in it and its sub-folders) or from a text
file of names, one per line (blank lines and lines starting with ``#`` ignored; names relative
to ``images_dir``, by default the list file's folder). Every image is decoded in full, as
``data check --images`` does (the same check), so a truncated or corrupt file is refused here
and not later. Ids are stable: 1..N over the sorted names, or, with ``ids_from``, the ids (and
the categories) of an existing COCO file, matched by ``file_name`` (or by base name when that
is unique), so that predictions carry the ids the evaluation server expects.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from vipseg.data.coco import image_size, load_coco
from vipseg.errors import DataError
from vipseg.utils.io import atomic_write_json, ensure_new_output

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def list_images(source: str | Path, images_dir: str | Path | None = None
                ) -> tuple[Path, list[str], dict[str, int]]:
    """(folder the names are relative to, sorted unique names, line of each name in the list
    file (empty for a folder)) of a folder or a list file."""
    src = Path(source)
    if src.is_dir():
        if images_dir is not None:
            raise DataError(f"{src}: --images is only used with a list file, not a folder")
        names = sorted(p.relative_to(src).as_posix() for p in src.rglob("*")
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(src).parts))
        if not names:
            raise DataError(f"{src}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        return src, names, {}
    if not src.exists():
        raise DataError(f"{src}: no such folder or list file")
    try:
        text = src.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{src}: cannot read the list of image names ({e})") from None
    if src.suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
        raise DataError(f"{src}: a JSON file; expected a folder or a text list of file names "
                        "(one per line)")
    names, seen = [], {}
    for lineno, line in enumerate(text.splitlines(), 1):
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        if name in seen:
            raise DataError(f"{src}: line {lineno}: {name!r} is listed twice (first on line {seen[name]})")
        seen[name] = lineno
        names.append(name)
    if not names:
        raise DataError(f"{src}: the list of image names is empty")
    return (Path(images_dir) if images_dir is not None else src.parent), sorted(names), seen


def images_json(source: str | Path, out: str | Path, *, ids_from: str | Path | None = None,
                images_dir: str | Path | None = None, force: bool = False) -> dict[str, Any]:
    """Write the images-only COCO file ``out`` for ``source``; returns a report."""
    ensure_new_output(out, force, inputs=[source, ids_from, images_dir])
    root, names, lines = list_images(source, images_dir)
    categories: list[dict] = []
    ids: dict[str, Any] = {}
    if ids_from is not None:
        ref = load_coco(ids_from, require_annotations=False)
        categories = ref.categories
        by_name = {img["file_name"]: img for img in ref.images}
        by_base: dict[str, list[dict]] = {}
        for img in ref.images:
            by_base.setdefault(PurePosixPath(img["file_name"]).name, []).append(img)
        missing = []
        for name in names:
            img = by_name.get(name)
            if img is None:
                cands = by_base.get(PurePosixPath(name).name, [])
                img = cands[0] if len(cands) == 1 else None
            if img is None:
                missing.append(name)
            else:
                ids[name] = img
        if missing:
            raise DataError(f"{ids_from}: no image with file_name {missing[0]!r}"
                            + (f" (nor for {len(missing) - 1} more names)" if len(missing) > 1 else ""))
        used: dict[Any, str] = {}
        for name, img in ids.items():
            if img["id"] in used:
                raise DataError(f"{ids_from}: image {img['id']!r} matches both {used[img['id']]!r} "
                                f"and {name!r}")
            used[img["id"]] = name
    images = []
    for k, name in enumerate(names, 1):
        try:
            w, h = image_size(root / name, decode=True)  # the check of `data check --images`
        except DataError as e:
            if name not in lines:
                raise
            raise DataError(f"{source}: line {lines[name]}: {e}") from None
        ref_img = ids.get(name)
        if ref_img is not None and (ref_img["width"], ref_img["height"]) != (w, h):
            raise DataError(f"{root / name} is {w}x{h}, {ids_from} says "
                            f"{ref_img['width']}x{ref_img['height']} (image {ref_img['id']!r})")
        images.append({"id": ref_img["id"] if ref_img is not None else k, "file_name": name,
                       "width": w, "height": h})
    atomic_write_json(out, {"images": images, "annotations": [], "categories": categories})
    return {"out": str(out), "images": len(images), "root": str(root),
            "ids_from": str(ids_from) if ids_from else None, "categories": len(categories)}


def format_report(r: dict[str, Any]) -> str:
    ids = f"ids from {r['ids_from']}" if r["ids_from"] else "ids 1..N by sorted name"
    return (f"{r['out']}: {r['images']} images from {r['root']} ({ids}, "
            f"{r['categories']} categories)")

