"""Pretraining batches: deterministic whatever the worker count; the speed switches train."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch
from benchmark.methods.deepcluster import DeepCluster
from benchmark.methods.genesis import Genesis
from helpers import unet

from benchmark.api.profiles import PROFILES
from benchmark.api.registry import METHODS
from benchmark.cli import main
from benchmark.engine.loader import TRAIN_STREAM, VALIDATION_STREAM, KeyedBatches, batch_generator, host_batches
from benchmark.engine.pretrain import pretext_loss, pretrain
from benchmark.errors import UserError

CPU = torch.device("cpu")
TINY = dataclasses.replace(PROFILES["smoke"], pretrain_epochs=1, pretrain_steps_per_epoch=2, pretrain_batch=2)


def random_pool(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, 8, 16, 16), dtype=np.float32)


def test_zero_and_two_workers_give_identical_batches():
    method, pool = Genesis(n_windows=50), random_pool(6, 0)
    inline = list(host_batches(method, pool, 3, 5, seed=7, stream=TRAIN_STREAM, epoch=1, workers=0))
    workers = list(host_batches(method, pool, 3, 5, seed=7, stream=TRAIN_STREAM, epoch=1, workers=2))
    assert len(inline) == len(workers) == 5
    for (x0, y0), (x2, y2) in zip(inline, workers, strict=True):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)
    assert not torch.equal(inline[0][0], inline[1][0])  # the steps differ


def test_deepcluster_labels_each_pool_in_the_training_process_and_workers_change_no_batch():
    method, train, val = DeepCluster(n_clusters=2), random_pool(8, 4), random_pool(6, 5)
    torch.manual_seed(0)
    model = method.build_pretext_model(unet(), 1, 4)
    method.init_weights(model)
    method.on_epoch_start(model, train, np.random.default_rng(0), CPU)
    # workers first: a worker asked for labels it was not given raises (it must not compute features)
    workers = list(host_batches(method, val, 2, 3, seed=1, stream=VALIDATION_STREAM, epoch=0, workers=2))
    inline = list(host_batches(method, val, 2, 3, seed=1, stream=VALIDATION_STREAM, epoch=0, workers=0))
    for (x2, y2), (x0, y0) in zip(workers, inline, strict=True):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)


def test_a_batch_depends_only_on_its_key():
    method, pool = Genesis(n_windows=50), random_pool(6, 1)
    sample = functools.partial(method.sample_batch, pool, 2)
    batches = KeyedBatches(sample, steps=4, seed=3, stream=TRAIN_STREAM, epoch=0, rank=0)
    later = batches[3]
    assert all(torch.equal(a, b) for a, b in zip(later, batches[3]))  # no state carried between batches
    other_rank = KeyedBatches(sample, steps=4, seed=3, stream=TRAIN_STREAM, epoch=0, rank=1)[3]
    other_epoch = KeyedBatches(sample, steps=4, seed=3, stream=TRAIN_STREAM, epoch=1, rank=0)[3]
    assert not torch.equal(later[0], other_rank[0]) and not torch.equal(later[0], other_epoch[0])
    first = batch_generator(3, TRAIN_STREAM, 0, 3, 0, CPU)
    assert torch.equal(torch.rand(4, generator=first), torch.rand(4, generator=batch_generator(3, 0, 0, 3, 0, CPU)))


def test_pretraining_is_the_same_with_and_without_workers():
    train, val = random_pool(8, 2), random_pool(4, 3)
    method = Genesis(n_windows=50)
    inline, history = pretrain(method, train, val, TINY, seed=0, device=CPU, progress=False)
    workers, _ = pretrain(method, train, val, dataclasses.replace(TINY, loader_workers=2), seed=0, device=CPU,
                          progress=False)
    assert history["val_loss"].notna().all()
    assert all(torch.equal(inline["state_dict"][k], workers["state_dict"][k]) for k in inline["state_dict"])


@pytest.mark.parametrize("switches", [{"pretrain_device_transforms": True}, {"pretrain_channels_last": True}])
def test_speed_switches_pretrain_to_a_finite_loss(switches):
    train, val = random_pool(8, 4), random_pool(4, 5)
    checkpoint, history = pretrain(Genesis(n_windows=50), train, val,
                                   dataclasses.replace(TINY, **switches), seed=0, device=CPU, progress=False)
    assert np.isfinite(history["train_loss"]).all() and np.isfinite(checkpoint["best_val_loss"])
    assert all(v.is_contiguous() for v in checkpoint["state_dict"].values())


def test_bf16_runs_the_forward_pass_in_bf16_and_the_loss_in_float32():
    torch.manual_seed(0)
    model = torch.nn.Conv3d(1, 1, 3, padding=1)
    seen = []
    model.register_forward_hook(lambda _module, _inputs, output: seen.append(output.dtype))
    inputs = torch.rand(2, 1, 4, 6, 6)
    loss = pretext_loss(Genesis(), model, inputs, inputs, "bf16")
    assert seen == [torch.bfloat16] and loss.dtype == torch.float32 and torch.isfinite(loss)
    assert pretext_loss(Genesis(), model, inputs, inputs, "fp32").dtype == torch.float32 and seen[-1] == torch.float32


def test_bf16_pretraining_is_refused_on_the_cpu_in_one_line(tmp_path, capsys):
    profile = dataclasses.replace(TINY, pretrain_precision="bf16")
    with pytest.raises(UserError, match="bf16"):
        pretrain(Genesis(n_windows=50), random_pool(4, 8), random_pool(2, 9), profile, seed=0,
                 device=CPU, progress=False)
    status = main(["pretrain", "--method", "genesis", "--profile", "smoke", "--precision", "bf16", "--device", "cpu",
                   "--results", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.startswith("error: --precision bf16 on the CPU") and "\n" not in err
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_device_transforms_need_a_method_that_has_them():
    method = next(METHODS.create(name) for name in METHODS.names()
                  if METHODS.get(name).has_pretext_task() and not METHODS.get(name).has_device_transforms())
    profile = dataclasses.replace(TINY, pretrain_device_transforms=True)
    with pytest.raises(UserError, match="no device transforms"):
        pretrain(method, random_pool(4, 6), random_pool(2, 7), profile, seed=0, device=CPU, progress=False)


def test_profile_switches_are_validated_and_workers_leave_the_identity():
    with pytest.raises(UserError, match="precision"):
        dataclasses.replace(TINY, pretrain_precision="fp8")
    assert dataclasses.replace(TINY, loader_workers=4).identity() == TINY.identity()
    assert dataclasses.replace(TINY, pretrain_precision="bf16").identity() != TINY.identity()
