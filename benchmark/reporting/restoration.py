"""Restoration pictures: what a restoration method's pretrained U-Net does to one cube.

A method counts as a restoration method when its pretext model is the plain U-Net (or a
subclass), its ``make_example`` target has the input's shape, and its checkpoint hands over
the encoder and the decoder. The report needs no method names: it draws one cube from the
pretraining pool's validation scans, corrupts it with the method's own ``make_example``,
restores it with the checkpoint's weights and shows the central slice.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from benchmark.api.backbone import DEFAULT_BACKBONE, Backbone
from benchmark.api.method import Method
from benchmark.api.registry import BACKBONES, METHODS
from benchmark.data import files
from benchmark.data.pool import PRETRAIN_VAL_SUBSETS, load_pool
from benchmark.engine import store
from benchmark.engine.pretrain import load_checkpoint
from benchmark.errors import UserError
from benchmark.names import check_name

PICTURE_SEED = 0


class NotRestoration(Exception):
    """The checkpoint's method has a pretext task other than restoring its input."""


def checkpoint_backbone(checkpoint: dict) -> Backbone:
    """The backbone a checkpoint was pretrained on (checkpoints before backbones: the default one)."""
    declared = checkpoint["backbone"]
    return BACKBONES.create(declared.get("name", DEFAULT_BACKBONE), **(declared.get("settings") or {}))


def has_pretext_task(method: Method) -> bool:
    """Whether ``method`` pretrains on the unlabeled pool (released weights and supervised pretraining do not)."""
    return not method.weights_required and method.source_task() is None


def recorded_method_has_pretext_task(name: str, settings: dict) -> bool | None:
    """``has_pretext_task`` for a run record's method and settings; None when they make no registered method."""
    try:
        return has_pretext_task(METHODS.create(name, **settings))
    except (KeyError, TypeError, ValueError, UserError):
        return None


def is_restoration_method(method: Method, cubes: np.ndarray, width: int, backbone: Backbone) -> bool:
    """Whether ``method`` pretrains a whole encoder-decoder on ``backbone`` to give back ``cubes`` (a batch of
    3D cubes, or 2D images for a 2D backbone) shaped like its input (released weights and supervised
    pretraining have no pretext task: never)."""
    if not has_pretext_task(method) or method.transfers != "encoder+decoder" or backbone.spatial_dims != cubes.ndim - 2:
        return False
    pretext = method.build_pretext_model(backbone, int(cubes.shape[1]), width)
    if not hasattr(pretext, "decoder"):
        return False
    inputs, targets = method.make_example(cubes, np.random.default_rng(PICTURE_SEED))
    return tuple(inputs.shape) == tuple(targets.shape) == tuple(cubes.shape)


def restores_its_input(method: Method, checkpoint: dict, cubes: np.ndarray) -> bool:
    """``is_restoration_method`` for the method of ``checkpoint``, whose weights must be the whole network."""
    return checkpoint.get("transfers") == "encoder+decoder" and \
        is_restoration_method(method, cubes, checkpoint["backbone"]["width"], checkpoint_backbone(checkpoint))


def restoration_model(checkpoint: dict, source: str) -> torch.nn.Module:
    """The whole pretrained encoder-decoder of a restoration checkpoint, in eval mode."""
    declared = checkpoint["backbone"]
    model = checkpoint_backbone(checkpoint).build_segmenter(declared["in_channels"], declared["in_channels"],
                                                            declared["width"])
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise UserError(f"{source}: the weights are not a whole encoder-decoder "
                        f"({str(error).splitlines()[0]})") from error
    return model.eval()


def restoration_panels(results: Path, checkpoint_id: str) -> dict[str, np.ndarray]:
    """Central (z) slices of original, transformed, restored and |restored - original| for one checkpoint.

    Raises NotRestoration for other pretext tasks and UserError when something needed is missing.
    """
    folder = store.checkpoint_dir(results, check_name(checkpoint_id, "checkpoint id"))
    meta = files.read_json(folder / "meta.json")
    identity = meta["identity"]
    method = METHODS.create(identity["method"], **identity["settings"])  # the settings it was pretrained with
    if json.loads(json.dumps(method.settings(), default=str)) != identity["settings"]:
        raise UserError(f"{folder}: pretrained with settings {identity['settings']} that differ from "
                        f"{method.name}'s current ones {method.settings()}")
    pool_root = Path(meta["pool"]["root"])
    if not pool_root.is_dir():
        raise UserError(f"{folder}: its pretraining data {pool_root} is not there any more")
    cubes = load_pool(pool_root, tuple(identity["profile"]["cube"]), PRETRAIN_VAL_SUBSETS, 1, identity["seed"])[:1]
    checkpoint = load_checkpoint(folder / store.CHECKPOINT_FILE)
    if not restores_its_input(method, checkpoint, cubes):
        raise NotRestoration(f"{method.name}: its pretext task is not the restoration of its input")
    inputs, targets = method.make_example(cubes, np.random.default_rng(PICTURE_SEED))
    model = restoration_model(checkpoint, str(folder))
    with torch.no_grad():
        restored = torch.sigmoid(model(inputs)).numpy()
    middle = cubes.shape[2] // 2
    original, transformed, output = (array[0, 0, middle] for array in (targets.numpy(), inputs.numpy(), restored))
    return {"original": original, "transformed": transformed, "restored": output,
            "|restored - original|": np.abs(output - original)}
