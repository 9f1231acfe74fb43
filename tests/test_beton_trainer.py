"""ImageNet's path: images kept in FFCV betons, read by FFCV's Loader, on a tiny ImageFolder tree.

The tree has three colour classes (red, green, blue images of varied sizes with noise), so a
ResNet-18 trained for a few steps on CPU learns them, and a model whose red training images
are relabelled green predicts green for red validation images: labels, data order and
images must line up for that to happen. Then the pipeline's stages run in process from the
ImageFolder tree to a support table (data, imported MoCo v2 features, reference models,
targets, ESVM and TRAK rankings, bisection steps).
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from databrittle.beton_images import BetonImages, centre_crop_batches, random_crop_batches
from databrittle.beton_trainer import training_batches
from databrittle.errors import InputError
from databrittle.schedule import ModelJob, label_table, model_plan
from databrittle.train import TrainConfig, train_models

COLOURS = [(210, 40, 40), (40, 210, 40), (40, 40, 210)]
N_TRAIN, N_VAL = 12, 4  # per class
NOISE = 35  # pixel noise std
BETON = {"max_resolution": 48, "jpeg_quality": 90, "compress_probability": 0.5, "write_mode": "proportion"}
RESOLUTION = {"low": 24, "high": 32, "switch_epoch": 2, "eval": 32}
RECIPE = {"arch": "resnet18", "epochs": 4, "batch_size": 6, "lr": 0.02, "lr_peak_epoch": 1, "momentum": 0.9,
          "weight_decay": 5e-4, "label_smoothing": 0.1, "resolution": RESOLUTION}
# Learning test: 96 steps at 16 px, enough for BatchNorm's running statistics to settle
# (with 24 steps, batch-statistics predictions were right while eval-mode ones often were not)
LEARNING = {**RECIPE, "epochs": 16, "resolution": {"low": 16, "high": 16, "switch_epoch": 8, "eval": 16}}
CPU = torch.device("cpu")


def _tree(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", N_TRAIN), ("val", N_VAL)):
        for c, colour in enumerate(COLOURS):
            folder = root / split / f"n0000000{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                height, width = rng.integers(36, 64, 2)
                pixels = np.clip(np.array(colour)[None, None] + rng.normal(0, NOISE, (height, width, 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"img{i:02d}.JPEG", quality=90)
    return root


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    """The data stage's outputs for the tree (betons, labels-only .npz files, split.csv)."""
    from databrittle.stages import prepare_data

    root = _tree(tmp_path_factory.mktemp("tree"))
    out = tmp_path_factory.mktemp("data")
    prepare_data(out / "train.beton", out / "test.beton", out / "train.npz", out / "test.npz", out / "split.csv",
                 out / "data.json", dataset="imagenet", data={"root": str(root), "beton": BETON}, seed=0)
    return out


def _loaded(splits, split):
    from databrittle.datasets import load_split

    return load_split(splits / f"{split}.npz")


def test_data_stage_keeps_images_in_the_betons(splits):
    train, train_labels = _loaded(splits, "train")
    test, test_labels = _loaded(splits, "test")
    assert isinstance(train, BetonImages) and train.path == splits / "train.beton" and len(train) == 3 * N_TRAIN
    assert isinstance(test, BetonImages) and test.path == splits / "test.beton"  # val is the test split
    assert train_labels.tolist() == sorted([0, 1, 2] * N_TRAIN) and test_labels.tolist() == sorted([0, 1, 2] * N_VAL)
    sidecar = json.loads((splits / "data.json").read_text())
    assert sidecar["shapes"]["train"] == [36, 48, 48, 3] and sidecar["class_counts"]["test"] == {"0": 4, "1": 4,
                                                                                                   "2": 4}
    table = pd.read_csv(splits / "split.csv")
    assert (table["split"] == "val").sum() == 3 * N_VAL
    view = train[[5, 30]]
    assert view.rows.tolist() == [5, 30] and view[[1]].rows.tolist() == [30] and view.shape == (2, 48, 48, 3)


