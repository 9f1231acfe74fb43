"""config/cifar10.yaml and config/imagenet.yaml encode the paper's protocol (issue 5 list):
each value is read from the file and compared with the paper's (sections 4.1, 4.3, A.2,
A.6, Table 1)."""

from pathlib import Path

import pytest

from databrittle.config import load_config
from databrittle.methods import parse_method

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cifar10():
    return load_config(ROOT / "config" / "cifar10.yaml")  # also validates against the schema


@pytest.fixture(scope="module")
def imagenet():
    return load_config(ROOT / "config" / "imagenet.yaml")


def sized(methods, baseline):
    return sorted(parse_method(m).n_models for m in methods if parse_method(m).similarity == baseline
                  and parse_method(m).n_models is not None)


def test_cifar10_protocol(cifar10):
    c = cifar10
    assert c["dataset"] == "cifar10" and c["device"] == "cuda"
    assert c["targets"]["n_targets"] == 100 and c["targets"]["require_correct"] is False  # class-balanced random
    assert (c["bisection"]["k"], c["bisection"]["budget"], c["bisection"]["n_test"]) == (1280, 7, 5)
    assert c["bisection"]["metrics"] == ["removal", "mislabel"]
    r = c["counterfactual"]
    assert (r["arch"], r["epochs"], r["batch_size"], r["lr"]) == ("resnet9", 24, 512, 0.5)
    assert (r["momentum"], r["label_smoothing"]) == (0.9, 0.1)
    assert c["backbone"]["name"] == "resnet18" and c["ssl"]["epochs"] == 800 and "moco" in c["ssl"]
    assert "esvm-moco" in c["methods"]
    assert c["reference"]["n_models"] == 10
    assert sized(c["methods"], "trak") == [5, 10, 20, 100] and c["trak"]["proj_dim"] == 20480
    d = c["datamodels"]
    assert d["source"] == "public" and {"masks", "margins", "weights"} <= set(d["public"])
    assert sized(c["methods"], "datamodels") == [10000, 50000] and "datamodels" in c["methods"]  # + 300K weights
    assert d["n_validation"] == 10000 and d["alpha"] == 0.5
    assert c["lds"]["alpha"] == 0.5 and c["lds"].get("enabled", True)


def test_imagenet_protocol(imagenet):
    c = imagenet
    assert c["dataset"] == "imagenet" and c["device"] == "cuda"
    assert c["targets"]["n_targets"] == 30 and c["targets"]["require_correct"] is True
    assert c["reference"]["n_models"] == 4  # "correctly classified on average by 4 reference ResNet-18s"
    assert (c["bisection"]["k"], c["bisection"]["budget"], c["bisection"]["n_test"]) == (1000, 7, 1)
    assert c["bisection"]["metrics"] == ["removal"]
    r = c["counterfactual"]
    assert (r["arch"], r["epochs"], r["batch_size"]) == ("resnet18", 16, 1024)
    # 11 epochs at 160, last 5 at 192; evaluation at 256 px (FFCV's ImageNet example, our choice)
    assert r["resolution"] == {"low": 160, "high": 192, "switch_epoch": 11, "eval": 256}
    assert r["epochs"] - r["resolution"]["switch_epoch"] == 5
    assert c["ssl"]["moco"]["pretrained"]["format"] == "moco_v2_resnet50"
    assert sized(c["methods"], "trak") == [1, 4] and c["trak"]["proj_dim"] == 4096
    assert not any(parse_method(m).similarity == "datamodels" for m in c["methods"])
    assert c["lds"]["enabled"] is False


def test_training_budget_counts_models_from_the_config(cifar10, imagenet):
    from databrittle.budget import budget_report, training_budget

    budget = training_budget(cifar10)
    per_method = 100 * 5 * (1 + 7)  # targets x n_test x (step 0 + 7 steps): Algorithm 1's upper bound
    assert set(budget.bisection.values()) == {per_method} and len(budget.bisection) == 12 * 2
    assert budget.baselines == {"trak-5": 5, "trak-10": 10, "trak-20": 20, "trak-100": 100}  # public datamodels: 0
    assert budget.total_models == 10 + 24 * per_method + 100 + 135
    assert budget.extractors == ["moco", "supervised"]
    assert training_budget(imagenet).extractors == []  # the MoCo ResNet-50 is imported
    assert training_budget(imagenet).total_models == 4 + 3 * 30 * 1 * 8 + 5  # LDS disabled
    report = budget_report(cifar10, seconds_per_model=36.0)
    assert f"{budget.total_models:,}" in report and f"{budget.total_models * 36 / 3600:.1f}" in report
    lds_row = next(line for line in budget_report(imagenet).splitlines() if line.startswith("table_lds"))
    assert lds_row.split()[-1] == "0"  # lds.enabled false: no LDS table is built


def test_models_used_per_method_follow_the_config(cifar10):
    """Table 1's "models used": 1 extractor for ours, N checkpoints for trak-N, N fitting +
    10K validation public models for datamodels-N, unknown for the public pre-fitted weights."""
    from databrittle.budget import models_used
    from databrittle.config import load_config

    used = {method: models_used(method, cifar10) for method in cifar10["methods"]}
    assert used == {"esvm-moco": 1, "l2-moco": 1, "esvm-supervised": 1, "l2-supervised": 1, "random": 0, "trak-5": 5,
                    "trak-10": 10, "trak-20": 20, "trak-100": 100, "datamodels-10000": 20000,
                    "datamodels-50000": 60000, "datamodels": None}
    default = load_config(ROOT / "config" / "config.yaml")
    assert [models_used(m, default) for m in ("trak", "datamodels", "gradcos")] == [5, 350, 1]


def test_lds_table_writes_models_used(tmp_path):
    import pandas as pd

    from databrittle.stages import lds_table

    for name in ("a", "b"):
        pd.DataFrame({"target": [0, 1, 2], "lds": [0.5, 0.1, float("nan")], "defined": [True, True, False]}) \
            .to_csv(tmp_path / f"{name}.csv", index=False)
    lds_table([tmp_path / "a.csv", tmp_path / "b.csv"], tmp_path / "t.csv", tmp_path / "t.tex", methods=["trak-5", "datamodels"],
              lds={"n_subsets": 100, "alpha": 0.5, "models_per_subset": 1}, models_used=[5, None])
    table = pd.read_csv(tmp_path / "t.csv")
    assert table["models_used"].tolist()[0] == 5 and pd.isna(table["models_used"].tolist()[1])
    assert table["lds"].tolist() == [0.3, 0.3] and table["undefined"].tolist() == [1, 1]
