"""TRAK baseline: data attribution scores from N model checkpoints, computed with ``traker``.

TRAK (Park et al., "TRAK: Attributing Model Behavior at Scale", ICML 2023) linearises each
trained checkpoint around its parameters, randomly projects the per-sample gradients of the
model output function and scores every (target, training sample) pair with the resulting
kernel. The paper "Data brittleness estimation with self-supervised features" uses it as the
N-model baseline against its 1-model method (Figs. 1, 3, 4 and Table 1: TRAK with N models).

This module is a thin wrapper around the reference implementation (``traker==0.3.2``,
``trak.TRAKer``) with the "image_classification" task. Conventions of that implementation,
for checkpoint m of N (all float32 here; traker's half precision is switched off):

* model output: the margin ``f(z) = logit_y(x) - logsumexp_{c != y} logit_c(x)``; per-sample
  gradients ``g_i = d f(z_i) / d theta`` over all parameters (vectorised in
  ``named_parameters`` order), computed with ``torch.func`` (``vmap`` over single samples);
* projected features ``phi_i = P_m^T g_i / sqrt(D)`` (D: number of parameters, P_m: D x k
  random matrix from :class:`trak.projectors.BasicProjector`, seeded by ``seed`` and m);
* kernel ``K_m = Phi_m^T Phi_m + lambda_reg * I`` (k x k, Phi_m: n_train x k), whose inverse
  traker divides by the mean absolute value of its entries;
* out-to-loss weights ``q_i = 1 - p_i`` (p_i: softmax probability of the correct class);
* final scores ``tau(t, i) = mean_m[phi_t^T K_m^{-1} phi_i] * mean_m[q_i]``.

Projector: on the CPU, traker's block-wise :class:`~trak.projectors.BasicProjector` (with
the fix of :func:`_projector_class`), tested here. On a CUDA device the choice is left to
traker, as its documentation recommends: its ``CudaProjector`` when the optional ``fast_jl``
package is installed (``pip install traker[fast]``, compiled against the cluster's CUDA; not
a dependency of this project), else ``BasicProjector`` on the GPU (traker then logs that it
falls back). The CUDA path has not been run by this project (no GPU).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from collections.abc import Callable, Iterable
from typing import Literal, Sequence

import numpy as np
import torch

from databrittle.errors import InputError

_EXPERIMENT = "targets"
Batch = tuple[torch.Tensor, torch.Tensor]


def _check_inputs(models: Sequence[torch.nn.Module], train_inputs: torch.Tensor, train_labels: torch.Tensor,
                  target_inputs: torch.Tensor, target_labels: torch.Tensor, proj_dim: int, batch_size: int,
                  lambda_reg: float, save_dir: Path) -> None:
    if len(models) == 0:
        raise InputError("trak_scores: models is empty; TRAK needs at least one model checkpoint")
    if not all(isinstance(m, torch.nn.Module) for m in models):
        raise InputError("trak_scores: every entry of models must be a torch.nn.Module")
    reference = {k: tuple(v.shape) for k, v in models[0].state_dict().items()}
    for index, model in enumerate(models[1:], start=1):
        if {k: tuple(v.shape) for k, v in model.state_dict().items()} != reference:
            raise InputError(f"trak_scores: models[{index}] has a different architecture (state_dict keys or "
                             "shapes) than models[0]; all checkpoints must share one architecture")
    for name, inputs, labels in (("train", train_inputs, train_labels), ("target", target_inputs, target_labels)):
        if not isinstance(inputs, torch.Tensor) or not isinstance(labels, torch.Tensor):
            raise InputError(f"trak_scores: {name}_inputs and {name}_labels must be torch tensors")
        if not inputs.is_floating_point():
            raise InputError(f"trak_scores: {name}_inputs must be a floating-point tensor (preprocessed model "
                             f"inputs), got dtype {inputs.dtype}")
        if labels.ndim != 1 or labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise InputError(f"trak_scores: {name}_labels must be a 1-D integer tensor, got shape "
                             f"{tuple(labels.shape)} and dtype {labels.dtype}")
        if inputs.ndim < 1 or inputs.shape[0] != labels.shape[0]:
            raise InputError(f"trak_scores: {name}_inputs has {inputs.shape[0] if inputs.ndim else 0} samples but "
                             f"{name}_labels has {labels.shape[0]}; they must match")
        if labels.shape[0] == 0:
            raise InputError(f"trak_scores: no {name} samples")
        if not bool(torch.isfinite(inputs).all()):
            raise InputError(f"trak_scores: {name}_inputs contains NaN or infinite values")
    if tuple(train_inputs.shape[1:]) != tuple(target_inputs.shape[1:]):
        raise InputError(f"trak_scores: train_inputs samples have shape {tuple(train_inputs.shape[1:])} but "
                         f"target_inputs samples have shape {tuple(target_inputs.shape[1:])}")
    if isinstance(proj_dim, bool) or not isinstance(proj_dim, (int, np.integer)) or proj_dim < 1:
        raise InputError(f"trak_scores: proj_dim must be an integer >= 1, got {proj_dim!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InputError(f"trak_scores: batch_size must be an integer >= 1, got {batch_size!r}")
    if not np.isfinite(lambda_reg) or lambda_reg < 0:
        raise InputError(f"trak_scores: lambda_reg must be finite and >= 0, got {lambda_reg!r}")
    _check_projection(models[0], proj_dim, train_inputs.shape[0], lambda_reg)
    if save_dir.exists() and (not save_dir.is_dir() or any(save_dir.iterdir())):
        raise InputError(f"trak_scores: save_dir {save_dir} must be a new or empty directory (traker would "
                         "otherwise reuse the results stored there)")


def _check_projection(model: torch.nn.Module, proj_dim: int, n_train: int, lambda_reg: float) -> None:
    n_params = sum(p.numel() for p in model.parameters())
    if lambda_reg == 0 and proj_dim > min(n_params, n_train):
        raise InputError(f"trak_scores: proj_dim={proj_dim} exceeds min(number of model parameters={n_params}, "
                         f"n_train={n_train}), so the TRAK kernel Phi^T Phi is singular; lower "
                         "proj_dim or set lambda_reg > 0")


def _check_outputs(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> None:
    """The model must map a (B, ...) batch to (B, C) logits with every label in [0, C)."""
    with torch.no_grad():
        try:
            logits = model(inputs[:2])
        except Exception as error:  # noqa: BLE001 -- re-raised with the cause attached
            raise InputError(f"trak_scores: the model fails on a batch of train_inputs: {error}") from error
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[0] != min(2, inputs.shape[0]):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise InputError(f"trak_scores: the model must return (batch, classes) logits, got {shape}")
    n_classes = logits.shape[1]
    if n_classes < 2:
        raise InputError("trak_scores: the model must output at least 2 class logits (the margin needs them)")
    if bool((labels < 0).any()) or bool((labels >= n_classes).any()):
        raise InputError(f"trak_scores: labels must lie in [0, {n_classes}) for a model with {n_classes} outputs")


def _projector_class() -> type:
    """traker's BasicProjector whose matrix block survives ``TRAKer.finalize_features``.

    traker 0.3.2 frees the projection matrix in ``finalize_features`` but, when the projection
    fits in one block (proj_dim <= 100) and the checkpoint id is unchanged, ``project`` reuses it
    without regenerating it (AttributeError in ``score``). Keeping the block (D x min(k, 100)
    floats) avoids that; the matrix and the scores are unchanged.
    """
    from trak.projectors import BasicProjector

    class KeptMatrixProjector(BasicProjector):
        def free_memory(self) -> None:
            """Keep the matrix block (see :func:`_projector_class`)."""

    return KeptMatrixProjector


def trak_scores(models: Sequence[torch.nn.Module], train_inputs: torch.Tensor, train_labels: torch.Tensor,
                target_inputs: torch.Tensor, target_labels: torch.Tensor, *, proj_dim: int, save_dir: str | Path,
                seed: int, batch_size: int = 256, device: str = "cpu",
                proj_type: Literal["rademacher", "normal"] = "rademacher", lambda_reg: float = 0.0) -> np.ndarray:
    """TRAK scores of every (target, training sample) pair from N = len(models) checkpoints.

    Args:
        models: N trained classifiers with one architecture; each maps a float batch (B, ...) to
            logits (B, C). They are neither modified nor switched to eval mode (a copy is used,
            in eval mode, so BatchNorm uses running statistics and dropout is off).
        train_inputs: float (n_train, ...) preprocessed training inputs.
        train_labels: int (n_train,) training labels in [0, C).
        target_inputs: float (T, ...) preprocessed target inputs.
        target_labels: int (T,) target labels (the class whose margin is attributed).
        proj_dim: k, dimension of the random projection of the gradients (k <= min(D, n_train)
            unless ``lambda_reg > 0``; D = number of model parameters).
        save_dir: a new or empty directory where traker writes its memmaps (features, gradients,
            scores); it is left in place for the caller.
        seed: seed of the projection matrices (traker derives checkpoint m's from it and m).
        batch_size: samples per per-sample-gradient batch (memory ~ batch_size * D floats).
        device: torch device for gradients, projection and matrix products.
        proj_type: entries of the projection matrix: Rademacher (+-1, TRAK's default) or Gaussian.
        lambda_reg: ridge term added to Phi^T Phi before inversion (traker's ``lambda_reg``).

    Returns:
        float32 (T, n_train): ``scores[t, i]`` is the TRAK attribution of training sample i to
        target t (positive: sample i supports the target's correct-class margin).
    """
    save_dir = Path(save_dir)
    _check_inputs(models, train_inputs, train_labels, target_inputs, target_labels, proj_dim, batch_size,
                  lambda_reg, save_dir)

    def batches(inputs: torch.Tensor, labels: torch.Tensor):
        return lambda: ((inputs[start:start + batch_size], labels[start:start + batch_size])
                        for start in range(0, len(labels), batch_size))

    return trak_scores_from_batches(models, batches(train_inputs, train_labels), len(train_labels),
                                    batches(target_inputs, target_labels), len(target_labels), proj_dim=proj_dim,
                                    save_dir=save_dir, seed=seed, device=device, proj_type=proj_type,
                                    lambda_reg=lambda_reg)


def trak_scores_from_batches(models: Sequence[torch.nn.Module], train_batches: Callable[[], Iterable[Batch]],
                             n_train: int, target_batches: Callable[[], Iterable[Batch]], n_targets: int, *,
                             proj_dim: int, save_dir: str | Path, seed: int, device: str = "cpu",
                             proj_type: Literal["rademacher", "normal"] = "rademacher",
                             lambda_reg: float = 0.0) -> np.ndarray:
    """:func:`trak_scores` over batches that need not fit in memory together (ImageNet).

    Args:
        train_batches, target_batches: each call returns a fresh iterable of (inputs float
            (b, ...), labels int64 (b,)) batches covering the n_train training samples / the
            n_targets targets in order (the first batch's model outputs are checked).
        Other arguments and the result as for :func:`trak_scores`.
    """
    from trak import TRAKer
    from trak.projectors import ProjectionType

    save_dir = Path(save_dir)
    if save_dir.exists() and (not save_dir.is_dir() or any(save_dir.iterdir())):
        raise InputError(f"trak_scores: save_dir {save_dir} must be a new or empty directory (traker would "
                         "otherwise reuse the results stored there)")
    if proj_type not in ("rademacher", "normal"):
        raise InputError(f"trak_scores: proj_type must be 'rademacher' or 'normal', got {proj_type!r}")
    if not models:
        raise InputError("trak_scores: models is empty; TRAK needs at least one model checkpoint")
    _check_projection(models[0], proj_dim, n_train, lambda_reg)
    torch_device = torch.device(device)  # traker compares its device with the string "cpu"

    # traker loads every checkpoint into the model it is given and sets it to eval mode: use a copy.
    work_model = copy.deepcopy(models[0]).to(device=torch_device, dtype=torch.float32).eval()
    n_params = sum(p.numel() for p in work_model.parameters())
    projector = None  # CUDA: traker picks fast_jl's CudaProjector if installed, else BasicProjector
    if torch_device.type != "cuda":
        projector = _projector_class()(grad_dim=n_params, proj_dim=int(proj_dim), seed=int(seed),
                                       proj_type=ProjectionType(proj_type), device=torch_device, dtype=torch.float32)
    traker = TRAKer(model=work_model, task="image_classification", train_set_size=n_train, save_dir=str(save_dir),
                    load_from_save_dir=True, device=str(torch_device), projector=projector, proj_dim=int(proj_dim),
                    projector_seed=int(seed),
                    use_half_precision=False, logging_level=logging.WARNING, lambda_reg=float(lambda_reg))
    checkpoints = [{k: v.detach().to(torch_device) for k, v in m.state_dict().items()} for m in models]

    def on_device(batches: Iterable[Batch], expected: int, name: str):
        seen = 0
        for index, (x, y) in enumerate(batches):
            x = x.to(device=torch_device, dtype=torch.float32)
            y = y.to(device=torch_device, dtype=torch.long)
            if index == 0:
                _check_outputs(work_model, x, y)
            seen += len(y)
            yield [x, y], len(y)
        if seen != expected:
            raise InputError(f"trak_scores: the {name} batches hold {seen} samples, expected {expected}")

    for model_id, checkpoint in enumerate(checkpoints):
        traker.load_checkpoint(checkpoint, model_id=model_id)
        for batch, size in on_device(train_batches(), n_train, "train"):
            traker.featurize(batch=batch, num_samples=size)
    traker.finalize_features()

    for model_id, checkpoint in enumerate(checkpoints):
        traker.start_scoring_checkpoint(exp_name=_EXPERIMENT, checkpoint=checkpoint, model_id=model_id,
                                        num_targets=n_targets)
        for batch, size in on_device(target_batches(), n_targets, "target"):
            traker.score(batch=batch, num_samples=size)
    scores = traker.finalize_scores(exp_name=_EXPERIMENT)  # memmap (n_train, T)
    return np.ascontiguousarray(np.asarray(scores, dtype=np.float32).T)
