"""CIFAR-10 from its official Python release, read through torchvision.

Paper sections 4.1-4.2 and A.2: the CIFAR-10 experiments train on the 50,000 training
images and draw their targets from the 10,000 test images (Krizhevsky et al., 2009).

On-disk layout (what ``torchvision.datasets.CIFAR10`` reads and what the official archive
``cifar-10-python.tar.gz`` unpacks to)::

    <root>/cifar-10-batches-py/data_batch_1 .. data_batch_5   # 10,000 images each
    <root>/cifar-10-batches-py/test_batch                     # 10,000 images
    <root>/cifar-10-batches-py/batches.meta                   # class names ("label_names")

Each batch is a pickled dict whose ``data`` is uint8 (n, 3072) with rows in CHW order
(1024 red, 1024 green, 1024 blue values, each plane row-major 32x32) and whose ``labels``
is a list of n ints in 0..9. The loaders here return images uint8 (n, 32, 32, 3) in HWC
layout and labels int64 (n,), in the release's order (batch 1 first).

Integrity. The batch files are Python pickles, so they are unpickled only after their md5
digests match a known list: by default torchvision's own list of the official files
(:data:`OFFICIAL_MD5`, the same check ``CIFAR10(download=False)`` makes). A caller may pass
another ``md5`` mapping (one digest per file name) for a copy it vouches for, e.g. a test
fixture in the same format; the check is then made against those digests, never skipped.
A missing folder or file, or a digest mismatch, is a one-line :class:`InputError`.

Downloading happens only when asked (``download=True``, e.g. on a cluster); tests and the
default run never download. The archive is verified by its md5 and unpacked by
:func:`safe_extract_tar`, which refuses links, special files and any member whose path
would land outside the target folder (torchvision's own extraction does not check this).
"""

from __future__ import annotations

import os
import pickle
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import numpy as np
from torchvision.datasets import CIFAR10
from torchvision.datasets.utils import calculate_md5, check_integrity

from databrittle.datasets import Split
from databrittle.errors import InputError

BASE_FOLDER: str = CIFAR10.base_folder
"""Folder under ``root`` holding the batches (``cifar-10-batches-py``)."""

URL: str = CIFAR10.url
ARCHIVE: str = CIFAR10.filename
ARCHIVE_MD5: str = CIFAR10.tgz_md5

TRAIN_FILES: tuple[str, ...] = tuple(name for name, _ in CIFAR10.train_list)
TEST_FILES: tuple[str, ...] = tuple(name for name, _ in CIFAR10.test_list)
META_FILE: str = CIFAR10.meta["filename"]

OFFICIAL_MD5: dict[str, str] = {**dict(CIFAR10.train_list), **dict(CIFAR10.test_list),
                                META_FILE: CIFAR10.meta["md5"]}
"""md5 of every file of the official release, as listed by torchvision."""

N_CLASSES = 10
IMAGE_SHAPE = (32, 32, 3)


def _how_to_get(root: Path) -> str:
    return (f"download it with load_cifar10(..., download=True) or unpack {URL} into {root} "
            f"so that {root / BASE_FOLDER} holds {', '.join(OFFICIAL_MD5)}")


def _checked_md5(md5: Mapping[str, str] | None) -> dict[str, str]:
    """``md5`` as a plain dict, which must name exactly the release's seven files."""
    table = dict(OFFICIAL_MD5 if md5 is None else md5)
    if set(table) != set(OFFICIAL_MD5):
        raise InputError(f"md5: expected one digest for each of {sorted(OFFICIAL_MD5)}, got {sorted(table)}")
    return {name: str(digest).lower() for name, digest in table.items()}


