"""Grad-Cos baseline (paper appendix A.5.1): cosine similarity of per-sample loss gradients.

A supervised model's cross-entropy loss (over all classes) is differentiated per sample
w.r.t. all trainable parameters; the score of training sample i for target t is the
cosine similarity of their flattened gradients.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import functional_call, grad, vmap

from databrittle.errors import InputError


def per_sample_gradients(model: torch.nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
                         batch_size: int = 256) -> torch.Tensor:
    """float32 (n, P): gradient of each sample's cross-entropy loss w.r.t. the trainable parameters.

    Uses ``torch.func`` (``functional_call`` + ``vmap(grad)``) with the model in eval mode
    (its previous mode is restored afterwards), in batches of ``batch_size`` moved to the
    model's device. Parameters are flattened in ``named_parameters()`` order and
    concatenated; the result is on the CPU.

    Args:
        model: maps (B, ...) inputs to (B, n_classes) logits.
        inputs: (n, ...) samples.
        labels: (n,) integer class labels.
    """
    if inputs.shape[0] != labels.shape[0] or labels.ndim != 1:
        raise InputError(f"per_sample_gradients: inputs {tuple(inputs.shape)} and labels {tuple(labels.shape)} "
                         f"must have the same first dimension, labels 1-D")
    if batch_size < 1:
        raise InputError(f"per_sample_gradients: batch_size={batch_size} must be >= 1")
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise InputError("per_sample_gradients: the model has no trainable parameters")
    buffers = {name: b.detach() for name, b in model.named_buffers()}
    device = next(iter(params.values())).device

    def sample_loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(model, (p, buffers), (x.unsqueeze(0),))
        return torch.nn.functional.cross_entropy(logits, y.unsqueeze(0))

    batched_grad = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    was_training = model.training
    model.eval()
    try:
        chunks = []
        for start in range(0, inputs.shape[0], batch_size):
            x = inputs[start:start + batch_size].to(device)
            y = labels[start:start + batch_size].to(device=device, dtype=torch.long)
            grads = batched_grad(params, x, y)
            flat = torch.cat([grads[name].reshape(x.shape[0], -1) for name in params], dim=1)
            chunks.append(flat.to(device="cpu", dtype=torch.float32))
    finally:
        model.train(was_training)
    total = sum(p.numel() for p in params.values())
    return torch.cat(chunks, dim=0) if chunks else torch.zeros((0, total), dtype=torch.float32)


def gradcos_scores(train_gradients: torch.Tensor | np.ndarray, target_gradients: torch.Tensor | np.ndarray) -> np.ndarray:
    """float32 (T, n): cosine similarity between target and training-sample gradients.

    Args:
        train_gradients: (n, P) per-sample gradients of the training samples.
        target_gradients: (T, P) per-sample gradients of the targets.

    A zero-norm gradient (on either side) gets score 0, not NaN.
    """
    train = torch.as_tensor(train_gradients, dtype=torch.float64)
    target = torch.as_tensor(target_gradients, dtype=torch.float64, device=train.device)
    if train.ndim != 2 or target.ndim != 2 or train.shape[1] != target.shape[1]:
        raise InputError(f"gradcos_scores: train_gradients {tuple(train.shape)} and target_gradients "
                         f"{tuple(target.shape)} must be (n, P) and (T, P)")
    if not (torch.isfinite(train).all() and torch.isfinite(target).all()):
        raise InputError("gradcos_scores: gradients contain NaN or infinite values")
    scores = _unit_rows(target) @ _unit_rows(train).T
    return scores.clamp(-1.0, 1.0).to(device="cpu", dtype=torch.float32).numpy()


def _unit_rows(matrix: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm; zero rows stay zero."""
    norms = torch.linalg.vector_norm(matrix, dim=1, keepdim=True)
    return torch.where(norms > 0, matrix / norms.clamp_min(torch.finfo(matrix.dtype).tiny), torch.zeros_like(matrix))
