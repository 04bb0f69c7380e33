"""The 2D backbones: ``unet2d`` (the Models Genesis U-Net with 2D operations, the 3D U-Net unchanged) and
``resnet2d`` (torchvision's ResNet-18/34/50 as a U-Net encoder), their layouts and parameter counts,
forward shapes on 32 x 32 slices, torchvision files (written here with random tensors in torchvision's
key layout) and the ``imagenet-2d`` method."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional

from benchmark.api.backbone import for_volumes
from benchmark.api.registry import BACKBONES, METHODS
from benchmark.engine.pretrain import CHECKPOINT_FORMAT, save_checkpoint
from benchmark.errors import UserError
from benchmark.model.backbone import UNet2D, UNet3D, count_parameters
from benchmark.model.protocols import Protocol, apply_protocol
from benchmark.model.transfer import transfer_weights

SLICE = (32, 32)  # the smoke and quick profiles' cube is (16, 32, 32): a 2D network sees 32 x 32 slices
WIDTH = 4
# torchvision's published sizes (``num_params`` of its ImageNet weights): the whole RGB model, fc included.
PUBLISHED = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032}
TORCHVISION = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3))}
IMAGENET_CLASSES = 1000


# --- unet2d, and the 3D U-Net it shares its code with --------------------------------------------------------------

def genesis_convolutions(width: int, in_channels: int, out_channels: int, spatial_dims: int) -> dict[str, tuple]:
    """The Models Genesis U-Net's convolution weights and their shapes, from the design: stages of
    ``w, 2w | 2w, 4w | 4w, 8w | 8w, 16w`` channels, decoders concatenating the skip of their resolution."""
    w = width

    def kernel(size: int) -> tuple[int, ...]:
        return (size,) * spatial_dims

    shapes = {}
    for stage, (cin, mid, cout) in {"down_tr64": (in_channels, w, 2 * w), "down_tr128": (2 * w, 2 * w, 4 * w),
                                    "down_tr256": (4 * w, 4 * w, 8 * w), "down_tr512": (8 * w, 8 * w, 16 * w)}.items():
        shapes[f"encoder.{stage}.ops.0.conv1.weight"] = (mid, cin, *kernel(3))
        shapes[f"encoder.{stage}.ops.1.conv1.weight"] = (cout, mid, *kernel(3))
    for stage, (cin, skip, cout) in {"up_tr256": (16 * w, 8 * w, 8 * w), "up_tr128": (8 * w, 4 * w, 4 * w),
                                     "up_tr64": (4 * w, 2 * w, 2 * w)}.items():
        shapes[f"decoder.{stage}.up_conv.weight"] = (cin, cin, *kernel(2))
        shapes[f"decoder.{stage}.ops.0.conv1.weight"] = (cout, cin + skip, *kernel(3))
        shapes[f"decoder.{stage}.ops.1.conv1.weight"] = (cout, cout, *kernel(3))
    shapes["decoder.out_tr.final_conv.weight"] = (out_channels, 2 * w, *kernel(1))
    return shapes


@pytest.mark.parametrize("model, spatial_dims", [(UNet3D, 3), (UNet2D, 2)])
def test_the_unet_has_the_genesis_layout_in_3d_and_2d(model, spatial_dims):
    state = model(in_channels=2, out_channels=3, width=WIDTH).state_dict()
    assert len(state) == 106  # the released PyTorch weights' entry count
    convolutions = {k: tuple(v.shape) for k, v in state.items() if k.endswith(("conv1.weight", "up_conv.weight",
                                                                               "final_conv.weight"))}
    assert convolutions == genesis_convolutions(WIDTH, 2, 3, spatial_dims)


def test_the_2d_unet_has_the_3d_keys_with_one_spatial_axis_less():
    three, two = UNet3D(width=WIDTH).state_dict(), UNet2D(width=WIDTH).state_dict()
    assert list(two) == list(three)
    assert all(tuple(two[k].shape) == tuple(v.shape[:4] if v.ndim == 5 else v.shape) for k, v in three.items())
    assert not any(isinstance(m, (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.ConvTranspose3d))
                   for m in UNet2D(width=WIDTH).modules())


def test_a_spatial_dimension_other_than_2_or_3_is_refused():
    with pytest.raises(ValueError, match="spatial_dims must be 2 or 3"):
        UNet3D(width=WIDTH, spatial_dims=1)


def test_unet2d_parameter_counts_at_width_32():
    assert BACKBONES.create("unet2d").parameter_counts() == {
        "encoder": 2_345_472, "classifier": 2_871_809, "segmenter": 6_821_953}
    assert BACKBONES.create("unet2d", transposed=False).parameter_counts()["segmenter"] == 5_444_801


# --- both backbones ------------------------------------------------------------------------------------------------

BACKBONE_CASES = [("unet2d", {}), ("unet2d", {"transposed": False}), ("resnet2d", {"depth": 18}),
                  ("resnet2d", {"depth": 50})]


@pytest.mark.parametrize("name, settings", BACKBONE_CASES)
def test_declares_a_2d_network_with_its_modules_where_it_says(name, settings):
    backbone = BACKBONES.create(name, **settings)
    assert backbone.spatial_dims == 2
    classifier, segmenter = backbone.build_classifier(1, 1, WIDTH), backbone.build_segmenter(1, 1, WIDTH)
    for stage in (*backbone.stem, *backbone.stages):
        classifier.encoder.get_submodule(stage)
        segmenter.encoder.get_submodule(stage)
    assert backbone.first_conv in classifier.state_dict() and backbone.first_conv in segmenter.state_dict()
    output = dict(segmenter.get_submodule(backbone.output_layer).named_parameters())
    assert [p.ndim for name, p in output.items() if name.endswith("weight")] == [4]  # a 2D kernel
    assert not any(isinstance(m, (nn.Conv3d, nn.BatchNorm3d)) for m in (*classifier.modules(), *segmenter.modules()))


@pytest.mark.parametrize("name, settings", BACKBONE_CASES)
@pytest.mark.parametrize("in_channels", [1, 3, 4])
def test_targets_give_logits_on_32x32_slices_and_train(name, settings, in_channels):
    backbone = BACKBONES.create(name, **settings)
    torch.manual_seed(0)
    x = torch.rand(2, in_channels, *SLICE)
    classifier, segmenter = backbone.build_classifier(in_channels, 3, WIDTH), backbone.build_segmenter(
        in_channels, 2, WIDTH)
    for model, shape in ((classifier, (2, 3)), (segmenter, (2, 2, *SLICE))):
        logits = model(x)
        assert logits.shape == shape
        logits.square().mean().backward()
        assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name, settings", BACKBONE_CASES)
def test_only_the_slice_sides_of_a_cube_are_checked(name, settings):
    backbone = BACKBONES.create(name, **settings)
    backbone.check_cube((16, 32, 32), "the smoke cube")
    backbone.check_cube((3, 64, 32), "a thin cube")  # Z is not a side of the network's input
    with pytest.raises(UserError, match=rf"\(16, 32, 36\).*{name}"):
        backbone.check_cube((16, 32, 36), "a cube")


@pytest.mark.parametrize("name, settings", BACKBONE_CASES)
@pytest.mark.parametrize("dims", ["2d", "2.5d"])
def test_the_volume_adapters_run_both_backbones_on_the_smoke_cube(name, settings, dims):
    backbone = for_volumes(BACKBONES.create(name, **settings), dims)
    x = torch.rand(2, 1, 16, *SLICE)
    assert backbone.build_classifier(1, 1, 2)(x).shape == (2, 1)
    assert backbone.build_segmenter(1, 1, 2)(x).shape == (2, 1, 16, *SLICE)


@pytest.mark.parametrize("name, settings", [("unet2d", {}), ("resnet2d", {"depth": 50})])
@pytest.mark.parametrize("transfers", ["encoder", "encoder+decoder"])
def test_suite_checkpoints_read_back_key_for_key(name, settings, transfers, tmp_path):
    backbone = BACKBONES.create(name, **settings)
    state = backbone.build_segmenter(1, 1, 2).state_dict()
    if transfers == "encoder":
        state = {k: v for k, v in state.items() if k.startswith("encoder.")}
    save_checkpoint({"format": CHECKPOINT_FORMAT, "method": "genesis-2d", "transfers": transfers,
                     "backbone": {"name": name, "settings": backbone.settings(), "in_channels": 1, "width": 2},
                     "state_dict": state, "extras": {}}, tmp_path / "checkpoint.pt")
    weights = backbone.read_weights(tmp_path / "checkpoint.pt")
    assert (weights.format, weights.transfers, weights.width, weights.settings) == (
        "benchmark-checkpoint", transfers, 2, backbone.settings())
    assert list(weights.state_dict) == list(state)
    assert all(torch.equal(weights.state_dict[k], v) for k, v in state.items())


def test_unet2d_reads_no_released_files(tmp_path):
    torch.save(UNet2D(width=2).state_dict(), tmp_path / "unet2d.pt")
    with pytest.raises(UserError, match="reads no released weight files"):
        BACKBONES.create("unet2d").read_weights(tmp_path / "unet2d.pt")


# --- resnet2d: torchvision's layout ----------------------------------------------------------------------------------

def batch_norm_entries(name: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}.{entry}": (channels,) for entry in ("weight", "bias", "running_mean", "running_var")} | {
        f"{name}.num_batches_tracked": ()}


def torchvision_layout(depth: int, width: int = 32, in_channels: int = 3,
                       classes: int = IMAGENET_CLASSES) -> dict[str, tuple[int, ...]]:
    """Every entry of a torchvision ResNet state dict and its shape (channels scaled to ``width``), from
    torchvision's facts: stem conv1 (64, in, 7, 7) + bn1; 64, 128, 256, 512 planes; basic blocks (3x3, 3x3)
    or bottlenecks (1x1, 3x3, 1x1 to 4x the planes); downsample (1x1 conv + BN) where the shape changes."""
    def s(channels: int) -> int:
        return max(1, channels * width // 32)

    kind, blocks = TORCHVISION[depth]
    expansion = 4 if kind == "bottleneck" else 1
    channels = s(64)
    shapes = {"conv1.weight": (channels, in_channels, 7, 7), **batch_norm_entries("bn1", channels)}
    for layer, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
        planes = s(planes)
        for block in range(count):
            prefix = f"layer{layer}.{block}."
            convolutions = [(planes, channels, 3), (planes, planes, 3)] if kind == "basic" else [
                (planes, channels, 1), (planes, planes, 3), (planes * expansion, planes, 1)]
            for index, (cout, cin, k) in enumerate(convolutions, start=1):
                shapes[f"{prefix}conv{index}.weight"] = (cout, cin, k, k)
                shapes |= batch_norm_entries(f"{prefix}bn{index}", cout)
            if block == 0 and (layer > 1 or channels != planes * expansion):
                shapes[f"{prefix}downsample.0.weight"] = (planes * expansion, channels, 1, 1)
                shapes |= batch_norm_entries(f"{prefix}downsample.1", planes * expansion)
            channels = planes * expansion
    return shapes | {"fc.weight": (classes, channels), "fc.bias": (classes,)}


def torchvision_state(depth: int, width: int = 32, in_channels: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """A torchvision ResNet state dict with random, plausible values (positive variances, counters set)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in torchvision_layout(depth, width, in_channels).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(shape, generator=generator)
        elif len(shape) == 4:  # convolution kernels, He-scaled
            state[key] = torch.randn(shape, generator=generator) * math.sqrt(2 / math.prod(shape[1:]))
        elif key.endswith(".weight") and len(shape) == 1:  # batch-norm scales
            state[key] = 1 + 0.1 * torch.randn(shape, generator=generator)
        else:
            state[key] = 0.1 * torch.randn(shape, generator=generator)
    return state


