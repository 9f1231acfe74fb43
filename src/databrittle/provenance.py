"""Sidecar JSON for every artifact, and code hashes that mark results stale.

DESIGN.md section 5: each artifact gets a sidecar with the params that made it, seeds,
package versions, device, cost (wall time, peak memory, bytes written) and sanity numbers.

Staleness mechanism: Snakemake reruns a job when its ``params`` change, but it cannot see
the Python modules a script imports. Each rule therefore passes
``code=code_hash([...modules it uses...])`` among its params; editing one of those modules
changes the hash and marks exactly the results of the rules that use it as stale.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import platform
import resource
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from databrittle.io import write_json

_PACKAGES = ("databrittle", "torch", "numpy", "scikit-learn", "scipy", "ffcv", "lightly", "snakemake")


def code_hash(modules: Iterable[str]) -> str:
    """sha256 (first 16 hex digits) over the source of the given ``databrittle`` modules.

    Args:
        modules: module names relative to the package, e.g. ``["bisect", "train"]``.
    """
    digest = hashlib.sha256()
    for name in sorted(set(modules)):
        spec = importlib.util.find_spec(f"databrittle.{name}")
        if spec is None or spec.origin is None:
            raise ValueError(f"code_hash: no module databrittle.{name}")
        digest.update(name.encode())
        digest.update(Path(spec.origin).read_bytes())
    return digest.hexdigest()[:16]


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape results."""
    versions = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def peak_memory_bytes() -> int:
    """Peak resident memory of this process so far (ru_maxrss, KiB on Linux)."""
    scale = 1 if sys.platform == "darwin" else 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


class CostMeter:
    """Wall time and peak memory of a block of work, for the sidecar's ``cost`` entry."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def cost(self, outputs: Iterable[str | os.PathLike] = ()) -> dict[str, Any]:
        sizes = [Path(p).stat().st_size for p in outputs if Path(p).exists()]
        return {
            "wall_seconds": round(time.perf_counter() - self.started, 3),
            "peak_memory_bytes": peak_memory_bytes(),
            "bytes_written": int(sum(sizes)),
        }


def sidecar_path(artifact: str | os.PathLike) -> Path:
    """``x.npy`` -> ``x.json``; ``x.scores.npy`` stays beside it as ``x.scores.json``."""
    return Path(artifact).with_suffix(".json")


def write_sidecar(path: str | os.PathLike, *, params: dict[str, Any], meter: CostMeter,
                  outputs: Iterable[str | os.PathLike] = (), device: str = "cpu",
                  **extra: Any) -> None:
    """Write the sidecar JSON of an artifact (atomically)."""
    payload: dict[str, Any] = {
        "params": params,
        "versions": package_versions(),
        "device": device,
        "host": platform.node(),
        "cost": meter.cost(outputs),
    }
    payload.update(extra)
    write_json(path, payload)


@contextmanager
def measured() -> Iterator[CostMeter]:
    """``with measured() as meter:`` ... ``write_sidecar(..., meter=meter)``."""
    yield CostMeter()
