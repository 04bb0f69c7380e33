"""Load a user-supplied pretrained weights file into the backbone's key layout.

``load_pretrained_weights(path)`` accepts:

* ``released-genesis``: the released Models Genesis PyTorch checkpoint
  (``Genesis_Chest_CT.pt``), a dict ``{'epoch', 'state_dict', 'optimizer_state_dict'}``
  saved from ``nn.DataParallel`` (every key prefixed ``module.``) with the reference
  code's bare module names (``down_tr64.ops.0.conv1.weight``, ``up_tr256.up_conv.weight``,
  ``out_tr.final_conv.bias``; 106 entries). ``epoch`` and the optimiser state are ignored.
* ``state-dict``: a plain state dict saved with ``torch.save``, with the bare names (with
  or without ``module.``) or already in this project's ``encoder.``/``decoder.`` layout.
* ``safetensors``: a ``.safetensors`` file with either naming.
* ``benchmark-checkpoint``: a checkpoint written by this project (``benchmark.pretrain``).

Bare names map onto ``UNet3D``: ``down_tr*`` -> ``encoder.down_tr*``, ``up_tr*`` and
``out_tr`` -> ``decoder.*``. Torch files are only ever loaded with
``torch.load(path, map_location="cpu", weights_only=True)``: a file holding pickled
Python objects other than tensors and containers is refused, never unpickled.

The width and the input channels are read off ``down_tr64.ops.0.conv1.weight``
(``(width, in_channels, 3, 3, 3)``); the weights are then checked against a freshly built
``UNet3D(in_channels, 1, width)``. The file transfers ``encoder+decoder`` when it holds
the decoder's weights, ``encoder`` when it holds only the encoder's. Any missing,
unexpected or mis-shaped key is a ``UserError`` naming the file and the keys: never a
silent fallback to random weights. So is a weight holding a NaN or an infinity, or a BatchNorm
variance below 0 (the first one is named, by the file's key). The output convolution (``decoder.out_tr.*``) may have
any number of output channels (it is never transferred); missing BatchNorm
``num_batches_tracked`` counters (files from PyTorch < 0.4.1) are filled with 0.

Axis order *(our reading)*: the released weights were trained on cubes laid out
``(N, C, X, Y, Z)`` = ``(..., 64, 64, 32)`` (the reference data generator transposes the
SimpleITK array), while this project feeds ``(N, C, Z, Y, X)`` = ``(..., 32, 64, 64)``
(SimpleITK order). The architecture notes state the released axis convention only
implicitly (through the 64x64x32 input size); the layout above is our reading of the
reference code. With ``reorder_kernels`` (by default: for a file with the reference code's
bare names, in any container: a ``torch.save`` dict, under ``'state_dict'`` or safetensors; only
the reference code names its modules so) every convolution and transposed-convolution kernel
has its three spatial dimensions permuted from ``(x, y, z)`` to ``(z, y, x)``
(``weight.permute(0, 1, 4, 3, 2)``), so that a learned filter sees anatomy in the orientation it
was trained on. Weights trained by this project, or any file already in ``(z, y, x)`` order
(keys ``encoder.``/``decoder.``), must not be reordered; a file mixing the two namings is refused.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import UserError
from benchmark.model.backbone import UNet3D

UNET_NAME = "unet3d"  # the backbone name a checkpoint of this model carries
FIRST_CONV = "encoder.down_tr64.ops.0.conv1.weight"
OUTPUT_CONV = "decoder.out_tr."
ENCODER_STAGES = ("down_tr",)
DECODER_STAGES = ("up_tr", "out_tr")
MAX_WIDTH = 1024  # the widest network a file may describe (32 is the published width)
MAX_IN_CHANNELS = 64
SHOWN_KEYS = 4  # keys named in an error message before "... (N in all)"
FLOAT_TYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INTEGER_TYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def file_fingerprint(path: Path) -> str:
    """The first 16 hex digits of the SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _is_safetensors(path: Path) -> bool:
    """By suffix, or by content: an 8-byte little-endian header length, then a JSON object."""
    if path.suffix == ".safetensors":
        return True
    with path.open("rb") as handle:
        head = handle.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_zip_checksums(path: Path) -> None:
    """``torch.save`` writes a zip archive whose members carry CRC-32 checksums, which ``torch.load``
    does not check: a damaged byte inside a tensor loads as a wrong weight, silently. UserError naming
    the file and the first damaged member; a file that is not a zip archive (torch's legacy format)
    passes unchecked."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, NotImplementedError, ValueError) as error:
        raise UserError(f"{path}: damaged archive ({error})") from error
    if damaged is not None:
        raise UserError(f"{path}: damaged: its member {damaged!r} fails its CRC-32 check")


def read_weights_file(path: Path) -> tuple[Any, bool]:
    """The file's content and whether it is a safetensors file; torch files only with
    ``weights_only=True``. Anything unreadable is a one-line UserError naming the file."""
    if not path.is_file():
        raise UserError(f"{path}: {'is a folder, not a weights file' if path.is_dir() else 'no such weights file'}")
    if _is_safetensors(path):
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu"), True
        except Exception as error:  # safetensors raises its own error type for corrupt files
            raise UserError(f"{path}: not a readable safetensors file ({_first_line(error)})") from error
    check_zip_checksums(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True), False
    except pickle.UnpicklingError as error:
        if "unsupported global" in str(error).lower():  # torch's weights-only unpickler met a class or function
            raise UserError(
                f"{path}: refused: it holds pickled Python objects other than tensors, which are never unpickled "
                f"(torch.load weights_only=True); save a plain state dict or a .safetensors file instead"
            ) from error
        raise UserError(f"{path}: not a readable torch file (truncated, or another format)") from error
    except Exception as error:  # torch raises several types for files that are not torch files or are corrupt
        raise UserError(f"{path}: not a readable torch or safetensors weights file ({_first_line(error)})") from error


def tensor_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def released_state_dict(path: Path, content: Any, what: str) -> dict[str, torch.Tensor]:
    """The state dict of a released file's content: a bare state dict or one under ``'state_dict'``
    (MedicalNet's and the Genesis release's wrapper); a UserError naming ``what`` the file should be."""
    if isinstance(content, dict) and "state_dict" in content:
        content = content["state_dict"]
    if not tensor_dict(content):
        raise UserError(f"{path}: not {what} weights file: expected a state dict of named tensors "
                        "(or a dict with one under 'state_dict')")
    return content


def module_prefix(path: Path, state: dict[str, torch.Tensor], first_key: str, what: str) -> str:
    """``module.`` (a file saved from ``nn.DataParallel``) or "", told by the first convolution's key."""
    for prefix in ("module.", ""):
        if prefix + first_key in state:
            return prefix
    raise UserError(f"{path}: not {what}: no stem convolution (module.{first_key} or {first_key})")


