import json
import os

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
    config = {"bisection": {"k": 55}, "counterfactual": {"batch_size": 50, "arch": "mlp"}, "lds": {"alpha": 0.5}}
    check_data_dependent(sidecar, config)  # class 0 (60 images) can supply targets for k = 55
    config["counterfactual"]["arch"] = "resnet9"
    with pytest.raises(InputError, match=r"config key 'counterfactual.arch': resnet9 is a CIFAR-sized network .* 8x8"):
        check_data_dependent(sidecar, config)
    config["counterfactual"]["arch"] = "mlp"
    config["counterfactual"]["batch_size"] = 60
    with pytest.raises(InputError, match=r"config key 'counterfactual.batch_size': 60 is larger than the smallest "
                                         r"counterfactual training set \(55 samples"):
        check_data_dependent(sidecar, config)
    config["bisection"]["k"] = 61
    with pytest.raises(InputError, match="config key 'bisection.k': 61 is larger than every same-class"):
        check_data_dependent(sidecar, config)


def test_step_file_without_state_is_named(tmp_path):
    path = tmp_path / "step0.json"
    path.write_text(json.dumps({"step": 0}))
    with pytest.raises(InputError, match="step0.json: not a bisection step file"):
        read_state(path)


@pytest.fixture(scope="module")
def stage_files(tmp_path_factory, digits_splits):
    from databrittle.io import save_npz

    root = tmp_path_factory.mktemp("stage")
    for split in ("train", "test"):
        save_npz(root / f"{split}.npz", images=digits_splits[split].images, labels=digits_splits[split].labels)
    test_labels = digits_splits["test"].labels
    targets = [int(np.flatnonzero(test_labels == c)[0]) for c in (0, 3, 7)]
    (root / "targets.csv").write_text("slot,target,label,flip_class\n" + "".join(
        f"{slot},{t},{test_labels[t]},{(test_labels[t] + 1) % 10}\n" for slot, t in enumerate(targets)))
    return root


RECIPE = {"arch": "mlp", "epochs": 3, "batch_size": 64, "lr": 0.1, "lr_peak_epoch": 1, "momentum": 0.9,
          "weight_decay": 5e-4, "label_smoothing": 0.1, "hidden": 32}


@pytest.mark.parametrize("method, options", [
    ("trak", {"n_models": 2, "proj_dim": 64}),
    ("datamodels", {"n_models": 20, "n_validation": 6, "alpha": 0.5}),
    ("gradcos", {}),
])
def test_baseline_methods_write_the_ranking_contract(stage_files, method, options):
    """Each attribution baseline writes top-k indices over all classes, their scores, the
    full score matrix, and raw scores as its LDS vectors (DESIGN.md section 3)."""
    from databrittle.stages import lds_scores, rank_method

    out = stage_files / method
    baseline = {"options": options, "counterfactual": RECIPE, "lds": {"n_subsets": 5, "alpha": 0.5},
                "device": "cpu"}
    rank_method(method, stage_files / "train.npz", stage_files / "test.npz", stage_files / "targets.csv",
                out / "ranking.npy", out / "ranking.scores.npy", out / "similarity.npy", out / "ranking.json",
                k=40, esvm={}, seed=0, baseline=baseline)
    indices, scores = np.load(out / "ranking.npy"), np.load(out / "ranking.scores.npy")
    similarity = np.load(out / "similarity.npy")
    n_train = 1437
    assert indices.shape == (3, 40) and scores.shape == (3, 40) and similarity.shape == (3, n_train)
    assert np.isfinite(similarity).all() and (np.diff(scores, axis=1) <= 0).all()
    np.testing.assert_array_equal(scores, np.take_along_axis(similarity, indices, 1))
    lds_scores(out / "similarity.npy", stage_files / "train.npz", stage_files / "targets.csv", out / "tau.npy",
               top_fraction=0.05, method=method)
    np.testing.assert_array_equal(np.load(out / "tau.npy"), similarity)


