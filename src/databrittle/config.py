"""Config loading and validation against the JSON schema (DESIGN.md section 4).

The schema (``config.schema.yaml`` in this package, linked from ``config/``) forbids unknown
keys at every level. :func:`validate_config` turns the first violation into a one-line
:class:`~databrittle.errors.InputError` that names the dotted key, e.g.
``config key 'bisection.kk': unknown key (allowed: budget, k, metrics, n_test)``.
"""

from __future__ import annotations

import os
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from databrittle.errors import InputError


@cache
def schema() -> dict[str, Any]:
    """The config JSON schema as a dict."""
    text = resources.files("databrittle").joinpath("config.schema.yaml").read_text()
    return yaml.safe_load(text)


def _is_strict_integer(checker: Any, instance: Any) -> bool:
    """JSON Schema counts 16.0 as an integer; a config count or size must be written 16."""
    return isinstance(instance, int) and not isinstance(instance, bool)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_strict_integer),
)


def _dotted(path: Any) -> str:
    return ".".join(str(part) for part in path) or "<root>"


def _describe(error: jsonschema.ValidationError) -> str:
    """One line naming the offending key for a jsonschema error."""
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        key = _dotted([*error.absolute_path, extra[0]]) if extra else _dotted(error.absolute_path)
        return f"config key '{key}': unknown key (allowed: {', '.join(allowed)})"
    if error.validator == "required":
        missing = [k for k in error.validator_value if k not in error.instance]
        key = _dotted([*error.absolute_path, missing[0]]) if missing else _dotted(error.absolute_path)
        return f"config key '{key}': required key is missing"
    value = error.instance
    if error.validator == "enum":
        reason = f"must be one of {error.validator_value}"
    elif error.validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        symbol = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}
        reason = f"must be {symbol[error.validator]} {error.validator_value}"
    elif error.validator == "type":
        reason = f"must be of type {error.validator_value}"
    else:
        reason = error.message
    return f"config key '{_dotted(error.absolute_path)}': value {value!r} is invalid: {reason}"


def validate_config(config: dict[str, Any]) -> dict[str, Any]:
    """Validate ``config`` against the schema; return it unchanged.

    Raises:
        InputError: one line naming the first offending key (unknown, missing or invalid).
    """
    validator = _Validator(schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise InputError(_describe(errors[0]))
    _check_consistency(config)
    return config


def _check_consistency(config: dict[str, Any]) -> None:
    """Cross-key checks the schema cannot express (data-independent)."""
    from databrittle.methods import SSL_METHODS, extractors_used, parse_method

    methods = config["methods"]
    if len(set(methods)) != len(methods):
        raise InputError("config key 'methods': a method is listed twice")
    for method in methods:
        try:
            parse_method(method)
        except InputError as error:
            raise InputError(f"config key 'methods': {error}") from None
    _check_beton_dataset(config)
    if config["backbone"]["name"] == "resnet18" and config["backbone"]["width"] != 64:
        raise InputError(f"config key 'backbone.width': resnet18 has width 64, not {config['backbone']['width']}")
    for key in DATA_KEYS[config["dataset"]]:
        if key not in config["data"]:
            raise InputError(f"config key 'data.{key}': required key is missing for dataset {config['dataset']}")
    for extractor in extractors_used(methods):
        if extractor in SSL_METHODS:
            training_section(config["ssl"], extractor)
    datamodels = config["datamodels"]
    if datamodels.get("source", "train") == "public" and "public" not in datamodels:
        raise InputError("config key 'datamodels.public': required when datamodels.source is public")
    recipe = config["counterfactual"]
    if not recipe["lr_peak_epoch"] < recipe["epochs"]:
        raise InputError(f"config key 'counterfactual.lr_peak_epoch': {recipe['lr_peak_epoch']} must be below "
                         f"counterfactual.epochs ({recipe['epochs']})")
    if recipe["arch"] == "mlp" and recipe.get("arch_options"):
        raise InputError("config key 'counterfactual.arch_options': not used by arch mlp (use hidden)")


def check_resolution(resolution: dict[str, int], epochs: int) -> None:
    """Progressive resizing (paper A.2): ``low`` px for epochs 0 .. switch_epoch - 1, ``high``
    px after, so 0 <= switch_epoch <= epochs (0 or epochs: one resolution throughout) and
    low <= high."""
    switch = resolution["switch_epoch"]
    if not 0 <= switch <= epochs:
        raise InputError(f"config key 'counterfactual.resolution.switch_epoch': {switch} must lie in [0, epochs = "
                         f"{epochs}]")
    if resolution["low"] > resolution["high"]:
        raise InputError(f"config key 'counterfactual.resolution.low': {resolution['low']} px is above high = "
                         f"{resolution['high']} px (progressive resizing grows the images)")


def _check_beton_dataset(config: dict[str, Any]) -> None:
    """ImageNet's images stay in their betons (databrittle.beton_images): its networks are
    ImageNet ResNets with a resolution schedule, its features come from imported checkpoints,
    and Grad-Cos (all per-sample gradients in memory) does not apply."""
    from databrittle.architectures import IMAGENET_ARCHITECTURES
    from databrittle.methods import extractors_used, parse_method

    recipe = config["counterfactual"]
    if config["dataset"] != "imagenet":
        if "resolution" in recipe:
            raise InputError("config key 'counterfactual.resolution': only for dataset imagenet (images read from "
                             "its betons); other datasets train at their stored size")
        return
    if recipe["arch"] not in IMAGENET_ARCHITECTURES:
        raise InputError(f"config key 'counterfactual.arch': {recipe['arch']} is not an ImageNet network "
                         f"(dataset imagenet needs one of {IMAGENET_ARCHITECTURES})")
    if "resolution" not in recipe:
        raise InputError("config key 'counterfactual.resolution': required for dataset imagenet (paper A.2: "
                         "low 160, high 192, switch_epoch 11)")
    check_resolution(recipe["resolution"], recipe["epochs"])
    for extractor in extractors_used(config["methods"]):
        if extractor == "supervised" or "pretrained" not in config["ssl"].get(extractor, {}):
            raise InputError(f"config key 'methods': {extractor} features on imagenet need an imported checkpoint "
                             f"(ssl.{extractor}.pretrained); extractors are not trained on ImageNet here")
    for method in config["methods"]:
        if parse_method(method).similarity == "gradcos":
            raise InputError("config key 'methods': gradcos keeps every training image's gradient in memory; "
                             "not supported for dataset imagenet")


SSL_SHARED_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "projection_dim")
"""Training keys of the ``ssl`` section that every SSL method shares (and may override)."""

