"""Tests for the CIFAR-sized transfer architectures (databrittle.architectures)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from databrittle.architectures import ARCHITECTURES, ResNet9, SwinTransformer, build_model, shifted_window_mask
from databrittle.architectures import _SwinBlock

# Tiny variants so that every test is cheap on CPU.
TINY: dict[str, dict] = {
    "resnet9": {"width": 0.125},
    "mobilenetv2": {"width_mult": 0.25, "last_channels": 64},
    "vit": {"dim": 32, "depth": 2, "heads": 2},
    "swin_t": {"embed_dim": 16, "depths": (2, 2, 2, 2), "heads": (1, 2, 2, 4)},
    "mlp_mixer": {"dim": 32, "depth": 2},
    "convmixer": {"dim": 32, "depth": 2},
    "resnet18": {},  # torchvision's ImageNet ResNet-18 has no size knob; 32x32 input keeps it cheap
}


def test_registry_names() -> None:
    assert set(ARCHITECTURES) == {"resnet9", "mobilenetv2", "vit", "swin_t", "mlp_mixer", "convmixer", "resnet18"}
    assert set(TINY) == set(ARCHITECTURES)


def _tiny(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(name, num_classes=10, **TINY[name])


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_forward_shape_and_finite(name: str) -> None:
    model = _tiny(name)
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    logits = model(x)
    assert logits.shape == (4, 10)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_training_reduces_loss(name: str) -> None:
    model = _tiny(name).train()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(4, 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (4,), generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    # Transformers oscillate under plain SGD at lr 0.1 on one batch; clipping the gradient
    # norm (standard for them) keeps the descent monotone without hiding missing gradients.
    clip = lambda: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # noqa: E731
    before = [p.detach().clone() for p in model.parameters()]

    initial = F.cross_entropy(model(x), y)
    opt.zero_grad()
    initial.backward()
    for pname, p in model.named_parameters():
        assert p.requires_grad
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{pname} has a non-finite gradient"
    clip()
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))

    for _ in range(9):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        clip()
        opt.step()
    final = F.cross_entropy(model(x), y)
    assert torch.isfinite(final)
    assert final.item() < 0.95 * initial.item()


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_batch_of_two_channels_last_autocast(name: str) -> None:
    model = _tiny(name).train()
    x = torch.randn(2, 3, 32, 32).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits.float()).all()
    logits.float().sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_unknown_name_raises() -> None:
    with pytest.raises(ValueError, match="no_such_net") as info:
        build_model("no_such_net")
    assert "resnet9" in str(info.value)


def test_resnet9_parameter_count() -> None:
    # Derived by hand from the layer list (conv weights k*k*c_in*c_out, BN gamma+beta 2*c):
    conv_bn = lambda c_in, c_out, k=3: k * k * c_in * c_out + 2 * c_out  # noqa: E731
    expected = (
        conv_bn(3, 64)            # 1,728 + 128        = 1,856
        + conv_bn(64, 128, 5)     # 204,800 + 256      = 205,056
        + 2 * conv_bn(128, 128)   # 2 * (147,456 + 256) = 295,424
        + conv_bn(128, 256)       # 294,912 + 512      = 295,424
        + 2 * conv_bn(256, 256)   # 2 * (589,824 + 512) = 1,180,672
        + conv_bn(256, 128)       # 294,912 + 256      = 295,168
        + 128 * 10                # bias-free linear   = 1,280
    )
    assert expected == 2_274_880
    assert sum(p.numel() for p in ResNet9(num_classes=10).parameters()) == 2_274_880


def test_shifted_window_mask_regions() -> None:
    allowed = shifted_window_mask(8, 8, window=4, shift=2)
    assert allowed.shape == (4, 16, 16)
    # The top-left window of the rolled map holds image-contiguous tokens: all pairs allowed.
    assert allowed[0].all()
    # The bottom-right window mixes four regions of 2x2 tokens each: 4 * 4 * 4 allowed pairs.
    assert allowed[3].sum().item() == 64
    assert allowed[3].diagonal().all()


def _influence(block: torch.nn.Module, row: int, col: int) -> torch.Tensor:
    """Which output tokens of ``block`` change when only input token (row, col) changes."""
    torch.manual_seed(3)
    x = torch.randn(1, 8, 8, 8)
    x2 = x.clone()
    x2[0, row, col] += torch.randn(8)  # not a constant shift, which LayerNorm would erase
    with torch.no_grad():
        diff = (block(x2) - block(x)).abs().amax(dim=-1)[0]
    return diff > 1e-6


def test_swin_window_attention_is_local_and_shift_is_masked() -> None:
    torch.manual_seed(0)
    plain = _SwinBlock(dim=8, heads=2, resolution=8, window=4, shift=0, mlp_ratio=2.0)
    shifted = _SwinBlock(dim=8, heads=2, resolution=8, window=4, shift=2, mlp_ratio=2.0)

    # Regular windows: token (0, 0) reaches exactly its 4x4 window.
    reach = _influence(plain, 0, 0)
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[:4, :4] = True
    assert torch.equal(reach, expected)

    # Shifted windows: token (0, 0) is rolled into the bottom-right window together with
    # tokens from rows/cols 6-7 (the other side of the image); the mask must confine it to
    # its own 2x2 region, i.e. image tokens (0..1, 0..1).
    reach = _influence(shifted, 0, 0)
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[:2, :2] = True
    assert torch.equal(reach, expected)

    # An interior token (3, 3) sits in the shifted window covering image rows/cols 2..5.
    reach = _influence(shifted, 3, 3)
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[2:6, 2:6] = True
    assert torch.equal(reach, expected)


def test_swin_receptive_field_spans_image() -> None:
    torch.manual_seed(0)
    model = SwinTransformer(**TINY["swin_t"]).eval()
    x = torch.randn(1, 3, 32, 32)
    x2 = x.clone()
    x2[..., 30:, 30:] = torch.randn(3, 2, 2)  # bottom-right patch only
    with torch.no_grad():
        assert not torch.allclose(model(x), model(x2))


def test_cifar_resnet18_backbone_keeps_resolution_and_gives_512_features() -> None:
    from databrittle.models import build_backbone

    torch.manual_seed(0)
    backbone = build_backbone("resnet18", in_channels=3, width=64)
    assert backbone.feature_dim == 512 and sum(p.numel() for p in backbone.parameters()) == 11_168_832
    assert backbone.net.conv1.kernel_size == (3, 3) and backbone.net.conv1.stride == (1, 1)
    assert isinstance(backbone.net.maxpool, torch.nn.Identity)
    assert backbone(torch.rand(2, 3, 32, 32)).shape == (2, 512)
    with pytest.raises(ValueError, match="width 64"):
        build_backbone("resnet18", in_channels=3, width=32)
