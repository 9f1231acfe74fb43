"""Device policy from the config's ``device`` key (DESIGN.md section 4)."""

from __future__ import annotations

import os

import torch

from databrittle.errors import InputError


def resolve_device(policy: str) -> torch.device:
    """``auto`` -> CUDA when visible else CPU; ``cuda`` -> CUDA or an immediate error; ``cpu``.

    Raises:
        InputError: ``device: cuda`` without a visible GPU (fails in seconds instead of
            training on CPU for days), or an unknown policy.
    """
    if policy == "cpu":
        return torch.device("cpu")
    if policy == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if policy == "cuda":
        if not torch.cuda.is_available():
            raise InputError("config key 'device': 'cuda' was asked but no CUDA GPU is visible")
        return torch.device("cuda")
    raise InputError(f"config key 'device': unknown policy {policy!r} (auto, cuda or cpu)")


def available_cpus() -> int:
    """The CPUs this process may run on (a SLURM job's allocation, not the whole node)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
