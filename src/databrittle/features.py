"""Feature extraction from a trained extractor, and the kNN sanity monitor.

Paper section 3: "our approach utilizes the penultimate feature space representation of a
network". DESIGN.md section 1 leaves the layer to the config (``ssl.feature_layer``):

- ``backbone``: the penultimate, globally average-pooled backbone output, ``8 * width``
  dimensions (512-d for the paper's ResNet-18; 256-d for the default SmallResNet);
- ``projection``: the SSL projection head's output (``ssl.projection_dim``; Lightly's
  CIFAR-10 MoCo head gives the paper's "128-dimensional" features; for DINO the
  normalised bottleneck, see :mod:`databrittle.ssl_objectives`). Only SSL payloads have
  a projection head.

Features are computed in eval mode (BatchNorm running statistics), without augmentation,
in fixed-size batches in dataset order, so the same payload and images give identical
arrays, and row ``i`` is image ``i``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier

from databrittle.augment import to_float_nchw
from databrittle.errors import InputError
from databrittle.models import build_backbone
from databrittle.beton_images import BetonImages
from databrittle.pretrained import (PRETRAINED_METHOD, backbone_from_payload, extract_beton_features,
                                    extract_pretrained_features)
from databrittle.ssl import build_ssl_modules
from databrittle.ssl_objectives import SSL_METHODS, projection_features

LAYERS = ("backbone", "projection")


def _modules(payload: dict[str, Any], layer: str) -> list[torch.nn.Module]:
    """The modules to apply in sequence for ``layer``, rebuilt from ``payload["config"]``."""
    if layer not in LAYERS:
        raise InputError(f"feature layer {layer!r}: must be one of {list(LAYERS)}")
    try:
        config = payload["config"]
        method = config["method"]
        if method in SSL_METHODS:
            with torch.random.fork_rng(devices=[]):  # init draws are overwritten; keep global RNG untouched
                backbone, projection = build_ssl_modules(config)
            projection.load_state_dict(payload["projection"])
        else:
            if layer == "projection":
                raise InputError(f"feature layer 'projection' exists only for self-supervised payloads; "
                                 f"this payload is {method!r}: use layer 'backbone'")
            b = config["backbone"]
            with torch.random.fork_rng(devices=[]):
                backbone = build_backbone(b["name"], in_channels=b["in_channels"], width=b["width"])
            projection = None
        backbone.load_state_dict(payload["backbone"])
    except (KeyError, TypeError, RuntimeError, ValueError) as error:
        if isinstance(error, InputError):
            raise
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        raise InputError(f"checkpoint payload does not match its config ({type(error).__name__}: {reason})") from None
    if layer == "backbone":
        return [backbone]
    return [backbone, _ProjectionLayer(method, projection)]


class _ProjectionLayer(torch.nn.Module):
    """The "projection" feature layer of an SSL head (:func:`projection_features`)."""

    def __init__(self, method: str, head: torch.nn.Module) -> None:
        super().__init__()
        self.method, self.head = method, head

    def forward(self, backbone_features: torch.Tensor) -> torch.Tensor:
        return projection_features(self.method, self.head, backbone_features)


@torch.no_grad()
def extract_features(payload: dict[str, Any], images: np.ndarray | BetonImages, *, layer: str, device: torch.device,
                     batch_size: int = 512) -> np.ndarray:
    """Features of ``images`` under the extractor in ``payload``.

    Args:
        payload: a checkpoint payload from :func:`databrittle.ssl.train_ssl` /
            :func:`databrittle.ssl.train_supervised` (or :func:`databrittle.ssl.load_checkpoint`).
        images: uint8 ``(n, h, w, c)``; ``c`` must match the payload's backbone. Images of a
            beton (ImageNet) only for an imported pretrained extractor.
        layer: ``"backbone"`` (penultimate pooled features, ``(n, 8 * width)``) or
            ``"projection"`` (SSL projection layer, ``(n, projection_dim)`` or DINO's
            ``(n, bottleneck_dim)``; SSL
            payloads only).
        device: where to compute.
        batch_size: images per forward pass (fixed, so results do not depend on ``n``'s
            split into batches between calls with the same arguments).

    Returns:
        float32 ``(n, d)``; row ``i`` is image ``i``.

    Raises:
        InputError: unknown layer, ``projection`` on a supervised payload, images whose
            channel count does not match, or a payload inconsistent with its config.
    """
    pretrained = payload.get("config", {}).get("method") == PRETRAINED_METHOD
    if isinstance(images, BetonImages) and not pretrained:
        raise InputError(f"images of {images.path}: only an imported pretrained extractor "
                         f"({PRETRAINED_METHOD}) reads images from a beton")
    if pretrained:
        if layer != "backbone":
            raise InputError(f"feature layer {layer!r}: an imported {PRETRAINED_METHOD} checkpoint has only its "
                             f"backbone (2048-d pooled features)")
        if isinstance(images, BetonImages):
            return extract_beton_features(backbone_from_payload(payload), images, device)
        return extract_pretrained_features(backbone_from_payload(payload), images, device, batch_size)
    modules = _modules(payload, layer)
    x_all = to_float_nchw(images)
    expected = payload["config"]["backbone"]["in_channels"]
    if x_all.shape[1] != expected:
        raise InputError(f"images: {x_all.shape[1]} channels, but the extractor expects {expected}")
    for module in modules:
        module.to(device).eval()
    chunks = []
    for start in range(0, x_all.shape[0], batch_size):
        out = x_all[start:start + batch_size].to(device)
        for module in modules:
            out = module(out)
        chunks.append(out.float().cpu())
    if not chunks:
        dim = modules[-1](torch.zeros(2, *x_all.shape[1:], device=device)).shape[1]
        return np.zeros((0, dim), dtype=np.float32)
    return torch.cat(chunks).numpy().astype(np.float32, copy=False)


#: k of the kNN monitor reported in the extractor and features sidecars (a sanity number,
#: not an experiment setting; 20 suits 1,437 digits: ~144 images per class).
KNN_MONITOR_K = 20


#: Most test samples the kNN monitor classifies: an evenly spaced subset beyond it (digits'
#: 360 and CIFAR-10's 10,000 are used whole; ImageNet's 50,000 against 1.28M training
#: features would cost more than the features themselves).
KNN_MONITOR_MAX_QUERIES = 10_000


def knn_accuracy(train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray,
                 test_labels: np.ndarray, k: int, max_queries: int = KNN_MONITOR_MAX_QUERIES) -> float:
    """Test accuracy of a ``k``-nearest-neighbour classifier on the features.

    The standard sanity monitor of self-supervised features (Wu et al., 2018; Lightly's
    benchmarks report it for every SSL method): classify each test feature by a majority
    vote among its ``k`` nearest training features under the cosine distance. This uses
    scikit-learn's ``KNeighborsClassifier(metric="cosine", weights="uniform")`` (brute
    force, deterministic), a plain-vote simplification of the temperature-weighted vote
    of Lightly's ``knn_predict``. Recorded in the extractor's sidecar (DESIGN.md section 5).

    Args:
        train_features: ``(n_train, d)``; train_labels: ``(n_train,)``.
        test_features: ``(n_test, d)``; test_labels: ``(n_test,)``.
        k: number of neighbours (1 <= k <= n_train).
        max_queries: at most this many test samples, evenly spaced in index order, are
            classified (:data:`KNN_MONITOR_MAX_QUERIES`).

    Returns:
        Fraction of test samples classified correctly, in [0, 1].
    """
    train_features, test_features = np.asarray(train_features), np.asarray(test_features)
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    if train_features.ndim != 2 or test_features.ndim != 2 or train_features.shape[1] != test_features.shape[1]:
        raise InputError(f"knn_accuracy: features must be 2-d with equal widths, got {train_features.shape} "
                         f"and {test_features.shape}")
    if train_labels.shape != (train_features.shape[0],) or test_labels.shape != (test_features.shape[0],):
        raise InputError("knn_accuracy: one label per feature row is required")
    if not 1 <= k <= train_features.shape[0]:
        raise InputError(f"knn_accuracy: k = {k} must be between 1 and the number of training samples "
                         f"({train_features.shape[0]})")
    if test_features.shape[0] == 0:
        raise InputError("knn_accuracy: no test samples")
    if test_features.shape[0] > max_queries:
        chosen = np.unique(np.linspace(0, test_features.shape[0] - 1, max_queries).round().astype(np.int64))
        test_features, test_labels = test_features[chosen], test_labels[chosen]
    classifier = KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute", weights="uniform")
    classifier.fit(train_features, train_labels)
    return float(np.mean(classifier.predict(test_features) == test_labels))