def verify_cifar10(root: str | os.PathLike, md5: Mapping[str, str] | None = None) -> Path:
    """Check that ``root`` holds the complete release with the expected md5 digests.

    Args:
        root: folder holding ``cifar-10-batches-py``.
        md5: file name -> md5 hex digest for the seven files; default :data:`OFFICIAL_MD5`.

    Returns:
        The batches folder ``root / "cifar-10-batches-py"``.

    Raises:
        InputError: one line naming ``root`` when the folder or a file is missing, or
            naming the file whose md5 differs.
    """
    root, table = Path(root), _checked_md5(md5)
    folder = root / BASE_FOLDER
    if not folder.is_dir():
        raise InputError(f"{root}: CIFAR-10 not found (no folder {BASE_FOLDER}); {_how_to_get(root)}")
    missing = [name for name in table if not (folder / name).is_file()]
    if missing:
        raise InputError(f"{root}: incomplete CIFAR-10 ({BASE_FOLDER} lacks {', '.join(missing)}); "
                         f"{_how_to_get(root)}")
    for name, expected in table.items():
        actual = calculate_md5(folder / name)
        if actual != expected:
            raise InputError(f"{folder / name}: md5 {actual}, expected {expected} (corrupt or not the "
                             f"official CIFAR-10 file); delete it and {_how_to_get(root)}")
    return folder


def _torchvision_class(table: dict[str, str]) -> type[CIFAR10]:
    """``CIFAR10`` whose md5 lists are ``table`` (torchvision then checks these digests).

    torchvision keeps its digests in the class attributes ``train_list``, ``test_list``
    and ``meta``; a subclass overriding exactly those keeps its reading code and its
    integrity check, against the digests the caller vouched for.
    """
    return type("CheckedCIFAR10", (CIFAR10,), {
        "train_list": [[name, table[name]] for name in TRAIN_FILES],
        "test_list": [[name, table[name]] for name in TEST_FILES],
        "meta": {**CIFAR10.meta, "md5": table[META_FILE]},
    })