def test_split_file_and_beton_must_agree(splits, tmp_path):
    from databrittle.datasets import load_split, save_beton_split

    (tmp_path / "train.beton").symlink_to(splits / "train.beton")
    save_beton_split(tmp_path / "train.npz", tmp_path / "train.beton", np.zeros(5, np.int64), 48)
    with pytest.raises(InputError, match=r"train.npz: 5 labels for the 36 images of .*train.beton"):
        load_split(tmp_path / "train.npz")


def test_batches_follow_the_given_rows_and_the_schedule(splits):
    """Evaluation batches come in the view's order; training batches follow the model's plan
    (labels = the job's labels at the plan's positions), low px before the switch epoch."""
    train, labels = _loaded(splits, "train")
    view = train[[30, 1, 17, 1]]
    together = torch.cat(list(centre_crop_batches(view, 20, CPU, batch_size=3)))
    alone = [next(iter(centre_crop_batches(train[[row]], 20, CPU)))[0] for row in (30, 1, 17, 1)]
    assert together.shape == (4, 3, 20, 20) and together.dtype == torch.uint8
    assert all(torch.equal(together[i], alone[i]) for i in range(4))
    assert not torch.equal(alone[0], alone[1])

    # removing every blue image and relabelling the red ones green
    job = ModelJob(seed=3, removed=np.flatnonzero(labels == 2), relabel_index=np.flatnonzero(labels == 0),
                   relabel_to=1)
    job_labels = label_table([job], torch.as_tensor(labels))[0]
    plan = model_plan(job, len(labels), 6, 4)  # 24 kept samples: 4 steps per epoch
    generator = torch.Generator().manual_seed(0)
    batches = list(training_batches(train, job_labels, plan, 4, RESOLUTION, generator, CPU))
    assert len(batches) == 16
    assert [tuple(x.shape[2:]) for x, _ in batches] == [(24, 24)] * 8 + [(32, 32)] * 8
    assert all(x.dtype == torch.float32 for x, _ in batches)
    for step, (x, y) in enumerate(batches):
        assert torch.equal(y, job_labels[plan[step]])
        # image j of the batch is plan row j: its dominant colour is that row's original class
        assert torch.equal(x.mean((2, 3)).argmax(1), torch.as_tensor(labels)[plan[step]]), step
    seen = torch.cat([y for _, y in batches])
    assert set(seen.tolist()) == {1}  # no blue left, red relabelled green
    assert len(list(random_crop_batches(train, plan[:3], 16, CPU))) == 3


@pytest.fixture(scope="module")
def trained_logits(splits):
    """Two ResNet-18s: the labels as they are, and red relabelled green (same seed)."""
    train, labels = _loaded(splits, "train")
    test, _ = _loaded(splits, "test")
    jobs = [ModelJob(seed=1), ModelJob(seed=1, relabel_index=np.flatnonzero(labels == 0), relabel_to=1)]
    return train_models(train, labels, jobs, TrainConfig.from_config(LEARNING), test, 3, CPU)


def test_resnet18_learns_from_the_beton_and_relabelling_moves_its_predictions(splits, trained_logits):
    _, test_labels = _loaded(splits, "test")
    assert trained_logits.shape == (2, 3 * N_VAL, 3) and np.isfinite(trained_logits).all()
    clean, relabelled = trained_logits.argmax(-1)
    assert (clean == test_labels).mean() >= 0.75, clean
    red = test_labels == 0
    assert (relabelled[red] == 1).mean() >= 0.75, relabelled
    assert (relabelled[~red] == test_labels[~red]).mean() >= 0.75, relabelled


def test_evaluation_follows_the_order_of_the_evaluation_view(splits):
    """One trained model evaluated on a view and on its reverse gives the reversed logits."""
    from databrittle.beton_trainer import evaluate
    from databrittle.train import trained_modules

    train, labels = _loaded(splits, "train")
    test, _ = _loaded(splits, "test")
    recipe = TrainConfig.from_config({**RECIPE, "epochs": 2, "resolution": {**RESOLUTION, "switch_epoch": 1}})
    model = trained_modules(train, labels, [ModelJob(seed=5)], recipe, 3, CPU)[0]
    order = np.array([7, 0, 11, 3])
    forward = evaluate(model, test[order], recipe, CPU).numpy()
    backward = evaluate(model, test[order[::-1]], recipe, CPU).numpy()
    assert forward.shape == (4, 3) and not np.allclose(forward[0], forward[1])
    np.testing.assert_allclose(backward[::-1], forward, rtol=1e-5, atol=1e-5)