def _classify(path: Path, content: Any, safetensors: bool) -> tuple[str, dict[str, torch.Tensor], dict[str, Any]]:
    """(format, raw state dict, the checkpoint wrapper or {})."""
    if safetensors:
        return "safetensors", content, {}
    if tensor_dict(content):
        return "state-dict", content, {}
    if isinstance(content, dict) and "state_dict" in content:
        state = content["state_dict"]
        if not tensor_dict(state):
            raise UserError(f"{path}: its 'state_dict' is not a dict of named tensors")
        if "format" in content and "backbone" in content:  # benchmark.engine.pretrain.load_checkpoint's format
            if not isinstance(content["backbone"], dict):
                raise UserError(f"{path}: the checkpoint's 'backbone' is not a description of a backbone")
            return "benchmark-checkpoint", state, content
        if reference_layout(path, state):
            return "released-genesis", state, content
        return "state-dict", state, content
    raise UserError(f"{path}: not a weights file: expected a state dict of tensors or a checkpoint dict "
                    f"with a 'state_dict' (found {type(content).__name__})")


def reference_layout(path: Path, state: dict[str, torch.Tensor]) -> bool:
    """Whether the keys are the reference code's bare stage names (``down_tr*``, ``up_tr*``, ``out_tr``,
    with or without ``module.``), whose kernels are laid out (x, y, z), rather than this suite's
    ``encoder.``/``decoder.`` names, whose kernels are (z, y, x): the layout decides, not the container.
    A UserError for a file that mixes the two (its kernels' axis order cannot be told)."""
    ours = {key.removeprefix("module.").startswith(("encoder.", "decoder.")) for key in state}
    if len(ours) > 1:
        raise UserError(f"{path}: mixes the reference code's bare names (down_tr*, up_tr*, out_tr) with this "
                        "suite's encoder./decoder. names: their kernels' axis order cannot be told")
    return ours == {False}