def is_parameter(key: str) -> bool:
    return not key.endswith(("running_mean", "running_var", "num_batches_tracked"))


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_the_encoder_is_torchvisions_resnet_without_fc_key_for_key(depth):
    layout = torchvision_layout(depth)
    fc = math.prod(layout["fc.weight"]) + math.prod(layout["fc.bias"])  # 513,000 or 2,049,000
    assert sum(math.prod(shape) for key, shape in layout.items() if is_parameter(key)) == PUBLISHED[depth]
    with torch.device("meta"):
        encoder = BACKBONES.create("resnet2d", depth=depth).build_encoder(3, 32)
    assert {k: tuple(v.shape) for k, v in encoder.state_dict().items()} == {
        k: v for k, v in layout.items() if not k.startswith("fc.")}
    # The encoder with RGB input has torchvision's published parameters less fc's.
    assert count_parameters(encoder) == PUBLISHED[depth] - fc == {18: 11_176_512, 34: 21_284_672,
                                                                   50: 23_508_032}[depth]


def test_resnet2d_parameter_counts_at_width_32():
    counts = {depth: BACKBONES.create("resnet2d", depth=depth).parameter_counts() for depth in (18, 34, 50)}
    assert counts == {  # one input channel: conv1 has 64 * 2 * 49 = 6,272 weights fewer than with RGB
        18: {"encoder": 11_170_240, "classifier": 11_696_577, "segmenter": 14_321_809},
        34: {"encoder": 21_278_400, "classifier": 21_804_737, "segmenter": 24_429_969},
        50: {"encoder": 23_501_760, "classifier": 25_600_961, "segmenter": 32_514_705}}


