"""How many networks a config trains, per pipeline stage and per output, and what that costs.

The paper's users plan GPU time before they submit (paper Fig. 1 is itself a cost
comparison). Counts come from the config alone (DESIGN.md section 4), so they hold before
any data exist:

- ``reference``: ``reference.n_models`` counterfactual models on all data;
- ``bisection``: per (method, metric), at most ``n_targets x n_test x (1 + budget)``
  counterfactual models -- Algorithm 1 trains ``n_test`` models per target at step 0 and at
  every later step until its bracket closes (``H - L <= 1``), so this is an upper bound;
  a target censored at step 0 or a bracket that closes early trains fewer;
- ``lds``: ``lds.n_subsets x lds.models_per_subset`` models (when ``lds.enabled``);
- ``baselines``: ``trak[-N]`` N models, ``datamodels[-N]`` N + ``n_validation`` models when
  trained here (0 with ``source: public``), ``gradcos`` one model;
- ``extractors``: one SSL run per SSL extractor (not imported ones) and the supervised
  extractor -- different cost, so listed apart and never multiplied by the per-model time.

GPU-hours = counterfactual-model trainings x seconds per training / 3600, for a
seconds-per-training the user measures (``benchmarks/trainer_throughput.py --mode gpu``)
or takes from a published figure; it is an argument, never a built-in number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from databrittle.methods import SSL_METHODS, extractors_used, parse_method


@dataclass
class TrainingBudget:
    """Counterfactual-model trainings by stage, and extractor runs, for one config."""

    reference: int
    bisection: dict[str, int] = field(default_factory=dict)  # "{metric}/{method}" -> upper bound
    lds: int = 0
    baselines: dict[str, int] = field(default_factory=dict)  # method -> models
    extractors: list[str] = field(default_factory=list)  # SSL/supervised runs (trained here)

    @property
    def total_models(self) -> int:
        return self.reference + sum(self.bisection.values()) + self.lds + sum(self.baselines.values())

    def models_for(self, methods: list[str], metrics: list[str]) -> int:
        """Trainings behind a figure over ``methods`` x ``metrics`` (its bisection and baselines;
        the reference models that choose its targets included)."""
        steps = sum(self.bisection[f"{metric}/{method}"] for metric in metrics for method in methods)
        return self.reference + steps + sum(self.baselines.get(method, 0) for method in methods)


def baseline_models(method: str, config: dict[str, Any]) -> int:
    """Models a baseline trains (0 for the public datamodels and for non-baselines)."""
    spec = parse_method(method)
    if spec.similarity == "trak":
        return spec.n_models or config["trak"]["n_models"]
    if spec.similarity == "datamodels":
        options = config["datamodels"]
        if options.get("source", "train") == "public":
            return 0
        return (spec.n_models or options["n_models"]) + options["n_validation"]
    if spec.similarity == "gradcos":
        return 1
    return 0


def models_used(method: str, config: dict[str, Any]) -> int | None:
    """Models behind a method's scores, the "models used" of paper Table 1: 0 for the random
    control, 1 for a feature method (one extractor), the models a baseline trains (TRAK's
    checkpoints, Datamodels' fitting + validation models, Grad-Cos's one), N + n_validation
    public models for ``datamodels-N`` from the public release, and None (not known from the
    config) for the release's pre-fitted weights or a fit on all its models."""
    spec = parse_method(method)
    if spec.similarity == "random":
        return 0
    if spec.extractor is not None:
        return 1
    if spec.similarity == "datamodels" and config["datamodels"].get("source", "train") == "public":
        return spec.n_models + config["datamodels"]["n_validation"] if spec.n_models is not None else None
    return baseline_models(method, config)


def training_budget(config: dict[str, Any]) -> TrainingBudget:
    """The :class:`TrainingBudget` of a validated config."""
    bisection = config["bisection"]
    per_method = config["targets"]["n_targets"] * bisection["n_test"] * (1 + bisection["budget"])
    lds = config["lds"]
    extractors = [name for name in extractors_used(config["methods"])
                  if name not in SSL_METHODS or "pretrained" not in config["ssl"].get(name, {})]
    return TrainingBudget(
        reference=config["reference"]["n_models"],
        bisection={f"{metric}/{method}": per_method for metric in bisection["metrics"] for method in config["methods"]},
        lds=lds["n_subsets"] * lds["models_per_subset"] if lds.get("enabled", True) else 0,
        baselines={method: baseline_models(method, config) for method in config["methods"]
                   if baseline_models(method, config)},
        extractors=extractors,
    )


def budget_report(config: dict[str, Any], seconds_per_model: float | None = None) -> str:
    """A plain-text table: trainings per output (Figs. 2, 3, AUC table, LDS table) and in
    total, with GPU-hours when ``seconds_per_model`` is given."""
    budget = training_budget(config)
    metrics = config["bisection"]["metrics"]
    methods = config["methods"]
    fig2 = [m for m in methods if parse_method(m).extractor in ("moco", "supervised")]
    rows = [("fig3 / table_auc (all methods)", budget.models_for(methods, metrics)),
            ("fig2 (moco, supervised)", budget.models_for(fig2, metrics) if fig2 else 0),
            ("table_lds (LDS ground truth + baselines)",
             budget.lds + sum(budget.baselines.values()) if config["lds"].get("enabled", True) else 0),
            ("all (every output, shared models counted once)", budget.total_models)]
    lines = [f"{'output':<50} {'models':>10}" + ("  GPU-hours" if seconds_per_model else "")]
    for name, models in rows:
        hours = f"  {models * seconds_per_model / 3600:9.1f}" if seconds_per_model else ""
        lines.append(f"{name:<50} {models:>10,}{hours}")
    lines.append(f"plus extractor runs: {', '.join(budget.extractors) or 'none'}"
                 + (f"  (at {seconds_per_model:g} s per counterfactual model)" if seconds_per_model else ""))
    return "\n".join(lines)