def test_beton_training_needs_an_imagenet_network_a_resolution_and_beton_eval_images(splits):
    train, labels = _loaded(splits, "train")
    test, _ = _loaded(splits, "test")
    jobs = [ModelJob(seed=0)]
    with pytest.raises(InputError, match="config key 'counterfactual.arch': resnet9 is not an ImageNet network"):
        train_models(train, labels, jobs, TrainConfig.from_config({**RECIPE, "arch": "resnet9"}), test, 3, CPU)
    no_resolution = {key: value for key, value in RECIPE.items() if key != "resolution"}
    with pytest.raises(InputError, match="config key 'counterfactual.resolution': required to train on the images"):
        train_models(train, labels, jobs, TrainConfig.from_config(no_resolution), test, 3, CPU)
    with pytest.raises(InputError, match="evaluation images: expected images of a beton"):
        train_models(train, labels, jobs, TrainConfig.from_config(RECIPE), np.zeros((2, 8, 8, 3), np.uint8), 3, CPU)
    with pytest.raises(InputError, match=r"ModelJob.removed: expected integer training indices in \[0, 36\)"):
        train_models(train, labels, [ModelJob(seed=0, removed=np.array([36]))], TrainConfig.from_config(RECIPE),
                     test, 3, CPU)


def test_pipeline_stages_run_on_imagenet_betons(splits, release, tmp_path):
    """From the data stage's betons to a support table, in process: the imported MoCo v2
    extractor and its features, a reference ResNet-18, targets, ESVM and TRAK rankings, and
    Algorithm 1's steps 0 and 1 (removal) for two targets."""
    from databrittle import stages

    train, test = splits / "train.npz", splits / "test.npz"
    recipe = {**RECIPE, "epochs": 2, "resolution": {**RESOLUTION, "switch_epoch": 1}}
    section = {"pretrained": {"path": str(release["path"]), "sha256": release["sha256"], "format": "moco_v2_resnet50"}}
    stages.train_extractor("moco", train, test, tmp_path / "moco.pt", tmp_path / "moco.json",
                           backbone={"name": "resnet18", "width": 64}, section=section, seed=0, device="cpu",
                           pretrained=release["path"])
    assert json.loads((tmp_path / "moco.json").read_text())["knn_accuracy_backbone"] is None  # features report it
    stages.extract_features(tmp_path / "moco.pt", train, test, tmp_path / "train.npy", tmp_path / "test.npy",
                            tmp_path / "features.json", layer="backbone", device="cpu")
    train_f, test_f = np.load(tmp_path / "train.npy"), np.load(tmp_path / "test.npy")
    assert train_f.shape == (3 * N_TRAIN, 2048) and test_f.shape == (3 * N_VAL, 2048) and np.isfinite(train_f).all()
    assert json.loads((tmp_path / "features.json").read_text())["knn_accuracy"] >= 0.0

    stages.reference_models(train, test, tmp_path / "logits.npy", tmp_path / "model_logits.npy",
                            tmp_path / "reference.json", counterfactual=recipe, n_models=1, seed=0, device="cpu")
    assert np.load(tmp_path / "model_logits.npy").shape == (1, 3 * N_VAL, 3)
    stages.choose_targets(tmp_path / "model_logits.npy", train, test, tmp_path / "targets.csv",
                          tmp_path / "targets.json", n_targets=2, k=4, seed=0, require_correct=False)
    targets = pd.read_csv(tmp_path / "targets.csv")
    assert len(targets) == 2

    k = 4
    stages.rank_method("esvm-moco", train, test, tmp_path / "targets.csv", tmp_path / "esvm.npy",
                       tmp_path / "esvm.scores.npy", tmp_path / "esvm.sim.npy", tmp_path / "esvm.json", k=k,
                       esvm={"C": 0.1, "solver": "newton"}, seed=0, baseline={}, train_features=tmp_path / "train.npy",
                       test_features=tmp_path / "test.npy")
    ranking = np.load(tmp_path / "esvm.npy")
    _, train_labels = _loaded(splits, "train")
    assert ranking.shape == (2, k) and (train_labels[ranking] == targets["label"].to_numpy()[:, None]).all()

    stages.rank_method("trak-1", train, test, tmp_path / "targets.csv", tmp_path / "trak.npy",
                       tmp_path / "trak.scores.npy", tmp_path / "trak.sim.npy", tmp_path / "trak.json", k=k, esvm={},
                       seed=0, baseline={"options": {"n_models": 4, "proj_dim": 8}, "counterfactual": recipe,
                                         "device": "cpu"})
    scores = np.load(tmp_path / "trak.sim.npy")
    assert scores.shape == (2, 3 * N_TRAIN) and np.isfinite(scores).all() and scores.std() > 0

    step_files = [tmp_path / "bisect" / f"t{slot:03d}" / "step{}.json" for slot in (0, 1)]
    for step in (0, 1):
        stages.bisect_step(step, "removal", "esvm-moco", [0, 1], train, test, tmp_path / "targets.csv",
                           tmp_path / "esvm.npy", [Path(str(f).format(step)) for f in step_files], k=k, n_test=1,
                           counterfactual=recipe, seed=0, device="cpu",
                           previous_steps=[Path(str(step_files[0]).format(0))] if step else [])
    stages.support_csv([Path(str(f).format(1)) for f in step_files], tmp_path / "support.csv", n_steps=2)
    support = pd.read_csv(tmp_path / "support.csv")
    assert len(support) == 2 and (support["models_trained"] >= 1).all()
    for slot, files in enumerate(step_files):
        first = json.loads(Path(str(files).format(0)).read_text())
        assert first["M"] == k and first["trained"] and len(first["models"]) == 1  # step 0 tests M = k
        assert first["target"] == targets["target"][slot]


