"""Transfer protocols: which parts of a target model fine-tuning trains (Models Genesis §3.2).

* ``full`` (the default): every layer is trained.
* ``linear``: the pretrained backbone is fixed and only a linear read-out is trained. A
  classifier's head is replaced by one linear layer on the globally pooled encoder features;
  a segmentation target keeps its encoder and decoder fixed and trains only its fresh output
  layer (a 1x1x1 convolution for the U-Net) on the decoder's last features.
* ``freeze:N``: the first N stages of the backbone's encoder (its ``stages``, input to output;
  for the U-Net ``down_tr64`` ... ``down_tr512``), and its stem if it has one (a ResNet's first
  convolution), are fixed, everything after them is trained.

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

PROTOCOL_HELP = "full, linear or freeze:N (N: how many of the backbone's encoder stages)"


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
        if kind == "freeze" and count.isascii() and count.isdigit() and int(count) >= 1:
            return cls(f"freeze:{int(count)}", frozen_stages=int(count))
        raise UserError(f"--protocol {text}: expected {PROTOCOL_HELP}")


class LinearHead(nn.Module):
    """Global average pool of the bottleneck -> one linear layer (the linear protocol's read-out)."""

    def __init__(self, in_channels: int, n_outputs: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_channels, n_outputs)

    def forward(self, bottleneck: torch.Tensor) -> torch.Tensor:
        return self.fc(bottleneck.flatten(2).mean(2))  # global average pool over any number of spatial axes


def _keep_batch_norm_fixed(module: nn.Module, _inputs: Any) -> None:
    module.eval()


def freeze(module: nn.Module) -> None:
    """No gradient for ``module``'s weights, and its batch-norm layers always in evaluation mode."""
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.register_forward_pre_hook(_keep_batch_norm_fixed)


def check_stages(protocol: Protocol, stages: tuple[str, ...], backbone: str) -> None:
    """A UserError when ``freeze:N`` asks for more stages than the backbone has."""
    if protocol.frozen_stages > len(stages):
        raise UserError(f"--protocol {protocol.name}: backbone '{backbone}' has {len(stages)} encoder stages "
                        f"({', '.join(stages)})")


def _fixed_parts(model: nn.Module, protocol: Protocol, stages: tuple[str, ...], output_layer: str,
                 stem: tuple[str, ...]) -> list[str]:
    """The names of the submodules of ``model`` the protocol fixes."""
    if not hasattr(model, "encoder"):
        raise UserError(f"protocol {protocol.name}: the target model has no encoder to fix")
    if protocol.frozen_stages:
        return [f"encoder.{stage}" for stage in (*stem, *stages[:protocol.frozen_stages])]
    if not protocol.linear:
        return []
    if hasattr(model, "decoder"):
        return ["encoder"] + _decoder_parts_around(model, output_layer)
    return ["encoder"]


def _decoder_parts_around(model: nn.Module, output_layer: str) -> list[str]:
    """The largest submodules of the decoder that do not contain the output layer."""
    parts, pending = [], ["decoder"]
    while pending:
        name = pending.pop(0)
        for child, _ in model.get_submodule(name).named_children():
            full = f"{name}.{child}"
            if full == output_layer:
                continue
            if output_layer.startswith(full + "."):
                pending.append(full)
            else:
                parts.append(full)
    return parts


def apply_protocol(model: nn.Module, protocol: Protocol, stages: tuple[str, ...],
                   output_layer: str, stem: tuple[str, ...] = ()) -> dict[str, Any]:
    """Fix the parts of ``model`` the protocol fixes (a classifier's head becomes linear under
    ``linear``) and return what was done, for the record. ``stages``, ``output_layer`` and ``stem``
    (encoder submodules before the first stage, fixed with any stage) are the backbone's
    (``benchmark.api.backbone``)."""
    if protocol.linear and hasattr(model, "head"):
        outputs = [layer for layer in model.head.modules() if isinstance(layer, nn.Linear)][-1].out_features
        model.head = LinearHead(model.encoder.out_channels, outputs)  # PyTorch's default initialisation
    check_stages(protocol, stages, type(model).__name__)
    fixed = _fixed_parts(model, protocol, stages, output_layer, stem)
    for name in fixed:
        freeze(model.get_submodule(name))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"name": protocol.name, "fixed": fixed, "trainable_parameters": trainable,
            "parameters": sum(p.numel() for p in model.parameters())}
