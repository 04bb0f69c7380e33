"""The I3D backbone: published layout and parameter counts, forward shapes at small cubes, and the
released files of the PyTorch port (written here with random tensors in the port's key layout)."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file
from torch.nn import functional

from benchmark.api.registry import BACKBONES, METHODS
from benchmark.errors import UserError
from benchmark.model.backbone import count_parameters
from benchmark.model.transfer import transfer_weights

# The published network, as listed by the paper and the port: (name, input channels, output channels,
# kernel) of the plain units, and the branch widths b0, b1a, b1b, b2a, b2b, b3b of the Inception modules.
UNITS = [("Conv3d_1a_7x7", 3, 64, 7), ("Conv3d_2b_1x1", 64, 64, 1), ("Conv3d_2c_3x3", 64, 192, 3)]
MIXED = [("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)), ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
         ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)), ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
         ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)), ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
         ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)), ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
         ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128))]
KINETICS_CLASSES = 400
CUBE = (16, 32, 32)  # the smoke and quick profiles' cube


def published_units(width: int = 32, in_channels: int = 3) -> list[tuple[str, int, int, int]]:
    """Every convolution unit of the port (name, in, out, kernel), channels scaled to ``width``."""
    def s(c: int) -> int:
        return max(1, c * width // 32)

    units = [(name, s(cin) if name != "Conv3d_1a_7x7" else in_channels, s(cout), k) for name, cin, cout, k in UNITS]
    for name, cin, (c0, c1a, c1b, c2a, c2b, c3b) in MIXED:
        units += [(f"{name}.b0", s(cin), s(c0), 1), (f"{name}.b1a", s(cin), s(c1a), 1),
                  (f"{name}.b1b", s(c1a), s(c1b), 3), (f"{name}.b2a", s(cin), s(c2a), 1),
                  (f"{name}.b2b", s(c2a), s(c2b), 3), (f"{name}.b3b", s(cin), s(c3b), 1)]
    return units


def port_state(width: int = 32, classes: int = KINETICS_CLASSES, counters: bool = False,
               in_channels: int = 3) -> dict[str, torch.Tensor]:
    """A state dict in the port's layout with random (plausible) values; ``counters``: with BatchNorm
    ``num_batches_tracked`` (absent from files saved by PyTorch 0.3)."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for name, cin, cout, k in published_units(width, in_channels):
        state[f"{name}.conv3d.weight"] = torch.randn(cout, cin, k, k, k, generator=generator) * math.sqrt(
            2 / (cin * k ** 3))
        state[f"{name}.bn.weight"] = 1 + 0.1 * torch.randn(cout, generator=generator)
        state[f"{name}.bn.bias"] = 0.1 * torch.randn(cout, generator=generator)
        state[f"{name}.bn.running_mean"] = 0.1 * torch.randn(cout, generator=generator)
        state[f"{name}.bn.running_var"] = 0.5 + torch.rand(cout, generator=generator)
        if counters:
            state[f"{name}.bn.num_batches_tracked"] = torch.tensor(1000)
    state["logits.conv3d.weight"] = 0.01 * torch.randn(classes, 32 * width, 1, 1, 1, generator=generator)
    state["logits.conv3d.bias"] = torch.zeros(classes)
    return state


@pytest.fixture(scope="module")
def released():
    """The full-size rgb_imagenet.pt layout (as saved by PyTorch 0.3: no step counters)."""
    return port_state()


@pytest.fixture
def backbone():
    return BACKBONES.create("i3d")


def test_encoder_has_the_published_units_and_parameter_counts(backbone):
    with torch.device("meta"):
        rgb, flow = backbone.build_encoder(3, 32), backbone.build_encoder(2, 32)
    expected = {f"{name}.conv3d.weight": (cout, cin, k, k, k) for name, cin, cout, k in published_units()}
    convs = {k: tuple(v.shape) for k, v in rgb.state_dict().items() if k.endswith(".conv3d.weight")}
    assert convs == expected
    assert not any(k.endswith(".conv3d.bias") for k in rgb.state_dict())  # convolutions followed by BatchNorm
    assert rgb.out_channels == 1024 and rgb.Conv3d_1a_7x7.bn.eps == 0.001
    logits = 1024 * KINETICS_CLASSES + KINETICS_CLASSES
    batchnorm_scales = sum(cout for _, _, cout, _ in published_units())
    assert count_parameters(rgb) == 12_287_264  # Conv3d_1a_7x7 ... Mixed_5c, RGB input
    assert count_parameters(rgb) + logits == 12_697_264  # the port's whole RGB I3D
    # Two-Stream I3D (RGB + optical flow, each with its logits): the 25.35 M quoted for I3D, not one encoder.
    assert count_parameters(rgb) + count_parameters(flow) + 2 * logits == 25_372_576
    assert count_parameters(rgb) + count_parameters(flow) + 2 * logits - 2 * batchnorm_scales == 25_358_016
    assert backbone.parameter_counts(32)["encoder"] == 12_243_360  # one input channel, as the suite reads it


