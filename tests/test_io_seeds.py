import numpy as np
import pytest

from databrittle import io
from databrittle.errors import InputError
from databrittle.seeds import derive_seed, rng


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.npy"
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_truncated_npy_is_named(tmp_path):
    path = tmp_path / "features.npy"
    io.save_npy(path, np.arange(1000, dtype=np.float32).reshape(100, 10))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"features\.npy: not a complete \.npy file"):
        io.load_npy(path)


def test_load_npy_checks_rows_and_dtype(tmp_path):
    path = tmp_path / "x.npy"
    io.save_npy(path, np.zeros((3, 2), np.float32))
    with pytest.raises(InputError, match="x.npy: 3 rows, expected 4"):
        io.load_npy(path, rows=4)
    with pytest.raises(InputError, match="x.npy: dtype float32, expected int64"):
        io.load_npy(path, dtype=np.int64)


def test_seeds_are_keyed_and_stable():
    a = derive_seed(0, "counterfactual", "removal", 17, 0)
    assert a == derive_seed(0, "counterfactual", "removal", 17, 0)
    assert a != derive_seed(0, "counterfactual", "removal", 17, 1)
    assert a != derive_seed(0, "counterfactual", "mislabel", 17, 0)
    assert a != derive_seed(1, "counterfactual", "removal", 17, 0)
    assert 0 <= a < 2**63
    assert rng(3, "x").integers(1 << 30) == rng(3, "x").integers(1 << 30)
