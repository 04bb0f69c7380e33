"""The MedicalNet 3D ResNet backbone (``resnet3d``) and the ``medicalnet`` method: parameter counts
against MedicalNet's published numbers, shapes, and the reading of released weight files."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from benchmark.api.registry import BACKBONES, METHODS
from benchmark.errors import UserError
from benchmark.model.backbone import count_parameters

# depth: (shortcut released, encoder parameters, segmentation target with one class, encoder
# parameters + batch-norm running statistics), at width 32 with one input channel (measured)
COUNTS = {
    10: ("B", 14_355_520, 14_514_432, 14_361_280),
    18: ("A", 32_986_176, 33_145_088, 32_993_984),
    34: ("A", 63_295_808, 63_454_720, 63_311_040),
    50: ("B", 46_155_072, 46_707_200, 46_208_192),
    101: ("B", 85_201_216, 85_753_344, 85_306_560),
    152: ("B", 117_359_936, 117_912_064, 117_511_360),
    200: ("B", 126_559_552, 127_111_680, 126_735_552),
}
README_MILLIONS = {10: 14.36, 18: 32.99, 34: 63.31, 50: 46.21, 101: 85.31, 152: 117.51, 200: 126.74}
PAPER_RESNET101_MILLIONS = 85.75  # Med3D's parameter count of its ResNet-101 segmentation network
SMOKE_CUBE = (16, 32, 32)


def resnet(**settings) -> nn.Module:
    return BACKBONES.create("resnet3d", **settings)


def released_layout(encoder: nn.Module, prefix: str = "module.") -> dict[str, torch.Tensor]:
    """An encoder's weights in MedicalNet's layout: DataParallel's ``module.`` prefix, no batch-norm
    step counters (as in files saved before PyTorch 0.4.1)."""
    return {prefix + key: tensor.clone() for key, tensor in encoder.state_dict().items()
            if not key.endswith("num_batches_tracked")}


@pytest.fixture(scope="module")
def resnet10(tmp_path_factory):
    """A full-size ResNet-10 file in the released layout and the encoder it was written from."""
    torch.manual_seed(0)
    encoder = resnet(depth=10).build_encoder(1, 32)
    for module in encoder.modules():  # batch-norm statistics that differ from their defaults
        if isinstance(module, nn.BatchNorm3d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    path = tmp_path_factory.mktemp("medicalnet") / "resnet_10.pth"
    torch.save({"state_dict": released_layout(encoder)}, path)
    return path, encoder


@pytest.mark.parametrize("depth", sorted(COUNTS))
def test_parameter_counts_at_width_32_match_medicalnet(depth):
    shortcut, encoder, segmenter, with_statistics = COUNTS[depth]
    backbone = resnet(depth=depth)
    assert backbone.shortcut == shortcut
    counts = backbone.parameter_counts(32)
    assert (counts["encoder"], counts["segmenter"]) == (encoder, segmenter)
    with torch.device("meta"):
        state = backbone.build_encoder(1, 32).state_dict()
    assert sum(t.numel() for k, t in state.items() if not k.endswith("num_batches_tracked")) == with_statistics
    assert round(with_statistics / 1e6, 2) == README_MILLIONS[depth]  # the README counts the BN statistics too


def test_the_papers_resnet101_count_is_the_segmentation_target():
    assert round(COUNTS[101][2] / 1e6, 2) == PAPER_RESNET101_MILLIONS
    assert resnet(depth=101).parameter_counts(32)["segmenter"] == COUNTS[101][2]


@pytest.mark.parametrize("depth", [10, 18, 50])
def test_targets_have_the_input_shape_at_a_tiny_width_and_train(depth):
    backbone = resnet(depth=depth)
    segmenter = backbone.build_segmenter(4, 3, 4)
    x = torch.rand(2, 4, *SMOKE_CUBE)
    logits = segmenter(x)
    assert logits.shape == (2, 3, *SMOKE_CUBE)
    logits.square().mean().backward()
    assert all(p.grad is not None for p in segmenter.parameters())
    assert isinstance(segmenter.get_submodule(backbone.output_layer), nn.Conv3d)
    assert segmenter.get_submodule(backbone.output_layer).out_channels == 3
    classifier = backbone.build_classifier(1, 2, 4)
    assert classifier(torch.rand(1, 1, *SMOKE_CUBE)).shape == (1, 2)


@pytest.mark.parametrize("depth, expansion", [(10, 1), (50, 4)])
def test_the_bottleneck_has_output_stride_8_and_the_scaled_channels(depth, expansion):
    encoder = resnet(depth=depth).build_encoder(1, 4)
    skips, bottleneck = encoder(torch.rand(1, 1, *SMOKE_CUBE))
    assert skips == []
    assert encoder.out_channels == 16 * 4 * expansion
    assert bottleneck.shape == (1, encoder.out_channels, 2, 4, 4)
    assert encoder.layer3[0].conv2.dilation == (2, 2, 2) and encoder.layer4[-1].conv2.dilation == (4, 4, 4)
    assert encoder.layer3[0].conv2.stride == (1, 1, 1)


def test_stages_and_first_conv_name_the_encoders_modules():
    backbone = resnet()
    target = backbone.build_segmenter(1, 1, 2)
    for stage in backbone.stages:
        target.encoder.get_submodule(stage)
    assert backbone.first_conv in target.state_dict()


def test_the_shortcut_types_differ_only_in_the_downsample_weights():
    a, b = (resnet(depth=18, shortcut=kind).build_encoder(1, 2).state_dict() for kind in ("A", "B"))
    assert set(b) - set(a) == {k for k in b if ".downsample." in k} != set()
    assert not any(".downsample." in k for k in a)


def test_the_parameter_free_shortcut_passes_gradients():
    encoder = resnet(depth=18, shortcut="A").build_encoder(1, 2)
    shortcut = encoder.layer2[0].downsample
    x = torch.rand(1, 4, 4, 4, 4, requires_grad=True)
    out = shortcut(x)
    assert out.shape == (1, 8, 2, 2, 2) and torch.equal(out[:, 4:], torch.zeros(1, 4, 2, 2, 2))
    out.sum().backward()
    assert torch.equal(x.grad[:, :, ::2, ::2, ::2], torch.ones(1, 4, 2, 2, 2))


def test_settings_resolve_the_released_shortcut_and_refuse_unknown_values():
    assert resnet().settings() == {"depth": 10, "shortcut": "B"}
    assert resnet(depth=34).settings() == {"depth": 34, "shortcut": "A"}
    assert resnet(depth=34, shortcut="B").shortcut == "B"
    with pytest.raises(UserError, match="depth must be"):
        resnet(depth=20)
    with pytest.raises(UserError, match="shortcut must be"):
        resnet(shortcut="C")


def test_a_released_resnet10_file_loads_key_for_key(resnet10):
    path, encoder = resnet10
    weights = resnet(depth=50).read_weights(path)  # the file, not the backbone's setting, tells the depth
    assert weights.settings == {"depth": 10, "shortcut": "B"}
    assert (weights.width, weights.in_channels, weights.transfers) == (32, 1, "encoder")
    target = resnet(**weights.settings).build_segmenter(1, 2, 32)
    expected = {k for k in target.state_dict() if k.startswith("encoder.")}
    assert set(weights.state_dict) == expected
    target.load_state_dict(weights.state_dict, strict=False)
    for key, tensor in encoder.state_dict().items():
        landed = target.state_dict()[f"encoder.{key}"]
        assert torch.equal(landed, tensor if not key.endswith("num_batches_tracked") else torch.tensor(0)), key


@pytest.mark.parametrize("change, named", [
    ("missing", "module.layer3.0.bn2.running_var"),
    ("unexpected", "module.conv_seg.0.weight"),
    ("misshaped", "module.layer2.0.conv1.weight"),
])
def test_a_file_with_one_wrong_key_is_refused_naming_it(resnet10, tmp_path, change, named):
    path, encoder = resnet10
    state = released_layout(encoder)
    if change == "missing":
        del state[named]
    elif change == "unexpected":
        state[named] = torch.zeros(512, 32, 2, 2, 2)
    else:
        state[named] = state[named][:, :-1]
    bad = tmp_path / "bad.pth"
    torch.save({"state_dict": state}, bad)
    with pytest.raises(UserError, match=f"{change.replace('misshaped', 'mis-shaped')} key.*{named}") as error:
        resnet().read_weights(bad)
    assert len(str(error.value).splitlines()) == 1 and str(bad) in str(error.value)


@pytest.mark.parametrize("depth, shortcut, prefix, wrapped", [
    (18, "A", "", False), (34, "A", "module.", True), (50, "B", "module.", True), (101, "B", "", False),
])
def test_depth_shortcut_width_and_channels_are_read_off_the_file(tmp_path, depth, shortcut, prefix, wrapped):
    encoder = resnet(depth=depth, shortcut=shortcut).build_encoder(4, 2)
    state = released_layout(encoder, prefix)
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": state} if wrapped else state, path)
    weights = resnet().read_weights(path)
    assert weights.settings == {"depth": depth, "shortcut": shortcut}
    assert (weights.width, weights.in_channels) == (2, 4)
    assert all(torch.equal(weights.state_dict[f"encoder.{k}"], v) for k, v in encoder.state_dict().items()
               if not k.endswith("num_batches_tracked"))


def test_a_safetensors_file_is_read_too(tmp_path):
    encoder = resnet(depth=18).build_encoder(1, 2)
    path = tmp_path / "resnet_18.safetensors"
    save_file(released_layout(encoder), str(path))
    weights = resnet().read_weights(path)
    assert weights.settings == {"depth": 18, "shortcut": "A"} and weights.format == "safetensors"


def test_blocks_per_layer_of_no_released_depth_are_refused(tmp_path):
    state = released_layout(resnet(depth=18).build_encoder(1, 2))
    state = {k: v for k, v in state.items() if not k.startswith("module.layer4.1.")}
    path = tmp_path / "odd.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(UserError, match=r"\(2, 2, 2, 1\) per layer, match no depth"):
        resnet().read_weights(path)


@pytest.mark.parametrize("content, message", [
    ({"state_dict": {"module.fc.weight": torch.zeros(2)}}, "no stem convolution"),
    ({"epoch": 3}, "not a MedicalNet weights file"),
    ({"module.conv1.weight": torch.zeros(64, 1, 7, 7)}, "not a MedicalNet stem convolution"),
])
def test_files_that_are_no_medicalnet_resnet_are_refused(tmp_path, content, message):
    path = tmp_path / "other.pth"
    torch.save(content, path)
    with pytest.raises(UserError, match=message):
        resnet().read_weights(path)


def test_a_non_finite_weight_is_refused_naming_it(tmp_path):
    state = released_layout(resnet(depth=10).build_encoder(1, 2))
    state["module.layer1.0.conv2.weight"][0, 0, 0, 0, 0] = math.nan
    path = tmp_path / "nan.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(UserError, match="module.layer1.0.conv2.weight holds non-finite"):
        resnet().read_weights(path)


def test_the_suites_own_checkpoint_of_the_backbone_loads(tmp_path):
    backbone = resnet(depth=18)
    model = backbone.build_segmenter(1, 1, 2)
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": 1, "transfers": "encoder+decoder", "state_dict": model.state_dict(),
                "backbone": {"name": "resnet3d", "width": 2, "in_channels": 1, "settings": backbone.settings()}}, path)
    weights = resnet().read_weights(path)
    assert weights.settings == {"depth": 18, "shortcut": "A"} and weights.transfers == "encoder+decoder"
    assert count_parameters(model) > 0 and set(weights.state_dict) == set(model.state_dict())


def test_the_method_transfers_released_weights_and_fixes_the_depth_it_is_given():
    method = METHODS.create("medicalnet")
    assert method.transfers == "encoder" and method.backbones == ("resnet3d",)
    assert "MedicalNet" in method.weights_required
    assert method.backbone_settings() == {}
    assert METHODS.create("medicalnet", depth=50).backbone_settings() == {"depth": 50}
    with pytest.raises(UserError, match="depth must be"):
        METHODS.create("medicalnet", depth=20)
    with pytest.raises(NotImplementedError, match="does not pretrain"):
        method.make_example(None, None)
