"""ImageNet from an ImageFolder tree, written to FFCV betons with ImageNet settings.

Paper sections 4.1, 4.3 and A.2: the ImageNet experiments train ResNet-18 models with FFCV
for 16 epochs (batch 1024, 160 px for 11 epochs then 192 px), the setup of FFCV's
ImageNet example, and take 30 targets from the validation set.

On-disk layout (the "PyTorch style" ImageNet FFCV's example reads)::

    <root>/train/<wnid>/*.JPEG      # e.g. train/n01440764/n01440764_10026.JPEG
    <root>/val/<wnid>/*.JPEG        # validation images sorted into the same wnid folders

Files and labels are listed by ``torchvision.datasets.ImageFolder``: class index = position
of the wnid in the sorted list of ``train``'s class folders, the same for both splits
(``val`` may lack classes, but a ``val`` class that ``train`` lacks is an error); samples
are ordered by class, then file name. Images are read with PIL and converted to RGB.

Betons hold an ``image`` field (``ffcv.fields.RGBImageField``) and a ``label`` field
(``IntField``). The defaults of :class:`ImageBetonSettings` are those FFCV's ImageNet example
(libffcv/ffcv-imagenet) documents for its ResNet-18 configurations, whose 16-epoch config is
the paper's A.2 schedule: images resized (never enlarged) to at most 400 px on the longer
side, 10% of them stored as quality-90 JPEG and the rest as raw pixels ("proportion" mode),
the same settings for the train and val betons; their writer script's defaults give 16
worker processes and chunks of 100 samples. (Its ResNet-50 configurations use 500 px and
50% JPEG instead.)
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from torchvision.datasets import ImageFolder

from databrittle.device import available_cpus
from databrittle.errors import InputError
from databrittle.io import atomic_path, write_csv

SPLITS = ("train", "val")
WRITE_MODES = ("raw", "jpg", "smart", "proportion")
_FFCV_MIN_PAGE = 1 << 21  # FFCV's smallest page (2 MiB); its default page is 4 of them


@dataclass(frozen=True)
class ImageBetonSettings:
    """How images are stored in a beton (``ffcv.fields.RGBImageField`` and ``DatasetWriter``).

    Attributes:
        write_mode: ``proportion`` (JPEG-compress each image with probability
            ``compress_probability``, raw pixels otherwise), ``raw``, ``jpg`` or ``smart``.
            Default ``proportion``: FFCV's ImageNet example.
        max_resolution: longest side in pixels; larger images are shrunk keeping their
            aspect ratio (OpenCV area interpolation), smaller ones are kept. Default 400:
            FFCV's ResNet-18 ImageNet data (the paper trains ResNet-18, A.2); its training
            crops are 160-192 px and its validation centre crops 256 px, all below 400.
        jpeg_quality: JPEG quality of compressed images (default 90, FFCV's example).
        compress_probability: share of JPEG-compressed images in ``proportion`` mode
            (default 0.10, FFCV's ResNet-18 data).
        num_workers: writer processes (FFCV's example: 16; capped at the CPUs the job may use).
        chunk_size: samples handed to a worker at a time (FFCV's example: 100).
        page_size: bytes per FFCV page (FFCV's default, 8 MiB; a power of two >= 2 MiB).
        seed: seeds the per-image JPEG-or-raw draw of ``proportion`` mode, so the same
            images are compressed whatever the number of workers.
    """

    write_mode: str = "proportion"
    max_resolution: int | None = 400
    jpeg_quality: int = 90
    compress_probability: float = 0.10
    num_workers: int = 16
    chunk_size: int = 100
    page_size: int = 4 * _FFCV_MIN_PAGE
    seed: int = 0

    def __post_init__(self) -> None:
        if self.write_mode not in WRITE_MODES:
            raise InputError(f"write_mode {self.write_mode!r}: expected one of {list(WRITE_MODES)}")
        if self.max_resolution is not None and not 1 <= self.max_resolution <= 65535:
            raise InputError(f"max_resolution {self.max_resolution}: expected 1..65535 or None")
        if not 1 <= self.jpeg_quality <= 100:
            raise InputError(f"jpeg_quality {self.jpeg_quality}: expected 1..100")
        if not 0.0 <= self.compress_probability <= 1.0:
            raise InputError(f"compress_probability {self.compress_probability}: expected 0..1")
        if self.num_workers < 1 or self.chunk_size < 1:
            raise InputError(f"num_workers {self.num_workers} and chunk_size {self.chunk_size}: expected >= 1")
        if self.page_size < _FFCV_MIN_PAGE or self.page_size & (self.page_size - 1):
            raise InputError(f"page_size {self.page_size}: expected a power of two >= {_FFCV_MIN_PAGE}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _ClassesOf(ImageFolder):
    """ImageFolder whose class list is given (train's), so indices agree across splits."""

    def __init__(self, root: str, class_to_idx: dict[str, int]) -> None:
        self._given = dict(class_to_idx)
        super().__init__(root, allow_empty=True)

    def find_classes(self, directory: str | os.PathLike) -> tuple[list[str], dict[str, int]]:
        present = sorted(entry.name for entry in os.scandir(directory) if entry.is_dir())
        unknown = [name for name in present if name not in self._given]
        if unknown:
            raise InputError(f"{directory}: classes {unknown[:5]} ({len(unknown)} in all) are not in the "
                             f"train split's class folders")
        return sorted(self._given, key=self._given.get), self._given


def imagenet_folders(root: str | os.PathLike) -> dict[str, ImageFolder]:
    """``{"train": ImageFolder, "val": ImageFolder}`` over ``root/train`` and ``root/val``.

    Returns:
        Datasets yielding ``(PIL RGB image, class index)``; ``.samples`` lists
        ``(path, class index)`` and ``.classes`` the sorted wnids of ``train``.

    Raises:
        InputError: one line naming the folder when a split is missing, has no class
            folder or image, or ``val`` has a class ``train`` lacks.
    """
    root = Path(root)
    for split in SPLITS:
        if not (root / split).is_dir():
            raise InputError(f"{root / split}: ImageNet split folder not found (expected "
                             f"{root}/{{train,val}}/<wnid>/*.JPEG)")
    train = _listing(root / "train", lambda path: ImageFolder(path))
    val = _listing(root / "val", lambda path: _ClassesOf(path, train.class_to_idx))
    if not val.samples:
        raise InputError(f"{root / 'val'}: no image files found")
    return {"train": train, "val": val}


def _listing(path: Path, make: Callable[[str], ImageFolder]) -> ImageFolder:
    try:
        return make(str(path))
    except FileNotFoundError as error:  # torchvision: no class folder, or a class without images
        raise InputError(f"{path}: {_first_line(error)}") from None


def sample_table(folders: dict[str, ImageFolder], root: str | os.PathLike) -> pd.DataFrame:
    """Columns split, index (row in the split's beton), path (relative to ``root``),
    wnid and label, one row per image."""
    root = Path(root)
    frames = []
    for split, folder in folders.items():
        paths = [os.path.relpath(path, root) for path, _ in folder.samples]
        labels = np.array([label for _, label in folder.samples], dtype=np.int64)
        frames.append(pd.DataFrame({"split": split, "index": np.arange(len(paths)), "path": paths,
                                    "wnid": [folder.classes[i] for i in labels], "label": labels}))
    return pd.concat(frames, ignore_index=True)


class _CheckedSamples:
    """``dataset`` as FFCV's writer iterates it, with two additions made in the worker.

    - An image that cannot be read would kill FFCV's worker process and leave the writer
      waiting for ever; instead its path is appended to ``failures`` and a 1x1 black image
      takes its place (the beton is then discarded by :func:`write_image_beton`).
    - In ``proportion`` mode ``RGBImageField.encode`` draws ``np.random.rand()`` right after
      this ``__getitem__`` in the same worker; seeding the worker's numpy RNG from
      ``(seed, index)`` here makes that draw depend on the image, not on the scheduling.
    """

    def __init__(self, dataset: ImageFolder, failures: Path, seed: int) -> None:
        self.dataset, self.failures, self.seed = dataset, str(failures), seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        np.random.seed(np.random.SeedSequence([self.seed, int(index)]).generate_state(1)[0])
        path, label = self.dataset.samples[index]
        try:
            image = np.asarray(self.dataset.loader(path), dtype=np.uint8)
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"decoded to shape {image.shape}")
        except Exception as error:  # PIL raises assorted errors on broken files
            with open(self.failures, "a") as log:
                log.write(f"{path}\t{type(error).__name__}: {_first_line(error)}\n")
            image = np.zeros((1, 1, 3), dtype=np.uint8)
        return image, int(label)


def write_image_beton(path: str | os.PathLike, dataset: ImageFolder,
                      settings: ImageBetonSettings = ImageBetonSettings()) -> None:
    """Write an ImageFolder split to an FFCV beton (fields ``image``, ``label``), atomically.

    Row i of the beton is ``dataset.samples[i]``.

    Raises:
        InputError: naming the first unreadable image file (and how many there were);
            no beton is written then.
    """
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    fields = {"image": RGBImageField(write_mode=settings.write_mode, max_resolution=settings.max_resolution,
                                     jpeg_quality=settings.jpeg_quality,
                                     compress_probability=settings.compress_probability),
              "label": IntField()}
    workers = max(1, min(settings.num_workers, available_cpus(), len(dataset)))
    with atomic_path(path) as tmp, tempfile.TemporaryDirectory(dir=Path(path).parent) as scratch:
        failures = Path(scratch) / "unreadable.tsv"
        writer = DatasetWriter(str(tmp), fields, num_workers=workers, page_size=settings.page_size)
        writer.from_indexed_dataset(_CheckedSamples(dataset, failures, settings.seed), chunksize=settings.chunk_size)
        _raise_on_failures(failures)


def _raise_on_failures(failures: Path) -> None:
    if not failures.is_file():
        return
    lines = failures.read_text().splitlines()
    if lines:
        first_path, reason = lines[0].split("\t", 1)
        raise InputError(f"{first_path}: unreadable image ({reason}); {len(lines)} unreadable image(s) in all")


def prepare_imagenet(root: str | os.PathLike, out_dir: str | os.PathLike,
                     settings: ImageBetonSettings = ImageBetonSettings(),
                     beton_names: dict[str, str] | None = None) -> pd.DataFrame:
    """Write ``out_dir/train.beton``, ``out_dir/val.beton`` and ``out_dir/split.csv``.

    ``beton_names`` renames the betons (the pipeline writes ``val`` as its test split,
    ``{"val": "test.beton"}``). ``split.csv`` is :func:`sample_table` (split, index, path,
    wnid, label). Returns it.
    """
    folders = imagenet_folders(root)
    out_dir = Path(out_dir)
    names = {split: f"{split}.beton" for split in SPLITS} | (beton_names or {})
    for split, folder in folders.items():
        write_image_beton(out_dir / names[split], folder, settings)
    table = sample_table(folders, root)
    write_csv(out_dir / "split.csv", table)
    return table


def read_image_beton_index(path: str | os.PathLike) -> pd.DataFrame:
    """Per-sample storage of a beton written by :func:`write_image_beton`, without decoding.

    Returns:
        Columns label (int64), mode (``jpg`` or ``raw``), height, width (stored size in
        pixels), offset and size (byte range of the stored image), one row per sample.

    Raises:
        InputError: naming ``path`` when it is missing, not a beton or has other fields.
    """
    reader = _open_reader(Path(path))
    image = reader.metadata["f0"]
    pointers = image["data_ptr"].astype(np.int64)
    table = reader.alloc_table
    order = np.argsort(table["ptr"])
    starts, sizes = table["ptr"][order].astype(np.int64), table["size"][order].astype(np.int64)
    position = np.searchsorted(starts, pointers)
    if len(pointers) and (position.max() >= len(starts) or not np.array_equal(starts[position], pointers)):
        raise InputError(f"{path}: image data pointers missing from the allocation table (truncated beton?)")
    raw_mode = _ffcv_mode("raw")
    return pd.DataFrame({"label": np.asarray(reader.metadata["f1"], dtype=np.int64),
                         "mode": np.where(image["mode"] == raw_mode, "raw", "jpg"),
                         "height": image["height"].astype(np.int64), "width": image["width"].astype(np.int64),
                         "offset": pointers, "size": sizes[position] if len(pointers) else pointers})


def read_image_beton(path: str | os.PathLike, indices: np.ndarray | list[int] | None = None,
                     ) -> tuple[list[np.ndarray], np.ndarray]:
    """Decode images of a beton written by :func:`write_image_beton` (for checks and small
    subsets; training reads betons with FFCV's Loader).

    Args:
        indices: rows to decode (default all).

    Returns:
        images: list of uint8 (h_i, w_i, 3) arrays (sizes vary); labels int64 (len,).
    """
    index = read_image_beton_index(path)
    rows = index if indices is None else index.iloc[np.asarray(indices, dtype=np.int64)]
    data = np.memmap(path, dtype=np.uint8, mode="r")
    if len(rows) and int((rows["offset"] + rows["size"]).max()) > len(data):
        raise InputError(f"{path}: truncated beton (image data ends past byte {len(data)})")
    images = [_decode(data[o:o + s], m, h, w) for o, s, m, h, w in
              zip(rows["offset"], rows["size"], rows["mode"], rows["height"], rows["width"])]
    return images, rows["label"].to_numpy(dtype=np.int64)


def _decode(raw: np.ndarray, mode: str, height: int, width: int) -> np.ndarray:
    if mode == "raw":
        return np.array(raw[: height * width * 3]).reshape(height, width, 3)
    with Image.open(io.BytesIO(raw.tobytes())) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _ffcv_mode(name: str) -> int:
    from ffcv.fields.rgb_image import IMAGE_MODES

    return int(IMAGE_MODES[name])


def _open_reader(path: Path):
    from ffcv.reader import Reader

    if not path.is_file():
        raise InputError(f"{path}: beton file not found")
    try:
        reader = Reader(str(path))
    except Exception as error:  # FFCV raises assorted numpy/IO errors on bad files
        raise InputError(f"{path}: not a complete FFCV beton ({type(error).__name__}: {_first_line(error)})") from None
    types = {name: type(handler).__name__ for name, handler in reader.handlers.items()}
    if types != {"image": "RGBImageField", "label": "IntField"}:
        raise InputError(f"{path}: expected fields image (RGBImageField) and label (IntField), found {types}")
    return reader


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0][:200]
