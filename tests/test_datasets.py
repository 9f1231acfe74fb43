import numpy as np
import pytest

from databrittle.datasets import (check_pool_size, class_counts, decode_split, load_split, read_beton,
                                  split_map, write_beton)
from databrittle.errors import InputError


def test_digits_split_is_stratified_uint8_and_mapped(digits_splits):
    train, test = digits_splits["train"], digits_splits["test"]
    assert train.images.dtype == np.uint8 and train.images.shape[1:] == (8, 8, 1)
    assert len(train.labels) + len(test.labels) == 1797
    assert len(test.labels) == 360
    assert not set(train.source_index) & set(test.source_index)
    counts = class_counts(test.labels)
    assert min(counts.values()) >= 35 and max(counts.values()) <= 37  # stratified: about 36 per class
    from sklearn.datasets import load_digits

    source = load_digits()
    assert np.array_equal(source.target[test.source_index], test.labels)
    assert np.array_equal(np.rint(source.images[test.source_index[5]] * 255 / 16), test.images[5, ..., 0])
    frame = split_map(digits_splits)
    assert list(frame.columns) == ["split", "index", "source_index", "label"]
    assert len(frame) == 1797


def test_beton_round_trip_and_decode(tmp_path, digits_splits):
    split = digits_splits["test"]
    beton = tmp_path / "test.beton"
    write_beton(beton, split.images, split.labels)
    images, labels = read_beton(beton)
    assert np.array_equal(images, split.images) and np.array_equal(labels, split.labels)
    decode_split(beton, tmp_path / "test.npz")
    images2, labels2 = load_split(tmp_path / "test.npz")
    assert np.array_equal(images2, split.images) and labels2.dtype == np.int64
    rgb = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    write_beton(tmp_path / "rgb.beton", rgb, np.arange(5))
    assert np.array_equal(read_beton(tmp_path / "rgb.beton")[0], rgb)


@pytest.mark.parametrize("keep", [0.5, 0.001])
def test_truncated_beton_is_a_one_line_error(tmp_path, digits_splits, keep):
    beton = tmp_path / "train.beton"
    write_beton(beton, digits_splits["test"].images, digits_splits["test"].labels)
    data = beton.read_bytes()
    beton.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InputError) as error:
        read_beton(beton)
    assert str(error.value).startswith(f"{beton}:") and "\n" not in str(error.value)


def test_truncated_decoded_split_is_named(tmp_path, digits_splits):
    beton = tmp_path / "t.beton"
    write_beton(beton, digits_splits["test"].images, digits_splits["test"].labels)
    decode_split(beton, tmp_path / "t.npz")
    data = (tmp_path / "t.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(data[:1000])
    with pytest.raises(InputError, match=r"t\.npz: not a complete \.npz file"):
        load_split(tmp_path / "t.npz")


def test_k_larger_than_every_pool_names_the_key():
    labels = np.array([0] * 5 + [1] * 3)
    check_pool_size(5, labels, "train")  # class 0 can supply targets
    with pytest.raises(InputError, match=r"config key 'bisection.k': 6 is larger than every same-class candidate "
                                         r"pool \(the largest: 5 training images of class 0 in train\)"):
        check_pool_size(6, labels, "train")