@pytest.mark.parametrize("depth, expansion", [(18, 1), (50, 4)])
def test_the_skips_and_the_bottleneck_are_at_strides_2_to_32(depth, expansion):
    encoder = BACKBONES.create("resnet2d", depth=depth).build_encoder(1, WIDTH)
    skips, bottleneck = encoder(torch.rand(2, 1, 64, 64))
    assert [tuple(skip.shape[2:]) for skip in skips] == [(32, 32), (16, 16), (8, 8), (4, 4)]
    assert [skip.shape[1] for skip in skips] == [8, 8 * expansion, 16 * expansion, 32 * expansion]
    assert bottleneck.shape == (2, encoder.out_channels, 2, 2) and encoder.out_channels == 16 * WIDTH * expansion


def test_the_stem_and_layer1_are_fixed_by_freeze_1():
    backbone = BACKBONES.create("resnet2d")
    model = backbone.build_segmenter(1, 1, WIDTH)
    record = apply_protocol(model, Protocol.parse("freeze:1"), backbone.stages, backbone.output_layer, backbone.stem)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    model(torch.rand(2, 1, *SLICE)).square().mean().backward()
    optimizer.step()
    fixed = ("encoder.conv1.", "encoder.bn1.", "encoder.layer1.")
    assert {f"{part}." for part in record["fixed"]} == set(fixed)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items() if k.startswith(fixed))
    assert not torch.equal(before["encoder.layer2.0.conv1.weight"], model.state_dict()["encoder.layer2.0.conv1.weight"])


