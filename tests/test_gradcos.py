"""Grad-Cos baseline (paper appendix A.5.1): per-sample gradients and cosine scores."""

import numpy as np
import pytest
import torch

from databrittle.baselines.gradcos import gradcos_scores, per_sample_gradients
from databrittle.errors import InputError


def _tiny_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.ReLU(), torch.nn.Linear(6, 3))


def test_per_sample_gradients_match_autograd_loop():
    model = _tiny_model()
    model.train()
    inputs = torch.randn(10, 4, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    grads = per_sample_gradients(model, inputs, labels, batch_size=3)
    assert grads.shape == (10, sum(p.numel() for p in model.parameters())) and grads.dtype == torch.float32
    assert model.training  # mode restored
    for i in range(10):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs[i:i + 1]), labels[i:i + 1]).backward()
        expected = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
        torch.testing.assert_close(grads[i], expected, rtol=1e-5, atol=1e-7)


def test_gradcos_scores_brute_force_duplicate_and_zero():
    generator = np.random.default_rng(0)
    train = generator.normal(size=(20, 7)).astype(np.float32)
    train[5] = 0.0
    targets = np.vstack([train[[11, 2]], np.zeros((1, 7), dtype=np.float32)])
    scores = gradcos_scores(torch.from_numpy(train), torch.from_numpy(targets))
    assert scores.shape == (3, 20) and scores.dtype == np.float32 and np.isfinite(scores).all()
    for t in range(2):
        for i in range(20):
            norm = np.linalg.norm(targets[t]) * np.linalg.norm(train[i])
            expected = 0.0 if norm == 0 else float(targets[t] @ train[i]) / norm
            assert scores[t, i] == pytest.approx(expected, abs=1e-6)
    assert np.argmax(scores[0]) == 11 and np.argmax(scores[1]) == 2
    assert scores[0, 11] == pytest.approx(1.0)
    assert (scores[:, 5] == 0).all() and (scores[2] == 0).all()
    with pytest.raises(InputError, match="gradcos_scores"):
        gradcos_scores(train, targets[:, :3])
