"""A torch ``Dataset`` over a COCO instance-segmentation file.

Each item is first loaded as a *raw sample* (masks still RLE), then passed through a transform
that produces the model's input. The raw sample is a dict:

- ``image``: uint8 RGB array [H, W, 3] (read-only when the RAM cache is on: copy to modify)
- ``boxes``: float32 [N, 4] XYXY pixels; ``labels``: int64 [N] contiguous 0..C-1
- ``rles``: N COCO RLE dicts (str counts, size [H, W])
- ``image_id`` (as in the file), ``file_name``, ``orig_size`` (H, W)

The default transform, :func:`vipseg.data.transforms.basic.to_sample`, decodes the masks and
returns ``(image, target)`` in the form torchvision detection models and ``transforms.v2``
expect (see that function). Labels map to and from the file's category ids by class name.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from vipseg.data.coco import check_complete, image_file_errors, load_coco
from vipseg.data.masks import segmentation_to_rle
from vipseg.errors import DataError

RawSample = dict[str, Any]


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 RGB [H, W, 3]; ``DataError`` if missing or unreadable."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read image ({e.strerror or e})") from None
    check_complete(path, data)
    with captured_stderr_fd() as said:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    message = " ".join(said()).strip()
    if img is None:
        why = f": {message}" if message else ""
        raise DataError(f"{path}: cannot read image (corrupt or unsupported format{why})")
    if message:  # the decoder warned but gave an image (e.g. corrupt JPEG data)
        print(f"warning: {path}: {message}", file=sys.stderr, flush=True)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@contextlib.contextmanager
def captured_stderr_fd() -> Iterator[Callable[[], list[str]]]:
    """Catch what C libraries print on file descriptor 2 (libpng / libjpeg inside OpenCV write
    there, past Python's ``sys.stderr``) during the ``with`` body; yields a function returning
    those lines once the body is done, so the caller can fold them into its own one-line
    message. The descriptor is restored afterwards, whatever happens."""
    lines: list[str] = []
    sys.stderr.flush()
    # A file, not a pipe: a pipe's writer would block once the library wrote 64 KiB.
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            yield lambda: lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        text = sink.read().decode("utf-8", "replace")
    lines.extend(ln.strip() for ln in text.splitlines() if ln.strip())


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux ``MemAvailable``; None if unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


class CocoInstanceDataset(Dataset):
    """Images and instance targets of one COCO file.

    Args:
        ann_file: COCO JSON (images-only files are fine: every sample then has N = 0).
        images_dir: folder the ``file_name`` entries are relative to.
        classes: class names in label order; each must match a category ``name`` of the file
            unless the file has no categories.
        transform: ``RawSample -> anything``; default :func:`to_sample`.
        filter_empty: skip images without (non-crowd) annotations of ``classes``.
        min_size: skip images whose shorter side is below this many pixels (mmdetection's
            ``filter_cfg.min_size``).
        cache_ram: decode every image once, now, into one memory buffer (read-only arrays;
            forked DataLoader workers share it); ``DataError`` when it would not fit in the
            available memory. ``cache_note`` then says its size.
    """

    def __init__(self, ann_file: str | Path, images_dir: str | Path, classes: Sequence[str],
                 transform: Callable[[RawSample], Any] | None = None,
                 coco: dict | None = None, *, filter_empty: bool = False, min_size: int = 0,
                 cache_ram: bool = False) -> None:
        from vipseg.data.transforms.basic import to_sample

        self.ann_file = Path(ann_file)
        self.images_dir = Path(images_dir)
        self.classes = list(classes)
        self.transform = transform or to_sample
        # Validated by load_coco (one-line DataError naming file, object, problem); a given
        # ``coco`` dict is validated the same way, with ``ann_file`` named in messages.
        data = load_coco(self.ann_file, require_annotations=False, data=coco)
        self.coco = data  # the validated file (scored as is by the evaluation)
        self.images: list[dict] = list(data.images)
        by_name = {c["name"]: c["id"] for c in data.categories}
        unknown = [c for c in by_name if c not in self.classes]
        if unknown:
            raise DataError(f"{self.ann_file}: categories {unknown} are not in the config's "
                            f"classes {self.classes}")
        # label i <-> category id; classes absent from the file get no id (None).
        self.cat_ids: list[Any] = [by_name.get(name) for name in self.classes]
        self._label_of = {cid: i for i, cid in enumerate(self.cat_ids) if cid is not None}
        self._anns: dict[Any, list[dict]] = {
            image_id: [a for a in anns if not a.get("iscrowd", 0)]
            for image_id, anns in data.anns_by_image.items()}
        if filter_empty or min_size > 0:
            def keep(im: dict) -> bool:
                if min(int(im["height"]), int(im["width"])) < min_size:
                    return False
                anns = self._anns.get(im["id"], [])
                return not filter_empty or any(a["category_id"] in self._label_of for a in anns)

            self.images = [im for im in self.images if keep(im)]
        self._cache: list[np.ndarray] | None = None
        self.cache_note = ""
        if cache_ram:
            self._cache, self.cache_note = self._fill_cache()

    def _fill_cache(self) -> tuple[list[np.ndarray], str]:
        """Decode every image into one uint8 buffer; refuse when it would not fit in memory."""
        sizes = [(int(im["height"]), int(im["width"])) for im in self.images]
        need = sum(h * w * 3 for h, w in sizes)
        free = available_memory()
        if free is not None and need > 0.8 * free:
            raise DataError(f"{self.ann_file}: dataset.cache ram needs {need / 2**20:.1f} MiB for "
                            f"{len(sizes)} images but only {free / 2**20:.1f} MiB of memory is "
                            "available (80 % may be used); set dataset.cache: none")
        buffer = np.empty(need, np.uint8)
        views, offset = [], 0
        for info, (h, w) in zip(self.images, sizes):
            view = buffer[offset:offset + h * w * 3].reshape(h, w, 3)
            view[...] = self._read(info)
            view.flags.writeable = False
            views.append(view)
            offset += h * w * 3
        return views, (f"dataset cache: {len(views)} images of {self.ann_file.name} decoded into "
                       f"{need / 2**20:.1f} MiB of RAM")

    def _read(self, info: dict) -> np.ndarray:
        image = read_image(self.images_dir / info["file_name"])
        h, w = int(info["height"]), int(info["width"])
        if image.shape[:2] != (h, w):
            raise DataError(f"{self.images_dir / info['file_name']}: image is "
                            f"{image.shape[1]}x{image.shape[0]}, the JSON says {w}x{h}")
        return image

    def __len__(self) -> int:
        return len(self.images)

    def check_image_files(self) -> None:
        """``DataError`` for the first image file that is missing, unreadable, truncated or
        not the size the JSON says (headers and file ends only: no decoding)."""
        if not self.images_dir.is_dir():
            raise DataError(f"{self.ann_file}: image folder {self.images_dir} not found")
        errors = image_file_errors(self.images, self.images_dir)
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise DataError(f"{self.ann_file}: {errors[0]}{more}")

    def image_sizes(self) -> list[tuple[int, int]]:
        """(height, width) of every image, from the JSON (no image is read)."""
        return [(int(im["height"]), int(im["width"])) for im in self.images]

    def label_to_category_id(self, label: int) -> Any:
        """Contiguous label → the file's category id."""
        return self.cat_ids[label]

    def load_raw(self, index: int) -> RawSample:
        """The raw sample of item ``index`` (image decoded, masks as RLE)."""
        info = self.images[index]
        image = self._cache[index] if self._cache is not None else self._read(info)
        h, w = int(info["height"]), int(info["width"])
        boxes, labels, rles = [], [], []
        for ann in self._anns.get(info["id"], []):
            label = self._label_of.get(ann["category_id"])
            if label is None:
                continue
            x, y, bw, bh = ann["bbox"]
            boxes.append([x, y, x + bw, y + bh])
            labels.append(label)
            rles.append(segmentation_to_rle(ann["segmentation"], h, w))
        return {
            "image": image,
            "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            "labels": np.asarray(labels, dtype=np.int64),
            "rles": rles,
            "image_id": info["id"],
            "file_name": info["file_name"],
            "orig_size": (h, w),
        }

    def __getitem__(self, index: int) -> Any:
        return self.transform(self.load_raw(index))


def collate(batch: list[tuple[torch.Tensor, dict]]) -> tuple[list[torch.Tensor], list[dict]]:
    """Detection collate: keep images and targets as lists (sizes differ)."""
    images, targets = zip(*batch)
    return list(images), list(targets)
