"""Datasets and their FFCV .beton storage (DESIGN.md section 3: results/{ds}/data/{split}.beton).

Images are stored as uint8 arrays in HWC layout (digits: (8, 8, 1), CIFAR-10: (32, 32, 3))
in an FFCV ``NDArrayField`` with an ``IntField`` label, so one code path serves every
in-memory dataset. Later stages read the betons (:func:`read_beton`), never the source.

Digits (the embedded default): scikit-learn's 1,797 real 8x8 handwritten digits, pixel
values 0..16 rescaled to 0..255 (``round(v * 255 / 16)``), split into train/test by a
stratified split from a seed derived from the config's base seed. The map from each split's
dataset index to scikit-learn's original index is saved as ``split.csv`` beside the betons.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from databrittle.beton_images import BetonImages, open_beton_images
from databrittle.errors import InputError
from databrittle.io import atomic_path, load_npz, save_npz, write_csv


_PAGE_SIZE = 1 << 21  # FFCV's smallest page (2 MiB); its 8 MiB default bloats tiny datasets


@dataclass(frozen=True)
class Split:
    """One split held in memory.

    Attributes:
        images: uint8 (n, h, w, c).
        labels: int64 (n,).
        source_index: int64 (n,), index of each sample in the source dataset.
    """

    images: np.ndarray
    labels: np.ndarray
    source_index: np.ndarray


def load_digits_splits(test_fraction: float, seed: int) -> dict[str, Split]:
    """scikit-learn digits as uint8 images, stratified into ``{"train", "test"}``.

    Args:
        test_fraction: share of each class held out as test (config ``data.test_fraction``).
        seed: integer seed of the split (derived from the base seed, key "split").
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int64)
    index = np.arange(len(labels), dtype=np.int64)
    train_idx, test_idx = train_test_split(index, test_size=test_fraction, stratify=labels,
                                           random_state=seed % (2**32))
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return {name: Split(images[idx], labels[idx], idx) for name, idx in (("train", train_idx), ("test", test_idx))}


def split_map(splits: dict[str, Split]) -> pd.DataFrame:
    """Columns split, index (dataset index within the split), source_index, label."""
    frames = [pd.DataFrame({"split": name, "index": np.arange(len(s.labels)), "source_index": s.source_index,
                            "label": s.labels}) for name, s in splits.items()]
    return pd.concat(frames, ignore_index=True)


def write_beton(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray) -> None:
    """Write uint8 images (n, h, w, c) and int labels (n,) to an FFCV beton, atomically."""
    from ffcv.fields import IntField, NDArrayField
    from ffcv.writer import DatasetWriter

    images = np.ascontiguousarray(images, dtype=np.uint8)
    labels = np.asarray(labels, dtype=np.int64)
    if images.ndim != 4 or len(images) != len(labels):
        raise ValueError(f"images must be (n, h, w, c) with one label each, got {images.shape} and {labels.shape}")
    fields = {"image": NDArrayField(dtype=np.dtype("uint8"), shape=images.shape[1:]), "label": IntField()}
    with atomic_path(path) as tmp:
        writer = DatasetWriter(str(tmp), fields, num_workers=1, page_size=_PAGE_SIZE)
        writer.from_indexed_dataset(_Pairs(images, labels))


class _Pairs:
    """Indexed (image, label) view that FFCV's writer iterates over."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return self.images[i], int(self.labels[i])


def read_beton(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Decode a beton written by :func:`write_beton` into memory.

    Uses FFCV's :class:`~ffcv.reader.Reader` for the header, field metadata and allocation
    table, then gathers the raw NDArray bytes with one memory map (no per-model Loader and
    its JIT start-up, see the trainer issue).

    Returns:
        images uint8 (n, h, w, c) and labels int64 (n,), row i = dataset index i.

    Raises:
        InputError: naming ``path`` when it is missing, truncated, or not such a beton.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: beton file not found")
    reader = _open_reader(path)
    field_types = {name: type(handler).__name__ for name, handler in reader.handlers.items()}
    if field_types != {"image": "NDArrayField", "label": "IntField"}:
        raise InputError(f"{path}: expected fields image (NDArrayField) and label (IntField), found {field_types}")
    handler = reader.handlers["image"]
    shape, dtype = tuple(int(s) for s in handler.shape), np.dtype(handler.dtype)
    n_bytes = int(np.prod(shape)) * dtype.itemsize
    pointers = reader.metadata["f0"].astype(np.int64)  # NDArrayField metadata: data pointer
    file_size = path.stat().st_size
    if len(pointers) and int(pointers.max()) + n_bytes > file_size:
        raise InputError(f"{path}: truncated beton (data ends past byte {file_size})")
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    gathered = np.array(raw[pointers[:, None] + np.arange(n_bytes)])
    images = gathered.view(dtype).reshape((len(pointers), *shape))
    labels = np.array(reader.metadata["f1"], dtype=np.int64)  # IntField metadata: the value
    return images, labels


def _open_reader(path: Path):
    from ffcv.reader import Reader

    try:
        return Reader(str(path))
    except Exception as error:  # FFCV raises assorted numpy/IO errors on bad files
        raise InputError(f"{path}: not a complete FFCV beton ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'unreadable'})") from None


def decode_split(beton: str | os.PathLike, decoded: str | os.PathLike) -> None:
    """Decode a beton once into ``{split}.npz`` (images uint8 (n, h, w, c), labels int64 (n,)).

    Importing FFCV costs about 7 s and 1 GB per process (numba compilation at import), which
    would dominate every short training job; so each split is decoded from its beton once by
    this stage and the jobs downstream load the decoded arrays.
    """
    images, labels = read_beton(beton)
    save_npz(decoded, images=images, labels=labels)


def save_beton_split(decoded: str | os.PathLike, beton: str | os.PathLike, labels: np.ndarray,
                     max_resolution: int) -> None:
    """``{split}.npz`` of a split whose images stay in their beton (ImageNet): its labels
    int64 (n,), the beton's file name (beside the .npz) and the stored maximum resolution."""
    if Path(beton).absolute().parent != Path(decoded).absolute().parent:
        raise ValueError(f"{beton}: the beton must lie beside {decoded}")
    save_npz(decoded, labels=np.asarray(labels, dtype=np.int64), beton=np.array(Path(beton).name),
             max_resolution=np.array(int(max_resolution)))


