"""Tests of the augmentations, the Lightly SSL (MoCo, SimCLR, BYOL, DINO) and supervised extractors,
checkpoints and features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from databrittle.augment import DigitAugment, random_erase, to_float_nchw
from databrittle.errors import InputError
from databrittle.features import extract_features, knn_accuracy
from databrittle.config import training_section
from databrittle.ssl import load_checkpoint, save_checkpoint, train_ssl, train_supervised

CPU = torch.device("cpu")
BACKBONE = {"name": "resnet_small", "width": 8}
SSL_SECTION = {"epochs": 6, "batch_size": 64, "lr": 0.06, "weight_decay": 0.0005, "projection_dim": 16,
               "feature_layer": "backbone",
               "moco": {"temperature": 0.1, "queue_size": 128, "momentum": 0.99},
               "simclr": {"temperature": 0.5},
               "byol": {"momentum": 0.99, "hidden_dim": 32},
               "dino": {"momentum": 0.996, "hidden_dim": 32, "bottleneck_dim": 12, "output_dim": 48,
                        "teacher_temp": 0.04, "warmup_teacher_temp": 0.04, "warmup_teacher_temp_epochs": 0,
                        "student_temp": 0.1, "center_momentum": 0.9, "freeze_last_layer": 1}}
SSL = training_section(SSL_SECTION, "moco")
SUP = {"epochs": 2, "batch_size": 64, "lr": 0.05, "weight_decay": 0.0005}


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """300 real digits as the data stage stores them: uint8 (n, 8, 8, 1) in 0..255."""
    data = load_digits()
    images = np.round(data.images[:300] * 255 / 16).astype(np.uint8)[..., None]
    return images, data.target[:300].astype(np.int64)


@pytest.fixture(scope="module")
def moco(digits):
    images, _ = digits
    return train_ssl("moco", images, None, backbone_cfg=BACKBONE, ssl_cfg=SSL, seed=3, device=CPU)


@pytest.fixture(scope="module")
def supervised(digits):
    images, labels = digits
    return train_supervised(images, labels, backbone_cfg=BACKBONE, sup_cfg=SUP, seed=3, device=CPU)


def test_to_float_nchw_layout_and_range(digits):
    images, _ = digits
    x = to_float_nchw(images)
    assert x.shape == (300, 1, 8, 8) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) == 1.0
    assert torch.equal(x[5, 0], torch.from_numpy(images[5, :, :, 0]).float() / 255)
    rgb = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    rgb[1, 3, 4, 2] = 255
    y = to_float_nchw(rgb)
    assert y.shape == (2, 3, 32, 32) and y[1, 2, 3, 4] == 1.0
    with pytest.raises(InputError):
        to_float_nchw(images.astype(np.float32))


def test_augment_shape_range_and_determinism(digits):
    images, _ = digits
    x = to_float_nchw(images[:64])
    augment = DigitAugment()
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    c = augment(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, x)
    # mild: the augmented digit stays close to the original (no flips, no heavy crops)
    assert float((a - x).abs().mean()) < 0.25
    rgb = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = augment(rgb, torch.Generator().manual_seed(0))
    assert out.shape == rgb.shape and float(out.min()) >= 0 and float(out.max()) <= 1


def test_random_erase_sets_a_small_patch_to_zero():
    x = torch.ones(16, 1, 8, 8)
    out = random_erase(x, torch.Generator().manual_seed(0), p=1.0, max_fraction=0.375)
    erased = (out == 0).sum(dim=(1, 2, 3))
    assert bool((erased >= 1).all()) and bool((erased <= 9).all())
    assert torch.equal(random_erase(x, torch.Generator().manual_seed(0), p=0.0), x)


def test_moco_trains_and_loss_decreases(moco):
    payload, history = moco
    assert set(payload) == {"backbone", "projection", "config"}
    assert len(history["loss"]) == SSL["epochs"]
    assert all(np.isfinite(history["loss"]))
    assert history["loss"][-1] < history["loss"][0] - 0.05
    assert history["momentum"][-1] == pytest.approx(1.0)


def test_moco_is_deterministic_and_leaves_global_rng_alone(digits, moco):
    images, _ = digits
    ssl_cfg = dict(SSL, epochs=1)
    state = torch.get_rng_state()
    first, _ = train_ssl("moco", images[:100], None, backbone_cfg=BACKBONE, ssl_cfg=ssl_cfg, seed=3, device=CPU)
    assert torch.equal(torch.get_rng_state(), state)
    second, _ = train_ssl("moco", images[:100], None, backbone_cfg=BACKBONE, ssl_cfg=ssl_cfg, seed=3, device=CPU)
    other, _ = train_ssl("moco", images[:100], None, backbone_cfg=BACKBONE, ssl_cfg=ssl_cfg, seed=4, device=CPU)
    for key, value in first["backbone"].items():
        assert torch.equal(value, second["backbone"][key]), key
    assert not torch.equal(first["backbone"]["stem.0.weight"], other["backbone"]["stem.0.weight"])


def test_checkpoint_round_trip_gives_identical_features(tmp_path, digits, moco):
    images, _ = digits
    payload, _ = moco
    path = tmp_path / "ssl" / "moco.pt"
    save_checkpoint(path, payload)
    assert [p.name for p in path.parent.iterdir()] == ["moco.pt"]  # no temporary file left behind
    loaded = load_checkpoint(path)  # torch.load(weights_only=True) inside
    assert loaded["config"] == payload["config"]
    features = {}
    for layer, dim in (("backbone", 8 * BACKBONE["width"]), ("projection", SSL["projection_dim"])):
        before = extract_features(payload, images, layer=layer, device=CPU)
        after = extract_features(loaded, images, layer=layer, device=CPU)
        assert before.dtype == np.float32 and before.shape == (len(images), dim)
        np.testing.assert_array_equal(before, after)
        features[layer] = after
    # row i is image i (up to float rounding from a different batch composition)
    single = extract_features(loaded, images[7:8], layer="backbone", device=CPU)
    np.testing.assert_allclose(single[0], features["backbone"][7], rtol=1e-4, atol=1e-5)


def test_training_section_merges_shared_keys_and_overrides():
    section = training_section(dict(SSL_SECTION, byol={"momentum": 0.9, "hidden_dim": 8, "lr": 0.2}), "byol")
    assert section == {"epochs": 6, "batch_size": 64, "lr": 0.2, "weight_decay": 0.0005, "projection_dim": 16,
                       "momentum": 0.9, "hidden_dim": 8}
    with pytest.raises(InputError, match=r"ssl\.dino"):
        training_section({k: v for k, v in SSL_SECTION.items() if k != "dino"}, "dino")


@pytest.mark.parametrize("method", ["simclr", "byol", "dino"])
def test_other_ssl_methods_train_and_give_features(tmp_path, digits, method):
    """Appendix A.3's extractors: each trains (finite, decreasing loss), its checkpoint loads
    with weights_only, and both feature layers come out with the documented shapes."""
    images, labels = digits
    section = dict(training_section(SSL_SECTION, method), epochs=4)
    payload, history = train_ssl(method, images, None, backbone_cfg=BACKBONE, ssl_cfg=section, seed=3, device=CPU)
    assert payload["config"]["method"] == method and set(payload) == {"backbone", "projection", "config"}
    assert len(history["loss"]) == 4 and all(np.isfinite(history["loss"]))
    assert history["loss"][-1] < history["loss"][0]
    assert ("momentum" in history) == (method != "simclr")
    if method != "simclr":
        assert history["momentum"][-1] == pytest.approx(1.0)
    path = tmp_path / f"{method}.pt"
    save_checkpoint(path, payload)
    loaded = load_checkpoint(path)
    backbone = extract_features(loaded, images, layer="backbone", device=CPU)
    projection = extract_features(loaded, images, layer="projection", device=CPU)
    assert backbone.shape == (len(images), 8 * BACKBONE["width"])
    expected_dim = SSL_SECTION["dino"]["bottleneck_dim"] if method == "dino" else SSL_SECTION["projection_dim"]
    assert projection.shape == (len(images), expected_dim)
    assert np.isfinite(projection).all()
    if method == "dino":  # the l2-normalised bottleneck, not the prototype scores
        np.testing.assert_allclose(np.linalg.norm(projection, axis=1), 1.0, rtol=1e-5)
    # features carry class information after a few epochs (10 classes: chance 0.1)
    assert knn_accuracy(backbone[:200], labels[:200], backbone[200:], labels[200:], 5) > 0.5
    again, _ = train_ssl(method, images[:100], None, backbone_cfg=BACKBONE, ssl_cfg=dict(section, epochs=1), seed=3,
                         device=CPU)
    twice, _ = train_ssl(method, images[:100], None, backbone_cfg=BACKBONE, ssl_cfg=dict(section, epochs=1), seed=3,
                         device=CPU)
    for key, value in again["backbone"].items():
        assert torch.equal(value, twice["backbone"][key]), key


def test_unknown_ssl_method_is_input_error(digits):
    with pytest.raises(InputError, match="swav"):
        train_ssl("swav", digits[0], None, backbone_cfg=BACKBONE, ssl_cfg=SSL, seed=0, device=CPU)


def test_truncated_or_missing_checkpoint_is_input_error(tmp_path, supervised):
    payload, _ = supervised
    path = tmp_path / "sup.pt"
    save_checkpoint(path, payload)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="sup.pt") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="garbage.pt"):
        load_checkpoint(garbage)


def test_supervised_payload_and_projection_error(digits, supervised):
    images, labels = digits
    payload, history = supervised
    assert set(payload) == {"backbone", "classifier", "config"}
    assert payload["config"]["classes"] == 10
    assert len(history["loss"]) == SUP["epochs"]
    features = extract_features(payload, images[:10], layer="backbone", device=CPU)
    assert features.shape == (10, 8 * BACKBONE["width"])
    with pytest.raises(InputError, match="projection"):
        extract_features(payload, images[:10], layer="projection", device=CPU)
    with pytest.raises(InputError, match="layer"):
        extract_features(payload, images[:10], layer="logits", device=CPU)


def test_knn_accuracy_on_separable_toy_set():
    rng = np.random.default_rng(0)
    centres = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    train_labels = np.repeat(np.arange(3), 20)
    test_labels = np.repeat(np.arange(3), 5)
    train = centres[train_labels] + 0.05 * rng.standard_normal((60, 3))
    test = centres[test_labels] + 0.05 * rng.standard_normal((15, 3))
    assert knn_accuracy(train, train_labels, test, test_labels, k=5) == 1.0
    assert knn_accuracy(train, train_labels, test, (test_labels + 1) % 3, k=5) == 0.0
    with pytest.raises(InputError):
        knn_accuracy(train, train_labels, test, test_labels, k=61)


def test_cifar_augment_matches_its_parts():
    """CifarAugment (Lightly's CIFAR-10 MoCo v2 views): shape/range/determinism, and each
    part checked where its result is known exactly."""
    from databrittle.augment import (CifarAugment, build_augment, colour_jitter, random_flip, random_grayscale,
                                     random_resized_crop)

    x = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    augment = build_augment("cifar")
    assert isinstance(augment, CifarAugment)
    a, b = augment(x, torch.Generator().manual_seed(1)), augment(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and float(a.min()) >= 0 and float(a.max()) <= 1
    assert not torch.equal(a, augment(x, torch.Generator().manual_seed(2)))
    # a crop of the whole image with ratio 1 is the identity (bilinear at pixel centres)
    whole = random_resized_crop(x, torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(whole, x, rtol=0, atol=1e-6)
    # a crop of a quarter of the area is a 2x zoom: its centre pixel pairs come from one source pixel region
    crops = random_resized_crop(x, torch.Generator().manual_seed(0), scale=(0.25, 0.25), ratio=(1.0, 1.0))
    assert not torch.allclose(crops, x)
    flipped = random_flip(x, torch.Generator().manual_seed(3), p=1.0)
    assert torch.equal(flipped, x.flip(3)) and torch.equal(random_flip(x, torch.Generator(), p=0.0), x)
    gray = random_grayscale(x, torch.Generator().manual_seed(0), p=1.0)
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    torch.testing.assert_close(gray[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])
    assert torch.equal(colour_jitter(x, torch.Generator(), p=0.0), x)
    # no brightness/contrast/saturation change and no hue turn: the identity up to rounding
    same = colour_jitter(x, torch.Generator(), p=1.0, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    torch.testing.assert_close(same, x, rtol=0, atol=1e-5)
    # saturation 0 .. hue only keeps the luma of every pixel (rotation of the chroma plane)
    hued = colour_jitter(x * 0.2 + 0.4, torch.Generator().manual_seed(5), p=1.0, brightness=0.0, contrast=0.0,
                         saturation=0.0, hue=0.5)
    luma = lambda t: 0.299 * t[:, 0] + 0.587 * t[:, 1] + 0.114 * t[:, 2]  # noqa: E731
    torch.testing.assert_close(luma(hued), luma(x * 0.2 + 0.4), rtol=0, atol=1e-5)  # no clamping in range
    with pytest.raises(InputError, match="augment 'flip'"):
        build_augment("flip")


def test_extractor_stage_uses_the_configured_augmentation(tmp_path):
    """`ssl.augment: cifar` reaches the trainer: the checkpoint records CifarAugment's parameters."""
    from databrittle.io import save_npz
    from databrittle.stages import train_extractor

    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 8)):
        save_npz(tmp_path / f"{split}.npz", images=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                 labels=np.arange(n, dtype=np.int64) % 4)
    section = dict(training_section(dict(SSL_SECTION, augment="cifar"), "moco"), epochs=1, batch_size=20)
    train_extractor("moco", tmp_path / "train.npz", tmp_path / "test.npz", tmp_path / "m.pt", tmp_path / "m.json",
                    backbone=BACKBONE, section=section, seed=0, device="cpu")
    augment = load_checkpoint(tmp_path / "m.pt")["config"]["augment"]
    assert augment["crop_scale"] == [0.08, 1.0] and augment["gray_p"] == 0.2
