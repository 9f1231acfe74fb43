"""CIFAR-10 loading on a small fake release written in CIFAR-10's own on-disk format.

The fake batches cannot match the official md5 digests, so the tests pass the fake files'
own digests (the loader's ``md5`` argument); the check itself is always made.
"""

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from databrittle.cifar10 import (ARCHIVE, BASE_FOLDER, OFFICIAL_MD5, TEST_FILES, TRAIN_FILES, cifar10_class_names,
                                 download_cifar10, load_cifar10, load_cifar10_splits, safe_extract_tar,
                                 verify_cifar10)
from databrittle.errors import InputError

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PER_TRAIN_BATCH, N_TEST = 3, 4


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _write_release(root: Path, rng: np.random.Generator) -> dict:
    """Pickled batches as the official release has them: data uint8 (n, 3072) CHW rows."""
    folder = root / BASE_FOLDER
    folder.mkdir(parents=True)
    rows, labels = {}, {}
    for name, n in [(f, PER_TRAIN_BATCH) for f in TRAIN_FILES] + [(f, N_TEST) for f in TEST_FILES]:
        rows[name] = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels[name] = [int(v) for v in rng.integers(0, 10, n)]
        entry = {"batch_label": name, "labels": labels[name], "data": rows[name],
                 "filenames": [f"{name}_{i}.png" for i in range(n)]}
        (folder / name).write_bytes(pickle.dumps(entry))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": CLASSES, "num_cases_per_batch": 10000,
                                                        "num_vis": 3072}))
    md5 = {name: _md5(folder / name) for name in OFFICIAL_MD5}
    return {"root": root, "rows": rows, "labels": labels, "md5": md5}


@pytest.fixture
def release(tmp_path, rng):
    return _write_release(tmp_path / "cifar", rng)


def test_train_and_test_arrays_are_hwc_uint8_with_labels(release):
    images, labels = load_cifar10(release["root"], train=True, md5=release["md5"])
    assert images.dtype == np.uint8 and images.shape == (5 * PER_TRAIN_BATCH, 32, 32, 3)
    assert labels.dtype == np.int64
    assert labels.tolist() == sum((release["labels"][f] for f in TRAIN_FILES), [])
    # Image 4 = second image of data_batch_2; its row is 1024 red, 1024 green, 1024 blue values.
    row = release["rows"]["data_batch_2"][1]
    assert images[4, 0, 1, 1] == row[1024 + 1]  # green, row 0, column 1
    assert images[4, 2, 5, 2] == row[2048 + 2 * 32 + 5]  # blue, row 2, column 5
    assert images[4, 31, 31, 0] == row[1023]  # red, last pixel
    assert np.array_equal(images[4], row.reshape(3, 32, 32).transpose(1, 2, 0))
    test_images, test_labels = load_cifar10(release["root"], train=False, md5=release["md5"])
    assert test_images.shape == (N_TEST, 32, 32, 3)
    assert np.array_equal(test_images[3], release["rows"]["test_batch"][3].reshape(3, 32, 32).transpose(1, 2, 0))
    assert test_labels.tolist() == release["labels"]["test_batch"]


def test_splits_and_class_names(release):
    splits = load_cifar10_splits(release["root"], md5=release["md5"])
    assert set(splits) == {"train", "test"}
    assert splits["test"].source_index.tolist() == list(range(N_TEST))
    assert len(splits["train"].labels) == 5 * PER_TRAIN_BATCH
    assert cifar10_class_names(release["root"], md5=release["md5"]) == CLASSES


def _one_line_starting_with(error: pytest.ExceptionInfo, prefix: str) -> str:
    message = str(error.value)
    assert message.startswith(prefix) and "\n" not in message, message
    return message


def test_missing_folder_names_root_and_how_to_get_it(tmp_path):
    with pytest.raises(InputError) as error:
        load_cifar10(tmp_path / "nowhere", train=True)
    message = _one_line_starting_with(error, f"{tmp_path / 'nowhere'}: CIFAR-10 not found")
    assert "download=True" in message and "cifar-10-python.tar.gz" in message


def test_incomplete_release_names_the_missing_file(release):
    (release["root"] / BASE_FOLDER / "data_batch_3").unlink()
    with pytest.raises(InputError) as error:
        load_cifar10(release["root"], train=False, md5=release["md5"])
    assert "lacks data_batch_3" in _one_line_starting_with(error, f"{release['root']}: incomplete CIFAR-10")


def test_official_digests_reject_other_files(release):
    """Without ``md5`` the fake files fail torchvision's official list: named, not unpickled."""
    with pytest.raises(InputError) as error:
        load_cifar10(release["root"], train=True)
    message = _one_line_starting_with(error, str(release["root"] / BASE_FOLDER / "data_batch_1"))
    assert f"expected {OFFICIAL_MD5['data_batch_1']}" in message