def test_stages_are_the_encoder_units_with_weights_in_order(backbone):
    encoder = backbone.build_encoder(1, 2)
    weighted = [name for name, module in encoder.named_children() if any(True for _ in module.parameters())]
    assert list(backbone.stages) == weighted == [name for name, _, _, _ in UNITS] + [name for name, _, _ in MIXED]


def test_classifier_and_segmenter_run_forward_and_backward_on_the_smoke_cube(backbone, width=4):
    x = torch.rand(2, 1, *CUBE)
    segmenter = backbone.build_segmenter(1, 3, width)
    skips, bottleneck = segmenter.encoder(x)
    assert [tuple(s.shape[2:]) for s in skips] == [(8, 16, 16), (8, 8, 8), (8, 4, 4), (4, 2, 2)]
    assert tuple(bottleneck.shape) == (2, segmenter.encoder.out_channels, 2, 1, 1)
    output = segmenter(x)
    assert output.shape == (2, 3, *CUBE)
    output.mean().backward()
    assert all(p.grad is not None for p in segmenter.parameters())
    assert segmenter.get_submodule(backbone.output_layer).out_channels == 3
    classifier = backbone.build_classifier(1, 5, width)
    logits = classifier(x)
    assert logits.shape == (2, 5)
    logits.sum().backward()


@pytest.mark.parametrize("cube", [(16, 16, 16), (17, 19, 23), (24, 40, 16)])
def test_any_cube_the_backbone_accepts_trains_on_one_cube_and_gives_logits_at_its_size(backbone, cube):
    backbone.check_cube(cube, "cube")
    segmenter = backbone.build_segmenter(1, 1, 2)
    x = torch.rand(1, 1, *cube)  # one cube: BatchNorm in training mode needs 2 values per channel
    _, bottleneck = segmenter.encoder(x)
    assert tuple(bottleneck.shape[2:]) == tuple(math.ceil(side / stride) for side, stride in zip(cube, (8, 32, 32)))
    assert segmenter(x).shape == (1, 1, *cube)


@pytest.mark.parametrize("cube", [(8, 32, 32), (16, 15, 32)])
def test_a_cube_with_a_side_under_16_is_refused(backbone, cube):
    with pytest.raises(UserError, match="at least 16"):
        backbone.check_cube(cube, "cube")


def save_released(state: dict, path, how: str) -> None:
    if how == "safetensors":
        save_file(state, str(path))
    elif how == "wrapped":
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    else:
        torch.save(state, path)


@pytest.mark.parametrize("how,classes,counters", [("plain", KINETICS_CLASSES, False), ("wrapped", 157, True),
                                                  ("safetensors", KINETICS_CLASSES, True)])
def test_released_file_lands_key_for_key_in_the_target(backbone, released, tmp_path, how, classes, counters):
    state = released if (classes, counters) == (KINETICS_CLASSES, False) else port_state(classes=classes,
                                                                                          counters=counters)
    path = tmp_path / ("rgb.safetensors" if how == "safetensors" else "rgb.pt")
    save_released(state, path, how)
    weights = backbone.read_weights(path)
    assert (weights.width, weights.in_channels, weights.transfers) == (32, 1, "encoder")
    assert weights.notes == {"rgb_kernels": "summed"} and weights.settings == {}
    target = backbone.build_classifier(1, 2, 32)
    assert set(weights.state_dict) == {k for k in target.state_dict() if k.startswith("encoder.")}
    target.load_state_dict(weights.state_dict, strict=False)
    landed = target.state_dict()
    for key, tensor in state.items():
        if key.startswith("logits."):
            continue  # not part of the encoder: dropped
        if key == "Conv3d_1a_7x7.conv3d.weight":
            tensor = tensor.sum(dim=1, keepdim=True)
        assert torch.equal(landed[f"encoder.{key}"], tensor), key
    if not counters:
        assert int(landed["encoder.Mixed_5c.b3b.bn.num_batches_tracked"]) == 0


