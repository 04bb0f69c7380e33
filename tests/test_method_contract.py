"""The method contract, checked for every registered method: built-ins and installed plugins alike.

Every method is created by its name alone, and its settings are its constructor's keyword
arguments: ``settings()`` reports them, and they round-trip through ``METHODS.create`` (as a
record's JSON holds them). A method that pretrains must build its pretext model, turn a
batch of cubes into a finite loss, be able to overfit one fixed batch, and produce a
checkpoint that survives a ``weights_only`` round trip and loads into both kinds of target
model. A random initialisation must change the weights and transfer nothing.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np
import pytest
import torch
from helpers import unet
from scipy.ndimage import gaussian_filter

from benchmark.api.profiles import PROFILES
from benchmark.api.registry import BACKBONES, METHODS
from benchmark.engine.pretrain import load_checkpoint, pretrain, save_checkpoint
from benchmark.model.backbone import UNet3D
from benchmark.model.transfer import parts_to_transfer, transfer_weights

CPU = torch.device("cpu")
CUBE = (16, 32, 32)
WIDTH = 4
TINY = dataclasses.replace(PROFILES["smoke"], pretrain_epochs=1, pretrain_steps_per_epoch=2)
OVERFIT_STEPS = 12

NAMES = METHODS.names()
PRETRAINING = [name for name in NAMES if METHODS.get(name).has_pretext_task()]
RANDOM_INITS = [name for name in NAMES if METHODS.get(name).transfers == "none"]
DEVICE_TRANSFORMS = [name for name in PRETRAINING if METHODS.get(name).has_device_transforms()]


def blob_pool(n: int, seed: int) -> np.ndarray:
    """``n`` cubes of smooth random blobs, each scaled to [0, 1]: structure, not noise."""
    rng = np.random.default_rng(seed)
    cubes = np.stack([gaussian_filter(rng.random(CUBE), sigma=2.0) for _ in range(n)])
    low = cubes.min(axis=(1, 2, 3), keepdims=True)
    high = cubes.max(axis=(1, 2, 3), keepdims=True)
    return ((cubes - low) / (high - low))[:, None].astype(np.float32)


@pytest.fixture(scope="module")
def pools() -> tuple[np.ndarray, np.ndarray]:
    return blob_pool(12, 0), blob_pool(6, 1)


def assert_same(a: Any, b: Any) -> None:
    """Recursive equality of checkpoint contents (tensors exactly, same dtype and shape)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    else:
        assert a == b


@pytest.mark.parametrize("name", NAMES)
def test_method_declares_name_description_transfers_and_settings(name):
    method = METHODS.create(name)
    assert method.name == name
    assert method.description and "\n" not in method.description
    assert method.transfers in ("encoder", "encoder+decoder", "none")
    settings = method.settings()
    assert isinstance(settings, dict)
    json.dumps(settings, default=str)  # feeds the content-hashed checkpoint id


def as_json(settings: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(settings, default=str))


@pytest.mark.parametrize("name", NAMES)
def test_settings_are_the_constructor_arguments_and_round_trip_through_create(name):
    method = METHODS.create(name)
    settings = method.settings()
    assert set(settings) == set(METHODS.defaults(name))  # every constructor argument, nothing else
    assert as_json(settings) == as_json(METHODS.defaults(name))  # created by name: the defaults
    again = METHODS.create(name, **as_json(settings))  # as a record holds them
    assert again.name == name and type(again) is type(method)
    assert as_json(again.settings()) == as_json(settings)


