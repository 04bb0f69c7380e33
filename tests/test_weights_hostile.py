"""Weight files made to hurt: sizes that would allocate gigabytes, descriptions of the wrong type, weights
of odd types, keys with line breaks, a project layout in the released wrapper. Each is a one-line error
naming the file (or, for a layout that is fine, read as what it is) and allocates nothing large."""

from __future__ import annotations

import pytest
import torch

from benchmark.api.registry import BACKBONES
from benchmark.engine.pretrain import CHECKPOINT_FORMAT, save_checkpoint
from benchmark.errors import UserError
from benchmark.model.backbone import UNet3D
from benchmark.model.weights import load_pretrained_weights


def one_line(call, *fragments: str) -> str:
    with pytest.raises(UserError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and all(fragment in message for fragment in fragments), message
    return message


def suite_checkpoint(path, backbone: dict, state: dict | None = None) -> None:
    state = state if state is not None else UNet3D(width=2).encoder.state_dict()
    save_checkpoint({"format": CHECKPOINT_FORMAT, "method": "genesis", "transfers": "encoder", "backbone": backbone,
                     "state_dict": {f"encoder.{k}": v for k, v in state.items()}, "extras": {}}, path)


@pytest.mark.parametrize("backbone", [
    {"name": "unet3d", "width": 100_000, "in_channels": 1},
    {"name": "unet3d", "width": -3, "in_channels": 1},
    {"name": "unet3d", "width": 2.0, "in_channels": 1},
    {"name": "unet3d", "width": 2, "in_channels": True},
    {"name": "unet3d", "width": 2, "in_channels": 1, "settings": {"transposed": "false"}},
    {"name": "unet3d", "width": 2, "in_channels": 1, "settings": {"depth": 50}},
    {"name": "unet3d", "width": 2, "in_channels": 1, "settings": ["transposed"]},
])
def test_a_checkpoint_describing_an_impossible_backbone_is_refused(tmp_path, backbone: dict) -> None:
    path = tmp_path / "checkpoint.pt"
    suite_checkpoint(path, backbone)
    one_line(lambda: BACKBONES.create("unet3d").read_weights(path), str(path))


@pytest.mark.parametrize("settings", [{"depth": 7}, {"shortcut": "Z"}])
def test_a_checkpoint_declaring_a_setting_value_its_backbone_refuses_is_one_line(tmp_path, settings: dict) -> None:
    path = tmp_path / "checkpoint.pt"
    suite_checkpoint(path, {"name": "resnet3d", "width": 2, "in_channels": 1, "settings": settings})
    one_line(lambda: BACKBONES.create("resnet3d").read_weights(path), str(path), "backbone settings")


def test_a_checkpoint_whose_backbone_is_not_a_description_is_refused(tmp_path) -> None:
    path = tmp_path / "checkpoint.pt"
    suite_checkpoint(path, "resnet3d")  # type: ignore[arg-type]
    one_line(lambda: BACKBONES.create("unet3d").read_weights(path), str(path), "backbone")
    one_line(lambda: load_pretrained_weights(path), str(path), "backbone")


def test_a_huge_first_convolution_builds_nothing(tmp_path) -> None:
    path = tmp_path / "huge.pt"
    torch.save({"down_tr64.ops.0.conv1.weight": torch.zeros(4096, 1, 1, 1, 1)}, path)
    one_line(lambda: load_pretrained_weights(path), str(path), "width 4096")


def test_a_transposed_false_checkpoint_is_read_with_its_settings(tmp_path) -> None:
    model = UNet3D(width=2, transposed=False)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"format": CHECKPOINT_FORMAT, "method": "genesis", "transfers": "encoder+decoder",
                     "backbone": {"name": "unet3d", "settings": {"transposed": False}, "width": 2, "in_channels": 1},
                     "state_dict": model.state_dict(), "extras": {}}, path)
    weights = BACKBONES.create("unet3d", transposed=False).read_weights(path)
    assert weights.settings == {"transposed": False} and weights.transfers == "encoder+decoder"


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_weights_that_are_not_floating_point_are_refused(tmp_path, dtype: torch.dtype) -> None:
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in UNet3D(width=2).state_dict().items()}
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    one_line(lambda: load_pretrained_weights(path), str(path), str(dtype))


def test_a_key_with_a_line_break_is_named_on_one_line(tmp_path) -> None:
    state = UNet3D(width=2).state_dict()
    state["down_tr64.ops.0.bn1.extra\nsecond line"] = torch.zeros(1)
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    one_line(lambda: load_pretrained_weights(path), str(path), "second line")


def test_the_project_layout_in_a_state_dict_wrapper_is_not_reordered(tmp_path) -> None:
    model = UNet3D(width=2)
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, path)
    loaded = load_pretrained_weights(path)
    assert (loaded["format"], loaded["kernels_reordered"]) == ("state-dict", False)
    key = "encoder.down_tr64.ops.0.conv1.weight"
    assert torch.equal(loaded["state_dict"][key], model.state_dict()[key])


def test_i3d_refuses_a_weight_given_twice(tmp_path) -> None:
    encoder = BACKBONES.create("i3d").build_encoder(3, 2)
    state = {k: v for k, v in encoder.state_dict().items()}
    doubled = {**state, **{f"module.{k}": v for k, v in state.items()}}
    path = tmp_path / "rgb.pt"
    torch.save(doubled, path)
    one_line(lambda: BACKBONES.create("i3d").read_weights(path), str(path), "same weight")
