"""CIFAR-sized counterfactual networks (ResNet-9 and the transfer architectures), per model.

The paper's recipe (A.2, as its released code implements it): SGD with momentum 0.9 and
weight decay 5e-4, batch 512, label smoothing 0.1, a learning rate rising linearly from 0
to 0.5 at epoch 5 and falling linearly to 0 at epoch 24 (:mod:`databrittle.schedule`),
flip + translate(2) + cutout(8) (:mod:`databrittle.train_augment`), no test-time
augmentation; channels_last and bfloat16 autocast on a GPU (the released code uses fp16
autocast with a gradient scaler; bfloat16 needs no scaler on the GPUs that have it).

The training images stay on the device as one uint8 tensor (the decoded beton) for all the
models of a call: a model's batches are index selections of it, augmented on the device,
so a model costs no loader start-up and removal/relabelling never rewrites data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F

from databrittle.architectures import build_model
from databrittle.errors import InputError
from databrittle.schedule import ModelJob
from databrittle.seeds import derive_seed
from databrittle.train_augment import augment, channel_stats, to_network_input

__all__ = ["autocast", "init_model", "train_one", "sgd_train", "predict", "evaluate", "channel_stats",
           "to_network_input"]

EVAL_BATCH = 1024


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA, nothing on CPU (fp32: CPU results are the reference)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def init_model(arch: str, job: ModelJob, n_classes: int, in_channels: int, options: dict[str, Any],
               device: torch.device) -> torch.nn.Module:
    """The model of ``job``, initialised from its seed (key "init") alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(job.seed, "init"))
        try:
            model = build_model(arch, num_classes=n_classes, in_channels=in_channels, **options)
        except TypeError as error:
            raise InputError(f"config key 'counterfactual.arch_options': {options} do not fit {arch} ({error})") from None
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def train_one(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, plan: torch.Tensor,
              lrs: torch.Tensor, job: ModelJob, *, momentum: float, weight_decay: float, label_smoothing: float,
              augment_batches: bool) -> None:
    """Train ``model`` in place on its plan.

    Args:
        images: uint8 (N, H, W, C) training images on the device.
        labels: int64 (N,) this model's labels (overrides applied) on the device.
        plan: int64 (T, B) this model's training indices per step.
        lrs: float32 (T,) this model's learning rates.
    """
    device = images.device
    mean, std = channel_stats(images)
    fill = mean.round().to(torch.uint8)
    generator = torch.Generator(device=device).manual_seed(derive_seed(job.seed, "augment"))
    channels_last = device.type == "cuda"
    plan = plan.to(device)

    def batches():
        for step in range(len(plan)):
            batch = images[plan[step]]
            if augment_batches:
                batch = augment(batch, generator, fill)
            yield to_network_input(batch, mean, std, channels_last), labels[plan[step]]

    sgd_train(model, batches(), lrs, momentum=momentum, weight_decay=weight_decay, label_smoothing=label_smoothing)


def sgd_train(model: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], lrs: torch.Tensor, *,
              momentum: float, weight_decay: float, label_smoothing: float) -> None:
    """The recipe's optimisation loop (paper A.2), shared by every network backend.

    SGD with momentum and weight decay on every parameter, cross-entropy with label smoothing,
    the learning rate of step t set to ``lrs[t]`` before the step, bfloat16 autocast on CUDA.

    Args:
        batches: one (network input float (B, ...), labels int64 (B,)) pair per step, on the
            model's device; exactly ``len(lrs)`` of them.
        lrs: float32 (T,) learning rates.
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0, momentum=momentum, weight_decay=weight_decay)
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    model.train()
    steps = 0
    for lr, (inputs, targets) in zip(lrs.tolist(), batches):
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast(device):
            loss = F.cross_entropy(model(inputs), targets, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
    if steps != len(lrs):
        raise RuntimeError(f"sgd_train: {steps} batches for {len(lrs)} learning-rate steps")


@torch.no_grad()
def predict(model: torch.nn.Module, inputs: Iterable[torch.Tensor]) -> torch.Tensor:
    """float32 (n, C) logits of a model in eval mode over batches of network inputs (no
    augmentation), concatenated in order; (0, 0) for no batch."""
    model.eval()
    chunks = []
    for batch in inputs:
        with autocast(batch.device):
            chunks.append(model(batch).float())
    return torch.cat(chunks) if chunks else torch.zeros(0, 0)


def evaluate(model: torch.nn.Module, train_images: torch.Tensor, eval_images: torch.Tensor) -> torch.Tensor:
    """float32 (n_eval, C) logits on uint8 (n_eval, H, W, C) images, no augmentation."""
    mean, std = channel_stats(train_images)
    channels_last = eval_images.device.type == "cuda"
    return predict(model, (to_network_input(eval_images[start:start + EVAL_BATCH], mean, std, channels_last)
                           for start in range(0, len(eval_images), EVAL_BATCH)))
