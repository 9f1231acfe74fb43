import pytest
import torch

from databrittle.device import resolve_device
from databrittle.errors import InputError


def test_device_policy():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:
        with pytest.raises(InputError, match="config key 'device': 'cuda' was asked but no CUDA GPU is visible"):
            resolve_device("cuda")
