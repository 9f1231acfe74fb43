"""ImageNet ImageFolder listing and beton writing on a tiny tree of JPEG files."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from databrittle.errors import InputError
from databrittle.imagenet import (ImageBetonSettings, imagenet_folders, prepare_imagenet, read_image_beton,
                                  read_image_beton_index, sample_table, write_image_beton)

WNIDS = ["n01440764", "n01443537", "n01484850"]
# (width, height) per image; 64x40 and 20x50 exceed the tests' max_resolution of 32.
TRAIN_SIZES = [(40, 30), (30, 40), (64, 40), (20, 20)]
VAL_SIZES = [(36, 24), (20, 50)]
SMALL = ImageBetonSettings(write_mode="raw", max_resolution=32, num_workers=2, chunk_size=3, page_size=1 << 21)


def _jpeg(path: Path, size: tuple[int, int], seed: int) -> None:
    width, height = size
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, width)[None, :, None] + np.linspace(0, 50, height)[:, None, None]
    pixels = np.clip(ramp + rng.integers(0, 5, (height, width, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagenet")
    for c, wnid in enumerate(WNIDS):
        for i, size in enumerate(TRAIN_SIZES):
            _jpeg(root / "train" / wnid / f"{wnid}_{i}.JPEG", size, seed=10 * c + i)
    for c, wnid in enumerate(WNIDS[:2]):  # val lacks the third class: allowed
        for i, size in enumerate(VAL_SIZES):
            _jpeg(root / "val" / wnid / f"ILSVRC2012_val_{c}{i}.JPEG", size, seed=100 + 10 * c + i)
    (root / "train" / WNIDS[0] / "notes.txt").write_text("not an image")
    return root


def _decoded(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_listing_uses_sorted_train_wnids_for_both_splits(tree):
    folders = imagenet_folders(tree)
    assert folders["train"].classes == WNIDS and folders["val"].classes == WNIDS
    train_labels = [label for _, label in folders["train"].samples]
    assert train_labels == [0] * 4 + [1] * 4 + [2] * 4  # notes.txt is not listed
    assert [label for _, label in folders["val"].samples] == [0, 0, 1, 1]
    table = sample_table(folders, tree)
    assert list(table.columns) == ["split", "index", "path", "wnid", "label"]
    assert table.loc[13, "path"] == f"val/{WNIDS[0]}/ILSVRC2012_val_01.JPEG" and table.loc[13, "index"] == 1


def test_defaults_are_ffcv_imagenet_example():
    settings = ImageBetonSettings()
    assert (settings.write_mode, settings.max_resolution, settings.jpeg_quality, settings.compress_probability,
            settings.num_workers, settings.chunk_size) == ("proportion", 400, 90, 0.10, 16, 100)
    with pytest.raises(InputError, match="write_mode 'png'"):
        ImageBetonSettings(write_mode="png")


def test_raw_beton_round_trip_counts_labels_sizes_and_pixels(tree, tmp_path):
    folders = imagenet_folders(tree)
    table = prepare_imagenet(tree, tmp_path, SMALL)
    assert (tmp_path / "split.csv").is_file() and len(table) == 16
    index = read_image_beton_index(tmp_path / "train.beton")
    assert len(index) == 12 and index["label"].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert set(index["mode"]) == {"raw"}
    # Sizes: kept when both sides <= 32, else the longer side becomes 32 (aspect kept).
    expected = {(40, 30): (24, 32), (30, 40): (32, 24), (64, 40): (20, 32), (20, 20): (20, 20)}
    assert list(zip(index["height"], index["width"])) == [expected[s] for s in TRAIN_SIZES] * 3
    images, labels = read_image_beton(tmp_path / "train.beton")
    assert np.array_equal(labels, index["label"].to_numpy())
    for row in (3, 7, 11):  # 20x20 images are stored unchanged
        assert np.array_equal(images[row], _decoded(folders["train"].samples[row][0]))
    shrunk, source = images[2].astype(float), _decoded(folders["train"].samples[2][0]).astype(float)
    assert shrunk.shape == (20, 32, 3)
    assert abs(shrunk.mean() - source.mean()) < 2.0  # area interpolation keeps the mean
    val = read_image_beton_index(tmp_path / "val.beton")
    assert val["label"].tolist() == [0, 0, 1, 1]
    assert list(zip(val["height"], val["width"])) == [(21, 32), (32, 12)] * 2  # 36x24 -> 32x21, 20x50 -> 12x32


def test_proportion_mode_compresses_the_same_images_whatever_the_workers(tree, tmp_path):
    dataset = imagenet_folders(tree)["train"]
    modes = []
    for workers in (1, 2):
        settings = ImageBetonSettings(max_resolution=32, compress_probability=0.5, num_workers=workers,
                                      chunk_size=2, page_size=1 << 21, seed=3)
        write_image_beton(tmp_path / f"w{workers}.beton", dataset, settings)
        modes.append(read_image_beton_index(tmp_path / f"w{workers}.beton")["mode"].tolist())
    assert modes[0] == modes[1] and set(modes[0]) == {"jpg", "raw"}
    images, labels = read_image_beton(tmp_path / "w2.beton")
    jpg = [i for i, mode in enumerate(modes[1]) if mode == "jpg" and TRAIN_SIZES[i % 4] == (20, 20)]
    for i in jpg:  # quality-90 JPEG of an unresized image: close to the source pixels
        source = _decoded(dataset.samples[i][0]).astype(float)
        assert images[i].shape == source.shape and np.abs(images[i] - source).mean() < 4.0


def test_val_class_missing_from_train_is_an_error(tmp_path):
    _jpeg(tmp_path / "train" / WNIDS[0] / "a.JPEG", (8, 8), 0)
    _jpeg(tmp_path / "val" / WNIDS[1] / "b.JPEG", (8, 8), 1)
    with pytest.raises(InputError) as error:
        imagenet_folders(tmp_path)
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'val'}: classes ['{WNIDS[1]}']") and "\n" not in message


def test_missing_split_folder_is_named(tmp_path):
    _jpeg(tmp_path / "train" / WNIDS[0] / "a.JPEG", (8, 8), 0)
    with pytest.raises(InputError, match=r"val: ImageNet split folder not found"):
        imagenet_folders(tmp_path)


def test_unreadable_image_names_the_file_and_writes_nothing(tmp_path):
    _jpeg(tmp_path / "train" / WNIDS[0] / "a.JPEG", (8, 8), 0)
    broken = tmp_path / "train" / WNIDS[0] / "b.JPEG"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    dataset = imagenet_folders_train_only(tmp_path)
    with pytest.raises(InputError) as error:
        write_image_beton(tmp_path / "out" / "train.beton", dataset, SMALL)
    assert str(error.value).startswith(f"{broken}: unreadable image") and "1 unreadable" in str(error.value)
    assert list((tmp_path / "out").iterdir()) == []


def imagenet_folders_train_only(root: Path):
    from torchvision.datasets import ImageFolder

    return ImageFolder(str(root / "train"))