def test_an_unknown_depth_is_refused():
    with pytest.raises(UserError, match="depth must be one of 18, 34, 50"):
        BACKBONES.create("resnet2d", depth=101)


# --- resnet2d: torchvision's released files ------------------------------------------------------------------------

def reference_encoder(state: dict[str, torch.Tensor], depth: int, x: torch.Tensor) -> torch.Tensor:
    """torchvision's ResNet forward up to layer4 (eval mode), written with functional operations on a
    state dict in its layout: stem stride 2 and max-pool, layer2-4 strided in their first block (on the
    3x3 convolution of a bottleneck), shortcut added before the last ReLU."""
    def bn(x: torch.Tensor, name: str) -> torch.Tensor:
        return functional.batch_norm(x, state[f"{name}.running_mean"], state[f"{name}.running_var"],
                                     state[f"{name}.weight"], state[f"{name}.bias"], False, 0.0, 1e-5)

    x = functional.relu(bn(functional.conv2d(x, state["conv1.weight"], stride=2, padding=3), "bn1"))
    x = functional.max_pool2d(x, 3, stride=2, padding=1)
    kind, blocks = TORCHVISION[depth]
    for layer, count in enumerate(blocks, start=1):
        for block in range(count):
            p, stride = f"layer{layer}.{block}.", 2 if layer > 1 and block == 0 else 1
            if kind == "basic":
                out = functional.relu(bn(functional.conv2d(x, state[f"{p}conv1.weight"], stride=stride, padding=1),
                                         f"{p}bn1"))
                out = bn(functional.conv2d(out, state[f"{p}conv2.weight"], padding=1), f"{p}bn2")
            else:
                out = functional.relu(bn(functional.conv2d(x, state[f"{p}conv1.weight"]), f"{p}bn1"))
                out = functional.relu(bn(functional.conv2d(out, state[f"{p}conv2.weight"], stride=stride, padding=1),
                                         f"{p}bn2"))
                out = bn(functional.conv2d(out, state[f"{p}conv3.weight"]), f"{p}bn3")
            shortcut = x
            if f"{p}downsample.0.weight" in state:
                shortcut = bn(functional.conv2d(x, state[f"{p}downsample.0.weight"], stride=stride), f"{p}downsample.1")
            x = functional.relu(out + shortcut)
    return x


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A full-size torchvision ResNet-18 file (11.7 M parameters, the layout of resnet18-f37072fd.pth)."""
    state = torchvision_state(18)
    path = tmp_path_factory.mktemp("torchvision") / "resnet18.pth"
    torch.save(state, path)
    return path, state


def test_a_torchvision_resnet18_file_lands_key_for_key(resnet18_file):
    path, state = resnet18_file
    backbone = BACKBONES.create("resnet2d", depth=50)  # the file, not the setting, tells the depth
    weights = backbone.read_weights(path)
    assert (weights.format, weights.transfers, weights.width, weights.in_channels) == (
        "released-torchvision", "encoder", 32, 1)
    assert weights.settings == {"depth": 18} and weights.notes == {"rgb_kernels": "summed"}
    with torch.device("meta"):
        target = BACKBONES.create("resnet2d", depth=18).build_segmenter(1, 1, 32)
    assert sorted(weights.state_dict) == sorted(k for k in target.state_dict() if k.startswith("encoder."))
    assert sorted(weights.state_dict) == sorted(f"encoder.{k}" for k in state if not k.startswith("fc."))
    for key, tensor in state.items():
        if key not in ("conv1.weight", "fc.weight", "fc.bias"):
            assert torch.equal(weights.state_dict[f"encoder.{key}"], tensor), key
    assert torch.equal(weights.state_dict["encoder.conv1.weight"], state["conv1.weight"].sum(dim=1, keepdim=True))


@pytest.mark.parametrize("depth", [18, 50])
def test_the_loaded_encoder_computes_torchvisions_features_of_a_grey_image(depth, tmp_path):
    state = torchvision_state(depth, width=WIDTH)
    torch.save(state, tmp_path / "resnet.pth")
    backbone = BACKBONES.create("resnet2d", depth=depth)
    weights = backbone.read_weights(tmp_path / "resnet.pth")
    encoder = backbone.build_encoder(1, WIDTH).eval()
    encoder.load_state_dict({k.removeprefix("encoder."): v for k, v in weights.state_dict.items()})
    grey = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        _, bottleneck = encoder(grey)
        expected = reference_encoder(state, depth, grey.expand(-1, 3, -1, -1))  # R = G = B
    assert bottleneck.shape == expected.shape == (2, encoder.out_channels, 2, 2)
    assert (bottleneck - expected).abs().max() <= 1e-5 * expected.abs().max()  # float32 rounding only


@pytest.mark.parametrize("in_channels", [1, 3])
def test_the_weights_transfer_into_targets_of_one_and_three_channels(resnet18_file, in_channels):
    path, _ = resnet18_file
    backbone = BACKBONES.create("resnet2d")
    weights = backbone.read_weights(path)
    model = backbone.build_classifier(in_channels, 2, 32)
    done = transfer_weights(model, weights.state_dict, weights.transfers, str(path), backbone.first_conv,
                            backbone.output_layer)
    assert done["loaded_keys"] == len(weights.state_dict) and done["inflated_first_conv"] == (in_channels == 3)
    assert torch.allclose(model.state_dict()["encoder.conv1.weight"].sum(dim=1, keepdim=True),
                          weights.state_dict["encoder.conv1.weight"])


def tiny_file(tmp_path, state, name: str = "resnet.pth"):
    path = tmp_path / name
    torch.save(state, path)
    return path


def test_wrapped_prefixed_and_safetensors_files_read_alike(tmp_path):
    state = torchvision_state(18, width=2)
    backbone = BACKBONES.create("resnet2d")
    bare = backbone.read_weights(tiny_file(tmp_path, state))
    save_file(state, tmp_path / "resnet.safetensors")
    for path in (tiny_file(tmp_path, {"state_dict": {f"module.{k}": v for k, v in state.items()}}, "wrapped.pth"),
                 tmp_path / "resnet.safetensors"):
        weights = backbone.read_weights(path)
        assert sorted(weights.state_dict) == sorted(bare.state_dict)
        assert all(torch.equal(weights.state_dict[k], v) for k, v in bare.state_dict.items())
    assert backbone.read_weights(tmp_path / "resnet.safetensors").format == "safetensors"


def test_missing_step_counters_are_filled_and_fc_of_any_size_dropped(tmp_path):
    state = {k: v for k, v in torchvision_state(18, width=2).items() if not k.endswith("num_batches_tracked")}
    state["fc.weight"], state["fc.bias"] = torch.zeros(7, 16), torch.zeros(7)
    weights = BACKBONES.create("resnet2d").read_weights(tiny_file(tmp_path, state))
    assert torch.equal(weights.state_dict["encoder.layer1.0.bn1.num_batches_tracked"], torch.tensor(0))
    assert not any(".fc." in k for k in weights.state_dict)


def test_a_tiny_resnet50_file_implies_depth_50_and_its_width(tmp_path):
    weights = BACKBONES.create("resnet2d").read_weights(tiny_file(tmp_path, torchvision_state(50, width=2)))
    assert (weights.settings, weights.width, weights.in_channels) == ({"depth": 50}, 2, 1)
    assert "encoder.layer1.0.downsample.0.weight" in weights.state_dict


def test_a_one_channel_file_is_taken_as_it_is(tmp_path):
    state = torchvision_state(18, width=2, in_channels=1)
    weights = BACKBONES.create("resnet2d").read_weights(tiny_file(tmp_path, state))
    assert (weights.in_channels, weights.notes) == (1, {})
    assert torch.equal(weights.state_dict["encoder.conv1.weight"], state["conv1.weight"])


def spoiled(change: str) -> dict[str, torch.Tensor]:
    state = torchvision_state(18, width=2)
    if change == "missing":
        del state["layer3.1.bn2.running_var"]
    elif change == "unexpected":
        state["layer3.1.conv9.weight"] = torch.zeros(8, 8, 3, 3)
    elif change == "mis-shaped":
        state["layer2.0.conv2.weight"] = torch.zeros(4, 4, 3, 3)
    elif change == "non-finite":
        state["layer4.1.bn1.bias"][0] = float("nan")
    elif change == "stray prefix":
        state = {(k if k == "layer2.1.bn1.bias" else f"module.{k}"): v for k, v in state.items()}
    elif change == "no depth":
        state = {k: v for k, v in torchvision_state(50, width=2).items() if not k.startswith("layer4.2.")}
    elif change == "no stem":
        del state["conv1.weight"]
    return state


@pytest.mark.parametrize("change, message", [
    ("missing", r"1 missing key\(s\): layer3\.1\.bn2\.running_var"),
    ("unexpected", r"1 unexpected key\(s\): layer3\.1\.conv9\.weight"),
    ("mis-shaped", r"1 mis-shaped key\(s\) .*layer2\.0\.conv2\.weight \(4, 4, 3, 3\) vs \(8, 8, 3, 3\)"),
    ("non-finite", r"layer4\.1\.bn1\.bias holds non-finite values"),
    ("stray prefix", r"without the 'module\.' prefix .*layer2\.1\.bn1\.bias"),
    ("no depth", r"bottleneck blocks, \(3, 4, 6, 2\) per layer, match no depth"),
    ("no stem", r"no stem convolution"),
])
def test_a_file_that_does_not_match_is_refused_naming_the_problem(tmp_path, change, message):
    path = tiny_file(tmp_path, spoiled(change))
    with pytest.raises(UserError, match=message) as error:
        BACKBONES.create("resnet2d").read_weights(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


# --- the imagenet-2d method ----------------------------------------------------------------------------------------

def test_imagenet_2d_transfers_a_released_resnet2d_encoder():
    method = METHODS.create("imagenet-2d")
    assert (method.transfers, method.backbones, method.default_backbone()) == ("encoder", ("resnet2d",), "resnet2d")
    assert not method.has_pretext_task()
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in method.weights_required
    assert "resnet50-0676ba61.pth" in method.weights_required
    assert method.supports_backbone("resnet2d") and not method.supports_backbone("unet2d")
