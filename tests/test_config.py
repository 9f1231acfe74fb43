import copy
from pathlib import Path

import pytest
import yaml

from databrittle.config import canonical, load_config, validate_config
from databrittle.methods import parse_method
from databrittle.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def default_config():
    return load_config(ROOT / "config" / "config.yaml")


def test_default_and_test_configs_are_valid():
    for name in ("config.yaml", "test.yaml"):
        assert load_config(ROOT / "config" / name)["dataset"] == "digits"


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c["bisection"].update(budjet=3), "config key 'bisection.budjet': unknown key"),
        (lambda c: c.update(sead=1), "config key 'sead': unknown key"),
        (lambda c: c["bisection"].update(k=0), "config key 'bisection.k': value 0 is invalid: must be >= 1"),
        (lambda c: c["lds"].update(alpha=1.5), "config key 'lds.alpha': value 1.5 is invalid: must be < 1"),
        (lambda c: c.update(device="gpu"), "config key 'device': value 'gpu' is invalid"),
        (lambda c: c["ssl"].pop("epochs"), "config key 'ssl.epochs': required key is missing (needed to train moco)"),
        (lambda c: c.update(methods=["esvm-swav"]), "config key 'methods': method 'esvm-swav': not in the registry"),
        (lambda c: (c["ssl"].pop("byol"), c.update(methods=["l2-byol"])), "config key 'ssl.byol': missing"),
        (lambda c: (c["ssl"]["dino"].pop("output_dim"), c.update(methods=["l2-dino"])),
         "config key 'ssl.dino.output_dim': required key is missing"),
        (lambda c: c.update(dataset="cifar10"), "config key 'data.root': required key is missing for dataset cifar10"),
        (lambda c: c.update(dataset="mnist"), "config key 'dataset': value 'mnist' is invalid"),
        (lambda c: c["counterfactual"].update(epochs="ten"), "config key 'counterfactual.epochs': value 'ten'"),
        (lambda c: c["bisection"].update(k=16.0), "config key 'bisection.k': value 16.0 is invalid: must be of type integer"),
        (lambda c: c["data"].update(test_fraction=0.999), "config key 'data.test_fraction': value 0.999 is invalid"),
    ],
)
def test_bad_config_names_the_key(default_config, mutate, message):
    config = copy.deepcopy(default_config)
    mutate(config)
    with pytest.raises(InputError) as error:
        validate_config(config)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_load_config_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="missing.yaml: config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: [unclosed\n")
    with pytest.raises(InputError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    bad.write_text(yaml.safe_dump(["a", "list"]))
    with pytest.raises(InputError, match="bad.yaml: a config must be a mapping"):
        load_config(bad)


def test_parse_method():
    spec = parse_method("esvm-moco")
    assert (spec.similarity, spec.extractor, spec.pool) == ("esvm", "moco", "same_class")
    assert parse_method("random").extractor is None
    spec = parse_method("cosine-supervised-allclass")
    assert (spec.similarity, spec.extractor, spec.pool) == ("cosine", "supervised", "all_classes")
    for name, extractor in (("l2-simclr", "simclr"), ("esvm-byol-allclass", "byol"), ("cosine-dino", "dino")):
        assert parse_method(name).extractor == extractor
    assert (parse_method("trak-100").similarity, parse_method("trak-100").n_models) == ("trak", 100)
    assert parse_method("datamodels-50000").n_models == 50000 and parse_method("trak").n_models is None
    for bad in ("cos-moco", "esvm-moco-sameclass", "esvm", "random-moco", "esvm-swav", "trak-0", "trak-05",
                "gradcos-3", "trak-x"):
        with pytest.raises(InputError, match=f"method '{bad}': not in the registry"):
            parse_method(bad)


def test_canonical_sorts_mapping_keys_recursively_and_keeps_list_order():
    value = {"b": {"z": 1, "a": [{"y": 2, "x": 3}, 1]}, "a": 0}
    out = canonical(value)
    assert list(out) == ["a", "b"] and list(out["b"]) == ["a", "z"]
    assert list(out["b"]["a"][0]) == ["x", "y"] and out["b"]["a"][1] == 1
    assert out == value  # same content


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["counterfactual"].update(arch="resnet9"),
     "config key 'counterfactual.arch': resnet9 is not an ImageNet network"),
    (lambda c: c["counterfactual"].pop("resolution"), "config key 'counterfactual.resolution': required for dataset "
                                                      "imagenet"),
    (lambda c: c.update(methods=["esvm-supervised"]), "config key 'methods': supervised features on imagenet need an "
                                                      "imported checkpoint"),
    (lambda c: c["ssl"]["moco"].pop("pretrained"), "config key 'methods': moco features on imagenet need an imported "
                                                   "checkpoint (ssl.moco.pretrained)"),
    (lambda c: c.update(methods=["gradcos"]), "config key 'methods': gradcos keeps every training image's gradient"),
    (lambda c: c["counterfactual"]["resolution"].update(switch_epoch=17),
     "config key 'counterfactual.resolution.switch_epoch': 17 must lie in [0, epochs = 16]"),
    (lambda c: c["counterfactual"]["resolution"].update(low=224),
     "config key 'counterfactual.resolution.low': 224 px is above high = 192 px"),
])
def test_imagenet_config_errors_name_the_key(mutate, message):
    """ImageNet's images stay in their betons: an ImageNet ResNet with a resolution schedule,
    imported extractors, no Grad-Cos."""
    config = load_config(ROOT / "config" / "imagenet.yaml")
    mutate(config)
    with pytest.raises(InputError) as error:
        validate_config(config)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_resolution_is_for_imagenet_only(default_config):
    default_config["counterfactual"]["resolution"] = {"low": 8, "high": 8, "switch_epoch": 1}
    with pytest.raises(InputError, match="config key 'counterfactual.resolution': only for dataset imagenet"):
        validate_config(default_config)
