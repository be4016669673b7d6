"""The prediction options are built once from the config, and validation during training
uses exactly the options of ``vipseg test`` (AMP, workers, thresholds, post-processing)."""

from __future__ import annotations

from tests.engine.test_trainer import Flaky, shapes, tiny_cfg  # noqa: F401 (fixture)
from vipseg.engine.postprocess import OneBall
from vipseg.engine.predict import PredictOptions, predict_options
from vipseg.engine.trainer import train
from vipseg.engine.tta import MergeOptions, View


def test_options_from_the_config(shapes):  # noqa: F811
    cfg = tiny_cfg(shapes, "train.amp=bf16", "train.num_workers=3", "test.batch_size=2",
                   "test.mask_thresh=0.4", "test.paste_chunk=4", "test.score_thresh=0.1",
                   "test.post.one_ball={min_score: 0.3}", "tta.scales=[1.0,[640,480]]",
                   "tta.merge=wbf", "tta.mask_merge=select")
    cpu = predict_options(cfg, "cpu")
    assert cpu.amp == "none" and cpu.views is None  # no autocast on CPU; TTA only when asked
    assert (cpu.batch_size, cpu.num_workers, cpu.mask_thresh, cpu.paste_chunk) == (2, 3, 0.4, 4)
    assert cpu.post.one_ball == OneBall(1, 0.3) and cpu.post.score_thresh == 0.1
    assert cpu.merge == MergeOptions(merge="wbf", iou_thresh=0.5, max_detections=100,
                                     mask_merge="select")
    assert predict_options(cfg, "cuda").amp == "bf16"  # building options needs no GPU
    assert predict_options(cfg, "cpu", tta=True).views == (
        View(1.0), View(1.0, True), View((640, 480)), View((640, 480), True))


def test_validation_during_training_uses_the_test_options(shapes, tmp_path,  # noqa: F811
                                                          monkeypatch):
    seen = []

    def fake_evaluate(model, dataset, return_results=False, **kwargs):
        seen.append(kwargs["options"])
        metrics = {"segm/AP": 0.1, "bbox/AP": 0.0}
        return (metrics, []) if return_results else metrics

    monkeypatch.setattr("vipseg.engine.trainer.evaluate_model", fake_evaluate)
    cfg = tiny_cfg(shapes, "train.epochs=1", "train.batch_size=4", "train.val_interval=1",
                   "train.checkpoint_interval=0", "test.score_thresh=0.2")
    train(cfg, "opts", work_dir=tmp_path, device="cpu", model=Flaky())
    assert seen == [predict_options(cfg, "cpu")]
    assert isinstance(seen[0], PredictOptions) and seen[0].post.score_thresh == 0.2
