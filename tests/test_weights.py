"""Loading user-supplied pretrained weights (benchmark.model.weights): the released Models Genesis
checkpoint layout, plain state dicts, safetensors and this project's checkpoints."""

from __future__ import annotations

import hashlib
import time

import pytest
import torch
from helpers import damage_a_tensor, unet
from safetensors.torch import save_file

from benchmark.api.registry import TASKS
from benchmark.engine.pretrain import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from benchmark.errors import UserError
from benchmark.model.backbone import UNet3D
from benchmark.model.transfer import transfer_weights
from benchmark.model.weights import load_pretrained_weights

WIDTH = 4
RELEASED_ENTRIES = 106


class Payload:
    """An arbitrary picklable object: a weights file holding one must be refused."""

    def __reduce__(self):
        return (print, ("unpickled!",))


def released_state(width: int = WIDTH, in_channels: int = 1, out_channels: int = 1, seed: int = 0):
    """A state dict with the released bare names (no module.), random values everywhere, kernels in (x, y, z)."""
    torch.manual_seed(seed)
    state = {}
    for key, value in UNet3D(in_channels, out_channels, width).state_dict().items():
        bare = key.split(".", 1)[1]  # encoder.down_tr64... -> down_tr64...
        if value.is_floating_point():
            state[bare] = torch.randn_like(value) if not key.endswith("running_var") else torch.rand_like(value) + .5
        else:
            state[bare] = torch.randint(0, 1000, value.shape, dtype=value.dtype)
    return state


def project_key(bare: str) -> str:
    return f"{'encoder' if bare.startswith('down_tr') else 'decoder'}.{bare}"


def save_released(path, state):
    """torch.save in the released layout: DataParallel keys, epoch and optimiser state."""
    module_state = {f"module.{k}": v for k, v in state.items()}
    optimizer = {"state": {0: {"momentum_buffer": torch.zeros(3)}}, "param_groups": [{"lr": 1.0, "params": [0]}]}
    torch.save({"epoch": 17, "state_dict": module_state, "optimizer_state_dict": optimizer}, path)
    return path


