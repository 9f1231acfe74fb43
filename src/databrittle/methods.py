"""The registry of ranking methods (DESIGN.md section 1, paper sections 3, A.3-A.5).

A method name is one of

- ``random``: a seeded random order of the target's same-class candidates (the control);
- ``trak``, ``datamodels``, ``gradcos``: attribution baselines
  (:mod:`databrittle.baselines.run`), ranking every training image by its score;
  ``trak-N`` and ``datamodels-N`` are the same baselines with N models (paper Figs. 1, 3,
  Table 1 compare TRAK with 5/10/20/100 models and datamodels fit on 10K/50K models):
  ``trak-N`` uses N checkpoints instead of ``trak.n_models``; ``datamodels-N`` fits on N
  models (trained, or the first N of the public masks), never the pre-fitted weights;
- ``{similarity}-{extractor}`` or ``{similarity}-{extractor}-allclass``: a similarity
  (``esvm``, ``l2``, ``cosine``) on the features of an extractor (``moco``, ``simclr``,
  ``byol``, ``dino`` -- paper section 3 and appendix A.3 -- or ``supervised``)
  over the target's same-class candidates (paper A.4's default) or over every training
  image (``-allclass``, paper A.4 / Fig. 11).

``esvm-moco`` is the paper's method. Every method produces the same outputs (DESIGN.md
section 3), so bisection, CDF/AUC, LDS and figures work for any of them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from databrittle.errors import InputError

SIMILARITIES = ("esvm", "l2", "cosine")
SSL_METHODS = ("moco", "simclr", "byol", "dino")
"""Self-supervised extractors (paper section 3 and appendix A.3; :mod:`databrittle.ssl_objectives`)."""
EXTRACTORS = (*SSL_METHODS, "supervised")
POOLS = {"": "same_class", "allclass": "all_classes"}
BASELINES = ("random", "trak", "datamodels", "gradcos")
SIZED_BASELINES = ("trak", "datamodels")
"""Baselines that also come as ``{name}-{N}`` with N models."""


@dataclass(frozen=True)
class MethodSpec:
    """A ranking method: feature extractor x similarity x candidate pool, or a baseline.

    ``random`` has no extractor; its candidates are the same-class pool. The attribution
    baselines have no extractor either and rank every training image.
    """

    name: str
    similarity: str
    extractor: str | None
    pool: str = "same_class"
    n_models: int | None = None
    """For ``trak-N`` / ``datamodels-N``: N, the number of models the baseline uses."""


def known_methods() -> str:
    """A one-line description of the method grammar, for error messages."""
    return (f"one of {', '.join(BASELINES)}, {{{','.join(SIZED_BASELINES)}}}-N (N models), "
            f"or {{{','.join(SIMILARITIES)}}}-{{{','.join(EXTRACTORS)}}}[-allclass]")


def parse_method(name: str) -> MethodSpec:
    """``"esvm-moco"`` -> MethodSpec(similarity="esvm", extractor="moco", pool="same_class").

    Raises:
        InputError naming the method when it is not in the registry.
    """
    if name in BASELINES:
        return MethodSpec(name=name, similarity=name, extractor=None,
                          pool="same_class" if name == "random" else "all_classes")
    parts = name.split("-")
    if len(parts) == 2 and parts[0] in SIZED_BASELINES and parts[1].isdigit() and not parts[1].startswith("0"):
        return MethodSpec(name=name, similarity=parts[0], extractor=None, pool="all_classes", n_models=int(parts[1]))
    if len(parts) in (2, 3):
        similarity, extractor, pool = parts[0], parts[1], parts[2] if len(parts) == 3 else ""
        if similarity in SIMILARITIES and extractor in EXTRACTORS and pool in POOLS:
            return MethodSpec(name=name, similarity=similarity, extractor=extractor, pool=POOLS[pool])
    raise InputError(f"method '{name}': not in the registry (expected {known_methods()})")


def extractors_used(methods: list[str]) -> list[str]:
    """Feature extractors the listed methods need, in a stable order."""
    return sorted({spec.extractor for spec in map(parse_method, methods) if spec.extractor})


def is_attribution(spec: MethodSpec) -> bool:
    """True for the attribution baselines, whose scores are used as they are for LDS."""
    return spec.extractor is None and spec.similarity != "random"
