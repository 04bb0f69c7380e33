"""CUDA reproducibility settings: deterministic algorithms on, and the one nondeterministic op they let
through (max-pooling backward with overlapping windows) found in every backbone by a brute-force
count of the windows that cover each voxel; on the CPU, the instruction set of torch's kernels recorded with
the machine."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from benchmark.api.backbone import for_volumes
from benchmark.api.registry import BACKBONES
from benchmark.engine.runtime import device_name, overlapping_max_pools, resolve_device, use_deterministic_cuda
from benchmark.engine.sweep import dims_of
from benchmark.engine.training import warn_if_not_reproducible
from benchmark.model.backbone import UNet3D

POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)


def windows_overlap(pool: nn.Module, side: int = 7) -> bool:
    """Brute force: one input per voxel, that voxel 1 and the rest 0; the pool's outputs equal to 1
    are the windows covering the voxel. Overlap means some voxel is covered more than once."""
    dims = int(type(pool).__name__[-2])
    voxels = side**dims
    one_hot = torch.eye(voxels).reshape(voxels, 1, *(side,) * dims)
    covering = (pool(one_hot) == 1).reshape(voxels, -1).sum(dim=1)
    return bool((covering > 1).any())


@pytest.mark.parametrize("pool, overlaps", [
    (nn.MaxPool3d(2), False), (nn.MaxPool3d(3, 2, padding=1), True), (nn.MaxPool2d((1, 3), (1, 2)), True),
    (nn.MaxPool3d(2, stride=1), True), (nn.MaxPool1d(3, 3), False), (nn.MaxPool2d(2, (2, 1)), True),
])
def test_overlap_is_read_from_kernel_and_stride_as_the_brute_force_counts_it(pool, overlaps):
    assert windows_overlap(pool) is overlaps
    assert overlapping_max_pools(nn.Sequential(pool)) == (["0"] if overlaps else [])


CELLS = [(name, dims) for name in BACKBONES.names() for dims in dims_of(name)]


@pytest.mark.parametrize("name, dims", CELLS, ids=[f"{name}-{dims}" for name, dims in CELLS])
def test_every_backbone_s_overlapping_max_pools_are_named(name, dims):
    backbone = for_volumes(BACKBONES.create(name), dims)
    for model in (backbone.build_classifier(1, 1, 2), backbone.build_segmenter(1, 1, 2)):
        expected = [module_name for module_name, module in model.named_modules()
                    if isinstance(module, POOLS) and windows_overlap(module)]
        assert overlapping_max_pools(model) == expected


def test_the_u_net_pools_without_overlap_and_i3d_with():
    assert overlapping_max_pools(UNet3D(in_channels=1, out_channels=1, width=2)) == []
    i3d = BACKBONES.create("i3d").build_classifier(1, 1, 2)
    assert any(name.endswith("MaxPool3d_4a_3x3") for name in overlapping_max_pools(i3d))
    resnet = BACKBONES.create("resnet3d").build_segmenter(1, 1, 2)
    assert [name.rsplit(".", 1)[-1] for name in overlapping_max_pools(resnet)] == ["maxpool"]


def test_deterministic_settings_and_the_one_silenced_warning(monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", "unset")  # so that undoing restores the variable as it was
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG")
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            use_deterministic_cuda()
            for op in ("max_pool3d_with_indices_backward_cuda", "index_add_cuda_"):  # as torch words it
                warnings.warn(f"{op} does not have a deterministic implementation", stacklevel=1)
        assert [str(w.message).split()[0] for w in caught] == ["index_add_cuda_"]
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[2], before[3]


def test_the_cpu_device_changes_no_global_setting():
    before = torch.are_deterministic_algorithms_enabled()
    assert resolve_device("cpu") == torch.device("cpu")
    assert torch.are_deterministic_algorithms_enabled() == before


@pytest.mark.parametrize("name", ["auto", "cuda"])
def test_auto_is_set_up_as_the_device_it_picks(monkeypatch, name):
    """``--device auto`` (the default) on a CUDA machine is as reproducible as ``--device cuda``."""
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr("benchmark.engine.runtime.use_deterministic_cuda", lambda: chosen.append(True))
    assert resolve_device(name) == torch.device("cuda") and chosen == [True]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and chosen == [True]


def test_training_on_cuda_names_the_overlapping_pools(caplog):
    model = nn.Sequential(nn.MaxPool3d(2), nn.MaxPool3d(3, 2))
    with caplog.at_level(logging.WARNING, logger="benchmark.training"):
        warn_if_not_reproducible(model, "fine-tuning ncc")
        warn_if_not_reproducible(UNet3D(in_channels=1, out_channels=1, width=2), "fine-tuning lcs")
    assert [record.getMessage().split(":")[0] for record in caplog.records] == ["fine-tuning ncc"]
    assert "(1)" in caplog.records[0].getMessage()


def test_the_cpu_machine_is_named_with_the_instruction_set_torch_computes_with() -> None:
    """Kernels of another instruction set round differently, so the record names the one in use: torch's
    own choice (here forced to its portable kernels), and oneDNN's cap when one is set."""
    assert device_name(torch.device("cpu")).endswith(f" cores, {torch.backends.cpu.get_cpu_capability()} kernels)")
    script = "import torch; from benchmark.engine.runtime import device_name; print(device_name(torch.device('cpu')))"
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    named = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert named.stdout.strip().endswith(" cores, DEFAULT kernels, oneDNN up to AVX2)"), named.stdout