def _project_key(key: str) -> str | None:
    """The UNet3D key of a file's key (``module.`` stripped, bare stage names placed); None if unknown."""
    if key.startswith("module."):
        key = key[len("module."):]
    if key.startswith(("encoder.", "decoder.")):
        return key
    if key.startswith(ENCODER_STAGES):
        return f"encoder.{key}"
    if key.startswith(DECODER_STAGES):
        return f"decoder.{key}"
    return None


def listing(keys: list[str]) -> str:
    named = ", ".join(shown(key) for key in keys[:SHOWN_KEYS])
    return named + (f", ... ({len(keys)} in all)" if len(keys) > SHOWN_KEYS else "")


def _output_conv_fits(key: str, shape: torch.Size, expected: torch.Size) -> bool:
    """The output convolution may have any number of output channels."""
    return key.startswith(OUTPUT_CONV) and len(shape) == len(expected) and tuple(shape[1:]) == tuple(expected[1:])


def _validate(path: Path, state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str, int, int]:
    """Check ``state`` (project keys) against a fresh UNet3D; return (state, transfers, width, in_channels)."""
    first = state.get(FIRST_CONV)
    if first is None or first.ndim != 5:
        found = "missing" if first is None else f"shaped {tuple(first.shape)}"
        raise UserError(f"{path}: cannot infer the backbone: the first convolution "
                        f"({FIRST_CONV.removeprefix('encoder.')}) is {found}")
    width, in_channels = int(first.shape[0]), int(first.shape[1])
    if not (1 <= width <= MAX_WIDTH and 1 <= in_channels <= MAX_IN_CHANNELS):
        raise UserError(f"{path}: the first convolution reads as width {width} and {in_channels} input channel(s), "
                        f"outside 1-{MAX_WIDTH} and 1-{MAX_IN_CHANNELS}")
    with torch.device("meta"):  # shapes only: a hostile width allocates nothing
        reference = UNet3D(in_channels=in_channels, out_channels=1, width=width).state_dict()
    has_decoder = any(k.startswith("decoder.") and not k.startswith(OUTPUT_CONV) for k in state)
    transfers = "encoder+decoder" if has_decoder else "encoder"
    expected = [k for k in reference if k.startswith("encoder.")
                or (has_decoder and k.startswith("decoder.") and not k.startswith(OUTPUT_CONV))]
    state = dict(state)
    for key in expected:  # BatchNorm step counters are absent from pre-0.4.1 files and never used
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros((), dtype=torch.long)
    check_state(path, state, reference, expected,
                f"the backbone (width {width}, {in_channels} input channel(s), {transfers})", _output_conv_fits)
    return state, transfers, width, in_channels


