"""Batched exact ESVM solver vs scikit-learn's LinearSVC (issue 4), measured in one run.

    python benchmarks/esvm_solver.py [--targets 100] [--reference-targets 5]

For each case (candidates n in {5000, 50000}, feature dimension d in {128, 512}) it builds
features with class structure (10 Gaussian clusters, unit-normalised, as SSL features
are), fits one Exemplar SVM per target (C = 0.1, squared hinge, balanced weights) with
:func:`databrittle.esvm.fit` for all targets at once, and with scikit-learn's primal
solver (``dual=False, tol=1e-6``, the reference) for the first --reference-targets
targets, timing both; it prints the per-target and 100-target times, the ratio, the
largest weight difference and the Jaccard index of the top-1280 candidate sets.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from databrittle import esvm  # noqa: E402


def features(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.normal(size=(10, d))
    x = centres[rng.integers(0, 10, n)] + rng.normal(scale=1.5, size=(n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = set(a.tolist()), set(b.tolist())
    return len(sa & sb) / len(sa | sb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--reference-targets", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cases", default="5000x128,50000x128,5000x512,50000x512")
    parser.add_argument("--top", type=int, default=1280)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    warm = features(50, 8, rng)
    esvm.fit(warm[:2], warm, 0.1), esvm.fit_reference(warm[0], warm, 0.1)  # imports and first-call costs
    print(f"{'case':>12} {'ours (all targets)':>19} {'sklearn/target':>15} {'sklearn x targets':>18} "
          f"{'speed-up':>9} {'max|dw|':>9} {'min Jaccard@top':>16}")
    for case in args.cases.split(","):
        n, d = map(int, case.split("x"))
        candidates = features(n, d, rng)
        targets = features(args.targets, d, rng)
        start = time.perf_counter()
        weights = esvm.fit(targets, candidates, 0.1)
        ours = time.perf_counter() - start
        start = time.perf_counter()
        reference = np.stack([esvm.fit_reference(t, candidates, 0.1) for t in targets[: args.reference_targets]])
        per_target = (time.perf_counter() - start) / args.reference_targets
        top = min(args.top, n)
        ours_scores = esvm.decision_values(weights[: args.reference_targets], candidates)
        ref_scores = esvm.decision_values(reference, candidates)
        agreement = min(jaccard(np.argsort(-a, kind="stable")[:top], np.argsort(-b, kind="stable")[:top])
                        for a, b in zip(ours_scores, ref_scores))
        extrapolated = per_target * args.targets
        print(f"{case:>12} {ours:>17.2f} s {per_target:>13.3f} s {extrapolated:>16.1f} s "
              f"{extrapolated / ours:>8.1f}x {np.abs(weights[: args.reference_targets] - reference).max():>9.1e} "
              f"{agreement:>16.4f}", flush=True)


if __name__ == "__main__":
    main()