def test_summed_rgb_kernels_give_a_grey_image_the_rgb_response(backbone, released, tmp_path):
    """A grey image through the summed one-channel kernels = the RGB kernels on R = G = B: for the first
    convolution of the full-size file, and for a whole (small) network's bottleneck."""
    grey = torch.rand(1, 1, 16, 16, 16)
    path = tmp_path / "rgb_imagenet.pt"
    torch.save(released, path)
    summed = backbone.read_weights(path).state_dict["encoder.Conv3d_1a_7x7.conv3d.weight"]
    rgb_kernels = released["Conv3d_1a_7x7.conv3d.weight"]
    assert summed.shape == (64, 1, 7, 7, 7)
    assert torch.allclose(functional.conv3d(grey, summed), functional.conv3d(grey.repeat(1, 3, 1, 1, 1), rgb_kernels),
                          atol=1e-5)
    small = port_state(width=4)
    torch.save(small, path)
    grey_encoder = backbone.build_encoder(1, 4).eval()
    read = backbone.read_weights(path).state_dict
    grey_encoder.load_state_dict({k.removeprefix("encoder."): v for k, v in read.items()})
    rgb_encoder = backbone.build_encoder(3, 4).eval()
    rgb_encoder.load_state_dict({k: v for k, v in small.items() if not k.startswith("logits.")}, strict=False)
    with torch.no_grad():
        _, from_grey = grey_encoder(grey)
        _, from_rgb = rgb_encoder(grey.repeat(1, 3, 1, 1, 1))
    assert torch.allclose(from_grey, from_rgb, rtol=1e-4, atol=1e-5)


def test_released_weights_transfer_through_the_first_conv_to_four_channels(backbone, tmp_path):
    path = tmp_path / "rgb.pt"
    torch.save(port_state(width=4), path)
    weights = backbone.read_weights(path)
    assert weights.width == 4
    target = backbone.build_segmenter(4, 2, 4)
    done = transfer_weights(target, weights.state_dict, weights.transfers, str(path), backbone.first_conv,
                            backbone.output_layer)
    assert done["inflated_first_conv"] and done["loaded_keys"] == len(weights.state_dict)
    assert not any(module.startswith("encoder") for module in done["fresh_modules"])


def broken(state: dict, fault: str) -> tuple[dict, str]:
    """``state`` with one fault, and the key the refusal must name."""
    state = dict(state)
    if fault == "missing":
        del state["Mixed_4d.b2b.bn.running_var"]
        return state, "Mixed_4d.b2b.bn.running_var"
    if fault == "unexpected":
        state["Mixed_4d.b9.conv3d.weight"] = torch.zeros(1)
        return state, "Mixed_4d.b9.conv3d.weight"
    if fault == "misshaped":
        state["Mixed_5c.b0.conv3d.weight"] = torch.zeros(3, 3, 1, 1, 1)
        return state, "Mixed_5c.b0.conv3d.weight"
    if fault == "non-finite":
        state["Mixed_3b.b1b.bn.bias"] = torch.full_like(state["Mixed_3b.b1b.bn.bias"], float("nan"))
        return state, "Mixed_3b.b1b.bn.bias"
    state["Conv3d_1a_7x7.conv3d.weight"] = state["Conv3d_1a_7x7.conv3d.weight"][:, :2]  # an optical-flow file
    return state, "Conv3d_1a_7x7.conv3d.weight"


@pytest.mark.parametrize("fault", ["missing", "unexpected", "misshaped", "non-finite", "flow"])
def test_a_file_with_one_fault_is_refused_naming_the_key(backbone, tmp_path, fault):
    state, key = broken(port_state(width=4), fault)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(UserError) as error:
        backbone.read_weights(path)
    message = str(error.value)
    assert key in message and str(path) in message and "\n" not in message


def test_a_file_that_is_no_state_dict_is_refused(backbone, tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(UserError, match="not an I3D weights file"):
        backbone.read_weights(path)


def test_the_method_transfers_the_released_encoder_only():
    method = METHODS.create("i3d")
    assert (method.transfers, method.backbones) == ("encoder", ("i3d",))
    assert "rgb_imagenet.pt" in method.weights_required
