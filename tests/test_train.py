"""The counterfactual trainer (issue 3): removal, relabelling, seeds, schedule, accuracy."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from databrittle import mlp_trainer
from databrittle.errors import InputError
from databrittle.schedule import ModelJob, label_table, lr_at, lr_table, model_plan, stacked_plans
from databrittle.train import TrainConfig, image_vectors, margins_and_correct, train_models

CFG = TrainConfig(arch="mlp", epochs=30, batch_size=64, lr=0.1, lr_peak_epoch=6, momentum=0.9, weight_decay=5e-4,
                  label_smoothing=0.1, hidden=128)
CPU = torch.device("cpu")


def short(epochs: int, **changes) -> TrainConfig:
    return TrainConfig(**{**CFG.__dict__, "epochs": epochs, "lr_peak_epoch": epochs / 5, **changes})


@pytest.fixture(scope="module")
def digits(digits_splits):
    train, test = digits_splits["train"], digits_splits["test"]
    return train.images, train.labels, test.images, test.labels


def test_digits_accuracy_with_all_data_is_at_least_97_percent(digits):
    train_images, train_labels, test_images, test_labels = digits
    logits = train_models(train_images, train_labels, [ModelJob(seed=s) for s in range(4)], CFG, test_images, 10, CPU)
    accuracy = (logits.argmax(-1) == test_labels).mean(1)
    assert accuracy.min() >= 0.97, accuracy


def test_removal_mask_really_removes(digits):
    train_images, train_labels, test_images, test_labels = digits
    removed = np.flatnonzero(train_labels == 3)
    logits = train_models(train_images, train_labels, [ModelJob(seed=1, removed=removed)], short(10), test_images,
                          10, CPU)
    assert (logits.argmax(-1) == 3).sum() == 0
    others = test_labels != 3
    assert (logits.argmax(-1)[0][others] == test_labels[others]).mean() > 0.9


def test_label_override_really_relabels(digits):
    train_images, train_labels, test_images, test_labels = digits
    ones = np.flatnonzero(train_labels == 1)
    logits = train_models(train_images, train_labels, [ModelJob(seed=1, relabel_index=ones, relabel_to=7)],
                          short(10), test_images, 10, CPU)
    assert (logits.argmax(-1)[0][test_labels == 1] == 7).mean() > 0.9


def test_same_seed_same_numbers_and_batch_independence(digits):
    train_images, train_labels, test_images, _ = digits
    cfg = short(2)
    alone = train_models(train_images, train_labels, [ModelJob(seed=5)], cfg, test_images, 10, CPU)
    again = train_models(train_images, train_labels, [ModelJob(seed=5)], cfg, test_images, 10, CPU)
    together = train_models(train_images, train_labels, [ModelJob(seed=4), ModelJob(seed=5)], cfg, test_images, 10,
                            CPU)
    assert np.array_equal(alone, again)
    assert np.array_equal(alone[0], together[1])  # one thread (conftest): bit-identical however batched
    assert not np.allclose(together[0], together[1])


def test_models_per_pass_does_not_change_results(digits):
    train_images, train_labels, test_images, _ = digits
    jobs = [ModelJob(seed=s) for s in range(5)]
    whole = train_models(train_images, train_labels, jobs, short(2), test_images, 10, CPU)
    split = train_models(train_images, train_labels, jobs, short(2, models_per_pass=2), test_images, 10, CPU)
    assert np.array_equal(whole, split)


def test_data_order_depends_on_the_seed_and_keeps_exactly_the_kept_samples():
    first, same, other = (model_plan(ModelJob(seed=s), 100, 10, 2) for s in (1, 1, 2))
    assert torch.equal(first, same) and not torch.equal(first, other)
    removed = np.arange(0, 100, 3)
    plan = model_plan(ModelJob(seed=1, removed=removed), 100, 10, 1)
    assert plan.shape == (6, 10)  # 66 kept -> 6 full batches (drop_last)
    assert not set(plan.flatten().tolist()) & set(removed.tolist())
    assert len(set(plan.flatten().tolist())) == 60


def test_schedule_starts_and_ends_at_zero_and_follows_the_reduced_set():
    jobs = [ModelJob(seed=0), ModelJob(seed=1, removed=np.arange(200))]
    plan, totals = stacked_plans(jobs, 1200, 100, 24)
    assert totals.tolist() == [24 * 12, 24 * 10]
    lrs = lr_table(totals, 0.5, 5 / 24)
    assert plan.shape == (288, 2, 100) and lrs.shape == (288, 2)
    for column, total in enumerate(totals.tolist()):
        assert lrs[0, column] == 0
        assert lrs[:, column].argmax() == round(total * 5 / 24)
        assert lrs[:, column].max() == pytest.approx(0.5)
        assert lrs[total - 1, column] == pytest.approx(0.5 / (total - total * 5 / 24))  # last step: one step from 0
        assert (lrs[total:, column] == 0).all()
    assert lr_at(np.array([240]), 240, 0.5, 5 / 24)[0] == 0


def test_label_table_overrides_only_the_listed_samples():
    labels = torch.arange(6) % 3
    table = label_table([ModelJob(seed=0), ModelJob(seed=1, relabel_index=np.array([0, 4]), relabel_to=2)], labels)
    assert table[0].tolist() == labels.tolist()
    assert table[1].tolist() == [2, 1, 2, 0, 2, 2]


def test_batched_mlp_matches_a_plain_autograd_sgd_loop(digits):
    """The hand-written gradients and fused SGD equal torch.optim.SGD on autograd."""
    train_images, train_labels, _, _ = digits
    x1 = image_vectors(torch.from_numpy(train_images))
    labels = torch.from_numpy(train_labels)
    jobs = [ModelJob(seed=3, relabel_index=np.arange(10), relabel_to=0)]
    plan, totals = stacked_plans(jobs, len(labels), 32, 1)
    plan, lrs = plan[:20], lr_table(totals, 0.1, 0.2)[:20]
    table = label_table(jobs, labels)
    weights = mlp_trainer.init_weights([7], 64, 16, 10)
    reference = [w[0].clone().requires_grad_() for w in weights]
    mlp_trainer.train(weights, x1, table, plan, lrs, 0.9, 5e-4, 0.1)
    optimizer = torch.optim.SGD(reference, lr=0.0, momentum=0.9, weight_decay=5e-4)
    w1, w2, b2 = reference
    for step in range(len(plan)):
        index = plan[step, 0]
        out = torch.relu(x1[index] @ w1) @ w2.T + b2[:, 0]
        loss = F.cross_entropy(out, table[0, index], label_smoothing=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.param_groups[0]["lr"] = float(lrs[step, 0])
        optimizer.step()
    for mine, theirs in zip(weights, reference):
        torch.testing.assert_close(mine[0], theirs.detach(), rtol=1e-4, atol=1e-5)


def test_too_few_samples_for_a_batch_is_a_clear_error(digits):
    train_images, train_labels, test_images, _ = digits
    with pytest.raises(InputError, match="counterfactual.batch_size"):
        train_models(train_images[:50], train_labels[:50], [ModelJob(seed=0)], CFG, test_images, 10, CPU)


def test_unknown_arch_and_float_images_are_clear_errors(digits):
    train_images, train_labels, test_images, _ = digits
    with pytest.raises(InputError, match="counterfactual.arch"):
        train_models(train_images, train_labels, [ModelJob(seed=0)], short(1, arch="lenet"), test_images, 10, CPU)
    with pytest.raises(InputError, match="uint8"):
        train_models(train_images.astype(np.float32), train_labels, [ModelJob(seed=0)], CFG, test_images, 10, CPU)


def test_margins_and_correct():
    logits = np.array([[2.0, 1.0, 0.5], [0.0, 3.0, 1.0]])
    margin, correct, prediction = margins_and_correct(logits, np.array([0, 2]))
    assert margin.tolist() == [1.0, -2.0]
    assert correct.tolist() == [True, False] and prediction.tolist() == [0, 1]


@pytest.mark.parametrize("job, message", [
    (ModelJob(seed=0, removed=np.array([-1])), "ModelJob.removed"),
    (ModelJob(seed=0, removed=np.zeros(5, dtype=bool)), "ModelJob.removed"),
    (ModelJob(seed=0, removed=np.array([1.5])), "ModelJob.removed"),
    (ModelJob(seed=0, relabel_index=np.array([10**6])), "ModelJob.relabel_index"),
    (ModelJob(seed=0, relabel_index=np.array([0])), "ModelJob.relabel_to"),
    (ModelJob(seed=0, relabel_index=np.array([0]), relabel_to=10), "ModelJob.relabel_to"),
])
def test_bad_jobs_are_clear_errors(digits, job, message):
    train_images, train_labels, test_images, _ = digits
    with pytest.raises(InputError, match=message):
        train_models(train_images, train_labels, [job], CFG, test_images, 10, CPU)


def test_bad_inputs_are_clear_errors(digits):
    train_images, train_labels, test_images, _ = digits
    with pytest.raises(InputError, match="evaluation images"):
        train_models(train_images, train_labels, [ModelJob(seed=0)], CFG, test_images.astype(np.float32), 10, CPU)
    with pytest.raises(InputError, match="evaluation images"):
        train_models(train_images, train_labels, [ModelJob(seed=0)], CFG, test_images[:, :4], 10, CPU)
    with pytest.raises(InputError, match="training labels"):
        train_models(train_images, train_labels[:50], [ModelJob(seed=0)], CFG, test_images, 10, CPU)
    with pytest.raises(InputError, match="lr_peak_epoch"):
        short(5, lr_peak_epoch=0)
    empty = train_models(train_images, train_labels, [ModelJob(seed=0)], CFG, test_images[:0], 10, CPU)
    assert empty.shape == (1, 0, 10)


def test_trained_modules_give_the_trainers_logits(digits):
    from databrittle.train import module_inputs, trained_modules

    train_images, train_labels, test_images, _ = digits
    jobs = [ModelJob(seed=3), ModelJob(seed=4, removed=np.arange(100))]
    logits = train_models(train_images, train_labels, jobs, short(2), test_images, 10, CPU)
    modules = trained_modules(train_images, train_labels, jobs, short(2), 10, CPU)
    with torch.no_grad():
        for module, expected in zip(modules, logits):
            out = module(module_inputs(short(2), train_images, test_images)).numpy()
            np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
