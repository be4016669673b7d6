"""A real tiny run through the CLI with its output captured (not a terminal): progress as
one line per log_interval, the report written at its end, checked in headless Chromium;
``vipseg report`` errors."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

from tests.helpers import make_shapes_dataset
from vipseg.cli.main import main

TINY = str(Path(__file__).resolve().parents[2] / "configs/exp/mask_rcnn/tiny_cpu.yaml")
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
LOG_INTERVAL, ITERATIONS = 1, 3  # 3 epochs of 1 iteration (2 images, batches of 2)


@pytest.fixture(scope="module")
def captured_run(tmp_path_factory) -> tuple[str, Path]:
    """(everything printed, run folder) of a 3-iteration tiny run, stdout and stderr captured."""
    tmp = tmp_path_factory.mktemp("report_cli")
    make_shapes_dataset(tmp / "data", "train", n_images=2)
    out = io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # more only contend on a busy 2-core machine
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = main(["train", TINY, "tiny", "--work-dir", str(tmp / "runs"), "--data-root",
                   str(tmp / "data"), "--device", "cpu", "augment.scales=[[160,128]]",
                   "dataset.test_scale=[160,128]", "dataset.val.ann=train.json",
                   "dataset.val.images=train", "train.epochs=3", "train.batch_size=2",
                   "train.val_interval=3", f"train.log_interval={LOG_INTERVAL}"])
    torch.set_num_threads(threads)
    assert rc == 0, out.getvalue()
    return out.getvalue(), next((tmp / "runs" / "tiny").iterdir())


def test_captured_progress_is_one_line_per_interval(captured_run):
    text, run = captured_run
    assert "\r" not in text  # no bar redraws
    lines = [ln for ln in text.splitlines() if " s/it " in ln]
    assert len(lines) == ITERATIONS // LOG_INTERVAL
    pattern = (r"^epoch \d/3 iter (\d+)/3 loss [\d.]+ \(loss_box_reg [\d.]+ .*\) lr [\d.e-]+ "
               r"[\d.]+ s/it data [\d.]+ s eta \d:\d\d:\d\d mem \d+ MB$")
    assert [int(re.match(pattern, ln).group(1)) for ln in lines] == [1, 2, 3], lines
    assert sum(" s/it " in ln for ln in (run / "log.txt").read_text().splitlines()) == 3
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["type"] == "train"]
    assert {"sec_per_iter", "data_time", "eta_s", "memory_mb", "lr"} <= set(train[0])
    csv = (run / "results.csv").read_text().splitlines()
    assert len(csv) == 1 + 3 and csv[0].startswith("epoch,iteration,completed,seconds,lr,loss")
    assert csv[-1].split(",")[csv[0].split(",").index("segm/AP")] != ""  # epoch 3 validated


def test_the_report_renders_in_headless_chromium(captured_run, tmp_path):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        reason = f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):  # .ci/run installs them: never skip there
            pytest.fail(reason)
        pytest.skip(reason)
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    text, run = captured_run
    assert f"report: {run / 'report.html'}" in text
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1300,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get((run / "report.html").as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
        cells = driver.execute_script(
            "return Array.from(document.querySelectorAll('td[data-key]'))"
            ".map(td => [td.dataset.key, td.textContent])")
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        driver.quit()
    assert errors == []
    assert len(images) == 4 + 2 * 2  # 4 plots, worst and best of the 2 val images
    assert all(complete and width > 0 for _, complete, width in images), images
    val = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()
           if '"type": "val"' in ln][-1]
    shown = dict(cells)
    for key in ("segm/AP", "segm/AP50", "segm/AP75", "bbox/AP", "segm/AP/human"):
        assert shown[key] == ("-" if val[key] < 0 else f"{val[key]:.3f}"), key


def test_report_of_a_folder_that_is_not_a_run_exits_2_with_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "not a vipseg run folder" in err[0]


def test_report_cli_writes_and_refuses_to_overwrite(captured_run, tmp_path, capsys):
    _, run = captured_run
    copy = tmp_path / "tiny" / run.name
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("*.pth", "events.*"))
    assert main(["report", str(copy)]) == 2  # train wrote report.html already
    assert "already exists (use --force" in capsys.readouterr().err
    assert main(["report", str(copy), "--force"]) == 0
    assert capsys.readouterr().out.strip() == f"report: {copy / 'report.html'}"
