"""CIFAR-recipe backend (issue 3): on-device augmentation, ResNet-9 training, benchmark smoke run."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from databrittle.schedule import ModelJob
from databrittle.train import TrainConfig, train_models
from databrittle.train_augment import augment

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(1, 255, (n, 32, 32, 3), dtype=np.uint8))


def test_flip_only_gives_the_image_or_its_mirror_and_both_happen():
    batch = images(64)
    out = augment(batch, torch.Generator().manual_seed(0), torch.zeros(3, dtype=torch.uint8), translate=0, cutout=0)
    same = (out == batch).flatten(1).all(1)
    mirrored = (out == batch.flip(2)).flatten(1).all(1)
    assert (same | mirrored).all() and same.any() and mirrored.any()


def test_translate_is_a_shift_of_at_most_two_pixels_framed_by_the_fill_colour():
    batch = images(32)
    fill = torch.tensor([7, 8, 9], dtype=torch.uint8)
    out = augment(batch, torch.Generator().manual_seed(1), fill, translate=2, cutout=0)
    padded = fill.expand(64, 36, 36, 3).clone()
    padded[:, 2:34, 2:34] = torch.cat([batch, batch.flip(2)])
    shifts = set()
    for i in range(len(batch)):
        matches = [(dy, dx) for dy in range(5) for dx in range(5) for src in (i, i + len(batch))
                   if torch.equal(out[i], padded[src, dy:dy + 32, dx:dx + 32])]
        assert matches, f"image {i} is not a shift of at most 2 pixels"
        shifts.add(matches[0])
    assert len(shifts) > 5  # shifts really vary


def test_cutout_fills_one_whole_8x8_square_inside_the_image_with_the_fill_colour():
    batch = images(64)
    fill = torch.tensor([0, 0, 0], dtype=torch.uint8)  # images are in 1..254: fill pixels are cut out
    out = augment(batch, torch.Generator().manual_seed(2), fill, translate=0, cutout=8)
    cut = (out == 0).all(-1)  # (n, 32, 32)
    assert (cut.flatten(1).sum(1) == 64).all()
    rows, cols = cut.any(2), cut.any(1)
    assert (rows.sum(1) == 8).all() and (cols.sum(1) == 8).all()  # an 8x8 square, never clipped
    assert rows[:, 0].any() and rows[:, -1].any()  # it reaches the borders too


def test_augmentation_depends_only_on_the_generator_state():
    batch = images(16)
    fill = torch.full((3,), 128, dtype=torch.uint8)
    first = augment(batch, torch.Generator().manual_seed(5), fill)
    again = augment(batch, torch.Generator().manual_seed(5), fill)
    other = augment(batch, torch.Generator().manual_seed(6), fill)
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.fixture(scope="module")
def colour_task():
    """Three classes of flat-coloured noisy images: red, green, blue."""
    generator = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 120)
    base = np.zeros((len(labels), 32, 32, 3))
    base[np.arange(len(labels)), :, :, labels] = 200
    data = np.clip(base + generator.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
    return data, labels


TINY = TrainConfig(arch="resnet9", epochs=3, batch_size=32, lr=0.2, lr_peak_epoch=1, momentum=0.9,
                   weight_decay=5e-4, label_smoothing=0.1, arch_options={"width": 0.125})


def test_resnet9_recipe_learns_and_reruns_identically(colour_task):
    data, labels = colour_task
    first = train_models(data, labels, [ModelJob(seed=0)], TINY, data, 3, CPU)
    again = train_models(data, labels, [ModelJob(seed=0)], TINY, data, 3, CPU)
    assert first.shape == (1, len(labels), 3)
    assert np.array_equal(first, again)
    assert (first[0].argmax(-1) == labels).mean() > 0.9


def test_resnet9_removal_and_relabelling_act_on_the_cnn_backend(colour_task):
    data, labels = colour_task
    blue = np.flatnonzero(labels == 2)
    jobs = [ModelJob(seed=1, removed=blue), ModelJob(seed=1, relabel_index=blue, relabel_to=0)]
    logits = train_models(data, labels, jobs, TINY, data[blue], 3, CPU)
    assert (logits[0].argmax(-1) != 2).all()  # never saw class 2: never predicts it
    assert (logits[1].argmax(-1) == 0).mean() > 0.9  # blue images taught as class 0


def test_benchmark_script_gpu_mode_runs_its_code_path_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "trainer_throughput.py"), "--mode", "gpu", "--device",
                    "cpu", "--epochs", "1", "--train-size", "600", "--width", "0.125", "--models", "1",
                    "--json", str(out)], check=True, capture_output=True, timeout=300)
    summary = json.loads(out.read_text())
    assert summary["models"] == 1 and summary["seconds_per_model"] > 0 and not summary["real_cifar10"]


def test_benchmark_script_cpu_mode_reports_measured_ratios(tmp_path):
    out = tmp_path / "cpu.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "trainer_throughput.py"), "--mode", "cpu", "--models",
                    "4", "--single", "2", "--threads", "1", "--json", str(out)], check=True, capture_output=True,
                   timeout=300)
    summary = json.loads(out.read_text())
    assert summary["speedup"] == pytest.approx(summary["batched_models_per_s"] / summary["single_models_per_s"], rel=0.02)
    assert 0 < summary["fraction_of_matmul"] < 1
    assert min(summary["batched_accuracy"][0], summary["single_accuracy"][0]) > 0.9
