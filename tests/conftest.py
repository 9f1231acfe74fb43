import hashlib

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import resnet50

torch.set_num_threads(1)  # small models: one thread is fastest and avoids oversubscribing CI's 2 cores


@pytest.fixture(scope="session")
def digits_splits():
    from databrittle.datasets import load_digits_splits

    return load_digits_splits(0.2, 12345)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def sha256_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _source_model() -> nn.Module:
    """A randomly initialised resnet50 with non-default BatchNorm statistics."""
    torch.manual_seed(0)
    model = resnet50(weights=None)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.num_batches_tracked.fill_(1234)
    return model


def _moco_checkpoint(model: nn.Module) -> dict:
    """The layout of facebookresearch/moco's moco_v2_800ep_pretrain.pth.tar."""
    backbone = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    head = {"fc.0.weight": torch.randn(2048, 2048), "fc.0.bias": torch.randn(2048),
            "fc.2.weight": torch.randn(128, 2048), "fc.2.bias": torch.randn(128)}
    encoder = {**backbone, **head}
    state = {**{f"module.encoder_q.{k}": v for k, v in encoder.items()},
             **{f"module.encoder_k.{k}": v.clone() + 0.5 for k, v in encoder.items()},
             "module.queue": torch.randn(128, 4096), "module.queue_ptr": torch.zeros(1, dtype=torch.long)}
    parameter = nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([parameter], lr=0.03, momentum=0.9, weight_decay=1e-4)
    parameter.sum().backward()
    optimizer.step()
    return {"epoch": 800, "arch": "resnet50", "state_dict": state, "optimizer": optimizer.state_dict()}


@pytest.fixture(scope="session")
def release(tmp_path_factory):
    """A synthetic MoCo v2 ResNet-50 checkpoint in the release's format (random weights)."""
    model = _source_model()
    checkpoint = _moco_checkpoint(model)
    path = tmp_path_factory.mktemp("moco") / "moco_v2_800ep_pretrain.pth.tar"
    torch.save(checkpoint, path)
    model.fc = nn.Identity()
    return {"model": model.eval(), "checkpoint": checkpoint, "path": path, "sha256": sha256_of(path)}