def load_split(decoded: str | os.PathLike) -> tuple[np.ndarray | BetonImages, np.ndarray]:
    """images and labels int64 (n,) of a split (:func:`decode_split` or :func:`save_beton_split`).

    Images are uint8 (n, h, w, c) in memory, or, for a split kept in its beton, a
    :class:`~databrittle.beton_images.BetonImages` view of all its rows.
    """
    if "beton" in _npz_names(decoded):
        arrays = load_npz(decoded, ("labels", "beton", "max_resolution"))
        beton = Path(decoded).parent / str(arrays["beton"])
        images = open_beton_images(beton, int(arrays["max_resolution"]))
        if len(images) != len(arrays["labels"]):
            raise InputError(f"{decoded}: {len(arrays['labels'])} labels for the {len(images)} images of {beton}")
        return images, arrays["labels"].astype(np.int64)
    arrays = load_npz(decoded, ("images", "labels"))
    images, labels = arrays["images"], arrays["labels"]
    if images.dtype != np.uint8 or images.ndim != 4 or labels.ndim != 1 or len(images) != len(labels):
        raise InputError(f"{decoded}: expected uint8 images (n, h, w, c) and n int labels, got "
                         f"{images.dtype} {images.shape} and {labels.shape}")
    return images, labels.astype(np.int64)


def _npz_names(path: str | os.PathLike) -> list[str]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return list(archive.files)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        return []  # load_npz names the problem


def class_counts(labels: np.ndarray) -> dict[int, int]:
    """Number of samples per class label."""
    values, counts = np.unique(labels, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts)}


def check_pool_size(k: int, train_labels: np.ndarray, source: str) -> None:
    """Raise if ``k`` exceeds every class's same-class candidate pool (config ``bisection.k``):
    targets are drawn from the classes with at least k training images, so one must exist."""
    counts = class_counts(train_labels)
    largest_class = max(counts, key=counts.get)
    if k > counts[largest_class]:
        raise InputError(f"config key 'bisection.k': {k} is larger than every same-class candidate pool (the "
                         f"largest: {counts[largest_class]} training images of class {largest_class} in {source})")


def prepare_digits(out_dir: str | os.PathLike, test_fraction: float, seed: int) -> dict[str, Split]:
    """Write train/test betons and split.csv for digits into ``out_dir``; return the splits."""
    return write_splits(out_dir, load_digits_splits(test_fraction, seed))


def prepare_cifar10(out_dir: str | os.PathLike, root: str | os.PathLike, download: bool,
                    md5: dict[str, str] | None = None) -> dict[str, Split]:
    """Write train/test betons and split.csv for CIFAR-10 (torchvision's copy under ``root``,
    md5-checked against ``md5`` or the official list; downloaded first only when
    ``download``); return the splits."""
    from databrittle.cifar10 import load_cifar10_splits

    return write_splits(out_dir, load_cifar10_splits(root, download=download, md5=md5))


def prepare_imagenet_splits(out_dir: str | os.PathLike, root: str | os.PathLike, beton: dict,
                            seed: int) -> dict[str, np.ndarray]:
    """ImageNet's betons (train, and val as the test split) with FFCV's ImageNet settings
    (config ``data.beton``), their ``{split}.npz`` (labels + beton name: the images stay in
    the beton) and ``split.csv``; returns the labels per split."""
    from databrittle.imagenet import ImageBetonSettings, prepare_imagenet

    out_dir = Path(out_dir)
    settings = ImageBetonSettings(**beton, seed=seed)
    table = prepare_imagenet(root, out_dir, settings, beton_names={"train": "train.beton", "val": "test.beton"})
    labels = {}
    for split, source in (("train", "train"), ("test", "val")):
        labels[split] = table.loc[table["split"] == source, "label"].to_numpy(dtype=np.int64)
        save_beton_split(out_dir / f"{split}.npz", out_dir / f"{split}.beton", labels[split], settings.max_resolution)
    return labels


def write_splits(out_dir: str | os.PathLike, splits: dict[str, Split]) -> dict[str, Split]:
    """``out_dir/{split}.beton`` for each split and ``out_dir/split.csv``; returns ``splits``."""
    out_dir = Path(out_dir)
    for name, split in splits.items():
        write_beton(out_dir / f"{name}.beton", split.images, split.labels)
    write_csv(out_dir / "split.csv", split_map(splits))
    return splits
