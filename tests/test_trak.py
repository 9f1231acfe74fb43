"""TRAK baseline (databrittle.baselines.trak): closed form on a linear model, sanity, input errors.

Closed form checked against traker 0.3.2 ("image_classification" task, float32, BasicProjector),
for checkpoints m = 0..N-1 with weights W_m (C x d, no bias, D = C*d parameters):

* margin f_i = z_y - logsumexp_{c != y} z_c with z = W x_i; its gradient w.r.t. W (row-major
  flattening) is x_i on row y_i and -softmax_{c != y}(z)_c * x_i on every other row c;
* phi_i = P_m^T g_i / sqrt(D), with P_m (D x k) traker's BasicProjector matrix for (seed, m);
* K_m = Phi_m^T Phi_m + lambda I; traker rescales K_m^{-1} by 1 / mean|K_m^{-1}| (its "centering");
* q_i = 1 - softmax(z)_{y_i};
* score(t, i) = mean_m[phi_t^T K_m^{-1} phi_i] * mean_m[q_i]  (product of the two averages).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from databrittle.baselines.trak import trak_scores
from databrittle.errors import InputError


def _projection_matrix(n_params: int, proj_dim: int, seed: int, model_id: int) -> np.ndarray:
    """float64 (D, k): traker's BasicProjector matrix, recovered by projecting the identity."""
    from trak.projectors import BasicProjector, ProjectionType

    projector = BasicProjector(grad_dim=n_params, proj_dim=proj_dim, seed=seed, proj_type=ProjectionType.rademacher,
                               device="cpu", dtype=torch.float32)
    return projector.project(torch.eye(n_params), model_id=model_id).double().numpy()


