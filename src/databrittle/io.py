"""Atomic file writing and checked reading of the pipeline's artifacts.

Every result is written to a temporary file in the destination folder and renamed into
place (DESIGN.md section 3), so a killed job never leaves a partial file under its final
name. Readers raise :class:`~databrittle.errors.InputError` naming the file when it is
missing, truncated or of the wrong shape.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from databrittle.errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file keeps ``path``'s suffix so that libraries choosing a format by
    suffix (numpy, matplotlib) behave as for the final name. On error it is removed.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=f".tmp{final.suffix}")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give results normal permissions
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import, before any threads exist


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` (.npy) atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, np.asarray(array), allow_pickle=False)


def load_npy(path: str | os.PathLike, *, dtype: Any = None, ndim: int | None = None,
             rows: int | None = None) -> np.ndarray:
    """Read a .npy file, checking it is complete and has the expected dtype/ndim/rows.

    Raises:
        InputError: naming ``path`` when the file is missing, truncated, not a .npy file,
            or its dtype, number of dimensions or number of rows differ from the ones asked.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise InputError(f"{path}: not a complete .npy file ({error})") from None
    if dtype is not None and array.dtype != np.dtype(dtype):
        raise InputError(f"{path}: dtype {array.dtype}, expected {np.dtype(dtype)}")
    if ndim is not None and array.ndim != ndim:
        raise InputError(f"{path}: {array.ndim} dimensions, expected {ndim}")
    if rows is not None and array.shape[0] != rows:
        raise InputError(f"{path}: {array.shape[0]} rows, expected {rows}")
    return array


def save_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write named arrays to an uncompressed .npz atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **{name: np.asarray(a) for name, a in arrays.items()})


def load_npz(path: str | os.PathLike, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Read the named arrays of a .npz file, checking it is complete and has them all.

    Raises:
        InputError: naming ``path`` when it is missing, truncated or lacks one of ``names``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [name for name in names if name not in archive.files]
            if missing:
                raise InputError(f"{path}: missing arrays {missing}")
            return {name: archive[name] for name in names}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise InputError(f"{path}: not a complete .npz file ({error})") from None


def write_json(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write ``payload`` as indented JSON atomically (numpy scalars/arrays converted)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read a JSON file; a missing or corrupt file is an :class:`InputError` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error})") from None


def write_csv(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    """Write ``frame`` as CSV (no index) atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
