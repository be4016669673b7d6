"""Inference: box-local chunked paste equals a dense detectron2-style paste and inverts the
mask targets; predictions map back to the original image; DDP sharding gathers the same
results on every rank."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torchvision.models.detection.roi_heads import paste_masks_in_image, project_masks_on_boxes
from torchvision.ops import roi_align

from tests.helpers import fork_gloo_ranks, gloo_group, make_shapes_dataset
from vipseg.data.dataset import CocoInstanceDataset
from vipseg.data.masks import decode, encode_many
from vipseg.data.transforms import basic
from vipseg.engine.evaluation import coco_metrics, evaluate_model
from vipseg.engine.inference import paste_masks_to_rles
from vipseg.engine.postprocess import PostOptions
from vipseg.engine.predict import PredictOptions, predict_dataset
from vipseg.errors import DataError
from vipseg.models.mask_targets import mask_targets, pack_masks

SCALE = [200, 150]  # 160x128 images -> 188x150: a non-integer resize


def random_detections(k: int, h: int, w: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    masks = torch.rand(k, 1, 28, 28, generator=g)
    xy = torch.rand(k, 2, generator=g) * torch.tensor([w + 3.0, h + 3.0]) - 5  # some cut off
    wh = 6 + torch.rand(k, 2, generator=g) ** 2 * torch.tensor([w / 2, h / 2])
    boxes = torch.cat([xy, xy + wh], 1)
    boxes[0] = torch.tensor([-10.0, -10.0, w + 10.0, h + 10.0])  # larger than the image
    boxes[1] = torch.tensor([3.2, 4.7, 3.4, 4.9])  # sub-pixel
    return masks, boxes


def dense_paste(masks: torch.Tensor, boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """detectron2's ``_do_paste_mask`` without its skip-empty crop: every pixel of the image
    samples the mask at its centre, in box-normalised coordinates. [K, h, w] floats."""
    x0, y0, x1, y1 = boxes[:, :, None].unbind(1)
    xs = (torch.arange(w, dtype=torch.float32) + 0.5 - x0) / (x1 - x0) * 2 - 1  # [K, w]
    ys = (torch.arange(h, dtype=torch.float32) + 0.5 - y0) / (y1 - y0) * 2 - 1  # [K, h]
    grid = torch.stack([xs[:, None, :].expand(-1, h, -1), ys[:, :, None].expand(-1, -1, w)], 3)
    return F.grid_sample(masks, grid, align_corners=False)[:, 0]


@pytest.mark.parametrize("thresh", [0.3, 0.5])
def test_box_local_paste_equals_the_dense_paste_for_any_chunk(thresh):
    h, w = 97, 131
    masks, boxes = random_detections(40, h, w)
    expected = encode_many((dense_paste(masks, boxes, h, w) > thresh).numpy())
    for chunk in (1, 3, 16, 100):
        assert paste_masks_to_rles(masks, boxes, (h, w), mask_thresh=thresh,
                                   chunk=chunk) == expected
    assert paste_masks_to_rles(masks[:0], boxes[:0], (h, w)) == []


def test_crop_then_paste_gives_small_masks_back():
    """A perfect mask head: the aligned 28x28 target of each instance on its own box, pasted
    back, is the instance again, even for 3-pixel limbs (torchvision's crop and paste lose a
    quarter of such masks: benchmarks/mask_roundtrip.py)."""
    h, w = 40, 60
    full = torch.zeros(3, h, w, dtype=torch.bool)
    full[0, 5:35, 10:20] = True
    full[0, 5:20, 20:23] = True  # a thin arm
    full[1, 12:21, 30:34] = True
    full[2, 2:9, 40:47] = True
    full[2, 4:7, 42:45] = False  # a hole
    boxes = torch.tensor([[10.0, 5.0, 23.0, 35.0], [30.0, 12.0, 34.0, 21.0],
                          [40.0, 2.0, 47.0, 9.0]])
    data, crop_boxes = pack_masks(full)
    index = torch.arange(3)
    target = mask_targets({"mask_data": data, "mask_boxes": crop_boxes}, index, boxes, 28)
    rles = paste_masks_to_rles((target >= 0.5).float()[:, None], boxes, (h, w))
    for rle, gt in zip(rles, full):
        assert torch.equal(torch.from_numpy(decode(rle)).bool(), gt)
    # torchvision's conventions on the same instances do not round-trip
    theirs = project_masks_on_boxes(full.to(torch.uint8), boxes, index, 28)
    back = paste_masks_in_image((theirs >= 0.5).float()[:, None], boxes, (h, w))[:, 0] > 0.5
    assert not torch.equal(back, full)


class FakeDetector(torch.nn.Module):
    """Returns the ground truth of each (resized) input image as a detector would: boxes in
    the resized image, soft 28x28 masks per box; images are recognised by their bytes."""

    def __init__(self, dataset: CocoInstanceDataset, scale):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.register_buffer("calls", torch.zeros(()))  # DDP would sync it in every forward
        self.by_hash = {}
        resize = basic.TestTransform(scale)
        for i in range(len(dataset)):
            raw = dataset.load_raw(i)
            image, target = resize(raw)
            sy, sx = target["scale_factor"]
            gt = torch.from_numpy(np.stack([decode(r) for r in raw["rles"]])).float()
            boxes = torch.from_numpy(raw["boxes"])
            rois = torch.cat([torch.arange(len(boxes))[:, None].float(), boxes], 1)
            masks = roi_align(gt[:, None], rois, 28, aligned=True)  # box i crops mask i
            self.by_hash[self.key(image)] = {
                "boxes": boxes * torch.tensor([sx, sy, sx, sy]), "masks": masks,
                "labels": torch.from_numpy(raw["labels"]),
                "scores": torch.linspace(0.9, 0.2, len(boxes))}

    @staticmethod
    def key(image: torch.Tensor) -> str:
        return hashlib.sha1(image.contiguous().numpy().tobytes()).hexdigest()

    def forward(self, images):
        assert not self.training
        return [self.by_hash[self.key(im.cpu())] for im in images]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return make_shapes_dataset(root, "val", n_images=5, seed=7), root / "val"


def make_dataset(shapes):
    ann, images = shapes
    return CocoInstanceDataset(ann, images, ["human", "ball"], transform=basic.TestTransform(SCALE))


def test_predict_dataset_maps_back_to_original_pixels(shapes):
    dataset = make_dataset(shapes)
    model = FakeDetector(dataset, SCALE)
    results = predict_dataset(model, dataset, device="cpu", options=PredictOptions(batch_size=2),
                              progress=False)
    gt = json.loads(shapes[0].read_text())
    assert len(results) == len(gt["annotations"])
    for r in results:
        assert r["category_id"] in (1, 2) and isinstance(r["segmentation"]["counts"], str)
        assert r["segmentation"]["size"] == [128, 160] and len(r["bbox"]) == 4
    m = coco_metrics(gt, results)
    assert m["bbox/AP"] > 0.99  # boxes divided by the scale factor come back exactly
    assert m["segm/AP"] > 0.99  # aligned 28x28 crops pasted back: exact
    kept = predict_dataset(model, dataset, device="cpu", progress=False,
                           options=PredictOptions(post=PostOptions(score_thresh=0.5)))
    assert 0 < len(kept) < len(results) and min(r["score"] for r in kept) >= 0.5


def test_the_predict_bar_draws_only_on_a_terminal(shapes, capsys, monkeypatch):
    dataset = make_dataset(shapes)
    model = FakeDetector(dataset, SCALE)
    predict_dataset(model, dataset, device="cpu")  # pytest's stderr is not a terminal
    assert "predict" not in capsys.readouterr().err
    monkeypatch.setattr("vipseg.engine.predict.is_terminal", lambda stream: True)
    predict_dataset(model, dataset, device="cpu")
    assert "predict" in capsys.readouterr().err


def test_evaluate_model_scores_against_the_annotation_file(shapes):
    dataset = make_dataset(shapes)
    m = evaluate_model(FakeDetector(dataset, SCALE), dataset, device="cpu",
                       options=PredictOptions(paste_chunk=2))
    assert m["bbox/AP"] > 0.99 and m["segm/AP/human"] > 0.9 and "segm/AP/ball" in m


def test_category_ids_override_and_missing_ids(shapes):
    dataset = make_dataset(shapes)
    model = FakeDetector(dataset, SCALE)
    results = predict_dataset(model, dataset, device="cpu", category_ids=[10, 20],
                              progress=False)
    assert {r["category_id"] for r in results} <= {10, 20}
    images_only = CocoInstanceDataset(shapes[0], shapes[1], ["human", "ball"],
                                      transform=basic.TestTransform(SCALE),
                                      coco={"images": dataset.images})
    with pytest.raises(DataError, match="no category id"):
        predict_dataset(model, images_only, device="cpu", progress=False)


def _ddp_worker(rank: int, world: int, port: int, shapes, out_dir: str) -> None:
    with gloo_group(rank, world, port):
        dataset = make_dataset(shapes)
        # 5 images: rank 0 predicts 3, rank 1 predicts 2, as the trainer's DDP model would
        model = DistributedDataParallel(FakeDetector(dataset, SCALE))
        results = predict_dataset(model, dataset, device="cpu", distributed=True,
                                  progress=False)
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump(results, f)


def test_distributed_predict_gathers_everything_on_every_rank(shapes, tmp_path):
    fork_gloo_ranks(_ddp_worker, shapes, str(tmp_path))
    dataset = make_dataset(shapes)
    single = predict_dataset(FakeDetector(dataset, SCALE), dataset, device="cpu",
                             progress=False)
    single = json.loads(json.dumps(single))
    for rank in range(2):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == single