def _closed_form(weights: list[np.ndarray], x: np.ndarray, y: np.ndarray, xt: np.ndarray, yt: np.ndarray,
                 proj_dim: int, seed: int, lambda_reg: float) -> np.ndarray:
    """float64 (T, n) TRAK scores of bias-free linear classifiers (see the module docstring)."""

    def margin_grads(w: np.ndarray, inputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        logits = inputs @ w.T
        others = logits.copy()
        others[np.arange(len(labels)), labels] = -np.inf
        soft_others = np.exp(others - others.max(1, keepdims=True))
        soft_others /= soft_others.sum(1, keepdims=True)
        coef = -soft_others
        coef[np.arange(len(labels)), labels] = 1.0
        return (coef[:, :, None] * inputs[:, None, :]).reshape(len(labels), -1)  # (B, C*d)

    kernel_sum, q_sum = 0.0, 0.0
    for model_id, w in enumerate(weights):
        n_params = w.size
        proj = _projection_matrix(n_params, proj_dim, seed, model_id)
        phi = margin_grads(w, x, y) @ proj / np.sqrt(n_params)
        phi_t = margin_grads(w, xt, yt) @ proj / np.sqrt(n_params)
        k_inv = np.linalg.inv(phi.T @ phi + lambda_reg * np.eye(proj_dim))
        k_inv /= np.abs(k_inv).mean()
        kernel_sum = kernel_sum + phi_t @ k_inv @ phi.T
        logits = x @ w.T
        prob = np.exp(logits - logits.max(1, keepdims=True))
        prob /= prob.sum(1, keepdims=True)
        q_sum = q_sum + (1.0 - prob[np.arange(len(y)), y])
    n_models = len(weights)
    return (kernel_sum / n_models) * (q_sum / n_models)[None, :]


def _linear_data(n: int, t: int, d: int, c: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen)
    y = torch.randint(0, c, (n,), generator=gen)
    xt = torch.randn(t, d, generator=gen)
    yt = torch.randint(0, c, (t,), generator=gen)
    return x, y, xt, yt


@pytest.mark.parametrize(("n_models", "d", "proj_dim"), [(1, 6, 12), (2, 6, 12), (2, 40, 110)])
def test_linear_model_matches_closed_form(tmp_path, n_models, d, proj_dim):
    """proj_dim 110 > traker's block size 100: the projection is generated block-wise."""
    c, seed, n = 3, 7, 160
    x, y, xt, yt = _linear_data(n, 5, d, c, seed=0)
    models = []
    for m in range(n_models):
        torch.manual_seed(100 + m)
        models.append(torch.nn.Linear(d, c, bias=False))
    lambda_reg = 0.0 if n_models == 1 else 0.05
    scores = trak_scores(models, x, y, xt, yt, proj_dim=proj_dim, save_dir=tmp_path / "trak", seed=seed,
                         batch_size=32, lambda_reg=lambda_reg)
    assert scores.dtype == np.float32 and scores.shape == (5, n)
    expected = _closed_form([m.weight.detach().double().numpy() for m in models], x.double().numpy(), y.numpy(),
                            xt.double().numpy(), yt.numpy(), proj_dim, seed, lambda_reg)
    np.testing.assert_allclose(scores, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


def _mlp(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def test_mlp_scores_shape_finite_and_duplicate_ranks_high(tmp_path):
    x, y, _, _ = _linear_data(100, 1, 8, 3, seed=1)
    picked = torch.tensor([3, 17, 42, 64, 99])
    models = [_mlp(s) for s in range(2)]
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in models]
    for m in models:
        m.train()
    scores = trak_scores(models, x, y, x[picked], y[picked], proj_dim=32, save_dir=tmp_path / "trak", seed=3,
                         batch_size=40)
    assert scores.shape == (5, 100) and scores.dtype == np.float32
    assert np.isfinite(scores).all()
    for row, j in enumerate(picked.tolist()):
        rank = int((scores[row] > scores[row, j]).sum())
        assert rank < 3, f"duplicate of train sample {j} ranked {rank}"
    # the caller's models are left untouched (weights and training mode)
    for m, state in zip(models, before):
        assert m.training
        for k, v in m.state_dict().items():
            assert torch.equal(v, state[k])
    # same seed, fresh directory: identical scores
    again = trak_scores(models, x, y, x[picked], y[picked], proj_dim=32, save_dir=tmp_path / "trak2", seed=3,
                        batch_size=100)
    np.testing.assert_allclose(again, scores, rtol=1e-5, atol=1e-6 * np.abs(scores).max())


def test_cnn_with_batchnorm_runs(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 3))
    model(torch.randn(16, 1, 6, 6))  # non-trivial running statistics
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(40, 1, 6, 6, generator=gen)
    y = torch.randint(0, 3, (40,), generator=gen)
    scores = trak_scores([model], x, y, x[:4], y[:4], proj_dim=16, save_dir=tmp_path / "trak", seed=0)
    assert scores.shape == (4, 40) and np.isfinite(scores).all()


def test_bad_input(tmp_path):
    x, y, xt, yt = _linear_data(30, 4, 5, 3, seed=0)
    model = torch.nn.Linear(5, 3)
    kw = dict(proj_dim=8, save_dir=tmp_path / "trak", seed=0)
    with pytest.raises(InputError, match="models is empty"):
        trak_scores([], x, y, xt, yt, **kw)
    with pytest.raises(InputError, match="train_labels has 29"):
        trak_scores([model], x, y[:-1], xt, yt, **kw)
    with pytest.raises(InputError, match="target_labels has 3"):
        trak_scores([model], x, y, xt, yt[:3], **kw)
    with pytest.raises(InputError, match="proj_dim must be an integer >= 1"):
        trak_scores([model], x, y, xt, yt, **{**kw, "proj_dim": 0})
    with pytest.raises(InputError, match="singular"):
        trak_scores([model], x, y, xt, yt, **{**kw, "proj_dim": 19})  # D = 18 parameters
    with pytest.raises(InputError, match="different architecture"):
        trak_scores([model, torch.nn.Linear(5, 4)], x, y, xt, yt, **kw)
    with pytest.raises(InputError, match=r"labels must lie in \[0, 3\)"):
        trak_scores([model], x, y + 3, xt, yt, **kw)
    with pytest.raises(InputError, match="target_inputs samples have shape"):
        trak_scores([model], x, y, xt[:, :4], yt, **kw)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "metadata.json").write_text("{}")
    with pytest.raises(InputError, match="new or empty directory"):
        trak_scores([model], x, y, xt, yt, **{**kw, "save_dir": tmp_path / "used"})