def load_cifar10(root: str | os.PathLike, *, train: bool, download: bool = False,
                 md5: Mapping[str, str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One split of CIFAR-10 as arrays.

    Args:
        root: folder holding (or to receive) ``cifar-10-batches-py``.
        train: the 50,000 training images (True) or the 10,000 test images (False).
        download: fetch and unpack the official archive into ``root`` when the release
            is not there yet (never in tests or the default run).
        md5: file name -> md5 digest of the seven files; default the official digests.

    Returns:
        images uint8 (n, 32, 32, 3) in HWC layout and labels int64 (n,) in 0..9, in the
        release's order.

    Raises:
        InputError: one line naming ``root`` or the bad file when the release is missing,
            incomplete, corrupt or not in CIFAR-10's format.
    """
    root, table = Path(root), _checked_md5(md5)
    if download:
        download_cifar10(root, md5=table)
    try:
        dataset = _torchvision_class(table)(str(root), train=train, download=False)
    except RuntimeError:  # torchvision: "Dataset not found or corrupted"
        verify_cifar10(root, table)  # raises the precise one-line error
        raise InputError(f"{root}: CIFAR-10 could not be read by torchvision; {_how_to_get(root)}") from None
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError) as error:
        raise InputError(f"{root / BASE_FOLDER}: not in CIFAR-10's batch format "
                         f"({type(error).__name__}: {_first_line(error)})") from None
    return _checked_arrays(root, dataset.data, dataset.targets)


def _checked_arrays(root: Path, data: np.ndarray, targets: list[int]) -> tuple[np.ndarray, np.ndarray]:
    images = np.ascontiguousarray(data, dtype=np.uint8)
    labels = np.asarray(targets, dtype=np.int64)
    if images.shape[1:] != IMAGE_SHAPE or labels.shape != (len(images),):
        raise InputError(f"{root / BASE_FOLDER}: expected images (n, 32, 32, 3) with one label each, got "
                         f"{images.shape} and {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= N_CLASSES):
        raise InputError(f"{root / BASE_FOLDER}: labels outside 0..{N_CLASSES - 1}")
    return images, labels


def load_cifar10_splits(root: str | os.PathLike, *, download: bool = False,
                        md5: Mapping[str, str] | None = None) -> dict[str, Split]:
    """``{"train": Split, "test": Split}`` of CIFAR-10 (paper section 4.2).

    ``source_index`` is the position in the release's order (0..49,999 and 0..9,999), so
    the default CIFAR-10 train/test order of the public datamodels is kept.
    """
    if download:
        download_cifar10(root, md5=md5)
    splits = {}
    for name, train in (("train", True), ("test", False)):
        images, labels = load_cifar10(root, train=train, md5=md5)
        splits[name] = Split(images, labels, np.arange(len(labels), dtype=np.int64))
    return splits


def cifar10_class_names(root: str | os.PathLike, md5: Mapping[str, str] | None = None) -> list[str]:
    """The ten class names of ``batches.meta`` (airplane, automobile, ...), in label order."""
    dataset = _torchvision_class(_checked_md5(md5))
    try:
        return list(dataset(str(root), train=False, download=False).classes)
    except RuntimeError:
        verify_cifar10(root, md5)
        raise InputError(f"{root}: CIFAR-10 could not be read by torchvision") from None


def download_cifar10(root: str | os.PathLike, *, md5: Mapping[str, str] | None = None,
                     url: str = URL, archive_md5: str = ARCHIVE_MD5) -> None:
    """Fetch and unpack CIFAR-10 into ``root`` unless a verified copy is already there.

    An archive already at ``root / "cifar-10-python.tar.gz"`` with ``archive_md5`` is
    used without downloading. The archive is checked against ``archive_md5`` and unpacked
    with :func:`safe_extract_tar` into a temporary folder beside the target, whose files
    are then renamed into ``root / "cifar-10-batches-py"`` (a killed run leaves no
    half-written batch file under its final name).

    Raises:
        InputError: one line naming the url or archive when the download fails, the
            archive's md5 differs or the unpacked release does not verify.
    """
    root, table = Path(root), _checked_md5(md5)
    if _is_complete(root, table):
        return
    archive = root / ARCHIVE
    if not check_integrity(archive, archive_md5):
        _download(url, root, archive_md5)
    if not check_integrity(archive, archive_md5):
        raise InputError(f"{archive}: md5 {calculate_md5(archive)}, expected {archive_md5}; delete it and retry")
    _unpack(archive, root)
    verify_cifar10(root, table)


def _is_complete(root: Path, table: dict[str, str]) -> bool:
    try:
        verify_cifar10(root, table)
    except InputError:
        return False
    return True


def _download(url: str, root: Path, archive_md5: str) -> None:
    from torchvision.datasets.utils import download_url

    try:
        download_url(url, str(root), filename=ARCHIVE, md5=archive_md5)
    except Exception as error:  # URLError, OSError, RuntimeError("File not found or corrupted.")
        raise InputError(f"{url}: download into {root} failed ({type(error).__name__}: {_first_line(error)})") from None


def _unpack(archive: Path, root: Path) -> None:
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".cifar10-unpack-"))
    try:
        safe_extract_tar(archive, staging)
        unpacked = staging / BASE_FOLDER
        if not unpacked.is_dir():
            raise InputError(f"{archive}: no {BASE_FOLDER} folder inside the archive")
        target = root / BASE_FOLDER
        target.mkdir(parents=True, exist_ok=True)
        for item in unpacked.iterdir():
            if item.is_file():
                os.replace(item, target / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def safe_extract_tar(archive: str | os.PathLike, destination: str | os.PathLike) -> None:
    """Extract a tar archive into ``destination``, refusing anything that could escape it.

    Every member is checked before anything is written: only regular files and folders
    are accepted (no symbolic or hard links, devices or FIFOs), and a member's path may
    not be absolute, contain ``..`` or resolve outside ``destination``. Where Python's
    tarfile offers extraction filters, the ``data`` filter is applied as well.

    Raises:
        InputError: naming ``archive`` and the first offending member; nothing is
            extracted then.
    """
    archive, destination = Path(archive), Path(destination).resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(archive, member, destination)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(destination, members=members, filter="data")
            else:  # pragma: no cover - Python without extraction filters
                tar.extractall(destination, members=members)
    except (tarfile.TarError, EOFError, OSError) as error:
        raise InputError(f"{archive}: not a readable tar archive ({type(error).__name__}: {_first_line(error)})") from None


def _check_member(archive: Path, member: tarfile.TarInfo, destination: Path) -> None:
    if not (member.isfile() or member.isdir()):
        raise InputError(f"{archive}: member {member.name!r} is a link or special file; refusing to extract")
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts or "\\" in member.name:
        raise InputError(f"{archive}: member {member.name!r} has an unsafe path; refusing to extract")
    target = (destination / member.name).resolve()
    if target != destination and destination not in target.parents:
        raise InputError(f"{archive}: member {member.name!r} would land outside {destination}; refusing to extract")


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0][:200]
