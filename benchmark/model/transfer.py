"""Hand a target model (the task builds it) the pretrained weights a method transfers.

A target model receives the parts the method transfers that it has: a classifier (encoder
and head) the encoder; a segmentation target the encoder, plus the decoder when the method
transfers ``encoder+decoder``, always with a fresh output layer (the backbone's
``output_layer``). A pretrained first
convolution with fewer input channels than the task (e.g. single-channel CT weights on
4-channel MRI) is inflated: its kernel is repeated over the task's channels and divided
by their number, so a constant image gives the same response. Any other missing,
unexpected or mis-shaped key is an error: never a silent fallback to random weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from benchmark.errors import UserError

TRANSFERRED_PARTS = {"none": (), "encoder": ("encoder.",), "encoder+decoder": ("encoder.", "decoder.")}


def shared_transfer(first: str, second: str) -> str:
    """What both transfer (``encoder`` for ``encoder`` and ``encoder+decoder``): a method transfers no
    more of a weights file than it transfers of its own pretraining, nor than the file holds."""
    return min(first, second, key=list(TRANSFERRED_PARTS).index)


def parts_to_transfer(transfers: str, model: nn.Module) -> tuple[str, ...]:
    """Key prefixes of ``model`` that receive pretrained weights: the parts the method transfers
    that the model has."""
    keys = model.state_dict()
    return tuple(part for part in TRANSFERRED_PARTS[transfers] if any(k.startswith(part) for k in keys))


def _inflate_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    copies = in_channels // weight.shape[1]
    return weight.repeat(1, copies, *[1] * (weight.dim() - 2)) / copies


def transfer_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], transfers: str, source: str,
                     first_conv: str, output_layer: str) -> dict[str, Any]:
    """Copy the transferred part of ``state_dict`` into ``model``; return what was done.

    ``source`` names the checkpoint in error messages; ``first_conv`` is the key of the backbone's
    first convolution (inflated to more input channels), ``output_layer`` the module never transferred.
    """
    prefixes = parts_to_transfer(transfers, model)
    target = model.state_dict()
    fresh_output = output_layer + "."
    wanted = [k for k in target if k.startswith(prefixes) and not k.startswith(fresh_output)]
    missing = [k for k in wanted if k not in state_dict]
    if missing:
        raise UserError(
            f"{source}: {len(missing)} weights missing for a {transfers} transfer, e.g. {', '.join(missing[:5])}"
        )
    loaded, inflated, mismatched = {}, [], []
    for key in wanted:
        tensor = state_dict[key]
        if key == first_conv and tensor.shape != target[key].shape:
            if tensor.shape[1] and target[key].shape[1] % tensor.shape[1] == 0 \
                    and tensor.shape[0] == target[key].shape[0] and tensor.shape[2:] == target[key].shape[2:]:
                tensor = _inflate_first_conv(tensor, target[key].shape[1])
                inflated.append(key)
        if tensor.shape != target[key].shape:
            mismatched.append(f"{key} {tuple(tensor.shape)} vs {tuple(target[key].shape)}")
        loaded[key] = tensor
    if mismatched:
        raise UserError(f"{source}: mis-shaped weights (checkpoint vs model): {'; '.join(mismatched[:5])}")
    model.load_state_dict(loaded, strict=False)
    fresh = sorted({k.split(".")[0] if not k.startswith(fresh_output) else output_layer
                    for k in target if k not in loaded})
    transferred = "+".join(prefix.rstrip(".") for prefix in prefixes) or "none"
    return {"transferred": transferred, "loaded_keys": len(loaded),
            "fresh_modules": fresh, "inflated_first_conv": bool(inflated)}
