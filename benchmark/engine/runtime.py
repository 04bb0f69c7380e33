"""Devices, seeding and resource accounting shared by pretraining and fine-tuning."""

from __future__ import annotations

import os
import platform
import random
import resource
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmark.errors import UserError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, then is set up as that device is (deterministic CUDA);
    asking for CUDA without it is a user error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: expected auto, cpu or cuda")
    device = torch.device(name)
    if device.type == "cuda":
        use_deterministic_cuda()
    return device


def use_deterministic_cuda() -> None:
    """Make CUDA runs reproducible: same spec, same seed, same GPU, same numbers.

    With torch's defaults two identical quick-profile runs on an H200 differed by 0.03 Dice; with
    these settings they gave identical records in the same time (docs/performance.md). Must run
    before the first cuBLAS call (``CUBLAS_WORKSPACE_CONFIG`` is read then). torch has no
    deterministic CUDA max-pooling backward and warns about it; its gradients race only where
    pooling windows overlap, which ``overlapping_max_pools`` finds and the training loop names,
    so that one warning is silenced and every other op torch knows to be nondeterministic still
    warns."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
    warnings.filterwarnings("ignore", message=r"max_pool\dd_with_indices_backward_cuda does not have a deterministic")


MAX_POOL_DIMS = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}


def overlapping_max_pools(model: nn.Module) -> list[str]:
    """The max-pooling layers of ``model`` (subclasses included) whose windows overlap (a kernel side
    larger than its stride): their CUDA backward adds gradients with atomics in no fixed order."""
    return [name for name, module in model.named_modules()
            if isinstance(module, tuple(MAX_POOL_DIMS)) and _overlaps(module)]


def _overlaps(pool: nn.Module) -> bool:
    dims = next(d for cls, d in MAX_POOL_DIMS.items() if isinstance(pool, cls))
    kernel = _sides(pool.kernel_size, dims)
    stride = kernel if pool.stride is None or pool.stride == () else _sides(pool.stride, dims)
    return any(k > s for k, s in zip(kernel, stride))


def _sides(value: int | tuple[int, ...], dims: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims


MAX_SEED = 2**32 - 1  # numpy's legacy seeding, which libraries still use, takes 32 bits


def check_seed(seed: int, option: str = "--seed") -> int:
    """``seed`` if it is an integer from 0 to ``MAX_SEED``; a one-line UserError otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"{option} {seed}: must be an integer from 0 to {MAX_SEED}")
    return seed


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch, numpy and random; return the generator the run draws from."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory measurement, so each run of a multi-run process reports its own peak.

    Host: Linux resets the peak resident size (VmHWM) on writing 5 to ``clear_refs``; elsewhere
    the host figure stays the process's peak since it started.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="utf-8")
    except OSError:
        pass
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_host_memory_mb() -> float:
    """Peak resident memory since the last ``reset_peak_memory`` (Linux) or since the process started (MB)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text(encoding="utf-8").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024


def peak_device_memory_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 1024 / 1024


def device_name(device: torch.device) -> str:
    """A human-readable name of the hardware: the GPU model, or the CPU model, core count and the
    instruction set of torch's kernels (``cpu_kernels``)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text(encoding="utf-8").splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model} ({cores} cores, {cpu_kernels()})"


def cpu_kernels() -> str:
    """The instruction set torch's CPU kernels use (``AVX512 kernels``, ``AVX2 kernels``...), with oneDNN's cap
    when one is set.

    torch picks its kernels by what the CPU offers, and kernels of another instruction set round
    differently: a run on an AVX-512 machine does not reproduce one made on an AVX2 machine past the
    last digits, and training carries the difference on. ``ATEN_CPU_CAPABILITY=avx2`` with
    ``ONEDNN_MAX_CPU_ISA=AVX2`` makes a newer CPU compute as the older one did (README, "Results").
    """
    capability = torch.backends.cpu.get_cpu_capability()
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return f"{capability} kernels, oneDNN up to {onednn}" if onednn else f"{capability} kernels"
