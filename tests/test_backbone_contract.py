"""The backbone contract, checked for every registered backbone (a user's plugin included), a 2D one
behind each of its adapters (2d, 2.5d): its targets build and train at a tiny width on the profiles'
cube, its stages and layers are where it says, the protocols fix what they should, and this suite's
checkpoints of it read back key for key."""

from __future__ import annotations

import pytest
import torch

from benchmark.api.backbone import Backbone, for_volumes
from benchmark.api.profiles import PROFILES
from benchmark.api.registry import BACKBONES, METHODS
from benchmark.engine.pretrain import CHECKPOINT_FORMAT, save_checkpoint
from benchmark.engine.sweep import dims_of
from benchmark.errors import UserError
from benchmark.model.protocols import Protocol, apply_protocol

WIDTH = 2
CUBE = PROFILES["smoke"].cube
CELLS = [(name, dims) for name in BACKBONES.names() for dims in dims_of(name)]


@pytest.fixture(params=CELLS, ids=[f"{name}-{dims}" for name, dims in CELLS])
def backbone(request: pytest.FixtureRequest) -> Backbone:
    name, dims = request.param
    return for_volumes(BACKBONES.create(name), dims)


def inputs(in_channels: int = 1) -> torch.Tensor:
    return torch.rand(2, in_channels, *CUBE, generator=torch.Generator().manual_seed(0))


def test_declares_what_the_core_needs(backbone: Backbone) -> None:
    assert backbone.name and backbone.description and backbone.stages
    assert backbone.size_multiple >= 1 and backbone.min_size >= 1
    backbone.check_cube(CUBE, "the smoke cube")  # the profiles' cube fits every backbone
    encoder = backbone.build_encoder(1, WIDTH)
    for stage in (*backbone.stem, *backbone.stages):
        encoder.get_submodule(stage)
    assert isinstance(encoder.out_channels, int) and encoder.out_channels > 0
    classifier, segmenter = backbone.build_classifier(1, 1, WIDTH), backbone.build_segmenter(1, 1, WIDTH)
    for model in (classifier, segmenter):
        assert backbone.first_conv in model.state_dict()
    segmenter.get_submodule(backbone.output_layer)
    assert backbone.output_layer.startswith("decoder.")


def test_a_cube_that_does_not_fit_is_a_user_error(backbone: Backbone) -> None:
    if backbone.min_size <= 1 and backbone.size_multiple <= 1:
        pytest.skip(f"backbone '{backbone.name}' takes any cube")
    with pytest.raises(UserError, match=backbone.name):
        backbone.check_cube((1, 1, 1), "a cube")


@pytest.mark.parametrize("in_channels", [1, 4])
def test_targets_give_logits_of_the_right_shape_and_train(backbone: Backbone, in_channels: int) -> None:
    torch.manual_seed(0)
    x = inputs(in_channels)
    classifier = backbone.build_classifier(in_channels, 1, WIDTH)
    segmenter = backbone.build_segmenter(in_channels, 1, WIDTH)
    assert classifier(x).shape == (2, 1)
    logits = segmenter(x)
    assert logits.shape == (2, 1, *CUBE)
    logits.mean().backward()
    assert all(p.grad is not None for p in segmenter.parameters())
    encoder = backbone.build_encoder(in_channels, WIDTH)  # a 2D backbone's own: on slices (of 3 channels in 2.5D)
    own_input = torch.rand(2, in_channels * getattr(backbone, "factor", 1), *CUBE[-backbone.spatial_dims:])
    skips, bottleneck = encoder(own_input)
    assert isinstance(skips, list) and bottleneck.shape[:2] == (2, encoder.out_channels)


def test_parameter_counts_need_no_memory(backbone: Backbone) -> None:
    counts = backbone.parameter_counts()
    assert set(counts) == {"encoder", "classifier", "segmenter"}
    assert 0 < counts["encoder"] < counts["classifier"]


