"""The body of every pipeline stage: read inputs, call the library, write outputs + sidecars.

Each function is what one Snakemake rule runs (through workflow/scripts/run_stage.py) and is
usable without Snakemake. Arguments are plain paths and the config sections the stage
depends on, so that a rule's ``params`` capture everything its result depends on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from databrittle import io
from databrittle.methods import parse_method
from databrittle.provenance import measured, write_sidecar

Path = str | os.PathLike


# ---------------------------------------------------------------- data
def prepare_data(train_beton: Path, test_beton: Path, train_data: Path, test_data: Path, split_csv: Path,
                 sidecar: Path, *, dataset: str, data: dict[str, Any], seed: int) -> None:
    """Write the dataset's betons, decode them back (the arrays later stages load), the split
    map and a sidecar with class counts."""
    from databrittle.datasets import class_counts, decode_split, prepare_cifar10, prepare_digits, prepare_imagenet_splits
    from databrittle.seeds import derive_seed

    with measured() as meter:
        out_dir = os.path.dirname(train_beton)
        if dataset == "imagenet":  # the images stay in the betons (databrittle.beton_images)
            labels = prepare_imagenet_splits(out_dir, data["root"], data["beton"], derive_seed(seed, "beton") % (2**32))
            side = data["beton"]["max_resolution"]
            write_sidecar(sidecar, params={"dataset": dataset, **data, "seed": seed}, meter=meter,
                          outputs=[train_beton, test_beton, split_csv],
                          class_counts={name: class_counts(split) for name, split in labels.items()},
                          shapes={name: [len(split), side, side, 3] for name, split in labels.items()},
                          images_in_beton=True)
            return
        if dataset == "cifar10":
            splits = prepare_cifar10(out_dir, data["root"], data.get("download", False), data.get("md5"))
        else:
            splits = prepare_digits(out_dir, data["test_fraction"], derive_seed(seed, "split"))
        decode_split(train_beton, train_data)
        decode_split(test_beton, test_data)
        counts = {name: class_counts(s.labels) for name, s in splits.items()}
        write_sidecar(sidecar, params={"dataset": dataset, **data, "seed": seed}, meter=meter,
                      outputs=[train_beton, test_beton, split_csv], class_counts=counts,
                      shapes={name: list(s.images.shape) for name, s in splits.items()})


def check_data_dependent(sidecar: Path, config: dict[str, Any]) -> None:
    """Config checks that need the data (DESIGN.md 4), run right after the data job.

    Some class must hold at least k training images (targets come from those classes), every
    counterfactual training set
    (all data minus k removed samples; an LDS subset of round(alpha * n)) must hold at least
    one batch, and a CIFAR-sized counterfactual network needs 32x32 images. Errors name the
    config key.
    """
    from databrittle.datasets import check_pool_size

    data = io.read_json(sidecar)
    arch = config["counterfactual"]["arch"]
    height, width = data["shapes"]["train"][1:3]
    from databrittle.architectures import IMAGENET_ARCHITECTURES

    if arch in IMAGENET_ARCHITECTURES and min(height, width) < 32:
        raise io.InputError(f"config key 'counterfactual.arch': {arch} is an ImageNet network but {sidecar} holds "
                            f"{height}x{width} images; use arch mlp (or resnet9 for 32x32 images)")
    if arch != "mlp" and arch not in IMAGENET_ARCHITECTURES and (height, width) != (32, 32):
        raise io.InputError(f"config key 'counterfactual.arch': {arch} is a CIFAR-sized network (32x32 input) but "
                            f"{sidecar} holds {height}x{width} images; use arch mlp")
    counts = data["class_counts"]["train"]
    labels = np.repeat(np.array([int(c) for c in counts]), [int(n) for n in counts.values()])
    k = config["bisection"]["k"]
    check_pool_size(k, labels, str(sidecar))  # targets come from the classes with >= k images
    batch = config["counterfactual"]["batch_size"]
    smallest = min(len(labels) - k, int(round(config["lds"]["alpha"] * len(labels))))
    if batch > smallest:
        raise io.InputError(f"config key 'counterfactual.batch_size': {batch} is larger than the smallest "
                            f"counterfactual training set ({smallest} samples; {len(labels)} in {sidecar})")


# ---------------------------------------------------------------- extractors
def train_extractor(kind: str, train_data: Path, test_data: Path, checkpoint: Path, sidecar: Path, *,
                    backbone: dict[str, Any], section: dict[str, Any], seed: int, device: str,
                    torch_threads: int = 1, pretrained: Path | None = None) -> None:
    """Train an SSL (``kind`` moco, simclr, byol, dino) or the supervised extractor; save its checkpoint.

    With ``section = {"pretrained": {path, sha256, format}}`` the published checkpoint
    (the rule's ``pretrained`` input) is imported instead, sha256-checked.

    ``torch_threads`` is fixed by the rule (not by ``--cores``): float sums depend on the
    thread count, so this keeps a rerun's numbers identical whatever the machine's cores.
    """
    import torch

    torch.set_num_threads(torch_threads)
    from databrittle import features, ssl
    from databrittle.augment import build_augment
    from databrittle.datasets import load_split
    from databrittle.device import resolve_device
    from databrittle.seeds import derive_seed

    # importing a published checkpoint trains nothing: it runs without a GPU (its SLURM job asks
    # for none, see ssl_trains in workflow/rules/common.smk) whatever the device policy
    torch_device = torch.device("cpu") if "pretrained" in section else resolve_device(device)
    with measured() as meter:
        images, labels = load_split(train_data)
        train_seed = derive_seed(seed, "extractor", kind)
        history: dict[str, Any] = {}
        if "pretrained" in section:  # a published checkpoint, imported (paper 4.3, ImageNet)
            from databrittle.pretrained import pretrained_payload

            payload = pretrained_payload(pretrained or section["pretrained"]["path"], section["pretrained"]["sha256"])
        elif kind == "supervised":
            payload, history = ssl.train_supervised(images, labels, backbone_cfg=backbone, sup_cfg=section,
                                                    seed=train_seed, device=torch_device,
                                                    augment=build_augment(section.get("augment", "digits")))
        else:
            payload, history = ssl.train_ssl(kind, images, None, backbone_cfg=backbone, ssl_cfg=section,
                                             seed=train_seed, device=torch_device,
                                             augment=build_augment(section.get("augment", "digits")))
        ssl.save_checkpoint(checkpoint, payload)
        # an imported extractor gets its kNN number in the features sidecar (ImageNet: one
        # pass over 1.28M images is enough)
        knn = None if "pretrained" in section else _backbone_knn(payload, (images, labels), load_split(test_data),
                                                                 torch_device)
        write_sidecar(sidecar, params={"kind": kind, "backbone": backbone, kind: section, "seed": seed,
                                       "torch_threads": torch_threads, "knn_monitor_k": features.KNN_MONITOR_K},
                      meter=meter, outputs=[checkpoint], device=str(torch_device), seeds={"train": train_seed},
                      history=history, knn_accuracy_backbone=knn)


def _backbone_knn(payload: dict, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
                  device: Any) -> float:
    """kNN accuracy (test split) of an extractor's backbone features: the sidecar's sanity number."""
    from databrittle import features

    train_f = features.extract_features(payload, train[0], layer="backbone", device=device)
    test_f = features.extract_features(payload, test[0], layer="backbone", device=device)
    return features.knn_accuracy(train_f, train[1], test_f, test[1], features.KNN_MONITOR_K)


def extract_features(checkpoint: Path, train_data: Path, test_data: Path, train_npy: Path, test_npy: Path,
                     sidecar: Path, *, layer: str, device: str) -> None:
    """Features of both splits (row i = dataset index i) and their kNN accuracy."""
    from databrittle import features, ssl
    from databrittle.datasets import load_split
    from databrittle.device import resolve_device

    torch_device = resolve_device(device)
    with measured() as meter:
        payload = ssl.load_checkpoint(checkpoint)
        train_images, train_labels = load_split(train_data)
        test_images, test_labels = load_split(test_data)
        train_f = features.extract_features(payload, train_images, layer=layer, device=torch_device)
        test_f = features.extract_features(payload, test_images, layer=layer, device=torch_device)
        io.save_npy(train_npy, train_f.astype(np.float32))
        io.save_npy(test_npy, test_f.astype(np.float32))
        knn = features.knn_accuracy(train_f, train_labels, test_f, test_labels, features.KNN_MONITOR_K)
        write_sidecar(sidecar, params={"layer": layer, "knn_monitor_k": features.KNN_MONITOR_K,
                                       "checkpoint": str(checkpoint)}, meter=meter,
                      outputs=[train_npy, test_npy], device=str(torch_device), knn_accuracy=knn,
                      feature_layer=layer, dim=int(train_f.shape[1]))


# ---------------------------------------------------------------- counterfactual data
def _counterfactual_data(train_data: Path, test_data: Path
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Decoded splits: train images uint8 (N, H, W, C), labels (N,), test images, labels, classes."""
    from databrittle.datasets import load_split

    train_images, train_labels = load_split(train_data)
    test_images, test_labels = load_split(test_data)
    n_classes = int(max(train_labels.max(), test_labels.max()) + 1)
    return train_images, train_labels, test_images, test_labels, n_classes


def reference_models(train_data: Path, test_data: Path, mean_logits: Path, model_logits: Path, sidecar: Path, *,
                     counterfactual: dict[str, Any], n_models: int, seed: int, device: str) -> None:
    """R models on all training data: averaged test logits, per-model logits, accuracy."""
    from databrittle.device import resolve_device
    from databrittle.reference import reference_summary, train_reference_models
    from databrittle.train import TrainConfig

    torch_device = resolve_device(device)
    with measured() as meter:
        train_images, train_labels, test_images, test_labels, n_classes = _counterfactual_data(train_data, test_data)
        logits = train_reference_models(train_images, train_labels, test_images, TrainConfig.from_config(counterfactual), n_models,
                                        n_classes, seed, torch_device)
        io.save_npy(model_logits, logits)
        io.save_npy(mean_logits, logits.mean(0).astype(np.float32))
        write_sidecar(sidecar, params={"counterfactual": counterfactual, "n_models": n_models, "seed": seed},
                      meter=meter, outputs=[mean_logits, model_logits], device=str(torch_device),
                      **reference_summary(logits, test_labels))


def choose_targets(model_logits: Path, train_data: Path, test_data: Path, targets_csv: Path, sidecar: Path, *,
                   n_targets: int, k: int, seed: int, require_correct: bool = True) -> None:
    """targets.csv: class-balanced targets with flip classes, drawn among the test samples the
    reference models classify correctly on average (``require_correct``, the paper's ImageNet
    protocol and our digits default) or among all test samples (the paper's CIFAR-10
    protocol), of the classes whose training split holds at least k images (all classes of
    digits and CIFAR-10; ImageNet has classes of 732 images and k = 1000)."""
    from databrittle.datasets import load_split
    from databrittle.reference import choose_targets as choose, classes_with_pools, correct_on_average, flip_classes
    from databrittle.reference import targets_frame

    with measured() as meter:
        _, train_labels = load_split(train_data)
        _, test_labels = load_split(test_data)
        logits = io.load_npy(model_logits, ndim=3)
        if logits.shape[1] != len(test_labels):
            raise io.InputError(f"{model_logits}: {logits.shape[1]} test rows, {test_data} has {len(test_labels)}")
        classes = classes_with_pools(train_labels, k)
        excluded = sorted(set(np.unique(test_labels).tolist()) - set(classes.tolist()))
        eligible = correct_on_average(logits, test_labels) if require_correct else np.ones(len(test_labels), bool)
        chosen = choose(eligible, test_labels, n_targets, seed, classes=np.intersect1d(classes, test_labels))
        io.write_csv(targets_csv, targets_frame(chosen, test_labels, flip_classes(logits.mean(0), test_labels)))
        rule = ("class-balanced among test samples correct on average over the reference models" if require_correct
                else "class-balanced among all test samples") + " of classes with at least k training images"
        write_sidecar(sidecar, params={"n_targets": n_targets, "k": k, "seed": seed, "require_correct": require_correct,
                                       "rule": rule}, meter=meter,
                      outputs=[targets_csv], eligible=int(eligible.sum()), test_samples=len(test_labels),
                      classes_excluded_for_k=excluded)


# ---------------------------------------------------------------- rankings
def rank_method(method: str, train_data: Path, test_data: Path, targets_csv: Path, ranking: Path,
                ranking_scores: Path, similarity: Path, sidecar: Path, *, k: int, esvm: dict[str, Any], seed: int,
                baseline: dict[str, Any], train_features: Path | None = None,
                test_features: Path | None = None, **user_files: Path) -> None:
    """Top-k rankings, their scores and the full similarity/score matrix (T, n_train) of one method.

    ``baseline`` holds, for an attribution baseline only, its config section (``options``),
    the counterfactual recipe, the LDS section and the device policy; empty otherwise.
    ``user_files`` are files a user hands in (the public datamodels, ``public_*``): rule
    inputs so that Snakemake tracks them; their paths and checksums are in the options.
    """
    from databrittle.datasets import load_split
    from databrittle.methods import is_attribution
    from databrittle.rank import check_features, check_pools, check_scores, rank_by_similarity, rank_targets
    from databrittle.reference import read_targets

    spec = parse_method(method)
    with measured() as meter:
        train_images, train_labels = load_split(train_data)
        test_images, test_labels = load_split(test_data)
        targets = read_targets(targets_csv)
        target_ids, target_labels = targets["target"].to_numpy(), targets["label"].to_numpy()
        if not np.array_equal(test_labels[target_ids], target_labels):
            raise io.InputError(f"{targets_csv}: labels disagree with the test split {test_data}")
        if is_attribution(spec):
            check_pools(spec, train_labels, target_labels, k)
            scores = _baseline_scores(method, train_images, train_labels, test_images[target_ids], target_labels,
                                      baseline, seed, target_ids, len(test_labels))
            check_scores(scores, len(target_ids), len(train_labels), f"method '{method}'")
            result = rank_by_similarity(spec, scores, train_labels, target_labels, k)
        else:
            train_f = target_f = None
            if spec.extractor is not None:
                train_f = io.load_npy(train_features, ndim=2)
                check_features(train_f, len(train_labels), str(train_features))
                test_f = io.load_npy(test_features, ndim=2)
                check_features(test_f, len(test_labels), str(test_features))
                target_f = test_f[target_ids]
            result = rank_targets(spec, train_f, train_labels, target_f, target_labels, target_ids, k,
                                  esvm.get("C", 0.0), seed, esvm.get("solver", "newton"))
        io.save_npy(ranking, result.indices)
        io.save_npy(ranking_scores, result.scores)
        io.save_npy(similarity, result.similarity.astype(np.float32))
        write_sidecar(sidecar, params={"method": method, "k": k, "esvm": esvm, "seed": seed, "pool": spec.pool,
                                       "baseline": baseline},
                      meter=meter, outputs=[ranking, ranking_scores, similarity])


def _baseline_scores(method: str, train_images: np.ndarray, train_labels: np.ndarray, target_images: np.ndarray,
                     target_labels: np.ndarray, baseline: dict[str, Any], seed: int, target_ids: np.ndarray,
                     n_test: int) -> np.ndarray:
    from databrittle.baselines.run import baseline_scores
    from databrittle.device import resolve_device
    from databrittle.train import TrainConfig

    return baseline_scores(method, train_images, train_labels, target_images, target_labels, baseline["options"],
                           TrainConfig.from_config(baseline["counterfactual"]) if "counterfactual" in baseline else None,
                           seed, resolve_device(baseline.get("device", "cpu")), baseline.get("lds"), target_ids, n_test)


def lds_scores(similarity: Path, train_data: Path, targets_csv: Path, score_vectors: Path, *,
               top_fraction: float, method: str = "") -> None:
    """Full LDS score vectors tau (T, n_train): sign estimation + top-fraction sparsification
    for similarity methods; an attribution baseline's scores as they are."""
    from databrittle.datasets import load_split
    from databrittle.methods import is_attribution
    from databrittle.rank import lds_score_vectors
    from databrittle.reference import read_targets

    _, train_labels = load_split(train_data)
    targets = read_targets(targets_csv)
    values = io.load_npy(similarity, ndim=2, rows=len(targets))
    if values.shape[1] != len(train_labels):
        raise io.InputError(f"{similarity}: {values.shape[1]} columns, the training split has {len(train_labels)}")
    if method and is_attribution(parse_method(method)):
        io.save_npy(score_vectors, values.astype(np.float32))
        return
    io.save_npy(score_vectors, lds_score_vectors(values, train_labels, targets["label"].to_numpy(), top_fraction))


# ---------------------------------------------------------------- bisection
def bisect_step(step: int | str, metric: str, method: str, slots: Sequence[int], train_data: Path, test_data: Path,
                targets_csv: Path, ranking: Path, step_files: Sequence[Path], *, k: int, n_test: int,
                counterfactual: dict[str, Any], seed: int, device: str, previous_steps: Sequence[Path] = ()) -> None:
    """Step ``step`` of Algorithm 1 for the targets in ``slots`` (one step file each).

    The brackets come from each target's ``step{step-1}.json`` beside its output file. The
    rule lists only one of them as ``previous_steps`` (all of a shard's step files come from
    one job, so one orders the DAG; listing all made the paper-scale DAG slow to build);
    the others are read by path, and a missing one is an error naming it.
    """
    from pathlib import Path as FilePath

    step = int(step)
    if len(step_files) != len(slots):
        raise ValueError(f"step {step}: {len(step_files)} step files for {len(slots)} targets")
    previous_files = [FilePath(f).with_name(f"step{step - 1}.json") for f in step_files] if step > 0 else []
    if step > 0 and not {FilePath(p) for p in previous_steps} <= set(previous_files):
        raise ValueError(f"step {step}: previous_steps {list(previous_steps)} are not this shard's step{step - 1} files")
    from databrittle.device import resolve_device
    from databrittle.reference import read_targets
    from databrittle.support import Target, read_state, run_step, write_records
    from databrittle.train import TrainConfig

    torch_device = resolve_device(device)
    with measured() as meter:
        table = read_targets(targets_csv).set_index("slot")
        rankings = io.load_npy(ranking, dtype=np.int64, ndim=2, rows=len(table))
        if rankings.shape[1] != k:
            raise io.InputError(f"{ranking}: rankings of length {rankings.shape[1]}, config bisection.k is {k}")
        targets = [Target(int(table.at[s, "target"]), int(table.at[s, "label"]), int(table.at[s, "flip_class"]),
                          rankings[s]) for s in slots]
        previous = [read_state(p) for p in previous_files] if step > 0 else [None] * len(slots)
        train_images, train_labels, test_images, _, n_classes = _counterfactual_data(train_data, test_data)
        records = run_step(step, metric, targets, previous, k, n_test, seed, train_images, train_labels, test_images, n_classes,
                           TrainConfig.from_config(counterfactual), torch_device)
        params = {"method": method, "k": k, "n_test": n_test, "counterfactual": counterfactual, "seed": seed,
                  "device": str(torch_device), "job_cost": meter.cost()}
        write_records(records, step_files, params)


def support_csv(final_steps: Sequence[Path], support: Path, *, n_steps: int) -> None:
    """results/{ds}/support/{metric}/{arch}/{method}.csv from the targets' step files.

    Args:
        final_steps: per target (slot order) its last step file ``.../t{slot}/step{budget}.json``;
            the earlier ``step0 .. step{budget-1}`` files beside it are read too (they are its
            ancestors in the DAG, so they exist; the rule lists only the last ones, which
            keeps the DAG of a paper-scale config quick to build).
        n_steps: budget + 1.
    """
    from databrittle.support import support_table

    from pathlib import Path as FilePath

    per_target = [[FilePath(final).with_name(f"step{step}.json") for step in range(n_steps)] for final in final_steps]
    for final, files in zip(final_steps, per_target):
        if FilePath(final) != files[-1]:
            raise io.InputError(f"{final}: expected the step{n_steps - 1}.json file of a target (n_steps={n_steps})")
    io.write_csv(support, support_table([files[-1] for files in per_target], per_target))


# ---------------------------------------------------------------- LDS
def lds_ground_truth(train_data: Path, test_data: Path, targets_csv: Path, masks_npy: Path, margins_npy: Path,
                     sidecar: Path, *, lds: dict[str, Any], counterfactual: dict[str, Any], seed: int,
                     device: str) -> None:
    """Masks (m, n_train) and target margins (m, T) of models trained on alpha-subsets."""
    from databrittle.device import resolve_device
    from databrittle.lds import subset_margins, subset_masks
    from databrittle.reference import read_targets
    from databrittle.train import TrainConfig

    torch_device = resolve_device(device)
    with measured() as meter:
        train_images, train_labels, test_images, _, n_classes = _counterfactual_data(train_data, test_data)
        targets = read_targets(targets_csv)
        masks = subset_masks(len(train_labels), lds["n_subsets"], lds["alpha"], seed)
        margins = subset_margins(masks, targets["target"].to_numpy(), targets["label"].to_numpy(),
                                 lds["models_per_subset"], seed, train_images, train_labels, test_images, n_classes,
                                 TrainConfig.from_config(counterfactual), torch_device)
        io.save_npy(masks_npy, masks)
        io.save_npy(margins_npy, margins)
        write_sidecar(sidecar, params={"lds": lds, "counterfactual": counterfactual, "seed": seed}, meter=meter,
                      outputs=[masks_npy, margins_npy], device=str(torch_device))


def lds_method(masks_npy: Path, margins_npy: Path, score_vectors: Path, targets_csv: Path, lds_csv: Path) -> None:
    """Per-target LDS of one method (NaN + defined=False where the correlation is undefined)."""
    from databrittle.metrics import lds
    from databrittle.reference import read_targets

    masks = io.load_npy(masks_npy, dtype=bool, ndim=2)
    margins = io.load_npy(margins_npy, ndim=2, rows=len(masks))
    scores = io.load_npy(score_vectors, ndim=2, rows=margins.shape[1])
    if scores.shape[1] != masks.shape[1]:
        raise io.InputError(f"{score_vectors}: {scores.shape[1]} columns, the LDS masks have {masks.shape[1]}")
    values, undefined = lds(masks, margins, scores)
    targets = read_targets(targets_csv)
    io.write_csv(lds_csv, pd.DataFrame({"target": targets["target"], "lds": values, "defined": ~undefined}))


# ---------------------------------------------------------------- figures and tables
def _read_support(path: Path) -> tuple[np.ndarray, np.ndarray]:
    frame = pd.read_csv(path)
    censored = frame["censored"].astype(bool).to_numpy()
    return frame["support"].fillna(-1).astype(np.int64).to_numpy(), censored


def _method_files(files: Sequence[Path], methods: Sequence[str], metrics: Sequence[str]) -> dict[str, dict[str, Path]]:
    """Support files listed metric-major (for each metric, each method) -> {metric: {method: file}}."""
    pairs = [(metric, method) for metric in metrics for method in methods]
    if len(pairs) != len(files):
        raise ValueError(f"expected {len(pairs)} support files, got {len(files)}")
    table: dict[str, dict[str, Path]] = {metric: {} for metric in metrics}
    for (metric, method), path in zip(pairs, files):
        table[metric][method] = path
    return table


def support_figure(support_files: Sequence[Path], figure_files: Sequence[Path], *, methods: Sequence[str],
                   metrics: Sequence[str], k: int, colour_by: str = "similarity") -> None:
    """One panel per metric, one CDF per method with its AUC in the legend (paper Figs. 2, 3;
    ``colour_by="extractor"`` for the extractor comparison of appendix A.3, Figs. 8, 9)."""
    from databrittle.plots import plot_support_cdf_panels

    files = _method_files(support_files, methods, metrics)
    panels = {f"{metric} support": {method: _read_support(path) for method, path in by_method.items()}
              for metric, by_method in files.items()}
    plot_support_cdf_panels(panels, k, list(figure_files), styles=method_styles(methods, colour_by))


SIMILARITY_COLOURS = {"esvm": "tab:blue", "l2": "tab:orange", "cosine": "tab:green", "random": "tab:gray",
                      "trak": "tab:red", "datamodels": "tab:purple", "gradcos": "tab:brown"}
EXTRACTOR_COLOURS = {"moco": "tab:blue", "simclr": "tab:green", "byol": "tab:red", "dino": "tab:purple",
                     "supervised": "tab:gray"}
SIMILARITY_LINES = {"esvm": "-", "l2": "--", "cosine": "-."}


def method_styles(methods: Sequence[str], colour_by: str = "similarity") -> dict[str, dict[str, Any]]:
    """Line styles of the support-CDF figures.

    ``colour_by="similarity"`` (Figs. 2, 3): one colour per similarity or baseline, solid
    for SSL features, dashed for supervised, dotted for all-class pools.
    ``colour_by="extractor"`` (appendix A.3): one colour per extractor, the line style by
    similarity (ESVM solid, l2 dashed, cosine dash-dot), all-class pools dotted.
    """
    if colour_by not in ("similarity", "extractor"):
        raise ValueError(f"colour_by: expected 'similarity' or 'extractor', got {colour_by!r}")
    styles = {}
    for method in methods:
        spec = parse_method(method)
        if colour_by == "extractor" and spec.extractor is not None:
            colour, line = EXTRACTOR_COLOURS[spec.extractor], SIMILARITY_LINES[spec.similarity]
        else:
            colour, line = SIMILARITY_COLOURS.get(spec.similarity), "--" if spec.extractor == "supervised" else "-"
        styles[method] = {"color": colour, "linestyle": ":" if spec.pool == "all_classes" else line}
    return styles


def median_support(support: np.ndarray, censored: np.ndarray, k: int) -> str:
    """Median over ALL targets, censored ones counted as larger than k: a number, or ">k"."""
    values = np.where(censored, np.inf, support.astype(float))
    median = float(np.median(values))
    return f">{k}" if np.isinf(median) else f"{median:g}"


def auc_table(support_files: Sequence[Path], table_csv: Path, table_tex: Path, *, methods: Sequence[str],
              metrics: Sequence[str], k: int) -> None:
    """AUC of the support CDF per method and metric, with flipped/censored counts (Table 1 analogue)."""
    from databrittle.metrics import auc
    from databrittle.plots import write_table

    rows = []
    for metric, by_method in _method_files(support_files, methods, metrics).items():
        for method, path in by_method.items():
            support, censored = _read_support(path)
            rows.append({"metric": metric, "method": method, "auc": auc(support, censored, k),
                         "targets": len(support), "flipped": int((~censored).sum()),
                         "median_support": median_support(support, censored, k)})
    write_table(pd.DataFrame(rows), table_csv, table_tex,
                caption=f"AUC of the support CDF over [0, {k}] (higher is better)")


def lds_table(lds_files: Sequence[Path], table_csv: Path, table_tex: Path, *, methods: Sequence[str],
              lds: dict[str, Any], models_used: Sequence[int | None]) -> None:
    """Mean LDS per method with the number of undefined correlations and the models behind
    each method's scores (paper Table 1; ``models_used`` from :func:`databrittle.budget.models_used`,
    None written as an empty cell)."""
    from databrittle.metrics import lds_summary
    from databrittle.plots import write_table

    rows = []
    if len(models_used) != len(methods):
        raise ValueError(f"expected {len(methods)} models_used entries, got {len(models_used)}")
    for method, path, used in zip(methods, lds_files, models_used):
        frame = pd.read_csv(path)
        summary = lds_summary(frame["lds"].to_numpy(dtype=float), ~frame["defined"].astype(bool).to_numpy())
        rows.append({"method": method, "models_used": pd.NA if used is None else int(used), "lds": summary["mean"], "targets": summary["n_targets"],
                     "undefined": summary["n_undefined"], "m": lds["n_subsets"], "alpha": lds["alpha"],
                     "models_per_subset": lds["models_per_subset"]})
    write_table(pd.DataFrame(rows), table_csv, table_tex,
                caption="Linear Datamodeling Score (mean Spearman over targets; undefined correlations counted)")
