"""The shared training loop (benchmark.engine.training): early stopping in both directions, the
best epoch's weights, the history, progress, and finite-or-failed."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from torch import nn

from benchmark.api.profiles import Schedule
from benchmark.engine.finetune import lr_scheduler
from benchmark.engine.training import NonFinite, Stopping, TrainingState, train
from benchmark.errors import UserError

CPU = torch.device("cpu")


def linear_setup(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = nn.Linear(3, 1)
    return model, torch.optim.SGD(model.parameters(), lr=0.1)


def batches(epoch: int):
    generator = torch.Generator().manual_seed(epoch)
    return [(torch.randn(4, 3, generator=generator), torch.randn(4, 1, generator=generator)) for _ in range(2)]


def scripted(model: nn.Module, values: list[float], snapshots: list[dict[str, torch.Tensor]]):
    """A validation function returning ``values`` in turn, keeping the weights it validated."""
    def validate() -> tuple[float, dict[str, float]]:
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        value = values[len(snapshots) - 1]
        return value, {"val_score": value}
    return validate


@pytest.mark.parametrize("direction, values, best_epoch, epochs", [
    ("max", [0.5, 0.7, 0.6, 0.65, 0.9], 1, 4),  # patience 2: stops after epochs 2 and 3 without a gain
    ("min", [3.0, 2.0, 2.5, 1.0, 1.5, 1.2, 0.1], 3, 6),
    ("max", [0.1, 0.2, 0.3], 2, 3),  # max_epochs reached while improving
])
def test_early_stopping_keeps_the_best_epoch_in_either_direction(direction, values, best_epoch, epochs):
    model, optimizer = linear_setup()
    snapshots: list[dict[str, torch.Tensor]] = []
    seen: list[tuple[int, int, int]] = []
    stopping = Stopping("val_score", direction, max_epochs=min(len(values), 6), patience=2)
    state = train(model, optimizer, batches, lambda x, y: nn.functional.mse_loss(model(x), y),
                  scripted(model, values, snapshots), stopping, phase="test", device=CPU, progress=False,
                  on_epoch_end=lambda s: seen.append((s.epoch, s.best_epoch, s.stale)))
    assert isinstance(state, TrainingState)
    assert len(state.history) == state.epoch == epochs
    assert state.best_epoch == best_epoch and state.best_value == values[best_epoch]
    assert [row["epoch"] for row in state.history] == list(range(epochs))
    assert [row["val_score"] for row in state.history] == values[:epochs]
    assert all(set(row) == {"epoch", "train_loss", "val_score", "lr"} for row in state.history)
    assert [epoch for epoch, _, _ in seen] == list(range(1, epochs + 1))  # called after every epoch
    assert seen[-1][1:] == (best_epoch, epochs - 1 - best_epoch)
    for key, value in model.state_dict().items():  # the weights validated at the best epoch, not the last
        assert torch.equal(value, snapshots[best_epoch][key])
    assert torch.equal(model.weight, snapshots[-1]["weight"]) == (best_epoch == epochs - 1)


def test_the_plateau_scheduler_steps_on_the_validation_value():
    model, optimizer = linear_setup()
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=0)
    state = train(model, optimizer, batches, lambda x, y: nn.functional.mse_loss(model(x), y),
                  scripted(model, [0.5, 0.4, 0.6], []), Stopping("val_score", "max", 3, 5), phase="test",
                  device=CPU, scheduler=scheduler, progress=False)
    assert [row["lr"] for row in state.history] == [0.1, 0.1, 0.05]  # the rate each epoch trained at


def test_a_cosine_schedule_steps_once_an_epoch_down_to_zero():
    model, optimizer = linear_setup()
    scheduler = lr_scheduler(optimizer, Schedule(batch=4, epochs=4, steps_per_epoch=2, patience=4, lr_decay="cosine"))
    state = train(model, optimizer, batches, lambda x, y: nn.functional.mse_loss(model(x), y),
                  scripted(model, [0.5, 0.4, 0.6, 0.3], []), Stopping("val_score", "max", 4, 4), phase="test",
                  device=CPU, scheduler=scheduler, progress=False)
    expected = [0.1 * (1 + math.cos(math.pi * epoch / 4)) / 2 for epoch in range(4)]  # the rate each epoch trained at
    assert [row["lr"] for row in state.history] == pytest.approx(expected, abs=1e-12)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_a_constant_schedule_has_no_scheduler():
    _, optimizer = linear_setup()
    assert lr_scheduler(optimizer, Schedule(batch=4, epochs=4, steps_per_epoch=2, patience=4)) is None


def test_one_log_line_per_epoch(caplog):
    model, optimizer = linear_setup()
    with caplog.at_level(logging.INFO, logger="benchmark.training"):
        train(model, optimizer, batches, lambda x, y: nn.functional.mse_loss(model(x), y),
              scripted(model, [0.5, 0.7, 0.6], []), Stopping("val_score", "max", 3, 5), phase="fine-tuning t",
              device=CPU, progress=False)
    lines = [r.getMessage() for r in caplog.records if r.name == "benchmark.training"]
    assert len(lines) == 3
    assert lines[2].startswith("fine-tuning t epoch 2: train loss ") and "val_score 0.6000, best 0.7000 (epoch 1)" \
        in lines[2] and lines[2].endswith(" s")


def expect_stop(loss, validate, *fragments, source=batches):
    model, optimizer = linear_setup()
    with pytest.raises(UserError) as caught:
        train(model, optimizer, source, lambda x, y: loss(model, x, y), validate(model),
              Stopping("val_score", "max", 3, 5), phase="pretraining m", device=CPU, progress=False)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def mse(model, x, y):
    return nn.functional.mse_loss(model(x), y)


def fine(model):
    return lambda: (0.5, {"val_score": 0.5})


def test_a_non_finite_training_loss_stops_the_run():
    expect_stop(lambda model, x, y: mse(model, x, y) * float("nan"), fine,
                "pretraining m stopped at epoch 0: the training loss (nan) is not finite")


def test_a_non_finite_weight_stops_the_run_and_is_named():
    def finite_loss_nan_gradient(model, x, y):  # sqrt'(0) is infinite: the loss stays finite, the weights do not
        return mse(model, x, y) + torch.sqrt((model(x) * 0).sum())
    def one_batch(epoch: int):  # a second step's loss would be NaN first
        return batches(epoch)[:1]
    expect_stop(finite_loss_nan_gradient, fine, "pretraining m stopped at epoch 0: the weight weight is not finite",
                source=one_batch)


def test_a_non_finite_validation_prediction_or_value_stops_the_run():
    def nan_prediction(model):
        def validate():
            raise NonFinite("the validation prediction of case c7")
        return validate
    expect_stop(mse, nan_prediction, "pretraining m stopped at epoch 0: the validation prediction of case c7 is "
                                     "not finite")

    calls = []

    def nan_later(model):
        def validate():
            calls.append(1)
            value = float("nan") if len(calls) == 2 else 0.5
            return value, {"val_score": value}
        return validate
    expect_stop(mse, nan_later, "stopped at epoch 1: the validation value val_score (nan) is not finite")