def test_imagenet_dag_runs_through_snakemake(splits, release, tmp_path):
    """config/imagenet.yaml shrunk to the tiny tree (ours only, one reference model, two
    targets, budget 1) through the real Snakemake CLI: every rule of the ImageNet DAG, from
    the ImageFolder tree to the AUC table."""
    import subprocess
    import sys

    import yaml

    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "config" / "imagenet.yaml").read_text())
    tree = Path(json.loads((splits / "data.json").read_text())["params"]["root"])
    config["device"] = "auto"
    config["data"]["root"] = str(tree)
    config["data"]["beton"]["max_resolution"] = 48
    config["ssl"]["moco"]["pretrained"].update(path=str(release["path"]), sha256=release["sha256"])
    config["counterfactual"].update(epochs=2, batch_size=6, lr=0.02, lr_peak_epoch=1,
                                    resolution={**RESOLUTION, "switch_epoch": 1})
    config["reference"]["n_models"] = 1
    config["targets"].update(n_targets=2, per_job=2, require_correct=False)
    config["methods"] = ["esvm-moco"]
    config["bisection"].update(k=4, budget=1)
    path = tmp_path / "config" / "tiny_imagenet.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(root / "Snakefile"), "--directory",
                             str(tmp_path), "--cores", "2", "all", "--configfile", str(path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    support = pd.read_csv(tmp_path / "results" / "imagenet" / "support" / "removal" / "resnet18" / "esvm-moco.csv")
    assert len(support) == 2 and set(support["steps_run"]) <= {1, 2}
    table = pd.read_csv(tmp_path / "paper_figures" / "table_auc.csv")
    assert table[["metric", "method"]].values.tolist() == [["removal", "esvm-moco"]]
    assert (tmp_path / "paper_figures" / "fig3_support_cdf.png").stat().st_size > 0