def xyz_to_zyx(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.permute(0, 1, 4, 3, 2)


def test_released_checkpoint_lands_key_for_key_with_kernels_reordered(tmp_path):
    state = released_state()
    assert len(state) == RELEASED_ENTRIES
    path = save_released(tmp_path / "Genesis_Chest_CT.pt", state)
    loaded = load_pretrained_weights(path)
    assert (loaded["format"], loaded["transfers"], loaded["width"], loaded["in_channels"]) == \
        ("released-genesis", "encoder+decoder", WIDTH, 1)
    assert loaded["kernels_reordered"] is True
    assert loaded["fingerprint"] == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    out = loaded["state_dict"]
    assert sorted(out) == sorted(UNet3D(1, 1, WIDTH).state_dict())
    for bare, value in state.items():
        expected = xyz_to_zyx(value) if value.ndim == 5 else value
        assert torch.equal(out[project_key(bare)], expected), bare
    assert out["decoder.up_tr256.up_conv.weight"].is_contiguous()


def test_reordered_kernels_see_the_cube_in_the_orientation_they_were_trained_on(tmp_path):
    """A network fed (X, Y, Z) cubes with the released kernels == ours fed (Z, Y, X) cubes with the loaded ones."""
    state = released_state(seed=1)
    released = UNet3D(1, 1, WIDTH).double().eval()  # float64: the two differ only in summation order
    released.load_state_dict({project_key(k): v for k, v in state.items()})  # 3x3x3 / 2x2x2 kernels: shapes fit
    ours = UNet3D(1, 1, WIDTH).double().eval()
    ours.load_state_dict(load_pretrained_weights(save_released(tmp_path / "g.pt", state))["state_dict"])
    cube_xyz = torch.rand(1, 1, 16, 8, 8, dtype=torch.float64)  # (N, C, X, Y, Z), anisotropic as 64x64x32
    with torch.no_grad():
        expected = released(cube_xyz)
        got = ours(xyz_to_zyx(cube_xyz))
    assert got.shape == (1, 1, 8, 8, 16)
    torch.testing.assert_close(got, xyz_to_zyx(expected))
    assert not torch.allclose(ours(cube_xyz.permute(0, 1, 4, 2, 3)).permute(0, 1, 3, 4, 2), expected)


def test_reordering_can_be_turned_off(tmp_path):
    state = released_state()
    loaded = load_pretrained_weights(save_released(tmp_path / "g.pt", state), reorder_kernels=False)
    assert loaded["kernels_reordered"] is False
    assert all(torch.equal(loaded["state_dict"][project_key(k)], v) for k, v in state.items())


def test_full_width_released_key_set_and_shapes(tmp_path):
    start = time.perf_counter()
    state = released_state(width=32)
    path = save_released(tmp_path / "Genesis_Chest_CT.pt", state)
    loaded = load_pretrained_weights(path)
    assert (loaded["width"], loaded["in_channels"], loaded["transfers"]) == (32, 1, "encoder+decoder")
    assert len(loaded["state_dict"]) == RELEASED_ENTRIES
    assert loaded["state_dict"]["decoder.up_tr256.up_conv.weight"].shape == (512, 512, 2, 2, 2)
    assert time.perf_counter() - start < 30


def loaded_as_released(loaded, state, reordered: bool) -> bool:
    """Whether every weight of ``state`` (bare names) landed, its kernels permuted when ``reordered``."""
    return loaded["kernels_reordered"] is reordered and all(
        torch.equal(loaded["state_dict"][project_key(k)], xyz_to_zyx(v) if reordered and v.ndim == 5 else v)
        for k, v in state.items())


@pytest.mark.parametrize("naming", ["bare", "module", "project"])
def test_plain_state_dict_in_any_naming(tmp_path, naming):
    """The reference code's bare names are the released layout whatever holds them: their kernels are
    permuted; this suite's encoder./decoder. names never are."""
    state = released_state()
    renamed = {"bare": lambda k: k, "module": lambda k: f"module.{k}", "project": project_key}[naming]
    path = tmp_path / "weights.pth"
    torch.save({renamed(k): v for k, v in state.items()}, path)
    loaded = load_pretrained_weights(path)
    assert (loaded["format"], loaded["transfers"]) == ("state-dict", "encoder+decoder")
    assert loaded_as_released(loaded, state, reordered=naming != "project")


@pytest.mark.parametrize("naming", ["bare", "project"])
@pytest.mark.parametrize("name", ["weights.safetensors", "weights.bin"])
def test_safetensors_in_either_naming(tmp_path, naming, name):
    state = released_state()
    path = tmp_path / name
    save_file({(project_key(k) if naming == "project" else k): v for k, v in state.items()}, str(path))
    loaded = load_pretrained_weights(path)
    assert (loaded["format"], loaded["width"]) == ("safetensors", WIDTH)
    assert loaded_as_released(loaded, state, reordered=naming == "bare")
    assert load_pretrained_weights(path, reorder_kernels=True)["kernels_reordered"] is True


def test_the_released_tensors_load_alike_in_every_container(tmp_path):
    state = released_state()
    released = load_pretrained_weights(save_released(tmp_path / "g.pt", state))["state_dict"]
    plain, safetensors = tmp_path / "plain.pt", tmp_path / "g.safetensors"
    torch.save(state, plain)
    save_file(state, str(safetensors))
    for path in (plain, safetensors):
        loaded = load_pretrained_weights(path)["state_dict"]
        assert all(torch.equal(loaded[key], value) for key, value in released.items()), path


def test_a_file_mixing_bare_and_project_names_is_refused(tmp_path):
    state = {(project_key(k) if k.startswith("down_tr") else k): v for k, v in released_state().items()}
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    expect_error(path, "mixes the reference code's bare names", "axis order")


def project_checkpoint(transfers: str, in_channels: int = 1):
    state = {project_key(k): v for k, v in released_state(in_channels=in_channels, out_channels=in_channels).items()}
    if transfers == "encoder":
        state = {k: v for k, v in state.items() if k.startswith("encoder.")}
    return {"format": CHECKPOINT_FORMAT, "method": "demo", "transfers": transfers,
            "backbone": {"in_channels": in_channels, "width": WIDTH, "transposed": True},
            "state_dict": state, "extras": {"permutations": torch.arange(6)}, "cubes_seen": 8, "epochs": 1,
            "best_val_loss": 0.5}


@pytest.mark.parametrize("transfers", ["encoder", "encoder+decoder"])
def test_project_checkpoint(tmp_path, transfers):
    checkpoint = project_checkpoint(transfers, in_channels=2)
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(checkpoint, path)
    loaded = load_pretrained_weights(path)
    assert (loaded["format"], loaded["transfers"], loaded["width"], loaded["in_channels"],
            loaded["kernels_reordered"]) == ("benchmark-checkpoint", transfers, WIDTH, 2, False)
    assert sorted(loaded["state_dict"]) == sorted(checkpoint["state_dict"])
    assert all(torch.equal(loaded["state_dict"][k], v) for k, v in checkpoint["state_dict"].items())


def test_encoder_only_file_transfers_the_encoder(tmp_path):
    state = {k: v for k, v in released_state().items() if k.startswith("down_tr")}
    path = save_released(tmp_path / "encoder.pt", state)
    loaded = load_pretrained_weights(path)
    assert loaded["transfers"] == "encoder"
    assert all(k.startswith("encoder.") for k in loaded["state_dict"])


def test_loaded_weights_transfer_into_both_target_models(tmp_path):
    """Also: a 3-channel output convolution is accepted (never transferred) and 1-channel weights
    inflate onto a 4-channel task."""
    loaded = load_pretrained_weights(save_released(tmp_path / "g.pt", released_state(out_channels=3)))
    assert loaded["state_dict"]["decoder.out_tr.final_conv.weight"].shape[0] == 3
    for name, transferred in (("lcs", "encoder+decoder"), ("ncc", "encoder"), ("bms", "encoder+decoder")):
        task = TASKS.create(name)  # a segmentation task, a classification task, a 4-channel task
        model = task.build_model(unet(), loaded["width"])
        report = transfer_weights(model, loaded["state_dict"], loaded["transfers"], "g.pt", unet().first_conv,
                                  unet().output_layer)
        assert report["transferred"] == transferred
        assert report["loaded_keys"] > 0 and report["inflated_first_conv"] == (task.in_channels == 4)
        key = "encoder.down_tr512.ops.1.conv1.weight"
        assert torch.equal(model.state_dict()[key], loaded["state_dict"][key])


def expect_error(path, *fragments):
    with pytest.raises(UserError) as caught:
        load_pretrained_weights(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_missing_key_is_named(tmp_path):
    state = released_state()
    del state["down_tr256.ops.1.bn1.weight"]
    expect_error(save_released(tmp_path / "g.pt", state), "1 missing", "encoder.down_tr256.ops.1.bn1.weight")


def test_partial_decoder_lists_the_first_missing_keys_and_the_count(tmp_path):
    state = {k: v for k, v in released_state().items() if not k.startswith("up_tr64")}
    message = expect_error(save_released(tmp_path / "g.pt", state), "14 missing", "in all)",
                           "decoder.up_tr64.up_conv.weight")
    assert "decoder.up_tr64.ops.1.bn1.running_var" not in message  # only the first few are shown


def test_unexpected_keys_are_named(tmp_path):
    state = released_state()
    state["down_tr64.ops.2.conv1.weight"] = torch.zeros(1)
    state["classifier.fc.weight"] = torch.zeros(1)
    expect_error(save_released(tmp_path / "g.pt", state), "classifier.fc.weight")
    del state["classifier.fc.weight"]
    expect_error(save_released(tmp_path / "g.pt", state), "1 unexpected", "encoder.down_tr64.ops.2.conv1.weight")


def test_misshaped_key_is_named(tmp_path):
    state = released_state()
    state["up_tr128.ops.0.conv1.weight"] = torch.zeros(16, 48, 3, 3, 1)
    expect_error(save_released(tmp_path / "g.pt", state), "1 mis-shaped",
                 "decoder.up_tr128.ops.0.conv1.weight (16, 48, 3, 3, 1) vs (16, 48, 3, 3, 3)")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_weight_is_refused_and_named(tmp_path, value):
    state = released_state()
    state["up_tr128.ops.0.bn1.running_var"][3] = value
    safetensors = tmp_path / "g.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(safetensors))
    expect_error(safetensors, "the weight up_tr128.ops.0.bn1.running_var holds non-finite values")
    state["out_tr.final_conv.weight"].view(-1)[0] = value  # a later key of the file: only the first is named
    message = expect_error(save_released(tmp_path / "g.pt", state), "module.up_tr128.ops.0.bn1.running_var",
                           "non-finite")
    assert "out_tr" not in message


def test_a_negative_batchnorm_variance_is_refused_and_named(tmp_path):
    state = released_state()
    state["up_tr128.ops.0.bn1.running_var"][2] = -0.5
    expect_error(save_released(tmp_path / "g.pt", state), "module.up_tr128.ops.0.bn1.running_var",
                 "BatchNorm variance", "negative")


def test_pickled_arbitrary_object_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in released_state().items()}, "extra": Payload()}, path)
    expect_error(path, "refused", "weights_only")
    assert "unpickled!" not in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"", b"hello, I am not a weights file\n" * 10, "truncated"])