def test_corrupted_file_is_named(release):
    path = release["root"] / BASE_FOLDER / "test_batch"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(InputError) as error:
        verify_cifar10(release["root"], release["md5"])
    _one_line_starting_with(error, f"{path}: md5 ")


def test_md5_table_must_name_every_file(release):
    with pytest.raises(InputError, match="md5: expected one digest for each"):
        load_cifar10(release["root"], train=True, md5={"data_batch_1": "0" * 32})


def _archive_of(folder: Path, archive: Path) -> str:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=BASE_FOLDER)
    return _md5(archive)


def test_download_uses_a_verified_local_archive_and_unpacks_it(release, tmp_path, monkeypatch):
    target = tmp_path / "fresh"
    target.mkdir()
    archive_md5 = _archive_of(release["root"] / BASE_FOLDER, target / ARCHIVE)
    import torchvision.datasets.utils as tv_utils

    monkeypatch.setattr(tv_utils, "download_url", lambda *a, **k: pytest.fail("must not download"))
    download_cifar10(target, md5=release["md5"], archive_md5=archive_md5)
    images, labels = load_cifar10(target, train=True, md5=release["md5"])
    expected, _ = load_cifar10(release["root"], train=True, md5=release["md5"])
    assert np.array_equal(images, expected)
    assert not [p for p in target.iterdir() if p.name.startswith(".cifar10-unpack-")]
    download_cifar10(target, md5=release["md5"], archive_md5="0" * 32)  # complete: nothing to do


def test_failed_download_is_one_line(tmp_path, monkeypatch, release):
    import torchvision.datasets.utils as tv_utils

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(tv_utils, "download_url", offline)
    with pytest.raises(InputError) as error:
        load_cifar10(tmp_path / "empty", train=True, download=True, md5=release["md5"])
    assert "network unreachable" in _one_line_starting_with(error, "https://www.cs.toronto.edu/")


def _tar_with(archive: Path, member: tarfile.TarInfo, payload: bytes = b"x") -> None:
    with tarfile.open(archive, "w:gz") as tar:
        if member.isfile():
            member.size = len(payload)
            tar.addfile(member, io.BytesIO(payload))
        else:
            tar.addfile(member)


@pytest.mark.parametrize("name,kind", [("../escaped.txt", tarfile.REGTYPE), ("/tmp/absolute.txt", tarfile.REGTYPE),
                                       ("cifar-10-batches-py/link", tarfile.SYMTYPE),
                                       ("cifar-10-batches-py/hard", tarfile.LNKTYPE)])
def test_unsafe_archive_members_are_refused(tmp_path, name, kind):
    member = tarfile.TarInfo(name)
    member.type = kind
    if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        member.linkname = "../../outside"
    archive = tmp_path / "evil.tar.gz"
    _tar_with(archive, member)
    destination = tmp_path / "dest"
    destination.mkdir()
    with pytest.raises(InputError) as error:
        safe_extract_tar(archive, destination)
    assert "refusing to extract" in _one_line_starting_with(error, f"{archive}: member")
    assert list(destination.iterdir()) == [] and not (tmp_path / "escaped.txt").exists()


def test_data_stage_writes_cifar10_betons_and_arrays(tmp_path, release):
    """The pipeline's data job on dataset cifar10: betons written, decoded back to the
    arrays every later job loads, with the release's pixels and labels, and a sidecar that
    lets the ResNet-9 recipe (32x32) pass the data-dependent checks."""
    from databrittle.datasets import load_split
    from databrittle.io import read_json
    from databrittle.stages import check_data_dependent, prepare_data

    out = tmp_path / "data"
    paths = {name: out / name for name in ("train.beton", "test.beton", "train.npz", "test.npz", "split.csv",
                                           "data.json")}
    prepare_data(*paths.values(), dataset="cifar10", data={"root": str(release["root"]), "md5": release["md5"]},
                 seed=0)
    images, labels = load_split(paths["train.npz"])
    assert images.shape == (5 * PER_TRAIN_BATCH, 32, 32, 3)
    assert np.array_equal(images[4], release["rows"]["data_batch_2"][1].reshape(3, 32, 32).transpose(1, 2, 0))
    assert labels.tolist() == sum((release["labels"][f] for f in TRAIN_FILES), [])
    test_images, _ = load_split(paths["test.npz"])
    assert test_images.shape == (N_TEST, 32, 32, 3)
    assert read_json(paths["data.json"])["shapes"]["train"] == [5 * PER_TRAIN_BATCH, 32, 32, 3]
    config = {"bisection": {"k": 1}, "counterfactual": {"batch_size": 2, "arch": "resnet9"}, "lds": {"alpha": 0.5}}
    check_data_dependent(paths["data.json"], config)
