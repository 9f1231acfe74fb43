"""Scores of the attribution baselines from the data, with models from the shared trainer.

Every baseline returns float32 (T, n_train) scores, higher = more positive influence on
the target's correct-class margin; the pipeline ranks training samples by them over every
class and uses them, unchanged, as the LDS score vectors (no sign estimation: they are
signed already). All models come from :func:`databrittle.train.trained_modules` /
:func:`databrittle.train.train_models` with the counterfactual recipe (config section
``counterfactual``), seeded by purpose keys of the base seed.

- ``trak`` (Park et al. 2023; paper Figs. 1, 3, 4, Table 1): ``n_models`` models on all
  training data (keys "trak-model", r), traker's projection to ``proj_dim`` on the job's
  device (:mod:`databrittle.baselines.trak` says which projector).
- ``datamodels`` (Ilyas et al. 2022; paper Table 1, Fig. 3): with ``source: public`` the
  user's local copy of the public CIFAR-10 release (pre-fitted weights, or a fit on its
  masks and margins; sha256-checked); otherwise ``n_models`` models on random
  alpha-subsets (masks keyed "datamodels-masks") plus ``n_validation`` held-out ones,
  target margins, a LASSO per target with its L1 strength chosen on the held-out models
  (:mod:`databrittle.baselines.datamodels`). A fitting subset equal to an LDS evaluation
  subset is an error.
- ``gradcos`` (paper A.5.1): cosine similarity of per-sample loss gradients of one model
  trained on all data (key "gradcos-model"), over all classes
  (:mod:`databrittle.baselines.gradcos`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from databrittle.beton_images import BetonImages
from databrittle.errors import InputError
from databrittle.schedule import ModelJob
from databrittle.seeds import derive_seed
from databrittle.train import TrainConfig, margins_and_correct, module_inputs, train_models, trained_modules

BASELINES = ("trak", "datamodels", "gradcos")


def baseline_scores(name: str, train_images: np.ndarray, train_labels: np.ndarray, target_images: np.ndarray,
                    target_labels: np.ndarray, options: dict[str, Any], recipe: TrainConfig | None, seed: int,
                    device: torch.device, lds: dict[str, Any] | None = None, target_ids: np.ndarray | None = None,
                    n_test: int | None = None) -> np.ndarray:
    """float32 (T, n_train) scores of baseline ``name`` for the targets.

    Args:
        name: ``trak``, ``datamodels``, ``gradcos``, or ``trak-N`` / ``datamodels-N``
            (N models: overrides ``options["n_models"]``; for the public datamodels, a fit on
            the first N public models instead of the pre-fitted weights).
        train_images: uint8 (n_train, H, W, C); train_labels: int (n_train,).
        target_images: uint8 (T, H, W, C); target_labels: int (T,).
        options: the baseline's config section.
        recipe: the counterfactual recipe of the models a baseline trains (None for the
            public datamodels, which train nothing).
        lds: the config's ``lds`` section (datamodels checks its masks against LDS's).
        target_ids, n_test: the targets' test indices and the test split's size (the
            public datamodels are indexed by test sample).
    """
    from databrittle.methods import parse_method

    spec = parse_method(name)
    if spec.n_models is not None:
        options = {**options, "n_models": spec.n_models}
    name = spec.similarity
    n_classes = int(max(train_labels.max(), target_labels.max()) + 1)
    if name == "trak":
        return _trak(train_images, train_labels, target_images, target_labels, options, recipe, seed, device,
                     n_classes)
    if name == "datamodels":
        return _datamodels(train_images, train_labels, target_images, target_labels, options, recipe, seed, device,
                           n_classes, lds, target_ids, n_test, spec.n_models)
    if name == "gradcos":
        return _gradcos(train_images, train_labels, target_images, target_labels, recipe, seed, device, n_classes)
    raise InputError(f"method '{name}': not a baseline (expected one of {BASELINES})")


def _trak(train_images, train_labels, target_images, target_labels, options, recipe, seed, device, n_classes):
    from databrittle.baselines.trak import trak_scores

    jobs = [ModelJob(seed=derive_seed(seed, "trak-model", r)) for r in range(options["n_models"])]
    models = trained_modules(train_images, train_labels, jobs, recipe, n_classes, device)
    settings = {"proj_dim": options["proj_dim"], "seed": derive_seed(seed, "trak-projection") % (2**31),
                "device": str(device)}
    with tempfile.TemporaryDirectory(prefix="trak-") as work:
        if isinstance(train_images, BetonImages):  # ImageNet: inputs read from the betons batch by batch
            from databrittle.baselines.trak import trak_scores_from_batches
            from databrittle.beton_trainer import module_batches

            return trak_scores_from_batches(
                models, lambda: module_batches(train_images, train_labels, recipe, device), len(train_labels),
                lambda: module_batches(target_images, target_labels, recipe, device), len(target_labels),
                save_dir=f"{work}/store", **settings)
        return trak_scores(models, module_inputs(recipe, train_images, train_images), torch.tensor(np.asarray(train_labels)),
                           module_inputs(recipe, train_images, target_images), torch.tensor(np.asarray(target_labels)),
                           save_dir=f"{work}/store", **settings)


def _datamodels(train_images, train_labels, target_images, target_labels, options, recipe, seed, device, n_classes,
                lds, target_ids=None, n_test=None, public_fit_models=None):
    from databrittle.baselines.datamodels import check_no_overlap, fit_datamodels, subset_masks_for_datamodels
    from databrittle.lds import subset_masks

    if options.get("source", "train") == "public":
        return _public_datamodels(options, len(train_labels), n_test, target_ids, public_fit_models)
    n_fit, n_val = options["n_models"], options["n_validation"]
    masks = subset_masks_for_datamodels(len(train_labels), n_fit + n_val, options["alpha"], seed)
    if lds is not None:
        check_no_overlap(masks, subset_masks(len(train_labels), lds["n_subsets"], lds["alpha"], seed),
                         "datamodels masks (config key 'datamodels')")
    jobs = [ModelJob(seed=derive_seed(seed, "datamodels-model", j), removed=np.flatnonzero(~mask))
            for j, mask in enumerate(masks)]
    logits = train_models(train_images, train_labels, jobs, recipe, target_images, n_classes, device)
    margins, _, _ = margins_and_correct(logits, np.asarray(target_labels)[None, :])
    fit = fit_datamodels(masks[:n_fit], margins[:n_fit], masks[n_fit:], margins[n_fit:])
    return fit.weights.astype(np.float32)


def _gradcos(train_images, train_labels, target_images, target_labels, recipe, seed, device, n_classes):
    from databrittle.baselines.gradcos import gradcos_scores, per_sample_gradients

    if isinstance(train_images, BetonImages):
        raise InputError(f"method 'gradcos': keeps the per-sample gradients of every training image in memory; "
                         f"not supported for the images of {train_images.path} (ImageNet)")
    model = trained_modules(train_images, train_labels, [ModelJob(seed=derive_seed(seed, "gradcos-model"))], recipe,
                            n_classes, device)[0]
    train_grads = per_sample_gradients(model, module_inputs(recipe, train_images, train_images),
                                       torch.tensor(np.asarray(train_labels)))
    target_grads = per_sample_gradients(model, module_inputs(recipe, train_images, target_images),
                                        torch.tensor(np.asarray(target_labels)))
    return gradcos_scores(train_grads, target_grads)


def _public_datamodels(options: dict[str, Any], n_train: int, n_test: int, target_ids: np.ndarray,
                       fit_models: int | None = None) -> np.ndarray:
    """Scores from the public release: its pre-fitted weights, or a LASSO fit on its masks
    and margins (the last ``n_validation`` models choose the L1 strength). ``fit_models``
    (method ``datamodels-N``) fits on the first N models even when weights are given."""
    from databrittle.baselines.datamodels import fit_datamodels, load_public_datamodels

    files = {key: options["public"][key] for key in ("masks", "margins", "weights") if key in options["public"]}
    digests = options["public"]["sha256"]
    missing = sorted(set(files) - set(digests))
    if missing or set(digests) - set(files):
        raise InputError(f"config key 'datamodels.public.sha256': needs exactly one digest per file given "
                         f"({sorted(files)}); missing {missing}, unknown {sorted(set(digests) - set(files))}")
    expected = {str(Path(files[key])): digests[key] for key in files}  # the loader's own path normalisation
    weights = None if fit_models is not None else files.get("weights")
    data = load_public_datamodels(files["masks"], files["margins"], weights, expected_sha256=expected,
                                  n_train=n_train, n_test=n_test)
    if data.weights is not None:
        return data.scores(target_ids)
    n_val = options["n_validation"]
    n_fit = len(data.masks) - n_val if fit_models is None else fit_models
    if n_fit < 1 or n_fit + n_val > len(data.masks):
        raise InputError(f"{files['masks']}: {len(data.masks)} models, fewer than the {max(n_fit, 1)} to fit plus "
                         f"datamodels.n_validation = {n_val} held out")
    margins = np.asarray(data.margins[:, np.asarray(target_ids)], dtype=np.float64)
    fit = fit_datamodels(np.asarray(data.masks[:n_fit]), margins[:n_fit], np.asarray(data.masks[-n_val:]),
                         margins[-n_val:])
    return fit.weights.astype(np.float32)
