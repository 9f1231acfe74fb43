"""Images that stay in an FFCV image beton (ImageNet), read batch by batch by FFCV's Loader.

CIFAR-10 and digits are decoded once into memory (:mod:`databrittle.datasets`); ImageNet's
1.28M images are not (at the 400 px of the betons, :mod:`databrittle.imagenet`, that would
be hundreds of GB). Its split files (``{split}.npz``) hold the labels and the name of the
beton instead, and :func:`databrittle.datasets.load_split` returns a :class:`BetonImages`
in place of the image array: a view of beton rows that indexes like an array
(``images[target_ids]`` is a view of those rows) and is decoded only when a stage asks for
batches:

- :func:`centre_crop_batches` (evaluation, features, TRAK's inputs): FFCV's
  ``CenterCropRGBImageDecoder`` with the 224/256 crop ratio of FFCV's ImageNet example and
  of MoCo's evaluation (the centre 224/256 of the shorter side, resized to the output size),
  rows in the view's order;
- :func:`random_crop_batches` (training): FFCV's ``RandomResizedCropRGBImageDecoder``
  (scale 0.08-1, aspect ratio 3/4-4/3, torchvision's defaults), rows in exactly the order
  given, so training follows the shared per-model schedule of :mod:`databrittle.schedule`.

Both read with ``OrderOption.SEQUENTIAL`` over the given rows (repeats allowed), decode
only the image field (labels come from the split file, with a job's overrides), use every
CPU the process may run on as FFCV workers, and keep the beton in the page cache
(``os_cache``), as FFCV's ImageNet example does. FFCV draws the random crops with numba's
own random state, which is not seeded: the data order and flips of a model are fixed by
its seed, the crops are not (DESIGN.md 5 asks identical reruns on CPU; ImageNet trains on
GPUs, where cuDNN is not bit-reproducible either).

When a Loader is garbage-collected, numba may print "Exception ignored in: <finalize
object ...>" with a KeyError from its dispatcher finalizer: harmless (the test suite
silences exactly that message).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from databrittle.device import available_cpus
from databrittle.errors import InputError

#: Centre-crop ratio of evaluation (FFCV's ImageNet example, MoCo's 224-of-256 transform).
CENTRE_CROP_RATIO = 224 / 256
#: Batch size of evaluation and feature passes (memory only).
EVAL_BATCH = 256


@dataclass(frozen=True, eq=False)
class BetonImages:
    """A view of the images of an FFCV image beton, in ``rows`` order.

    Attributes:
        path: the beton (fields ``image`` = ``RGBImageField``, ``label`` = ``IntField``).
        rows: int64 (n,), beton rows of this view; row i of the view is beton row rows[i].
        max_resolution: longest stored side (config ``data.beton.max_resolution``), reported
            as the nominal image size in :attr:`shape`.
    """

    path: Path
    rows: np.ndarray
    max_resolution: int

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: np.ndarray | list[int] | slice) -> "BetonImages":
        """The view of the selected rows: a slice, a 1-d integer array/list, or a boolean mask
        of length n (as numpy indexes; a scalar is refused, since it would be one image, not
        a view)."""
        if isinstance(index, slice):
            return BetonImages(self.path, self.rows[index], self.max_resolution)
        index = np.asarray(index)
        if index.ndim != 1 or not (index.dtype.kind in "iub" or index.size == 0):
            raise InputError(f"images of {self.path}: index with a slice, a 1-d integer array or a boolean mask, "
                             f"got {index.dtype} of shape {index.shape}")
        if index.dtype == bool and len(index) != len(self.rows):
            raise InputError(f"images of {self.path}: boolean mask of length {len(index)} for {len(self.rows)} images")
        selected = self.rows[index] if index.dtype == bool else self.rows[index.astype(np.int64)]
        return BetonImages(self.path, selected.astype(np.int64), self.max_resolution)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(n, max_resolution, max_resolution, 3): nominal, stored images vary in size."""
        return (len(self.rows), self.max_resolution, self.max_resolution, 3)


def open_beton_images(path: str | os.PathLike, max_resolution: int) -> BetonImages:
    """All rows of an image beton, checked to be one (fields image and label)."""
    from databrittle.imagenet import read_image_beton_index

    n_rows = len(read_image_beton_index(path))
    return BetonImages(Path(path), np.arange(n_rows, dtype=np.int64), int(max_resolution))


def _loader(path: Path, rows: np.ndarray, decoder, batch_size: int, device: torch.device, drop_last: bool):
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import ToDevice, ToTensor, ToTorchImage

    if len(rows) and (int(rows.min()) < 0):
        raise InputError(f"{path}: negative beton row {int(rows.min())}")
    pipeline = [decoder, ToTensor(), ToDevice(device, non_blocking=True), ToTorchImage()]
    return Loader(str(path), batch_size=batch_size, num_workers=available_cpus(), order=OrderOption.SEQUENTIAL,
                  indices=np.asarray(rows, dtype=np.int64), drop_last=drop_last, os_cache=True,
                  pipelines={"image": pipeline, "label": None})


def centre_crop_batches(images: BetonImages, resolution: int, device: torch.device,
                        batch_size: int = EVAL_BATCH) -> Iterator[torch.Tensor]:
    """uint8 (b, 3, resolution, resolution) batches (channels_last) of the view, in its
    order: the centre 224/256 of each image, resized to ``resolution``."""
    from ffcv.fields.rgb_image import CenterCropRGBImageDecoder

    if not len(images):
        return iter(())
    decoder = CenterCropRGBImageDecoder((resolution, resolution), ratio=CENTRE_CROP_RATIO)
    return (batch for (batch,) in _loader(images.path, images.rows, decoder, batch_size, device, drop_last=False))


def random_crop_batches(images: BetonImages, positions: torch.Tensor, resolution: int,
                        device: torch.device) -> Iterator[torch.Tensor]:
    """uint8 (B, 3, resolution, resolution) training batches, one per row of ``positions``.

    Args:
        images: the training split.
        positions: int64 (T, B), the split positions of each step's batch (a model's plan
            from :func:`databrittle.schedule.model_plan`, or a slice of it).
    """
    from ffcv.fields.rgb_image import RandomResizedCropRGBImageDecoder

    if positions.ndim != 2:
        raise ValueError(f"positions must be (steps, batch), got {tuple(positions.shape)}")
    if not positions.numel():
        return iter(())
    rows = images.rows[positions.reshape(-1).cpu().numpy()]
    decoder = RandomResizedCropRGBImageDecoder((resolution, resolution))
    return (batch for (batch,) in _loader(images.path, rows, decoder, positions.shape[1], device, drop_last=True))


def normalise(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (b, 3, h, w) RGB -> float32 (b, 3, h, w), ImageNet mean/std (FFCV's example and
    MoCo's normalisation), keeping the batch's memory format."""
    from databrittle.pretrained import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN, device=batch.device).view(1, 3, 1, 1) * 255.0
    std = torch.tensor(IMAGENET_STD, device=batch.device).view(1, 3, 1, 1) * 255.0
    return (batch.float() - mean) / std