@pytest.mark.parametrize("protocol", ["freeze:1", "linear"])
def test_protocols_fix_their_parts_through_training(backbone: Backbone, protocol: str) -> None:
    torch.manual_seed(0)
    model = backbone.build_segmenter(1, 1, WIDTH)
    record = apply_protocol(model, Protocol.parse(protocol), backbone.stages, backbone.output_layer, backbone.stem)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    for _ in range(2):
        optimizer.zero_grad()
        model(inputs()).square().mean().backward()
        optimizer.step()
    after = model.state_dict()
    fixed = tuple(f"{part}." for part in record["fixed"])
    assert fixed and all(torch.equal(before[k], after[k]) for k in before if k.startswith(fixed))
    trained = [k for k, p in model.named_parameters() if p.requires_grad]
    assert trained and any(not torch.equal(before[k], after[k]) for k in trained)
    if protocol == "linear":
        assert all(k.startswith(backbone.output_layer + ".") for k in trained)


def test_freezing_more_stages_than_it_has_is_a_user_error(backbone: Backbone) -> None:
    model = backbone.build_classifier(1, 1, WIDTH)
    with pytest.raises(UserError, match="encoder stages"):
        apply_protocol(model, Protocol.parse(f"freeze:{len(backbone.stages) + 1}"), backbone.stages,
                       backbone.output_layer)


def suite_checkpoint(backbone: Backbone, transfers: str = "encoder+decoder") -> dict:
    torch.manual_seed(1)
    state = backbone.build_segmenter(1, 1, WIDTH).state_dict()
    if transfers == "encoder":
        state = {k: v for k, v in state.items() if k.startswith("encoder.")}
    return {"format": CHECKPOINT_FORMAT, "method": "genesis", "transfers": transfers,
            "backbone": {"name": backbone.name, "settings": backbone.settings(),
                         "in_channels": int(state[backbone.first_conv].shape[1]), "width": WIDTH},
            "state_dict": state, "extras": {}}


@pytest.mark.parametrize("transfers", ["encoder", "encoder+decoder"])
def test_its_checkpoints_read_back_key_for_key(backbone: Backbone, transfers: str, tmp_path) -> None:
    checkpoint = suite_checkpoint(backbone, transfers)
    save_checkpoint(checkpoint, tmp_path / "checkpoint.pt")
    weights = backbone.read_weights(tmp_path / "checkpoint.pt")
    assert (weights.format, weights.transfers, weights.width, weights.in_channels) == (
        "benchmark-checkpoint", transfers, WIDTH, getattr(backbone, "factor", 1))
    assert sorted(weights.state_dict) == sorted(checkpoint["state_dict"])
    assert all(torch.equal(weights.state_dict[k], v) for k, v in checkpoint["state_dict"].items())


def test_a_checkpoint_of_another_backbone_or_missing_a_key_is_refused(backbone: Backbone, tmp_path) -> None:
    checkpoint = suite_checkpoint(backbone)
    other = {**checkpoint, "backbone": {**checkpoint["backbone"], "name": "not-" + backbone.name}}
    save_checkpoint(other, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not-" + backbone.name):
        backbone.read_weights(tmp_path / "other.pt")
    missing = next(k for k in sorted(checkpoint["state_dict"]) if not k.startswith(backbone.output_layer + "."))
    del checkpoint["state_dict"][missing]
    save_checkpoint(checkpoint, tmp_path / "missing.pt")
    with pytest.raises(UserError, match="missing"):
        backbone.read_weights(tmp_path / "missing.pt")


RESTORATION_PAIRS = [(method, cell) for method in METHODS.names() for cell in CELLS
                     if METHODS.get(method).backbones == ("*",) and METHODS.get(method).transfers == "encoder+decoder"
                     and METHODS.get(method).has_pretext_task() and METHODS.get(method).supports_backbone(cell[0])]


@pytest.mark.parametrize("method, cell", RESTORATION_PAIRS, ids=[f"{m}-{n}-{d}" for m, (n, d) in RESTORATION_PAIRS])
def test_every_restoration_method_pretrains_every_backbone_of_its_dimensionality(method: str, cell: tuple) -> None:
    backbone = for_volumes(BACKBONES.create(cell[0]), cell[1])
    pretext = METHODS.create(method).build_pretext_model(backbone, 1, WIDTH)
    assert pretext(inputs()).shape == (2, 1, *CUBE)