def check_state(path: Path, state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor],
                expected: list[str], what: str,
                shape_fits: Callable[[str, torch.Size, torch.Size], bool] = lambda key, shape, wanted: False) -> None:
    """A UserError naming ``path``, ``what`` it should match and every problem: keys of ``expected``
    missing from ``state``, keys of ``state`` not in ``reference``, shapes that differ from the
    reference's (unless ``shape_fits`` accepts them). Strict: nothing is silently skipped."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in reference]
    misshaped = [f"{shown(k)} {tuple(v.shape)} vs {tuple(reference[k].shape)}" for k, v in state.items()
                 if k in reference and v.shape != reference[k].shape and not shape_fits(k, v.shape, reference[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {listing(unexpected)}")
    if misshaped:
        problems.append(f"{len(misshaped)} mis-shaped key(s) (file vs model): {listing(misshaped)}")
    if problems:
        raise UserError(f"{path}: does not match {what}: " + "; ".join(problems))


def check_finite(path: Path, raw: dict[str, torch.Tensor]) -> None:
    """A UserError naming the first weight of the file (by its own key) that is not a dense CPU tensor of a
    floating-point type with finite values, or a BatchNorm variance (``running_var``) with a negative value;
    batch-norm step counters (``num_batches_tracked``) must be integer scalars."""
    for key, tensor in raw.items():
        where = f"{path}: the weight {shown(key)}"
        if tensor.layout != torch.strided or tensor.device.type != "cpu":
            raise UserError(f"{where} is not a dense tensor in memory ({tensor.layout}, {tensor.device.type})")
        if key.endswith("num_batches_tracked"):
            if tensor.dtype not in INTEGER_TYPES or tensor.numel() != 1:
                raise UserError(f"{where} is not an integer step counter ({tensor.dtype}, shape {tuple(tensor.shape)})")
            continue
        if tensor.dtype not in FLOAT_TYPES:
            raise UserError(f"{where} is of type {tensor.dtype}, not a floating-point weight")
        if not bool(torch.isfinite(tensor).all()):
            raise UserError(f"{where} holds non-finite values (NaN or infinity)")
        if key.endswith("running_var") and bool((tensor < 0).any()):
            raise UserError(f"{where} (a BatchNorm variance) holds negative values")


def shown(key: str) -> str:
    """A key as an error message shows it: as it is when printable, else escaped (one line, always)."""
    return key if key.isprintable() else ascii(key)


def reorder_kernel(weight: torch.Tensor) -> torch.Tensor:
    """A 3D (transposed-)convolution kernel with spatial dims ``(x, y, z)`` -> ``(z, y, x)``."""
    return weight.permute(0, 1, 4, 3, 2).contiguous()


def load_pretrained_weights(path: Path | str, reorder_kernels: bool | None = None) -> dict[str, Any]:
    """Load a weights file (see the module docstring) into UNet3D keys.

    Returns ``{"state_dict", "transfers", "width", "in_channels", "format", "fingerprint",
    "kernels_reordered", "path"}``; ``fingerprint`` is the first 16 hex digits of the file's
    SHA-256. ``reorder_kernels`` (None: True for the reference code's bare names) permutes every
    5-D kernel from ``(x, y, z)`` to ``(z, y, x)``. Raises ``UserError`` for anything it
    cannot load or that does not match the backbone.
    """
    path = Path(path)
    content, safetensors = read_weights_file(path)
    return unet_weights(path, content, safetensors, reorder_kernels)


def unet_weights(path: Path, content: Any, safetensors: bool, reorder_kernels: bool | None = None) -> dict[str, Any]:
    """``load_pretrained_weights`` of a file already read (``read_weights_file``)."""
    fingerprint = file_fingerprint(path)
    fmt, raw, wrapper = _classify(path, content, safetensors)
    declared = wrapper.get("backbone")
    if isinstance(declared, dict) and declared.get("name", UNET_NAME) != UNET_NAME:
        raise UserError(f"{path}: a checkpoint of backbone '{declared.get('name')}', not '{UNET_NAME}' "
                        "(choose it with --backbone)")

    state: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in raw.items():
        target = _project_key(key)
        if target is None:
            unknown.append(key)
        elif target in state:
            raise UserError(f"{path}: two entries map onto the same weight {target} (e.g. {key})")
        else:
            state[target] = tensor
    if unknown:
        raise UserError(f"{path}: {len(unknown)} unexpected key(s) that belong to no backbone stage: "
                        f"{listing(unknown)}")
    state, transfers, width, in_channels = _validate(path, state)
    check_finite(path, raw)
    if fmt == "benchmark-checkpoint":
        declared = wrapper.get("transfers")
        if declared not in ("encoder", "encoder+decoder"):
            raise UserError(f"{path}: the checkpoint transfers {declared!r}: nothing to load")
        if declared == "encoder+decoder" and transfers == "encoder":
            raise UserError(f"{path}: the checkpoint declares encoder+decoder but holds no decoder weights")
        transfers = declared  # a checkpoint may carry a decoder it does not transfer
        backbone = wrapper.get("backbone") or {}
        if (backbone.get("width"), backbone.get("in_channels")) not in ((width, in_channels), (None, None)):
            raise UserError(f"{path}: the checkpoint declares width {backbone.get('width')} and "
                            f"{backbone.get('in_channels')} input channel(s) but its weights have {width} and "
                            f"{in_channels}")

    reorder = reference_layout(path, raw) if reorder_kernels is None else bool(reorder_kernels)
    if reorder:
        state = {k: reorder_kernel(v) if k.endswith(".weight") and v.ndim == 5 else v for k, v in state.items()}
    return {"state_dict": state, "transfers": transfers, "width": width, "in_channels": in_channels,
            "format": fmt, "fingerprint": fingerprint, "kernels_reordered": reorder, "path": str(path)}
