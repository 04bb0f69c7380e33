"""Transfer protocols: which parts of a target model fine-tuning trains (Models Genesis §3.2).

* ``full`` (the default): every layer is trained.
* ``linear``: the pretrained backbone is fixed and only a linear read-out is trained. A
  classifier's two-layer head is replaced by one linear layer on the globally pooled encoder
  features; a U-Net keeps its encoder and decoder fixed and trains its fresh 1x1x1 output
  convolution on the decoder's last features.
* ``freeze:N``: the first N encoder stages (``down_tr64`` ... ``down_tr512``, N in 1-4) are
  fixed, everything after them is trained.

A fixed part keeps its weights (no gradient, not given to the optimiser) and its batch-norm
statistics: its batch-norm layers normalise with their running statistics and never update
them, even while the rest of the model is in training mode (a forward pre-hook puts each
of them in evaluation mode). With a random initialisation, ``linear`` measures random
features: a useful floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from benchmark.errors import UserError

ENCODER_STAGES = ("down_tr64", "down_tr128", "down_tr256", "down_tr512")
PROTOCOL_HELP = "full, linear or freeze:N (N = 1-4 encoder stages)"


@dataclass(frozen=True)
class Protocol:
    """A parsed protocol: its ``name`` as given (``full``, ``linear``, ``freeze:2``)."""

    name: str
    frozen_stages: int = 0  # freeze:N
    linear: bool = False

    @classmethod
    def parse(cls, text: str) -> Protocol:
        """``full``, ``linear`` or ``freeze:N``; a one-line UserError otherwise."""
        text = str(text).strip()
        if text in ("full", "linear"):
            return cls(text, linear=text == "linear")
        kind, _, count = text.partition(":")
        if kind == "freeze" and count.isdigit() and 1 <= int(count) <= len(ENCODER_STAGES):
            return cls(f"freeze:{int(count)}", frozen_stages=int(count))
        raise UserError(f"--protocol {text}: expected {PROTOCOL_HELP}")


class LinearHead(nn.Module):
    """Global average pool of the bottleneck -> one linear layer (the linear protocol's read-out)."""

    def __init__(self, in_channels: int, n_outputs: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels, n_outputs)

    def forward(self, bottleneck: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool3d(bottleneck, 1), 1))


def _keep_batch_norm_fixed(module: nn.Module, _inputs: Any) -> None:
    module.eval()


def freeze(module: nn.Module) -> None:
    """No gradient for ``module``'s weights, and its batch-norm layers always in evaluation mode."""
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.register_forward_pre_hook(_keep_batch_norm_fixed)


def _fixed_parts(model: nn.Module, protocol: Protocol) -> list[str]:
    """The names of the submodules of ``model`` the protocol fixes."""
    if not hasattr(model, "encoder"):
        raise UserError(f"protocol {protocol.name}: the target model has no encoder to fix")
    if protocol.frozen_stages:
        return [f"encoder.{stage}" for stage in ENCODER_STAGES[:protocol.frozen_stages]]
    if not protocol.linear:
        return []
    if hasattr(model, "decoder"):
        return ["encoder"] + [f"decoder.{name}" for name, _ in model.decoder.named_children() if name != "out_tr"]
    return ["encoder"]


def apply_protocol(model: nn.Module, protocol: Protocol) -> dict[str, Any]:
    """Fix the parts of ``model`` the protocol fixes (a classifier's head becomes linear under
    ``linear``) and return what was done, for the record."""
    if protocol.linear and hasattr(model, "head"):
        outputs = [layer for layer in model.head.modules() if isinstance(layer, nn.Linear)][-1].out_features
        model.head = LinearHead(model.encoder.out_channels, outputs)  # PyTorch's default initialisation
    fixed = _fixed_parts(model, protocol)
    for name in fixed:
        freeze(model.get_submodule(name))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"name": protocol.name, "fixed": fixed, "trainable_parameters": trainable,
            "parameters": sum(p.numel() for p in model.parameters())}
