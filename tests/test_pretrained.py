"""Import of MoCo (v2) ResNet-50 checkpoints, on a synthetic checkpoint of the release's format."""

import fractions

import numpy as np
import pytest
import torch
from torch import nn

from conftest import sha256_of as _sha256
from databrittle.errors import InputError
from databrittle.pretrained import (IMAGENET_MEAN, IMAGENET_STD, extract_pretrained_features, load_moco_v2_resnet50,
                                    preprocess)


def test_loaded_backbone_has_the_query_encoder_weights_and_its_features(release):
    loaded = load_moco_v2_resnet50(release["path"], release["sha256"].upper())
    assert isinstance(loaded.fc, nn.Identity) and not loaded.training
    source_state = release["model"].state_dict()
    loaded_state = loaded.state_dict()
    assert set(loaded_state) == set(source_state)
    for key, value in source_state.items():
        assert torch.equal(loaded_state[key], value), key
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    features = extract_pretrained_features(loaded, images, torch.device("cpu"), batch_size=2, resize=64)
    assert features.dtype == np.float32 and features.shape == (2, 2048)
    # Hand-made input: HWC -> CHW, [0, 1], ImageNet mean/std.
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    with torch.no_grad():
        expected = release["model"](x).numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-5)
    one_by_one = extract_pretrained_features(loaded, images, torch.device("cpu"), batch_size=1, resize=64)
    np.testing.assert_allclose(one_by_one, features, rtol=1e-4, atol=1e-3)  # batching: rounding only


def test_preprocess_resizes_shorter_side_and_centre_crops():
    images = np.zeros((1, 20, 40, 3), dtype=np.uint8)
    images[0, :, 14:26] = 255  # a white vertical bar in the middle
    x = preprocess(images, resize=10)
    assert x.shape == (1, 3, 10, 10)
    white = (1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert torch.isclose(x[0, 0, 5, 4:6], torch.tensor([white, white]), atol=1e-5).all()  # bar kept centred
    assert torch.isclose(x[0, 0, 0, 0], torch.tensor(-IMAGENET_MEAN[0] / IMAGENET_STD[0]))
    assert preprocess(np.zeros((2, 8, 8, 3), dtype=np.uint8), resize=16).shape == (2, 3, 16, 16)
    assert preprocess(np.zeros((2, 8, 12, 3), dtype=np.uint8), resize=None).shape == (2, 3, 8, 12)
    with pytest.raises(InputError, match=r"images: expected a uint8 array \(n, h, w, 3\)"):
        preprocess(np.zeros((2, 8, 8), dtype=np.uint8))


def _one_line(error: pytest.ExceptionInfo, prefix: str) -> str:
    message = str(error.value)
    assert message.startswith(prefix) and "\n" not in message, message
    return message


def test_wrong_sha256_is_refused_before_loading(release):
    with pytest.raises(InputError) as error:
        load_moco_v2_resnet50(release["path"], "0" * 64)
    assert f"expected {'0' * 64}" in _one_line(error, f"{release['path']}: sha256 {release['sha256']}")
    with pytest.raises(InputError, match="not 64 hex digits"):
        load_moco_v2_resnet50(release["path"], "abc")
    with pytest.raises(InputError, match="pretrained checkpoint not found"):
        load_moco_v2_resnet50(release["path"].with_name("absent.pth.tar"), "0" * 64)


def test_missing_and_unexpected_keys_are_named(release, tmp_path):
    state = dict(release["checkpoint"]["state_dict"])
    del state["module.encoder_q.layer4.2.bn3.running_var"]
    state["module.encoder_q.extra.weight"] = torch.zeros(1)
    state = {k: v for k, v in state.items() if not k.startswith("module.encoder_k.")}
    path = tmp_path / "broken.pth.tar"
    torch.save({"arch": "resnet50", "state_dict": state}, path)
    with pytest.raises(InputError) as error:
        load_moco_v2_resnet50(path, _sha256(path))
    message = _one_line(error, f"{path}: query encoder does not match")
    assert "missing 1: module.encoder_q.layer4.2.bn3.running_var" in message
    assert "unexpected 1: module.encoder_q.extra.weight" in message


def test_objects_outside_weights_only_are_refused(tmp_path):
    path = tmp_path / "pickled.pth.tar"
    torch.save({"arch": "resnet50", "state_dict": {}, "note": fractions.Fraction(1, 3)}, path)
    with pytest.raises(InputError) as error:
        load_moco_v2_resnet50(path, _sha256(path))
    _one_line(error, f"{path}: not loadable with torch.load(weights_only=True)")
    other = tmp_path / "r18.pth.tar"
    torch.save({"arch": "resnet18", "state_dict": {}}, other)
    with pytest.raises(InputError, match="'arch' is 'resnet18'"):
        load_moco_v2_resnet50(other, _sha256(other))


def test_extractor_stage_imports_the_checkpoint_and_features_use_it(tmp_path, release):
    """The pipeline's ssl job with ``ssl.moco.pretrained`` (ImageNet protocol, paper 4.3):
    the published checkpoint is imported (sha256-checked), saved as the extractor payload,
    and the features job gives the query encoder's 2048-d features."""
    from databrittle.io import read_json, save_npz
    from databrittle.ssl import load_checkpoint
    from databrittle.stages import extract_features, train_extractor

    rng = np.random.default_rng(0)
    for split, n in (("train", 22), ("test", 4)):
        save_npz(tmp_path / f"{split}.npz", images=rng.integers(0, 256, (n, 24, 24, 3), dtype=np.uint8),
                 labels=np.arange(n, dtype=np.int64) % 2)
    section = {"pretrained": {"path": str(release["path"]), "sha256": release["sha256"], "format": "moco_v2_resnet50"}}
    # device "cuda" as in config/imagenet.yaml: the import needs no GPU (its SLURM job asks for none)
    train_extractor("moco", tmp_path / "train.npz", tmp_path / "test.npz", tmp_path / "moco.pt", tmp_path / "moco.json",
                    backbone={"name": "resnet18", "width": 64}, section=section, seed=0, device="cuda",
                    pretrained=release["path"])
    payload = load_checkpoint(tmp_path / "moco.pt")
    assert payload["config"]["method"] == "moco_v2_resnet50"
    assert torch.equal(payload["backbone"]["layer4.2.bn3.running_mean"],
                       release["model"].state_dict()["layer4.2.bn3.running_mean"])
    assert read_json(tmp_path / "moco.json")["knn_accuracy_backbone"] is None  # the features job reports it
    extract_features(tmp_path / "moco.pt", tmp_path / "train.npz", tmp_path / "test.npz", tmp_path / "train.npy",
                     tmp_path / "test.npy", tmp_path / "features.json", layer="backbone", device="cpu")
    assert 0.0 <= read_json(tmp_path / "features.json")["knn_accuracy"] <= 1.0
    features = np.load(tmp_path / "test.npy")
    test_images = np.load(tmp_path / "test.npz")["images"]
    expected = extract_pretrained_features(release["model"], test_images, torch.device("cpu"))
    assert features.shape == (4, 2048)
    np.testing.assert_allclose(features, expected, rtol=1e-4, atol=1e-5)
    bad = {"pretrained": dict(section["pretrained"], sha256="0" * 64)}
    with pytest.raises(InputError, match="moco_v2_800ep_pretrain.pth.tar"):
        train_extractor("moco", tmp_path / "train.npz", tmp_path / "test.npz", tmp_path / "m2.pt", tmp_path / "m2.json",
                        backbone={"name": "resnet18", "width": 64}, section=bad, seed=0, device="cpu",
                        pretrained=release["path"])
