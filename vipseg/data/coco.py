"""Load and validate COCO instance-segmentation files.

:func:`load_coco` reads a COCO JSON and checks it thoroughly; every problem a user can cause is
a :class:`~vipseg.errors.DataError` whose one-line message names the file, the object (image,
annotation or category id) and the problem. Harmless oddities (empty masks, images without
annotations) become ``CocoFile.warnings`` instead.

Accepted variants: RLE ``segmentation`` with string or list ``counts``, polygon lists, category
ids starting at 0 or 1 (any distinct integers), integer or string image/annotation ids, an
optional ``info`` (and any other extra top-level key, kept as is). Masks stay in the file's form
(compact RLE or polygons) until :func:`annotation_rle` is asked for one.
"""

from __future__ import annotations

import io
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from vipseg.data.masks import rle_area, rle_counts, segmentation_to_rle
from vipseg.errors import DataError

#: bboxes and polygon points may stick out of the image by this many pixels (rounding in
#: other tools).
BBOX_TOLERANCE = 1.0
#: images without annotations: how many ids a warning lists before "...".
_MAX_LISTED = 5


@dataclass
class CocoFile:
    """A validated COCO file; ``images``/``annotations``/``categories`` are the file's dicts."""

    path: Path
    images: list[dict]
    annotations: list[dict]
    categories: list[dict]
    info: dict | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    images_by_id: dict[Any, dict] = field(default_factory=dict)
    anns_by_id: dict[Any, dict] = field(default_factory=dict)
    anns_by_image: dict[Any, list[dict]] = field(default_factory=dict)
    cats_by_id: dict[int, dict] = field(default_factory=dict)

    @property
    def category_names(self) -> list[str]:
        return [c["name"] for c in self.categories]

    def image_of(self, ann: dict) -> dict:
        """The image record an annotation belongs to."""
        return self.images_by_id[ann["image_id"]]

    def rle(self, ann: dict) -> dict:
        """The annotation's mask as compressed RLE (str counts, size [H, W] of its image)."""
        return annotation_rle(ann, self.image_of(ann))

    def to_dict(self) -> dict:
        """The file as a plain dict again (``info`` first when present, extra keys kept)."""
        out: dict[str, Any] = {}
        if self.info is not None:
            out["info"] = self.info
        out.update(self.extra)
        out["images"] = self.images
        out["annotations"] = self.annotations
        out["categories"] = self.categories
        return out


def annotation_rle(ann: dict, image: dict) -> dict:
    """An annotation's ``segmentation`` (polygons or RLE) as compressed RLE."""
    return segmentation_to_rle(ann["segmentation"], int(image["height"]), int(image["width"]))


class _DuplicateKey(ValueError):
    """A JSON object repeats a key (``json`` would silently keep the last value)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def parse_json(raw: bytes | str, source: str | Path) -> Any:
    """Parse JSON text read from ``source``; ``DataError`` (naming ``source`` and the line) if
    it is not UTF-8, not valid JSON, or an object repeats a key. Every JSON file vipseg reads
    goes through here."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return json.loads(text, object_pairs_hook=_unique_keys)
    except UnicodeDecodeError as e:
        raise DataError(f"{source}: not UTF-8 text (byte {e.start}): not a JSON file") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{source}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except _DuplicateKey as e:
        raise DataError(f"{source}: invalid JSON: an object repeats the key {e.args[0]!r} "
                        "(only one value per key is allowed)") from None