SSL_METHOD_KEYS: dict[str, tuple[str, ...]] = {
    "moco": ("temperature", "queue_size", "momentum"),
    "simclr": ("temperature",),
    "byol": ("momentum", "hidden_dim"),
    "dino": ("momentum", "hidden_dim", "bottleneck_dim", "output_dim", "teacher_temp", "warmup_teacher_temp",
             "warmup_teacher_temp_epochs", "student_temp", "center_momentum", "freeze_last_layer"),
}
"""The method-specific keys of each ``ssl.<method>`` section (the schema requires them)."""


def training_section(ssl_config: dict[str, Any], method: str) -> dict[str, Any]:
    """The keys that shape SSL ``method``'s extractor: the shared ``ssl`` keys, then
    ``ssl.<method>`` (which may override them); or ``{"pretrained": {...}}`` when the method's
    section names a published checkpoint to import instead of training. ``feature_layer``
    and other methods' sections are left out, so changing them never retrains this extractor.

    Raises:
        InputError: naming ``ssl.<method>`` when the config has no section for it, or the
            first required key that is missing.
    """
    if method not in SSL_METHOD_KEYS:
        raise ValueError(f"unknown SSL method {method!r} (expected one of {list(SSL_METHOD_KEYS)})")
    section = ssl_config.get(method)
    if not isinstance(section, dict):
        raise InputError(f"config key 'ssl.{method}': missing; a listed method uses the {method} extractor "
                         f"(keys: {', '.join(SSL_METHOD_KEYS[method])})")
    if "pretrained" in section:
        return {"pretrained": section["pretrained"]}
    for key in SSL_SHARED_KEYS:
        if key not in section and key not in ssl_config:
            raise InputError(f"config key 'ssl.{key}': required key is missing (needed to train {method})")
    for key in SSL_METHOD_KEYS[method]:
        if key not in section:
            raise InputError(f"config key 'ssl.{method}.{key}': required key is missing")
    shared = {key: ssl_config[key] for key in (*SSL_SHARED_KEYS, "augment") if key in ssl_config}
    return {**shared, **section}


DATA_KEYS = {"digits": ("test_fraction",), "cifar10": ("root",), "imagenet": ("root", "beton")}
"""The ``data`` keys each dataset needs."""


def canonical(value: Any) -> Any:
    """``value`` with every mapping's keys sorted, recursively (lists keep their order).

    Snakemake compares a rule's params by their text, so a config section passed as a
    param must not depend on the order of keys in the YAML file: reordering keys (or a
    YAML dump that sorts them) would otherwise rerun finished jobs.
    """
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML config file and validate it."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: config file not found") from None
    except yaml.YAMLError as error:
        raise InputError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: a config must be a mapping of keys")
    return validate_config(config)
