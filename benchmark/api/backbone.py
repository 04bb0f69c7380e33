"""What a backbone plugin is: a network family the suite fine-tunes and methods pretrain.

A backbone builds three things, each at a ``width`` (the base channel scale: 32 is the
published size of every built-in backbone; small profiles use less):

* ``build_encoder(in_channels, width)``: a module whose ``forward(x)`` returns
  ``(skips, bottleneck)`` (a list of intermediate feature maps, possibly empty, and the
  deepest features) and which has ``out_channels`` (the bottleneck's channels). Its
  stages are submodules named in ``stages``, input to output (``freeze:N`` fixes the first N,
  and the ``stem``, the submodules before the first stage, if any).
* ``build_classifier(in_channels, n_outputs, width)``: a *classification target*, a module
  with an ``encoder`` and a ``head`` that returns logits ``(N, n_outputs)``. Default: the
  encoder + ``ClassificationHead`` (global average pool -> Linear(C, 1024) -> ReLU -> Linear).
* ``build_segmenter(in_channels, out_channels, width)``: a *segmentation target*, a module
  with an ``encoder`` and a ``decoder`` that returns logits at the input's resolution; the
  decoder's last layer, the module named ``output_layer``, is always trained afresh.

Pretrained weights are keyed like these models (``encoder.*``, ``decoder.*``), so that what a
method pretrains, or a released file holds, maps key for key onto any target of the same
backbone. ``first_conv`` is the key of the first convolution's weight: a file with fewer input
channels than the task is inflated there (``benchmark.model.transfer``).

Inputs are ``(N, C, Z, Y, X)``; every spatial side must be at least ``min_size`` and a multiple
of ``size_multiple`` (``check_cube``). ``read_weights(path)`` reads the backbone's released
weight files (``PretrainedWeights``); a backbone with none refuses with a one-line error.
A backbone's settings are its constructor's keyword arguments (``benchmark.api.settings``),
given on the command line as ``--backbone-arg KEY=VALUE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from benchmark.api import settings as plugin_settings
from benchmark.api.settings import current_values
from benchmark.errors import UserError
from benchmark.model.backbone import ClassificationHead, Classifier, count_parameters
from benchmark.model.dims import CHANNEL_FACTOR, DIMS, adapt_to_volumes
from benchmark.model.weights import (
    MAX_IN_CHANNELS,
    MAX_WIDTH,
    check_finite,
    check_state,
    file_fingerprint,
    read_weights_file,
    tensor_dict,
)
from benchmark.provenance import code_fingerprint, source_fingerprint

DEFAULT_BACKBONE = "unet3d"  # the backbone of a method that declares none (the Models Genesis 3D U-Net)
ANY_BACKBONE = "*"  # in ``Method.backbones``: the method can pretrain (or initialise) every backbone
PARAMETER_PROBE = (1, 1)  # (in_channels, n_outputs) of the targets whose size ``parameter_counts`` reports


@dataclass(frozen=True)
class PretrainedWeights:
    """A weights file read into a backbone's key layout.

    ``settings``: the backbone settings the file implies (e.g. a ResNet's depth), which the run's
    backbone must have. ``notes``: anything done to the weights that changes the numbers (kernels
    reordered, RGB kernels adapted), part of the run's identity.
    """

    state_dict: dict[str, torch.Tensor]
    transfers: str  # "encoder" or "encoder+decoder"
    width: int
    in_channels: int
    format: str
    fingerprint: str  # the first 16 hex digits of the file's SHA-256
    path: str
    settings: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    method: str | None = None  # the method that pretrained a suite checkpoint; None for a released file
    pool_scans: tuple[str, ...] | None = None  # the scans a suite checkpoint was pretrained on; None: unrecorded

    def identity(self) -> dict[str, Any]:
        """What of the file determines a run (the path does not)."""
        return {"fingerprint": self.fingerprint, "format": self.format, "transfers": self.transfers,
                "settings": self.settings, "notes": self.notes}


def default_backbone(method: Any) -> Backbone:
    """The backbone a method uses when none is chosen (its first declared, the U-Net for any)."""
    from benchmark.api.registry import BACKBONES

    return BACKBONES.create(method.default_backbone())


def is_suite_checkpoint(content: Any) -> bool:
    """Whether a loaded file is a checkpoint written by this suite (``benchmark.engine.pretrain``)."""
    return isinstance(content, dict) and {"format", "backbone", "state_dict"} <= set(content)


class Backbone:
    """A backbone plugin (see the module docstring). Subclass, set the class attributes, override
    ``build_encoder`` and ``build_segmenter`` (and ``read_weights`` if it has released files)."""

    name: ClassVar[str]
    description: ClassVar[str]
    stages: ClassVar[tuple[str, ...]]  # the encoder's stage submodules, input to output
    stem: ClassVar[tuple[str, ...]] = ()  # encoder submodules before the first stage (fixed by any freeze:N)
    first_conv: ClassVar[str]  # key of the first convolution's weight in a target model
    output_layer: ClassVar[str] = "decoder.out_tr"  # the segmentation target's fresh last layer
    size_multiple: ClassVar[int] = 8
    min_size: ClassVar[int] = 8
    spatial_dims: ClassVar[int] = 3  # 2: a 2D network, run on the 3D tasks through an adapter (--dims 2d|2.5d)
    published: ClassVar[str] = ""  # the published parameter count and what it covers, for ``benchmark list``
    weights_source: ClassVar[str] = ""  # where users get released weight files, for the README and errors

    def build_encoder(self, in_channels: int, width: int) -> nn.Module:
        raise NotImplementedError(f"backbone '{self.name}' has no encoder")

    def build_classifier(self, in_channels: int, n_outputs: int, width: int) -> nn.Module:
        encoder = self.build_encoder(in_channels, width)
        return Classifier(encoder, ClassificationHead(encoder.out_channels, n_outputs, spatial_dims=self.spatial_dims))

    def build_segmenter(self, in_channels: int, out_channels: int, width: int) -> nn.Module:
        raise NotImplementedError(f"backbone '{self.name}' has no segmentation target")

    def read_weights(self, path: Path) -> PretrainedWeights:
        """A weights file of this backbone: this suite's own checkpoint (``benchmark pretrain``) or a
        released file (``read_released``). Strict: every key mapped, or a one-line UserError."""
        path = Path(path)
        content, safetensors = read_weights_file(path)
        if is_suite_checkpoint(content):
            return self.read_checkpoint(path, content)
        return self.read_released(path, content, safetensors)

    def read_released(self, path: Path, content: Any, safetensors: bool) -> PretrainedWeights:
        """Map a released file's ``content`` (what ``torch.load(weights_only=True)`` or safetensors gave)
        onto this backbone's keys. Override for a backbone with released weights."""
        raise UserError(f"{path}: backbone '{self.name}' reads no released weight files "
                        "(only this suite's own checkpoints)")

    def read_checkpoint(self, path: Path, content: dict[str, Any]) -> PretrainedWeights:
        """This suite's checkpoint of this backbone, checked key for key against a target built with
        the checkpoint's settings, width and input channels."""
        declared = content["backbone"]
        if not isinstance(declared, dict) or declared.get("name", DEFAULT_BACKBONE) != self.name:
            found = declared.get("name", DEFAULT_BACKBONE) if isinstance(declared, dict) else repr(declared)
            raise UserError(f"{path}: a checkpoint of backbone '{found}', not '{self.name}' "
                            "(choose it with --backbone)")
        state, transfers = content["state_dict"], content.get("transfers")
        if not tensor_dict(state):
            raise UserError(f"{path}: its 'state_dict' is not a dict of named tensors")
        if transfers not in ("encoder", "encoder+decoder"):
            raise UserError(f"{path}: the checkpoint transfers {transfers!r}: nothing to load")
        width, in_channels = (declared.get(key) for key in ("width", "in_channels"))
        if not all(type(value) is int and 1 <= value <= limit
                   for value, limit in ((width, MAX_WIDTH), (in_channels, MAX_IN_CHANNELS))):
            raise UserError(f"{path}: the checkpoint declares width {width!r} and {in_channels!r} input channel(s): "
                            f"expected whole numbers in 1-{MAX_WIDTH} and 1-{MAX_IN_CHANNELS}")
        settings = self._declared_settings(path, declared.get("settings") or {})
        try:
            backbone = type(self)(**settings)
        except (ValueError, TypeError) as error:  # a value the backbone refuses, as on the command line
            raise UserError(f"{path}: the checkpoint's backbone settings {settings!r}: {error}") from error
        with torch.device("meta"):  # shapes only: nothing allocated, whatever the file declares
            reference = backbone.build_segmenter(in_channels, in_channels, width).state_dict()
        expected = [k for k in reference if k.startswith("encoder.") or (
            transfers == "encoder+decoder" and k.startswith("decoder.") and not k.startswith(self.output_layer + "."))]
        fresh = self.output_layer + "."  # never transferred: any number of outputs
        check_state(path, state, reference, expected, f"backbone '{self.name}' {settings} (width {width}, "
                    f"{in_channels} input channel(s), {transfers})", lambda key, *_: key.startswith(fresh))
        check_finite(path, state)
        method, scans = content.get("method"), content.get("pool_scans")
        if method is not None and not isinstance(method, str):
            raise UserError(f"{path}: the checkpoint's 'method' is {method!r}, not a method's name")
        if scans is not None and not (isinstance(scans, list) and all(isinstance(scan, str) for scan in scans)):
            raise UserError(f"{path}: the checkpoint's 'pool_scans' is not a list of scan ids")
        return PretrainedWeights(dict(state), transfers, width, in_channels, "benchmark-checkpoint",
                                 file_fingerprint(path), str(path), settings=settings, method=method,
                                 pool_scans=None if scans is None else tuple(scans))

    def _declared_settings(self, path: Path, settings: Any) -> dict[str, Any]:
        """A checkpoint's backbone settings, each a known setting of the type of its default."""
        defaults = plugin_settings.defaults(type(self))
        if not isinstance(settings, dict) or any(key not in defaults or type(value) is not type(defaults[key])
                                                 for key, value in settings.items()):
            raise UserError(f"{path}: the checkpoint's backbone settings {settings!r} are not settings of "
                            f"'{self.name}' ({', '.join(f'{k}: {type(v).__name__}' for k, v in defaults.items())})")
        return settings

    def check_cube(self, cube: tuple[int, ...], what: str) -> None:
        """A UserError when ``cube`` (spatial sides) does not fit the backbone; a 2D backbone checks the
        last two sides (Y, X), those of the slices it sees."""
        bad = [side for side in tuple(cube)[-self.spatial_dims:] if side < self.min_size or side % self.size_multiple]
        if bad:
            raise UserError(f"{what} {tuple(cube)}: backbone '{self.name}' needs every side a multiple of "
                            f"{self.size_multiple} and at least {self.min_size}")

    def parameter_counts(self, width: int = 32) -> dict[str, int]:
        """Parameters of the encoder, the classification target and the segmentation target (one input
        channel, one output) at ``width``."""
        in_channels, outputs = PARAMETER_PROBE
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            return {"encoder": count_parameters(self.build_encoder(in_channels, width)),
                    "classifier": count_parameters(self.build_classifier(in_channels, outputs, width)),
                    "segmenter": count_parameters(self.build_segmenter(in_channels, outputs, width))}

    def settings(self) -> dict[str, Any]:
        """The values of the backbone's settings (its constructor's keyword arguments)."""
        return current_values(self)

    def identity(self) -> dict[str, Any]:
        """What of the backbone determines weights: its name, settings, plugin source and the model layer
        its networks are built from (shared modules such as ``benchmark.model.decoders``)."""
        return {"name": self.name, "settings": self.settings(), "code": source_fingerprint(type(self)),
                "model_code": code_fingerprint(("model",))}


class VolumeAdapted(Backbone):
    """A 2D backbone as the 3D tasks see it: its targets behind a ``dims`` adapter
    (``benchmark.model.dims``), with three times the task's input channels in 2.5D. Everything else,
    the key layout included, is the 2D backbone's."""

    def __init__(self, inner: Backbone, dims: str) -> None:  # not a plugin: built by ``for_volumes``
        self.inner, self.dims, self.factor = inner, dims, CHANNEL_FACTOR[dims]
        for attribute in ("name", "description", "stages", "stem", "first_conv", "output_layer", "size_multiple",
                          "min_size", "spatial_dims", "published", "weights_source"):
            setattr(self, attribute, getattr(inner, attribute))

    def build_encoder(self, in_channels: int, width: int) -> nn.Module:
        return self.inner.build_encoder(in_channels * self.factor, width)

    def build_classifier(self, in_channels: int, n_outputs: int, width: int) -> nn.Module:
        model = self.inner.build_classifier(in_channels * self.factor, n_outputs, width)
        return adapt_to_volumes(model, "classification", self.dims)

    def build_segmenter(self, in_channels: int, out_channels: int, width: int) -> nn.Module:
        model = self.inner.build_segmenter(in_channels * self.factor, out_channels, width)
        return adapt_to_volumes(model, "segmentation", self.dims)

    def read_weights(self, path: Path) -> PretrainedWeights:
        return self.inner.read_weights(path)

    def check_cube(self, cube: tuple[int, ...], what: str) -> None:
        self.inner.check_cube(cube, what)

    def settings(self) -> dict[str, Any]:
        return self.inner.settings()

    def identity(self) -> dict[str, Any]:
        return {**self.inner.identity(), "dims": self.dims}


def for_volumes(backbone: Backbone, dims: str) -> Backbone:
    """The backbone the tasks build their targets from under ``dims`` (2d, 2.5d, 3d): a 3D backbone
    itself under 3d, a 2D one behind its adapter under 2d or 2.5d; any other pairing is a UserError."""
    if dims not in DIMS:
        raise UserError(f"--dims {dims}: expected one of {', '.join(DIMS)}")
    if (dims == "3d") != (backbone.spatial_dims == 3):
        raise UserError(f"--dims {dims}: backbone '{backbone.name}' is a {backbone.spatial_dims}D network "
                        f"({'3d' if backbone.spatial_dims == 3 else '2d or 2.5d'} only)")
    return backbone if dims == "3d" else VolumeAdapted(backbone, dims)


def default_dims(backbone: Backbone) -> str:
    return "3d" if backbone.spatial_dims == 3 else "2d"