@pytest.mark.parametrize("name", PRETRAINING)
def test_a_step_gives_a_finite_loss_and_overfitting_one_batch_lowers_it(name, pools):
    train, _ = pools
    torch.manual_seed(0)
    method = METHODS.create(name)
    model = method.build_pretext_model(BACKBONES.create(method.default_backbone()), 1, WIDTH)
    method.init_weights(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    method.on_epoch_start(model, train, np.random.default_rng(1), CPU)
    model.train()
    losses, first = [], None
    for _ in range(OVERFIT_STEPS):
        inputs, targets = method.sample_batch(train, 4, np.random.default_rng(7))  # the same batch every step
        if first is None:
            first = (inputs, targets)
            assert inputs.shape[0] == 4 and targets.shape[0] == 4 and inputs.dtype == torch.float32
        else:
            assert torch.equal(inputs, first[0]) and torch.equal(targets, first[1])
        loss = method.loss(model(inputs), targets)
        assert loss.ndim == 0 and torch.isfinite(loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("name", DEVICE_TRANSFORMS)
def test_device_examples_are_shaped_like_the_host_ones_repeat_with_the_seed_and_train(name, pools):
    train, _ = pools
    method = METHODS.create(name)
    cubes = torch.from_numpy(train[:3])
    host_inputs, host_targets = method.make_example(train[:3], np.random.default_rng(0))
    inputs, targets = method.make_example_on_device(cubes, torch.Generator().manual_seed(0))
    for host, device in ((host_inputs, inputs), (host_targets, targets)):
        assert device.shape == host.shape and device.dtype == host.dtype and device.device == cubes.device
    again = method.make_example_on_device(cubes, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], inputs) and torch.equal(again[1], targets)
    assert torch.equal(cubes, torch.from_numpy(train[:3]))  # the pool is not modified
    model = method.build_pretext_model(BACKBONES.create(method.default_backbone()), 1, WIDTH)
    assert torch.isfinite(method.loss(model(inputs), targets))


@pytest.mark.parametrize("name", PRETRAINING)
def test_checkpoint_round_trips_and_loads_into_both_target_models(name, pools, tmp_path):
    train, val = pools
    method = METHODS.create(name)
    checkpoint, history = pretrain(method, train, val, TINY, seed=0, device=CPU, progress=False)
    assert len(history) == 1 and np.isfinite(history["train_loss"]).all()

    backbone = BACKBONES.create(method.default_backbone())
    segmenter = backbone.build_segmenter(1, 1, WIDTH)
    reference = segmenter.state_dict()
    state = checkpoint["state_dict"]
    expected = [k for k in reference if k.startswith(parts_to_transfer(method.transfers, segmenter))]
    assert sorted(state) == sorted(expected)  # the backbone's target keys, nothing else
    assert all(state[k].shape == reference[k].shape for k in state)

    path = tmp_path / "checkpoint.pt"
    save_checkpoint(checkpoint, path)
    loaded = load_checkpoint(path)  # weights_only=True
    assert_same(checkpoint, loaded)

    for target in (backbone.build_classifier(1, 1, WIDTH), backbone.build_segmenter(1, 1, WIDTH)):
        method.init_weights(target)
        report = transfer_weights(target, loaded["state_dict"], loaded["transfers"], name, backbone.first_conv,
                                  backbone.output_layer)
        parts = parts_to_transfer(method.transfers, target)
        fresh = backbone.output_layer + "."
        keys = [k for k in target.state_dict() if k.startswith(parts) and not k.startswith(fresh)]
        assert report["loaded_keys"] == len(keys) > 0
        for key in keys:
            assert torch.equal(target.state_dict()[key], state[key]), key


@pytest.mark.parametrize("name", RANDOM_INITS)
def test_random_initialisation_changes_the_weights_and_transfers_nothing(name):
    method = METHODS.create(name)
    torch.manual_seed(0)
    model = UNet3D(in_channels=1, out_channels=1, width=WIDTH)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    method.init_weights(model)
    after = {k: v.clone() for k, v in model.state_dict().items()}
    weights = [k for k in after if k.endswith("conv1.weight") or k.endswith("up_conv.weight")]
    assert all(not torch.equal(before[k], after[k]) for k in weights)
    report = transfer_weights(model, {}, method.transfers, name, unet().first_conv, unet().output_layer)
    assert report["transferred"] == "none" and report["loaded_keys"] == 0
    assert all(torch.equal(after[k], v) for k, v in model.state_dict().items())
