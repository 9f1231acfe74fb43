import numpy as np
import pytest
import torch

torch.set_num_threads(1)  # small models: one thread is fastest and avoids oversubscribing CI's 2 cores


@pytest.fixture(scope="session")
def digits_splits():
    from databrittle.datasets import load_digits_splits

    return load_digits_splits(0.2, 12345)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
