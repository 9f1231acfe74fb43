"""Bisection step jobs and support tables (paper Algorithm 1, DESIGN.md sections 1, 3, 5).

One job computes step ``s`` of one (metric, arch, method) for a fixed shard of targets: it
reads each target's step ``s-1`` file (its bracket), trains the ``n_test`` models of every
target whose step is not a no-op in one batched call, and writes one step file per target.

Common random numbers (DESIGN.md section 5): replicate ``r`` of target ``t`` under metric
``m`` always uses seed ``derive_seed(base, "counterfactual", m, t, r)``, whatever the method
and step, so differences between methods and steps come from the data change only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from databrittle.bisect import BisectState, advance, m_to_test, state_from_dict, state_to_dict
from databrittle.errors import InputError
from databrittle.io import read_json, write_json
from databrittle.seeds import derive_seed
from databrittle.train import ModelJob, TrainConfig, margins_and_correct, train_models

METRICS = ("removal", "mislabel")


@dataclass(frozen=True)
class Target:
    """One target: its test index, label, flip class and the method's ranking (k,) int64."""

    target: int
    label: int
    flip_class: int
    ranking: np.ndarray


def counterfactual_seeds(base_seed: int, metric: str, target: int, n_test: int) -> list[int]:
    """The n_test model seeds of a counterfactual test: same for every method and step."""
    return [derive_seed(base_seed, "counterfactual", metric, int(target), r) for r in range(n_test)]


def model_jobs(metric: str, target: Target, m: int, seeds: Sequence[int]) -> list[ModelJob]:
    """Models of one counterfactual test: the first ``m`` ranked samples removed or relabelled."""
    chosen = np.asarray(target.ranking[:m], dtype=np.int64)
    if metric == "removal":
        return [ModelJob(seed=s, removed=chosen) for s in seeds]
    if metric == "mislabel":
        return [ModelJob(seed=s, relabel_index=chosen, relabel_to=target.flip_class) for s in seeds]
    raise InputError(f"metric {metric!r}: expected one of {METRICS}")


def run_step(step: int, metric: str, targets: Sequence[Target], previous: Sequence[BisectState | None], k: int,
             n_test: int, base_seed: int, train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
             n_classes: int, cfg: TrainConfig, device: torch.device) -> list[dict[str, Any]]:
    """Compute step ``step`` for every target of a shard; return one step record per target.

    Args:
        previous: each target's state after step - 1 (None for step 0).
        test_images: uint8 (n_test_split, H, W, C) images of the test split (targets index into it).
    """
    plans = []
    for target, prev in zip(targets, previous):
        m = m_to_test(prev, k)
        seeds = counterfactual_seeds(base_seed, metric, target.target, n_test) if m is not None else []
        plans.append((m, seeds, model_jobs(metric, target, m, seeds) if m is not None else []))
    jobs = [job for _, _, target_jobs in plans for job in target_jobs]
    eval_ids = np.array([t.target for t, (m, _, _) in zip(targets, plans) if m is not None], dtype=np.int64)
    logits = train_models(train_images, train_labels, jobs, cfg, test_images[eval_ids],
                          n_classes, device)
    records, cursor, evaluated = [], 0, 0
    for target, prev, (m, seeds, target_jobs) in zip(targets, previous, plans):
        models: list[dict[str, Any]] = []
        avg = None
        if m is not None:
            block = logits[cursor:cursor + len(target_jobs), evaluated]
            margin, correct, prediction = margins_and_correct(block, np.int64(target.label))
            models = [{"seed": s, "correct": bool(c), "margin": float(g), "prediction": int(p)}
                      for s, c, g, p in zip(seeds, correct, margin, prediction)]
            avg = float(np.mean(correct))
            cursor += len(target_jobs)
            evaluated += 1
        state = advance(prev, k, m, avg)
        records.append({"target": target.target, "label": target.label, "flip_class": target.flip_class,
                        "metric": metric, "step": step, "M": m, "trained": m is not None, "avg_correct": avg,
                        "models": models, "state": state_to_dict(state)})
    return records


def read_state(path: str | os.PathLike) -> BisectState:
    """The bisection state recorded in a step file."""
    return state_from_dict(_record_state(read_json(path), path))


def _record_state(record: dict[str, Any], path: str | os.PathLike) -> dict[str, Any]:
    if not isinstance(record.get("state"), dict):
        raise InputError(f"{path}: not a bisection step file (no 'state')")
    return record["state"]


def write_records(records: Sequence[dict[str, Any]], paths: Sequence[str | os.PathLike], params: dict[str, Any]) -> None:
    """Write each target's step record (with the job's params) to its step file, atomically."""
    for record, path in zip(records, paths):
        write_json(path, {**record, "params": params})


def support_table(final_step_files: Sequence[str | os.PathLike], all_step_files: Sequence[Sequence[str]]) -> pd.DataFrame:
    """Support per target from its last step file (DESIGN.md section 3 support CSV).

    Args:
        final_step_files: per target, its step{budget}.json.
        all_step_files: per target, its step0..step{budget} files (to count the work done).
    Returns:
        columns target, support (empty when censored), censored, steps_run, models_trained.
    """
    rows = []
    for final, steps in zip(final_step_files, all_step_files):
        record = read_json(final)
        state = state_from_dict(_record_state(record, final))
        step_records = [read_json(p) for p in steps]
        rows.append({"target": record["target"], "support": state.support, "censored": state.censored,
                     "steps_run": sum(r["trained"] for r in step_records),
                     "models_trained": sum(len(r["models"]) for r in step_records)})
    frame = pd.DataFrame(rows)
    frame["support"] = frame["support"].astype("Int64")
    return frame
