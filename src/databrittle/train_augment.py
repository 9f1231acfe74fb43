"""Training-time batches for the CIFAR-sized counterfactual networks, made on the device.

The recipe of the paper's released FFCV-based code (paper A.2 does not spell it out):
random horizontal flip, random translation by up to 2 pixels (FFCV ``RandomTranslate``:
the image is placed at a random offset in a frame padded by 2 pixels of the mean colour,
then cropped back) and a cutout square filled with the mean colour placed entirely inside
the image (FFCV ``Cutout``: top-left corner uniform in [0, size - side]), then per-channel
normalisation; no test-time augmentation. The cutout side is 8 pixels, as issue 3 reads
the released code (FFCV's own CIFAR-10 example uses 4); it is the ``cutout`` argument. Here all of it runs on a uint8 (N, H, W, C) tensor kept on the
training device (the decoded beton), batched over the whole batch with one generator per
model, so no loader is built per model and a batch depends only on the generator's state.
"""

from __future__ import annotations

import torch

def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std float32 (C,) of uint8 (N, H, W, C) images (0..255 scale).

    Computed on the full training split (on CIFAR-10 they equal the released code's
    constants, mean about (125.3, 123.0, 113.9)), the same for every model of a call.
    """
    flat = images.reshape(-1, images.shape[-1]).float()
    return flat.mean(0), flat.std(0).clamp(min=1e-3)


def to_network_input(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                     channels_last: bool) -> torch.Tensor:
    """uint8 (B, H, W, C) -> normalised float32 (B, C, H, W), channels_last if asked."""
    x = (images.float() - mean) / std
    x = x.permute(0, 3, 1, 2)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def augment(images: torch.Tensor, generator: torch.Generator, fill: torch.Tensor, *, translate: int = 2,
            cutout: int = 8) -> torch.Tensor:
    """Flip + translate + cutout of a uint8 (B, H, W, C) batch; returns a new uint8 batch.

    Args:
        images: uint8 (B, H, W, C) on the device.
        generator: the model's augmentation generator (on the same device).
        fill: uint8 (C,) colour of the translation frame and the cutout (the dataset mean).
        translate: largest shift in pixels (2); 0 disables.
        cutout: side of the cut-out square (8); 0 disables.
    """
    n, h, w, _ = images.shape
    device = images.device
    flip = torch.rand(n, generator=generator, device=device) < 0.5
    out = torch.where(flip[:, None, None, None], images.flip(2), images)
    rows = torch.arange(h, device=device)
    cols = torch.arange(w, device=device)
    if translate:
        padded = fill.to(out.dtype).expand(n, h + 2 * translate, w + 2 * translate, -1).clone()
        padded[:, translate:translate + h, translate:translate + w] = out
        dy = torch.randint(0, 2 * translate + 1, (n,), generator=generator, device=device)
        dx = torch.randint(0, 2 * translate + 1, (n,), generator=generator, device=device)
        row_index = (dy[:, None] + rows)[:, :, None].expand(n, h, w)
        col_index = (dx[:, None] + cols)[:, None, :].expand(n, h, w)
        out = padded[torch.arange(n, device=device)[:, None, None], row_index, col_index]
    if cutout:
        top = torch.randint(0, h - cutout + 1, (n,), generator=generator, device=device)
        left = torch.randint(0, w - cutout + 1, (n,), generator=generator, device=device)
        inside_rows = (rows[None] >= top[:, None]) & (rows[None] < top[:, None] + cutout)
        inside_cols = (cols[None] >= left[:, None]) & (cols[None] < left[:, None] + cutout)
        square = inside_rows[:, :, None] & inside_cols[:, None, :]
        out = torch.where(square[..., None], fill.to(out.dtype), out)
    return out