def test_public_datamodels_source_ranks_by_the_supplied_weights_and_checks_checksums(stage_files, rng):
    import hashlib

    from databrittle.errors import InputError
    from databrittle.stages import rank_method

    n_train, n_test = 1437, 360
    files = {"masks": rng.random((40, n_train)) < 0.5, "margins": rng.normal(size=(40, n_test)).astype(np.float16),
             "weights": rng.normal(size=(n_train, n_test)).astype(np.float32)}
    public = {}
    for key, array in files.items():
        np.save(stage_files / f"public_{key}.npy", array)
        public[key] = str(stage_files / f"public_{key}.npy")
    digests = {key: hashlib.sha256(open(path, "rb").read()).hexdigest() for key, path in public.items()}
    options = {"source": "public", "public": {**public, "sha256": digests}, "n_models": 2, "n_validation": 10,
               "alpha": 0.5}
    baseline = {"options": options}  # what the rules pass for the public source: its files only
    out = stage_files / "public"
    args = ("datamodels", stage_files / "train.npz", stage_files / "test.npz", stage_files / "targets.csv",
            out / "ranking.npy", out / "ranking.scores.npy", out / "similarity.npy", out / "ranking.json")
    rank_method(*args, k=30, esvm={}, seed=0, baseline=baseline)
    targets = np.loadtxt(stage_files / "targets.csv", delimiter=",", skiprows=1, dtype=int)[:, 1]
    expected = np.argsort(-files["weights"][:, targets].T, axis=1, kind="stable")[:, :30]
    np.testing.assert_array_equal(np.load(out / "ranking.npy"), expected)
    options["public"]["sha256"]["weights"] = "0" * 64
    with pytest.raises(InputError, match="public_weights.npy"):
        rank_method(*args, k=30, esvm={}, seed=0, baseline=baseline)
    options["public"]["weights"] = "./" + os.path.relpath(public["weights"])  # same file, another spelling
    with pytest.raises(InputError, match="public_weights.npy"):
        rank_method(*args, k=30, esvm={}, seed=0, baseline=baseline)
    options["public"]["weights"] = public["weights"]
    options["public"]["sha256"]["weight"] = options["public"]["sha256"].pop("weights")  # misspelt key
    with pytest.raises(InputError, match="datamodels.public.sha256"):
        rank_method(*args, k=30, esvm={}, seed=0, baseline=baseline)
    options["public"]["sha256"]["weights"] = options["public"]["sha256"].pop("weight")
    # datamodels-N: a LASSO on the first N public models (the last n_validation choose L1),
    # never the pre-fitted weights (whose wrong digest above is then irrelevant)
    from databrittle.baselines.datamodels import fit_datamodels

    args_n = ("datamodels-30", *args[1:])
    rank_method(*args_n, k=30, esvm={}, seed=0, baseline=baseline)
    margins = files["margins"][:, targets].astype(np.float64)
    fit = fit_datamodels(files["masks"][:30], margins[:30], files["masks"][-10:], margins[-10:])
    expected = np.argsort(-fit.weights.astype(np.float32), axis=1, kind="stable")[:, :30]
    np.testing.assert_array_equal(np.load(out / "ranking.npy"), expected)
    with pytest.raises(InputError, match="public_masks.npy: 40 models"):
        rank_method("datamodels-35", *args[1:], k=30, esvm={}, seed=0, baseline=baseline)
    del options["public"]["weights"], options["public"]["sha256"]["weights"]
    rank_method(*args, k=30, esvm={}, seed=0, baseline=baseline)  # fit on the public masks and margins
    assert np.load(out / "similarity.npy").shape == (3, n_train)


def test_targets_among_correct_samples_or_all_samples(stage_files, rng):
    """targets.require_correct: the ImageNet protocol (only samples the reference models get
    right on average) vs the CIFAR-10 protocol (all test samples), class-balanced both ways."""
    import pandas as pd

    from databrittle.datasets import load_split
    from databrittle.stages import choose_targets

    _, labels = load_split(stage_files / "test.npz")
    logits = rng.normal(size=(3, len(labels), 10)).astype(np.float32)
    right = np.zeros(len(labels), bool)
    right[::2] = True  # the even test samples are correct for every reference model
    logits[:, right, labels[right]] += 100.0
    logits[:, ~right, labels[~right]] -= 100.0
    np.save(stage_files / "ref_logits.npy", logits)
    chosen = {}
    for require in (True, False):
        out = stage_files / f"targets_{require}.csv"
        choose_targets(stage_files / "ref_logits.npy", stage_files / "train.npz", stage_files / "test.npz", out,
                       stage_files / f"t_{require}.json", n_targets=60, k=40, seed=0, require_correct=require)
        frame = pd.read_csv(out)
        assert sorted(np.bincount(frame["label"], minlength=10)) == [6] * 10  # class-balanced
        chosen[require] = frame["target"].to_numpy()
    assert right[chosen[True]].all()
    assert not right[chosen[False]].all()  # 60 draws among all samples hit some odd ones


def test_targets_come_from_classes_with_k_training_images(stage_files):
    """ImageNet's k = 1000 exceeds some classes' training images: targets are drawn from the
    classes that can fill a same-class ranking of k, and the others are listed in the sidecar."""
    import json

    import pandas as pd

    from databrittle.datasets import load_split
    from databrittle.stages import choose_targets

    _, train_labels = load_split(stage_files / "train.npz")
    counts = np.bincount(train_labels)
    k = int(np.sort(counts)[3]) + 1  # the 4 smallest classes cannot supply k images
    out = stage_files / "targets_k.csv"
    choose_targets(stage_files / "ref_logits.npy", stage_files / "train.npz", stage_files / "test.npz", out,
                   stage_files / "t_k.json", n_targets=12, k=k, seed=0, require_correct=False)
    labels = pd.read_csv(out)["label"].to_numpy()
    allowed = np.flatnonzero(counts >= k)
    assert len(allowed) == 6 and set(labels) == set(allowed) and sorted(np.bincount(labels)[allowed]) == [2] * 6
    assert json.loads((stage_files / "t_k.json").read_text())["classes_excluded_for_k"] == \
        sorted(set(range(10)) - set(allowed.tolist()))
