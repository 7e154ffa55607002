"""The Fashion-MNIST application's own promises: its IDX reader checks a
file's header before it reads the data, its learning-rate schedule, what
--eval-ema judges, and the driver's JSON line (a small synthetic data set,
real processes under `malt launch`)."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import JOB_DEADLINE, ROOT, malt_binary

APP = ROOT / "apps" / "python" / "fashion_mnist.py"


@pytest.fixture(scope="module")
def app():
    spec = importlib.util.spec_from_file_location("fashion_mnist", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def idx(magic: int, shape, data: bytes = None) -> bytes:
    head = magic.to_bytes(4, "big") + b"".join(int(n).to_bytes(4, "big") for n in shape)
    if data is None:
        count = int(np.prod(shape)) if shape else 0
        data = bytes(count)
    return head + data


def test_read_idx_checks_the_header_before_the_data(app, tmp_path):
    good = tmp_path / "good.gz"
    pixels = np.arange(2 * 28 * 28, dtype=np.uint8).tobytes()
    good.write_bytes(gzip.compress(idx(0x803, (2, 28, 28), pixels)))
    got = app.read_idx(good, 0x803, 3)
    assert got.shape == (2, 28, 28)
    assert got.tobytes() == pixels

    cases = {
        "magic 0x801, expected 0x803": idx(0x801, (2, 28, 28)),
        "too short for an IDX header": b"\x00\x00\x08\x03\x00\x00",
        # 2^36 bytes announced by a file of 16: refused before any read.
        "over 1073741824 bytes": idx(0x803, (4096, 4096, 4096), b""),
        "but the header [2, 28, 28] says 1568": idx(0x803, (2, 28, 28), bytes(100)),
    }
    for why, content in cases.items():
        bad = tmp_path / "bad"
        bad.write_bytes(content)
        with pytest.raises(SystemExit) as raised:
            app.read_idx(bad, 0x803, 3)
        assert why in str(raised.value), (why, str(raised.value))
    # One byte more than announced is refused as well.
    bad.write_bytes(idx(0x803, (1, 28, 28), bytes(28 * 28 + 1)))
    with pytest.raises(SystemExit, match="785 bytes of data"):
        app.read_idx(bad, 0x803, 3)


def test_the_cosine_schedule_falls_to_a_tenth_and_stays(app):
    assert [app.learning_rate(0.02, "none", s, 100) for s in (0, 50, 1000)] == [0.02] * 3
    rates = [app.learning_rate(0.02, "cosine", s, 100) for s in range(0, 151)]
    assert rates[0] == pytest.approx(0.02)
    assert rates[50] == pytest.approx(0.02 * 0.55)
    assert rates[100] == pytest.approx(0.002)
    assert all(r == pytest.approx(0.002) for r in rates[100:])
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    with pytest.raises(ValueError, match="unknown"):
        app.learning_rate(0.02, "step", 0, 100)


def synthetic(directory: Path, train: int = 640, test: int = 200) -> None:
    """A learnable stand-in for Fashion-MNIST: label y lights a 4 x 4
    block at a place of its own, over noise."""
    rng = np.random.default_rng(7)
    for stem, n in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 64, (n, 28, 28)).astype(np.uint8)
        for i, y in enumerate(labels):
            r, c = 2 + 8 * (y // 3), 2 + 8 * (y % 3)
            images[i, r:r + 4, c:c + 4] = 255
        (directory / f"{stem}-images-idx3-ubyte.gz").write_bytes(
            gzip.compress(idx(0x803, images.shape, images.tobytes())))
        (directory / f"{stem}-labels-idx1-ubyte.gz").write_bytes(
            gzip.compress(idx(0x801, labels.shape, labels.tobytes())))


def run_app(args, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, MALT_BIN=malt_binary(), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(APP)] + args, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=JOB_DEADLINE)


def test_eval_ema_judges_the_moving_average_not_the_weights(tmp_path):
    pytest.importorskip("torch")
    synthetic(tmp_path)
    common = ["--worker", "single", "--data", str(tmp_path), "--epochs", "3", "--batch", "32",
              "--every", "4", "--eval-every", "8", "--no-pin"]
    curves = {}
    for ema in ("0", "0.9999999"):
        out = tmp_path / f"ema-{ema}.json"
        done = run_app(common + ["--eval-ema", ema, "--result", str(out)], tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        curves[ema] = [e["test_accuracy"] for e in json.loads(out.read_text())]
    # The weights learn the synthetic labels...
    assert curves["0"][-1] > curves["0"][0] + 0.3, curves["0"]
    # ...while an average that hardly moves still judges the first model.
    assert len(curves["0.9999999"]) == len(curves["0"])
    assert all(abs(a - curves["0.9999999"][0]) <= 0.02 for a in curves["0.9999999"]), curves


def test_the_driver_states_its_recipe_and_times_every_system(tmp_path):
    pytest.importorskip("torch")
    synthetic(tmp_path)
    out = tmp_path / "out"
    done = run_app(["--ranks", "2", "--compare-single", "--runs", "1", "--epochs", "2", "--batch", "32",
                    "--every", "2", "--eval-every", "4", "--goal", "0.3", "--lr-decay", "cosine",
                    "--eval-ema", "0.5", "--data", str(tmp_path), "--out", str(out)], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    line = json.loads(done.stdout.strip().splitlines()[-1])
    assert (line["every"], line["lr_decay"], line["eval_ema"], line["eval_every"]) == (2, "cosine", 0.5, 4)
    assert line["time_to_goal_s"] > 0 and line["single_time_to_goal_s"] > 0
    assert line["speedup"] == pytest.approx(line["single_time_to_goal_s"] / line["time_to_goal_s"])
    rows = (out / "metrics.csv").read_text().splitlines()
    assert {r.split(",")[0] for r in rows[1:]} == {"malt", "single"}
    assert (out / "accuracy.svg").stat().st_size > 0


def test_a_goal_never_reached_fails_the_command(tmp_path):
    pytest.importorskip("torch")
    synthetic(tmp_path)
    done = run_app(["--ranks", "2", "--runs", "1", "--epochs", "1", "--batch", "32", "--every", "2",
                    "--eval-every", "4", "--goal", "1.01", "--data", str(tmp_path),
                    "--out", str(tmp_path / "out")], tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "never reached the goal 1.0100: malt" in done.stderr
