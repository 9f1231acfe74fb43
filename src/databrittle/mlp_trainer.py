"""The digits counterfactual network, many models per pass, with hand-written gradients.

The network (the digits stand-in for the paper's ResNet-9, A.2) is a one-hidden-layer MLP
``d -> hidden -> classes`` with ReLU, trained with SGD + momentum + coupled weight decay
(as ``torch.optim.SGD``) on a label-smoothed cross-entropy. ``n`` models train in one pass
as stacked weights: every step is a handful of batched matrix products over all models,
each model with its own batch (data order), labels, learning rate and initialisation.

Why not autograd + ``torch.func.vmap``: on a 2-core CPU a step over 100 small models is a
few milliseconds, so per-operation overhead, softmax over a 10-wide axis and separate
gradient/optimizer passes dominate. This module instead

- appends a constant-1 input column, so the first layer's bias is a row of its weight and
  its gradient comes out of the same matrix product;
- lays logits out as (n, classes, batch) so the softmax runs along contiguous memory;
- accumulates each weight gradient straight into the momentum buffer inside the matrix
  product (``baddbmm(buf, a, b, beta=momentum)``), so no gradient tensor is materialised
  and SGD costs two elementwise passes per weight;
- preallocates every buffer and precomputes the data order, labels and learning rates.

The arithmetic is that of ``torch.optim.SGD(momentum, weight_decay)`` applied to
``cross_entropy(label_smoothing)`` with mean reduction over the batch; tests compare one
model against a plain autograd loop.

Shapes (n models, B batch, d inputs, H hidden, C classes):
    w1 (n, d+1, H)  [row d is the bias]    w2 (n, C, H)    b2 (n, C, 1)
"""

from __future__ import annotations

import math

import torch

# Model FLOPs per training sample, counted as 2 x multiply-adds of the matrix products a
# step needs: forward (d*H + H*C), weight gradients (d*H + H*C) and the hidden layer's
# input gradient (H*C); the input layer needs no input gradient. Biases not counted.


def training_flops_per_sample(d: int, hidden: int, classes: int) -> int:
    """Useful FLOPs of one sample's forward + backward pass (see module comment)."""
    return 2 * (2 * d * hidden + 3 * hidden * classes)


def with_bias_column(x: torch.Tensor) -> torch.Tensor:
    """float32 (N, d) -> (N, d+1) with a trailing column of ones."""
    return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], 1)


def init_weights(seeds: list[int], d: int, hidden: int, classes: int) -> list[torch.Tensor]:
    """[w1 (n, d+1, H), w2 (n, C, H), b2 (n, C, 1)] with PyTorch's Linear init per model.

    Each model draws from its own generator: uniform(+-1/sqrt(fan_in)) for weights and
    biases, so a model's weights depend only on its seed.
    """
    w1, w2, b2 = [], [], []
    for seed in seeds:
        generator = torch.Generator().manual_seed(int(seed))
        w1.append(_uniform((d + 1, hidden), d, generator))
        w2.append(_uniform((classes, hidden), hidden, generator))
        b2.append(_uniform((classes, 1), hidden, generator))
    return [torch.stack(w1), torch.stack(w2), torch.stack(b2)]


def _uniform(shape: tuple[int, int], fan_in: int, generator: torch.Generator) -> torch.Tensor:
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


def logits(weights: list[torch.Tensor], x1: torch.Tensor) -> torch.Tensor:
    """Logits float32 (n, N, C) of every model on x1 (N, d+1) (bias column included)."""
    w1, w2, b2 = weights
    hidden = torch.matmul(x1, w1).clamp_(min=0)  # (n, N, H)
    return torch.baddbmm(b2.transpose(1, 2), hidden, w2.transpose(1, 2))


