"""Test-time augmentation on the detector stages: flip-only TTA on a flip-equivariant model
and identity-view TTA on the real tiny model equal plain testing; masks of two views average
before pasting; WBF and view mapping by hand; DDP shards gather the same results."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.engine.stage_detector import StageDetector
from tests.helpers import (fork_gloo_ranks, gloo_group, make_shapes_dataset,  # noqa: F401
                           one_torch_thread)
from vipseg.config.loader import load_config
from vipseg.data.dataset import CocoInstanceDataset
from vipseg.data.masks import decode, rle_iou
from vipseg.data.transforms.basic import TestTransform
from vipseg.engine.inference import paste_masks_to_rles
from vipseg.engine.predict import PredictOptions, predict_dataset
from vipseg.engine.tta import (MergeOptions, Member, MultiViewPredictor, View, from_view,
                               to_view, views_from_config, weighted_box_fusion)
from vipseg.errors import ConfigError
from vipseg.models.build import build_model

SCALE = (200, 150)  # 160x128 images -> 188x150: a non-integer resize
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return make_shapes_dataset(root, "val", n_images=4, seed=3), root / "val"


def make_dataset(shapes, scale=SCALE):
    return CocoInstanceDataset(*shapes, ["human", "ball"], transform=TestTransform(scale))


def assert_same_results(a: list[dict], b: list[dict], exact: bool) -> None:
    assert a, "an empty prediction would make the comparison vacuous"
    if exact:
        assert a == b
        return
    assert len(a) == len(b)
    for x, y in zip(sorted(a, key=lambda r: -r["score"]), sorted(b, key=lambda r: -r["score"])):
        assert (x["image_id"], x["category_id"]) == (y["image_id"], y["category_id"])
        assert x["score"] == pytest.approx(y["score"], abs=1e-5)
        assert x["bbox"] == pytest.approx(y["bbox"], abs=1e-3)
        assert rle_iou(x["segmentation"], y["segmentation"]) > 0.995


def test_flip_only_tta_on_a_flip_equivariant_model_is_plain_testing(shapes):
    dataset, model = make_dataset(shapes), StageDetector()
    plain = predict_dataset(model, dataset, device="cpu", progress=False)
    flips = (View(SCALE), View(SCALE, flip=True))
    for merge, mask_merge in (("nms", "average"), ("nms", "select"), ("wbf", "average")):
        options = PredictOptions(views=flips, merge=MergeOptions(merge=merge,
                                                                 mask_merge=mask_merge))
        tta = predict_dataset(model, dataset, device="cpu", options=options, progress=False)
        assert_same_results(plain, tta, exact=False)  # wbf: (s + s) / 2 views = s
    # and at the tensor level, before pasting: the averaged soft masks are the plain ones
    image, _ = make_dataset(shapes, scale=(160, 128))[0]
    out = MultiViewPredictor([Member(model, (View(1.0), View(1.0, True)))],
                             MergeOptions())([image], [{}])[0]
    ref = model([image])[0]
    order, ref_order = out["scores"].argsort(), ref["scores"].argsort()
    assert len(ref_order) > 1
    torch.testing.assert_close(out["boxes"][order], ref["boxes"][ref_order])
    torch.testing.assert_close(out["masks"][order], ref["masks"][ref_order], atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def tiny(repo):
    cfg = load_config(repo / "configs/exp/mask_rcnn/tiny_cpu.yaml",
                      ["dataset.test_scale=[200,150]"])
    torch.manual_seed(0)
    return build_model(cfg).eval()


def test_identity_view_tta_equals_plain_testing_exactly(shapes, tiny):
    dataset = make_dataset(shapes)
    plain = predict_dataset(tiny, dataset, device="cpu", progress=False)
    for mask_merge in ("average", "select"):
        options = PredictOptions(views=(View(SCALE),), merge=MergeOptions(mask_merge=mask_merge))
        tta = predict_dataset(tiny, dataset, device="cpu", options=options, progress=False)
        assert_same_results(plain, tta, exact=True)


class TwoViewDetector(torch.nn.Module):
    """On a 100x60 image (left half bright: tells a mirrored view) finds one object, box
    [20, 10, 60, 50] in original pixels. At width 100 its mask is 0.3 everywhere (mask_iou
    0.5, score 0.9); at width 200 it is 1 on the left half of its grid, 0 elsewhere (mask_iou
    1.0, score 0.8)."""

    M = 8

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def extract_features(self, images):
        return images[0].float()

    def detect(self, image):
        w = image.shape[-1]
        s = w / 100
        flipped = image[..., : w // 2].mean() < image[..., w // 2:].mean()
        x0, x1 = (w - 60 * s, w - 20 * s) if flipped else (20 * s, 60 * s)
        box = torch.tensor([[x0, 10 * s, x1, 50 * s]])
        score = 0.9 if w == 100 else 0.8
        return [{"boxes": box, "labels": torch.tensor([0]), "scores": torch.tensor([score])}]

    def predict_masks(self, image, boxes, labels):
        k = len(boxes[0])
        if image.shape[-1] == 100:
            return [{"masks": torch.full((k, 1, self.M, self.M), 0.3),
                     "mask_iou": torch.full((k,), 0.5)}]
        m = torch.zeros((k, 1, self.M, self.M))
        m[..., : self.M // 2] = 1.0
        return [{"masks": m, "mask_iou": torch.ones(k)}]


class OneImage(torch.utils.data.Dataset):
    classes = ["human", "ball"]

    def __init__(self, image: np.ndarray):
        self.image, self.transform = image, TestTransform((100, 60))

    def __len__(self):
        return 1

    def label_to_category_id(self, label):
        return label + 1

    def __getitem__(self, i):
        return self.transform({"image": self.image, "image_id": 1, "orig_size": (60, 100)})


def test_two_views_with_known_soft_masks_average_before_pasting():
    image = np.zeros((60, 100, 3), np.uint8)
    image[:, :50] = 200
    views = (View(1.0), View(2.0, flip=True))
    box = torch.tensor([[20.0, 10.0, 60.0, 50.0]])
    expected = torch.full((1, 1, 8, 8), 0.15)
    expected[..., 4:] = 0.65  # the flipped view's left half is the original's right half
    rle = paste_masks_to_rles(expected, box, (60, 100))[0]
    options = PredictOptions(views=views)
    (res,) = predict_dataset(TwoViewDetector(), OneImage(image), device="cpu", options=options,
                             progress=False)
    assert res["segmentation"] == rle
    mask = decode(rle)
    assert mask[14:46, 44:56].all() and not mask[:, :38].any()  # right half of the box
    assert res["score"] == pytest.approx(0.9 * 0.75)  # box score x mean mask_iou
    assert res["bbox"] == pytest.approx([20.0, 10.0, 40.0, 40.0])
    # select: the mask of the view that found the box (score 0.9 beats 0.8): 0.3 -> empty
    options = PredictOptions(views=views, merge=MergeOptions(mask_merge="select"))
    (res,) = predict_dataset(TwoViewDetector(), OneImage(image), device="cpu", options=options,
                             progress=False)
    assert not decode(res["segmentation"]).any() and res["score"] == pytest.approx(0.45)


def test_weighted_box_fusion_by_hand():
    boxes = torch.tensor([[0.0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60], [1, 0, 11, 10]])
    scores = torch.tensor([0.9, 0.3, 0.4, 0.8])
    labels = torch.tensor([0, 0, 0, 1])
    fused, fscores, lead = weighted_box_fusion(boxes, scores, labels, torch.ones(4), 2.0, 0.5)
    got = {tuple(round(v, 4) for v in b.tolist()): (round(float(s), 4), int(i))
           for b, s, i in zip(fused, fscores, lead)}
    assert got == {(0.5, 0.0, 10.5, 10.0): (0.6, 0),  # (0.9 b0 + 0.3 b1) / 1.2; 1.2 / 2
                   (50.0, 50.0, 60.0, 60.0): (0.2, 2),  # found by one of two views
                   (1.0, 0.0, 11.0, 10.0): (0.4, 3)}  # another class: not fused with b0


def test_view_mapping_round_trips_and_mirrors():
    boxes = torch.tensor([[10.0, 5.0, 30.0, 25.0]])
    v = to_view(boxes, 1.5, 2.0, 200, True)
    assert v.tolist() == [[200 - 60.0, 7.5, 200 - 20.0, 37.5]]
    torch.testing.assert_close(from_view(v, 1.5, 2.0, 200, True), boxes)


@pytest.mark.parametrize("override, message", [
    ("tta.scales=[]", "at least one scale"),
    ("tta.scales=[1.0,0]", "tta.scales[1] must be > 0, got 0"),
    ("tta.scales=[[1920,-5]]", "tta.scales[0][1] must be > 0, got -5"),
    ("tta.scales=[[1920]]", "[long, short]"),
])
def test_bad_view_lists_are_one_line_config_errors(repo, override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as e:
        load_config(repo / "configs/exp/mask_rcnn/tiny_cpu.yaml", [override])
    assert "\n" not in str(e.value) and "tta.scales" in str(e.value)


def test_default_views_are_the_references_ten(repo):
    cfg = load_config(repo / "configs/exp/mask_rcnn/tiny_cpu.yaml")
    views = views_from_config(cfg.tta)
    assert len(views) == 10 and {v.scale for v in views} == {1.0, 0.8, 1.5, (1920, 1440),
                                                             (1760, 1280)}


def _ddp_worker(rank: int, world: int, port: int, shapes, out_dir: str) -> None:
    with gloo_group(rank, world, port):
        options = PredictOptions(views=(View(SCALE), View(0.8, True)))
        results = predict_dataset(StageDetector(), make_dataset(shapes), device="cpu",
                                  options=options, distributed=True, progress=False)
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump(results, f)


def test_distributed_tta_gathers_the_single_process_result(shapes, tmp_path):
    fork_gloo_ranks(_ddp_worker, shapes, str(tmp_path))
    options = PredictOptions(views=(View(SCALE), View(0.8, True)))
    single = predict_dataset(StageDetector(), make_dataset(shapes), device="cpu",
                             options=options, progress=False)
    single = json.loads(json.dumps(single))
    assert single
    for rank in range(2):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == single


@pytest.mark.gpu
def test_tta_on_cuda_matches_cpu(shapes, tiny):
    dataset = make_dataset(shapes)
    options = PredictOptions(views=(View(SCALE), View(1.2, True)))
    cpu = predict_dataset(tiny, dataset, device="cpu", options=options, progress=False)
    gpu = predict_dataset(tiny.to("cuda"), dataset, device="cuda", options=options,
                          progress=False)
    tiny.to("cpu")
    assert len(cpu) == len(gpu) > 0
    assert np.mean([rle_iou(a["segmentation"], b["segmentation"])
                    for a, b in zip(cpu, gpu)]) > 0.95