def test_unreadable_files_are_user_errors(tmp_path, content):
    path = tmp_path / "weights.pt"
    if content == "truncated":
        save_released(path, released_state())
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(content)
    expect_error(path)


def test_a_truncated_file_is_not_called_a_pickle(tmp_path):
    """torch's unpickler refuses the first bytes of an archive as an unsupported opcode, not as a class
    or function it met."""
    path = tmp_path / "weights.pt"
    save_released(path, released_state())
    path.write_bytes(path.read_bytes()[:2])
    message = expect_error(path, "not a readable torch file (truncated, or another format)")
    assert "pickled" not in message


def test_a_damaged_tensor_is_refused_not_loaded(tmp_path):
    """torch.load does not check the archive's CRC-32s: a flipped byte would load as a wrong weight."""
    path = tmp_path / "weights.pt"
    save_released(path, released_state())
    damage_a_tensor(path)
    expect_error(path, "fails its CRC-32 check")
    cached = tmp_path / "checkpoint.pt"
    save_checkpoint({"state_dict": released_state()}, cached)
    damage_a_tensor(cached)
    with pytest.raises(UserError, match=r"checkpoint\.pt: damaged: its member '.*' fails its CRC-32 check"):
        load_checkpoint(cached)


def test_corrupt_safetensors_and_odd_contents_are_user_errors(tmp_path):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    expect_error(path, "safetensors")
    other = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], other)
    expect_error(other, "not a weights file")
    expect_error(tmp_path / "absent.pt", "no such")
