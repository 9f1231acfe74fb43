"""Turn Snakemake's ``snakemake`` object into one call of a :mod:`databrittle.stages` function.

Named inputs, outputs and params become keyword arguments of the stage named by
``params.stage`` (``params.code`` only exists to mark results stale, and inputs named
``tracked_*`` only make Snakemake track files a stage reads through another input, such as
ImageNet's betons behind its ``{split}.npz`` files). The job's stderr
and stdout go to its ``log:`` file; a bad-input error ends the job with one line.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

from databrittle.errors import InputError

_NOT_ARGUMENTS = {"stage", "code"}
_TRACKED_ONLY = "tracked_"


def _value(item: Any) -> Any:
    if isinstance(item, (list, tuple)) or type(item).__name__ == "Namedlist":
        return [str(x) for x in item]
    return item


def stage_arguments(snakemake: Any) -> dict[str, Any]:
    """Keyword arguments of the stage from the named inputs, outputs and params."""
    kwargs: dict[str, Any] = {}
    for group in (snakemake.input, snakemake.output):
        for name, item in group.items():
            if group is snakemake.input and name.startswith(_TRACKED_ONLY):
                continue
            kwargs[name] = _value(item) if not isinstance(item, str) else str(item)
    for name, item in snakemake.params.items():
        if name not in _NOT_ARGUMENTS:
            kwargs[name] = item
    return kwargs


def run_stage(snakemake: Any) -> None:
    """Run ``databrittle.stages.<params.stage>`` for this job, logging to its log file."""
    _limit_threads(snakemake.threads)  # before torch/numpy start their thread pools
    from databrittle import stages

    function = getattr(stages, snakemake.params.stage)
    log_path = snakemake.log[0] if len(snakemake.log) else None
    with open(log_path, "w") if log_path else contextlib.nullcontext(sys.stderr) as log:
        with contextlib.redirect_stderr(log), contextlib.redirect_stdout(log):
            try:
                function(**stage_arguments(snakemake))
            except InputError as error:
                print(f"databrittle: {error}", file=log)
                print(f"databrittle: {error}", file=sys.__stderr__)
                sys.exit(1)


def _limit_threads(threads: int) -> None:
    """Cap BLAS/OpenMP threads at the job's ``threads:`` (set before torch is imported)."""
    value = str(max(1, int(threads)))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = value
