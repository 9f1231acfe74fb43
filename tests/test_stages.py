import json

import numpy as np
import pytest

from databrittle.errors import InputError
from databrittle.stages import check_data_dependent, median_support
from databrittle.support import read_state


def test_median_support_counts_censored_targets_as_larger_than_k():
    support = np.array([10, 20, 30, -1, -1])
    censored = np.array([False, False, False, True, True])
    assert median_support(support, censored, 128) == "30"
    assert median_support(support[[0, 3, 4]], censored[[0, 3, 4]], 128) == ">128"
    assert median_support(np.array([4, 7]), np.array([False, False]), 8) == "5.5"


def test_data_dependent_checks_name_the_key(tmp_path):
    sidecar = tmp_path / "data.json"
    sidecar.write_text(json.dumps({"class_counts": {"train": {"0": 60, "1": 50}},
                                   "shapes": {"train": [110, 8, 8, 1], "test": [20, 8, 8, 1]}}))
    config = {"bisection": {"k": 40}, "counterfactual": {"batch_size": 50, "arch": "mlp"}, "lds": {"alpha": 0.5}}
    check_data_dependent(sidecar, config)
    config["counterfactual"]["arch"] = "resnet9"
    with pytest.raises(InputError, match=r"config key 'counterfactual.arch': resnet9 is a CIFAR-sized network .* 8x8"):
        check_data_dependent(sidecar, config)
    config["counterfactual"]["arch"] = "mlp"
    config["counterfactual"]["batch_size"] = 60
    with pytest.raises(InputError, match=r"config key 'counterfactual.batch_size': 60 is larger than the smallest "
                                         r"counterfactual training set \(55 samples"):
        check_data_dependent(sidecar, config)
    config["bisection"]["k"] = 51
    with pytest.raises(InputError, match="config key 'bisection.k': 51 is larger"):
        check_data_dependent(sidecar, config)


def test_step_file_without_state_is_named(tmp_path):
    path = tmp_path / "step0.json"
    path.write_text(json.dumps({"step": 0}))
    with pytest.raises(InputError, match="step0.json: not a bisection step file"):
        read_state(path)
