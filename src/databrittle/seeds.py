"""Seeds derived from one base seed with :class:`numpy.random.SeedSequence`, keyed by purpose.

DESIGN.md section 5: every random choice derives from the config's base ``seed`` through a
SeedSequence whose spawn key names the purpose ("split", "counterfactual", ...). Keys may be
strings or integers; strings are mapped to integers with a stable hash (not Python's
salted ``hash``), so the same purpose gives the same seed on every machine and run. No
``seed + i`` arithmetic is used anywhere.

Common random numbers: the seed of counterfactual replicate ``r`` for target ``t`` and
metric ``m`` is ``derive_seed(base, "counterfactual", m, t, r)``, which does not depend on
the method or the bisection step.
"""

from __future__ import annotations

import hashlib

import numpy as np

Key = str | int


def _key_to_int(key: Key) -> int:
    if isinstance(key, (bool, np.bool_)):
        raise TypeError("seed keys must be str or int, not bool")
    if isinstance(key, (int, np.integer)):
        if key < 0:
            raise ValueError(f"seed key must be non-negative, got {key}")
        return int(key)
    digest = hashlib.sha256(str(key).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def seed_sequence(base_seed: int, *keys: Key) -> np.random.SeedSequence:
    """The SeedSequence for ``keys`` under ``base_seed``."""
    return np.random.SeedSequence(entropy=int(base_seed), spawn_key=tuple(_key_to_int(k) for k in keys))


def derive_seed(base_seed: int, *keys: Key) -> int:
    """A 63-bit integer seed (fits torch.Generator.manual_seed) for the purpose ``keys``."""
    return int(seed_sequence(base_seed, *keys).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> np.uint64(1))


def rng(base_seed: int, *keys: Key) -> np.random.Generator:
    """A numpy Generator for the purpose ``keys``."""
    return np.random.default_rng(seed_sequence(base_seed, *keys))
