import numpy as np
import pytest
import torch

from databrittle.train import ModelJob, TrainConfig, images_to_vectors, lr_schedule, margins_and_correct, train_models

CFG = TrainConfig(arch="mlp", epochs=30, batch_size=64, lr=0.1, momentum=0.9, weight_decay=5e-4,
                  label_smoothing=0.1, hidden=128)


@pytest.fixture(scope="module")
def digits(digits_splits):
    train, test = digits_splits["train"], digits_splits["test"]
    return (images_to_vectors(train.images), torch.from_numpy(train.labels), images_to_vectors(test.images),
            test.labels)


def test_digits_accuracy_with_all_data_is_at_least_97_percent(digits):
    train_x, train_y, test_x, test_y = digits
    logits = train_models(train_x, train_y, [ModelJob(seed=s) for s in range(3)], CFG, test_x, 10, torch.device("cpu"))
    accuracy = (logits.argmax(-1) == test_y).mean(1)
    assert accuracy.min() >= 0.97, accuracy


def test_removal_mask_really_removes(digits):
    train_x, train_y, test_x, test_y = digits
    removed = np.flatnonzero(train_y.numpy() == 3)
    cfg = TrainConfig(**{**CFG.__dict__, "epochs": 10})
    logits = train_models(train_x, train_y, [ModelJob(seed=1, removed=removed)], cfg, test_x, 10, torch.device("cpu"))
    assert (logits.argmax(-1) == 3).sum() == 0
    assert (logits.argmax(-1)[0][test_y != 3] == test_y[test_y != 3]).mean() > 0.9


def test_label_override_really_relabels(digits):
    train_x, train_y, test_x, test_y = digits
    ones = np.flatnonzero(train_y.numpy() == 1)
    cfg = TrainConfig(**{**CFG.__dict__, "epochs": 10})
    logits = train_models(train_x, train_y, [ModelJob(seed=1, relabel_index=ones, relabel_to=7)], cfg, test_x, 10,
                          torch.device("cpu"))
    predictions = logits.argmax(-1)[0]
    assert (predictions[test_y == 1] == 7).mean() > 0.9


def test_same_seed_same_numbers_and_batch_independence(digits):
    train_x, train_y, test_x, _ = digits
    cfg = TrainConfig(**{**CFG.__dict__, "epochs": 2})
    alone = train_models(train_x, train_y, [ModelJob(seed=5)], cfg, test_x, 10, torch.device("cpu"))
    together = train_models(train_x, train_y, [ModelJob(seed=4), ModelJob(seed=5)], cfg, test_x, 10, torch.device("cpu"))
    assert np.array_equal(alone[0], together[1])
    assert not np.allclose(together[0], together[1])


def test_schedule_peaks_and_ends_at_zero_on_reduced_sets():
    totals = torch.tensor([240, 200])
    lrs = torch.stack([lr_schedule(torch.full((2,), s), totals, 0.5) for s in range(240)])
    assert lrs[:, 0].max() == pytest.approx(0.5)
    assert lrs[239, 0] == 0 and lrs[199, 1] == 0 and (lrs[200:, 1] == 0).all()
    assert lrs[:, 1].argmax() == 41  # round(200 * 5/24) = 42 steps rising


def test_margins_and_correct():
    logits = np.array([[2.0, 1.0, 0.5], [0.0, 3.0, 1.0]])
    margin, correct, prediction = margins_and_correct(logits, np.array([0, 2]))
    assert margin.tolist() == [1.0, -2.0]
    assert correct.tolist() == [True, False] and prediction.tolist() == [0, 1]