@torch.no_grad()
def train(weights: list[torch.Tensor], x1: torch.Tensor, labels: torch.Tensor, plan: torch.Tensor,
          lrs: torch.Tensor, momentum: float, weight_decay: float, label_smoothing: float) -> None:
    """Train the stacked models in place.

    Args:
        weights: [w1, w2, b2] as from :func:`init_weights`, on the training device.
        x1: float32 (N, d+1) training inputs with the bias column.
        labels: int64 (n, N) per-model labels (overrides applied).
        plan: int64 (T, n, B) training indices of every step.
        lrs: float32 (T, n) learning rates (0 leaves a model unchanged).
    """
    w1, w2, b2 = weights
    steps, n, batch = plan.shape
    classes, hidden = w2.shape[1], w2.shape[2]
    device = x1.device
    buffers = [torch.zeros_like(w) for w in weights]
    m1, m2, mb2 = buffers
    x = torch.empty(n * batch, x1.shape[1], device=device)
    x3 = x.view(n, batch, -1)
    h = torch.empty(n, batch, hidden, device=device)
    dh = torch.empty(n, batch, hidden, device=device)
    logits_nbc = torch.empty(n, batch, classes, device=device)
    dlog = torch.empty(n, classes, batch, device=device)  # softmax - smoothed target, (n, C, B)
    bias_sum = torch.empty(n, classes, 1, device=device)
    hit = torch.full((n, 1, batch), -(1.0 - label_smoothing), device=device)
    off_target = label_smoothing / classes
    plan = plan.to(device)
    per_model = plan.permute(1, 0, 2).reshape(n, -1)
    plan_labels = torch.gather(labels.to(device), 1, per_model).view(n, steps, batch).transpose(0, 1).contiguous()
    plan_labels = plan_labels.view(steps, n, 1, batch)
    plan_flat = plan.reshape(steps, n * batch)
    lr_views = lrs.to(device).view(steps, n, 1, 1)
    scale = 1.0 / batch
    for t in range(steps):
        torch.index_select(x1, 0, plan_flat[t], out=x)
        torch.bmm(x3, w1, out=h)
        h.clamp_(min=0)
        torch.bmm(h, w2.transpose(1, 2), out=logits_nbc)
        dlog.copy_(logits_nbc.transpose(1, 2)).add_(b2)
        torch.softmax(dlog, 1, out=dlog)
        dlog.sub_(off_target).scatter_add_(1, plan_labels[t], hit)
        torch.baddbmm(m2, dlog, h, beta=momentum, alpha=scale, out=m2)
        torch.sum(dlog, 2, keepdim=True, out=bias_sum)
        mb2.mul_(momentum).add_(bias_sum, alpha=scale)
        torch.bmm(dlog.transpose(1, 2), w2, out=dh)
        torch.ops.aten.threshold_backward.grad_input(dh, h, 0.0, grad_input=dh)
        torch.baddbmm(m1, x3.transpose(1, 2), dh, beta=momentum, alpha=scale, out=m1)
        lr = lr_views[t]
        for weight, buffer in zip(weights, buffers):
            buffer.add_(weight, alpha=weight_decay)
            weight.addcmul_(lr, buffer, value=-1.0)


def to_modules(weights: list[torch.Tensor]) -> list[torch.nn.Module]:
    """The stacked models as ``nn.Sequential(Linear(d, H), ReLU, Linear(H, C))`` on the CPU.

    A module takes float32 (N, d) inputs in [0, 1] (no bias column) and returns the same
    logits as :func:`logits`.
    """
    w1, w2, b2 = (w.detach().cpu() for w in weights)
    d, hidden, classes = w1.shape[1] - 1, w1.shape[2], w2.shape[1]
    modules = []
    for i in range(len(w1)):
        module = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, classes))
        with torch.no_grad():
            module[0].weight.copy_(w1[i, :d].T)
            module[0].bias.copy_(w1[i, d])
            module[2].weight.copy_(w2[i])
            module[2].bias.copy_(b2[i, :, 0])
        modules.append(module)
    return modules