def read_json(path: str | Path) -> Any:
    """Read and parse a JSON file (:func:`parse_json`); ``DataError`` if it is missing,
    unreadable or invalid."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a JSON file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read file ({e.strerror or e})") from None
    return parse_json(raw, path)


def load_coco(path: str | Path, *, images_dir: str | Path | None = None,
              require_annotations: bool = True, data: dict | None = None,
              decode_images: bool = False) -> CocoFile:
    """Read and validate a COCO instance file.

    Args:
        path: the JSON file (also used in messages when ``data`` is given).
        images_dir: when given, every image file must exist there, be readable and have the
            size the JSON says (only the file header is read where possible, unless
            ``decode_images``).
        decode_images: decode every image file under ``images_dir`` in full, so that a
            truncated or corrupt file is an error too (slower).
        require_annotations: if false, a file without ``annotations`` (and ``categories``) is
            accepted as an images-only file (e.g. a test set).
        data: an already parsed dict to validate instead of reading ``path``.

    Raises:
        DataError: the first problem found (with the number of further problems, if any).
    """
    path = Path(path)
    raw = read_json(path) if data is None else data
    return _Validator(path, raw, require_annotations).run(images_dir, decode_images)


def _is_id(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, str) and v != "")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class _Validator:
    def __init__(self, path: Path, data: Any, require_annotations: bool) -> None:
        self.path = path
        self.data = data
        self.require_annotations = require_annotations
        self.errors: list[str] = []
        self.warnings: list[str] = []

    # -- helpers ---------------------------------------------------------------------------------
    def fail(self, msg: str) -> None:
        raise DataError(f"{self.path}: {msg}")

    def error(self, msg: str) -> None:
        self.errors.append(msg)

    def raise_errors(self) -> None:
        if self.errors:
            more = len(self.errors) - 1
            tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
            raise DataError(f"{self.path}: {self.errors[0]}{tail}")

    # -- checks ----------------------------------------------------------------------------------
    def run(self, images_dir: str | Path | None, decode_images: bool) -> CocoFile:
        d = self.data
        if not isinstance(d, dict):
            self.fail(f"top level is a JSON {type(d).__name__}, expected an object with "
                      "'images', 'annotations' and 'categories'")
        required = ["images", "annotations", "categories"] if self.require_annotations else ["images"]
        missing = [k for k in required if k not in d]
        if missing:
            self.fail(f"missing top-level key{'s' if len(missing) > 1 else ''} "
                      f"{', '.join(repr(k) for k in missing)}")
        for key in ("images", "annotations", "categories"):
            if key in d and not isinstance(d[key], list):
                self.fail(f"'{key}' is a JSON {type(d[key]).__name__}, expected a list")
        info = d.get("info")
        if info is not None and not isinstance(info, dict):
            self.fail(f"'info' is a JSON {type(info).__name__}, expected an object")
        images = d["images"]
        annotations = d.get("annotations", [])
        categories = d.get("categories", [])

        cats_by_id = self.check_categories(categories)
        images_by_id = self.check_images(images)
        self.raise_errors()
        anns_by_id, anns_by_image = self.check_annotations(annotations, images_by_id, cats_by_id)
        self.raise_errors()
        if images_dir is not None:
            self.check_image_files(images, Path(images_dir), decode_images)
            self.raise_errors()

        empty = [img["id"] for img in images if not anns_by_image.get(img["id"])]
        if empty and (annotations or self.require_annotations):
            listed = ", ".join(str(i) for i in empty[:_MAX_LISTED])
            more = ", ..." if len(empty) > _MAX_LISTED else ""
            self.warnings.append(f"{len(empty)} of {len(images)} images have no annotations "
                                 f"(ids {listed}{more})")
        extra = {k: v for k, v in d.items()
                 if k not in ("info", "images", "annotations", "categories")}
        return CocoFile(path=self.path, images=images, annotations=annotations,
                        categories=categories, info=info, extra=extra, warnings=self.warnings,
                        images_by_id=images_by_id, anns_by_id=anns_by_id,
                        anns_by_image={img["id"]: anns_by_image.get(img["id"], []) for img in images},
                        cats_by_id=cats_by_id)

    def check_categories(self, categories: list) -> dict[int, dict]:
        by_id: dict[int, dict] = {}
        names: dict[str, Any] = {}
        for i, cat in enumerate(categories):
            if not isinstance(cat, dict):
                self.error(f"categories[{i}] is not an object")
                continue
            cid = cat.get("id")
            if not _is_int(cid):
                self.error(f"categories[{i}]: 'id' must be an integer, got {cid!r}")
                continue
            name = cat.get("name")
            if not isinstance(name, str) or not name:
                self.error(f"category {cid}: 'name' must be a non-empty string, got {name!r}")
                continue
            if cid in by_id:
                self.error(f"duplicate category id {cid}")
                continue
            if name in names:
                self.error(f"category {cid}: duplicate category name {name!r} (also id {names[name]})")
                continue
            by_id[cid] = cat
            names[name] = cid
        return by_id

    def check_images(self, images: list) -> dict[Any, dict]:
        by_id: dict[Any, dict] = {}
        names: dict[str, Any] = {}
        for i, img in enumerate(images):
            if not isinstance(img, dict):
                self.error(f"images[{i}] is not an object")
                continue
            iid = img.get("id")
            if not _is_id(iid):
                self.error(f"images[{i}]: 'id' must be an integer or a string, got {iid!r}")
                continue
            if iid in by_id:
                self.error(f"duplicate image id {iid!r}")
                continue
            fname = img.get("file_name")
            if not isinstance(fname, str) or not fname:
                self.error(f"image {iid!r}: 'file_name' must be a non-empty string, got {fname!r}")
                continue
            if fname in names:
                self.error(f"image {iid!r}: file_name {fname!r} is also used by image "
                           f"{names[fname]!r} (each image file must be listed once)")
                continue
            bad = [k for k in ("width", "height") if not _is_int(img.get(k)) or img.get(k) <= 0]
            if bad:
                self.error(f"image {iid!r} ({fname}): '{bad[0]}' must be a positive integer, "
                           f"got {img.get(bad[0])!r}")
                continue
            by_id[iid] = img
            names[fname] = iid
        return by_id

    def check_annotations(self, annotations: list, images_by_id: dict, cats_by_id: dict
                          ) -> tuple[dict[Any, dict], dict[Any, list[dict]]]:
        by_id: dict[Any, dict] = {}
        by_image: dict[Any, list[dict]] = defaultdict(list)
        n_empty, empty_ids = 0, []
        for i, ann in enumerate(annotations):
            if not isinstance(ann, dict):
                self.error(f"annotations[{i}] is not an object")
                continue
            aid = ann.get("id")
            if not _is_id(aid):
                self.error(f"annotations[{i}]: 'id' must be an integer or a string, got {aid!r}")
                continue
            if aid in by_id:
                self.error(f"duplicate annotation id {aid!r}")
                continue
            by_id[aid] = ann
            where = f"annotation {aid!r}"
            missing = [k for k in ("image_id", "category_id", "segmentation", "bbox") if k not in ann]
            if missing:
                self.error(f"{where}: missing key '{missing[0]}'")
                continue
            img = images_by_id.get(ann["image_id"]) if _is_id(ann["image_id"]) else None
            if img is None:
                self.error(f"{where}: unknown image id {ann['image_id']!r}")
                continue
            if not _is_int(ann["category_id"]) or ann["category_id"] not in cats_by_id:
                self.error(f"{where}: unknown category id {ann['category_id']!r} "
                           f"(categories: {sorted(cats_by_id)})")
                continue
            h, w = int(img["height"]), int(img["width"])
            where = f"annotation {aid!r} (image {img['id']!r})"
            msg = self.check_segmentation(ann["segmentation"], h, w)
            if msg:
                self.error(f"{where}: {msg}")
                continue
            msg = _check_bbox(ann["bbox"], h, w)
            if msg:
                self.error(f"{where}: {msg}")
                continue
            by_image[ann["image_id"]].append(ann)
            try:
                area = rle_area(segmentation_to_rle(ann["segmentation"], h, w))
            except Exception as e:  # malformed counts that pycocotools rejects
                self.error(f"{where}: cannot decode the mask ({e})")
                continue
            if area == 0:
                n_empty += 1
                empty_ids.append(aid)
        if n_empty:
            listed = ", ".join(repr(i) for i in empty_ids[:_MAX_LISTED])
            more = ", ..." if n_empty > _MAX_LISTED else ""
            self.warnings.append(f"{n_empty} annotation{'s have' if n_empty > 1 else ' has'} "
                                 f"an empty mask (ids {listed}{more})")
        return by_id, by_image

    @staticmethod
    def check_segmentation(segm: Any, h: int, w: int) -> str | None:
        if isinstance(segm, list):
            if not segm:
                return "empty polygon list (no mask)"
            t = BBOX_TOLERANCE
            for k, poly in enumerate(segm):
                if not isinstance(poly, list) or not all(_is_num(v) for v in poly):
                    return (f"polygon {k} is not a flat list of finite numbers "
                            "[x0, y0, x1, y1, ...]")
                if len(poly) % 2:
                    return f"polygon {k} has an odd number of coordinates ({len(poly)})"
                if len(poly) < 6:
                    return f"polygon {k} has {len(poly) // 2} point(s), at least 3 are needed"
                xs, ys = poly[0::2], poly[1::2]
                if min(xs) < -t or max(xs) > w + t or min(ys) < -t or max(ys) > h + t:
                    return (f"polygon {k} has points outside the {w}x{h} image (x from {min(xs)} "
                            f"to {max(xs)}, y from {min(ys)} to {max(ys)})")
            return None
        if isinstance(segm, dict):
            size, counts = segm.get("size"), segm.get("counts")
            if (not isinstance(size, list) or len(size) != 2 or not all(_is_int(v) for v in size)):
                return f"RLE 'size' must be [height, width], got {size!r}"
            if list(size) != [h, w]:
                return f"RLE size [{size[0]}, {size[1]}] (h, w) differs from the image size [{h}, {w}]"
            if isinstance(counts, list):
                if not all(_is_int(v) and v >= 0 for v in counts):
                    return "RLE 'counts' list must hold non-negative integers"
                total = sum(counts)
            elif isinstance(counts, str):
                try:
                    runs = rle_counts(segm)
                except ValueError as e:
                    return f"RLE 'counts' string cannot be decoded ({e})"
                if (runs < 0).any():
                    return "RLE 'counts' string decodes to a negative run length"
                total = int(runs.sum())
            else:
                return f"RLE 'counts' must be a string or a list of integers, got {type(counts).__name__}"
            if total != h * w:
                return f"RLE counts add up to {total} pixels, the image has {h * w}"
            return None
        return f"'segmentation' must be polygons or an RLE object, got {type(segm).__name__}"

    def check_image_files(self, images: list[dict], root: Path, decode: bool) -> None:
        if not root.is_dir():
            self.fail(f"image folder {root} not found")
        self.errors += image_file_errors(images, root, decode)


def image_file_errors(images: list[dict], root: Path, decode: bool = False) -> list[str]:
    """One message per image record whose file under ``root`` is missing, unreadable,
    truncated (or, with ``decode``, corrupt) or not the size the record says."""
    errors = []
    for img in images:
        p = root / img["file_name"]
        try:
            w, h = image_size(p, decode=decode)
        except DataError as e:
            errors.append(f"image {img['id']!r}: {e}")
            continue
        if (w, h) != (img["width"], img["height"]):
            errors.append(f"image {img['id']!r}: {p} is {w}x{h}, the JSON says "
                          f"{img['width']}x{img['height']}")
    return errors


def _check_bbox(bbox: Any, h: int, w: int) -> str | None:
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_num(v) for v in bbox):
        return f"'bbox' must be 4 finite numbers [x, y, w, h], got {bbox!r}"
    x, y, bw, bh = bbox
    if bw < 0 or bh < 0:
        return f"bbox {bbox} has a negative width or height"
    t = BBOX_TOLERANCE
    if x < -t or y < -t or x + bw > w + t or y + bh > h + t:
        return f"bbox {bbox} lies outside the {w}x{h} image"
    return None


# --- image files -----------------------------------------------------------------------------------

#: a PNG ends with this chunk; a file without it near its end was cut short.
_PNG_END = b"IEND"
_PNG_TAIL = 4096


def image_size(path: str | Path, *, decode: bool = False) -> tuple[int, int]:
    """(width, height) of an image file: the one image check of ``data check --images``,
    ``data images-json``, ``train`` and the datasets.

    Reads the header (Pillow) and looks for the end chunk of a PNG or the end marker of a
    JPEG, so a missing, empty, truncated or unreadable file is a ``DataError`` without
    decoding. With ``decode`` the whole
    file is decoded too, so corrupt pixel data is caught as well (slower).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read() if decode else None
            if data is None:
                head = f.read(8)
                f.seek(0, 2)
                f.seek(max(8, f.tell() - _PNG_TAIL))
                tail = f.read()
                if head == b"\x89PNG\r\n\x1a\n" and _PNG_END not in tail:
                    raise DataError(f"{path}: cannot read image (truncated PNG: no end chunk)")
                if head[:2] == b"\xff\xd8" and b"\xff\xd9" not in tail:
                    f.seek(0)  # data after the end marker is allowed: look at the whole file
                    check_complete(path, f.read())
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected an image file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read image ({e.strerror or e})") from None
    if data is not None:
        return _decoded_size(path, data)
    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except UnidentifiedImageError:
        pass  # a format Pillow does not know: let OpenCV decode it
    except (OSError, ValueError, SyntaxError) as e:  # Pillow knows the format: it is broken
        raise DataError(f"{path}: cannot read image ({e or 'corrupt header'})") from None
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f"{path}: cannot read image (corrupt or unsupported format)")
    return int(img.shape[1]), int(img.shape[0])


def check_complete(path: str | Path, data: bytes) -> None:
    """``DataError`` if the bytes ``data`` of image file ``path`` are cut short: a JPEG
    without its end marker or a PNG without its end chunk (decoders would fill in grey and
    print a warning instead of failing)."""
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data:
        raise DataError(f"{path}: cannot read image (truncated JPEG: no end marker)")
    if data[:8] == b"\x89PNG\r\n\x1a\n" and _PNG_END not in data[-_PNG_TAIL:]:
        raise DataError(f"{path}: cannot read image (truncated PNG: no end chunk)")


def _decoded_size(path: Path, data: bytes) -> tuple[int, int]:
    """(width, height) of the image file ``path`` whose bytes are ``data``, decoded in full
    (by Pillow, which raises instead of printing libpng / libjpeg errors on stderr)."""
    check_complete(path, data)
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return int(im.size[0]), int(im.size[1])
    except UnidentifiedImageError:
        pass  # a format Pillow does not know: let OpenCV decode it
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: cannot read image (corrupt: {e})") from None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if img is None:
        raise DataError(f"{path}: cannot read image (truncated, corrupt or unsupported format)")
    return int(img.shape[1]), int(img.shape[0])
