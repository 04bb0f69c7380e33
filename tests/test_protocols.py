"""Transfer protocols (full, linear, freeze:N): what is fixed stays fixed through fine-tuning,
batch-norm statistics included, and the protocol is part of a run's identity."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from helpers import unet

from benchmark.api.profiles import PROFILES
from benchmark.api.registry import TASKS
from benchmark.api.task import Case
from benchmark.engine.finetune import finetune
from benchmark.engine.harness import RunSpec, plan_run
from benchmark.engine.sweep import Grid
from benchmark.errors import UserError
from benchmark.model.backbone import UNet3D
from benchmark.model.protocols import LinearHead, Protocol, apply_protocol

STAGES_AND_OUTPUT = (unet().stages, unet().output_layer)

CUBE = (16, 32, 32)
CPU = torch.device("cpu")
SMOKE = PROFILES["smoke"]


@pytest.mark.parametrize("text", ["full", "linear", "freeze:1", "freeze:4", " freeze:2 "])
def test_protocols_parse(text: str) -> None:
    assert Protocol.parse(text).name == text.strip()


@pytest.mark.parametrize("text", ["", "freeze", "freeze:0", "freeze:-1", "freeze:x", "partial", "Full"])
def test_a_bad_protocol_is_a_one_line_error(text: str) -> None:  # more stages than the backbone has: its contract
    with pytest.raises(UserError, match="expected full, linear or freeze:N"):
        Protocol.parse(text)
    with pytest.raises(UserError, match="expected full, linear or freeze:N"):
        RunSpec(method="scratch-he", task="ncc", protocol=text)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def train_steps(model: torch.nn.Module, steps: int = 3) -> None:
    """A few optimiser steps in training mode on random inputs, as fine-tuning makes them."""
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for step in range(steps):
        generator = torch.Generator().manual_seed(step)
        output = model(torch.rand(2, 1, *CUBE, generator=generator) * 3 + step)
        optimizer.zero_grad()
        output.square().mean().backward()
        optimizer.step()


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], prefix: str) -> list[bool]:
    """For every float tensor (weights and batch-norm statistics) under ``prefix``: did it change?"""
    return [not torch.equal(before[k], after[k]) for k in before
            if k.startswith(prefix) and before[k].is_floating_point()]


@pytest.mark.parametrize("frozen", [1, 2, 3, 4])
def test_freeze_n_fixes_the_first_n_stages_with_their_batch_norm_statistics(frozen: int) -> None:
    torch.manual_seed(0)
    model = UNet3D(width=2)
    record = apply_protocol(model, Protocol.parse(f"freeze:{frozen}"), *STAGES_AND_OUTPUT)
    before = snapshot(model)
    train_steps(model)
    after = snapshot(model)
    for index, stage in enumerate(unet().stages):
        moved = changed(before, after, f"encoder.{stage}.")
        assert (not any(moved)) if index < frozen else all(moved), stage
    assert all(changed(before, after, "decoder."))
    assert record["fixed"] == [f"encoder.{stage}" for stage in unet().stages[:frozen]]
    assert record["trainable_parameters"] == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_linear_on_a_classifier_trains_one_linear_layer_on_pooled_features() -> None:
    torch.manual_seed(0)
    model = unet().build_classifier(1, 1, 2)
    record = apply_protocol(model, Protocol.parse("linear"), *STAGES_AND_OUTPUT)
    assert isinstance(model.head, LinearHead)
    assert record["trainable_parameters"] == model.encoder.out_channels + 1
    before = snapshot(model)
    train_steps(model)
    after = snapshot(model)
    assert not any(changed(before, after, "encoder.")) and all(changed(before, after, "head."))
    features = torch.rand(3, model.encoder.out_channels, 2, 4, 4)
    expected = features.mean(dim=(2, 3, 4)) @ model.head.fc.weight.T + model.head.fc.bias
    torch.testing.assert_close(model.head(features), expected)


def test_linear_on_a_unet_trains_only_the_output_convolution() -> None:
    torch.manual_seed(0)
    model = UNet3D(width=2)
    apply_protocol(model, Protocol.parse("linear"), *STAGES_AND_OUTPUT)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"decoder.out_tr.final_conv.weight", "decoder.out_tr.final_conv.bias"}
    before = snapshot(model)
    train_steps(model)
    after = snapshot(model)
    assert not any(changed(before, after, "encoder.")) and not any(changed(before, after, "decoder.up_"))
    assert all(changed(before, after, "decoder.out_tr."))


def test_full_changes_nothing() -> None:
    model = UNet3D(width=2)
    record = apply_protocol(model, Protocol.parse("full"), *STAGES_AND_OUTPUT)
    assert record["fixed"] == [] and record["trainable_parameters"] == record["parameters"]


def test_fine_tuning_under_freeze_keeps_the_fixed_stages_exactly() -> None:
    task = TASKS.create("ncc")
    rng = np.random.default_rng(0)
    cases = [Case(f"c{i}", rng.random((1, *CUBE), dtype=np.float32), i % 2, f"g{i}") for i in range(8)]
    model = task.build_model(unet(), SMOKE.width)
    apply_protocol(model, Protocol.parse("freeze:2"), *STAGES_AND_OUTPUT)
    before = snapshot(model)
    profile = dataclasses.replace(SMOKE, classification=dataclasses.replace(SMOKE.classification, epochs=2))
    model, _, _ = finetune(model, task, cases, cases[:4], CUBE, profile, seed=0, device=CPU, progress=False)
    after = snapshot(model)
    assert not any(changed(before, after, "encoder.down_tr64.") + changed(before, after, "encoder.down_tr128."))
    assert any(changed(before, after, "encoder.down_tr256."))


def test_the_protocol_is_part_of_the_run_id_and_a_sweep_crosses_it() -> None:
    ids = {p: plan_run(RunSpec(method="scratch-he", task="ncc", profile="smoke", protocol=p)).run_id
           for p in ("full", "linear", "freeze:2")}
    assert len(set(ids.values())) == 3
    assert "-linear-" in ids["linear"] and "-freeze2-" in ids["freeze:2"] and "-full-" not in ids["full"]
    grid = Grid(methods=["scratch-he"], tasks=["ncc"], fractions=[1.0], seeds=[0], protocols=["full", "linear"])
    assert [spec.protocol for spec in grid.specs()] == ["full", "linear"]


def test_a_part_fixed_without_pretrained_weights_is_warned_about() -> None:
    from benchmark.engine.harness import _fixed_random_parts

    encoder_only = {"transferred": "encoder"}
    linear = {"name": "linear", "fixed": ["encoder", "decoder.up_tr256", "decoder.up_tr128", "decoder.up_tr64"]}
    (warning,) = _fixed_random_parts(encoder_only, linear)
    assert "decoder.up_tr256, decoder.up_tr128, decoder.up_tr64 fixed at random" in warning
    assert _fixed_random_parts({"transferred": "encoder+decoder"}, linear) == []
    assert _fixed_random_parts(encoder_only, {"name": "freeze:2", "fixed": ["encoder.down_tr64"]}) == []
    assert _fixed_random_parts({"transferred": "none"}, {"name": "freeze:1", "fixed": ["encoder.down_tr64"]})
