"""2D and 2.5D: the adapters that run a 2D network on the 3D tasks (checked against plain indexing), the
dimensionality in the run, its record and id, and the report's "3D vs 2D/2.5D" table of a small sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import error_line
from torch import nn

from benchmark.api.backbone import for_volumes
from benchmark.api.registry import BACKBONES
from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.model.dims import adapt_to_volumes, adjacent_slices, axial_slices, orthogonal_planes, stacked_volumes

FAST = ["--profile", "smoke", "--no-progress", "--profile-arg", "classification.epochs=1",
        "--profile-arg", "segmentation.epochs=1", "--profile-arg", "classification.steps_per_epoch=2",
        "--profile-arg", "segmentation.steps_per_epoch=2"]



def cubes(n: int = 2, c: int = 2, shape: tuple[int, int, int] = (4, 6, 8)) -> torch.Tensor:
    return torch.arange(n * c * shape[0] * shape[1] * shape[2], dtype=torch.float32).reshape(n, c, *shape)


def test_axial_slices_are_the_cubes_slices_and_stack_back() -> None:
    x = cubes()
    slices = axial_slices(x)
    assert slices.shape == (2 * 4, 2, 6, 8)
    for n in range(2):
        for z in range(4):
            assert torch.equal(slices[n * 4 + z], x[n, :, z])
    assert torch.equal(stacked_volumes(slices, 2), x)


def test_adjacent_slices_hold_the_neighbours_with_the_ends_repeated() -> None:
    x = cubes()
    stacked = adjacent_slices(x)
    assert stacked.shape == (8, 6, 6, 8)
    for n in range(2):
        for z in range(4):
            below, above = max(z - 1, 0), min(z + 1, 3)
            expected = torch.cat([x[n, :, below], x[n, :, z], x[n, :, above]])
            assert torch.equal(stacked[n * 4 + z], expected)


def test_orthogonal_planes_pass_through_the_centre() -> None:
    x = cubes(shape=(6, 6, 6))  # equal sides: no resizing, the planes are exact
    planes = orthogonal_planes(x)
    assert planes.shape == (2, 6, 6, 6)
    assert torch.equal(planes[:, :2], x[:, :, 3])
    assert torch.equal(planes[:, 2:4], x[:, :, :, 3])
    assert torch.equal(planes[:, 4:], x[:, :, :, :, 3])
    assert orthogonal_planes(cubes(shape=(4, 6, 8))).shape == (2, 6, 6, 8)  # coronal, sagittal resized to (Y, X)


class Probe(nn.Module):
    """A 2D 'segmenter' that shows what it was given: the sum of its input channels, per pixel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dim() == 4
        return x.sum(1, keepdim=True)


@pytest.mark.parametrize("dims, factor", [("2d", 1), ("2.5d", 3)])
def test_a_slice_wise_segmenter_gives_a_volume_of_logits(dims: str, factor: int) -> None:
    x = torch.ones(2, 1, 4, 6, 8)
    out = adapt_to_volumes(Probe(), "segmentation", dims)(x)
    assert out.shape == (2, 1, 4, 6, 8) and bool((out == factor).all())


def test_adapted_targets_keep_the_2d_keys_and_refuse_what_they_cannot_adapt() -> None:
    backbone = BACKBONES.create("unet2d")
    plain, adapted = backbone.build_segmenter(1, 1, 2), for_volumes(backbone, "2.5d").build_segmenter(1, 1, 2)
    assert list(adapted.state_dict()) == list(plain.state_dict())
    assert adapted.state_dict()[backbone.first_conv].shape[1] == 3  # three slices as channels
    assert adapted(torch.rand(2, 1, 8, 16, 16)).shape == (2, 1, 8, 16, 16)
    with pytest.raises(UserError, match="3D network"):
        for_volumes(BACKBONES.create("unet3d"), "2d")
    with pytest.raises(UserError, match="2D network"):
        for_volumes(backbone, "3d")


def record_of(results: Path, pattern: str) -> dict:
    (path,) = results.glob(f"runs/{pattern}/result.json")
    return json.loads(path.read_text())


def test_runs_record_their_dimensionality_and_adapter(tmp_path: Path) -> None:
    assert main(["run", "--method", "scratch-2d", "--task", "ncc", "--dims", "2.5d", "--results", str(tmp_path),
                 *FAST]) == 0
    record = record_of(tmp_path, "ncc-scratch-2d-2.5d-smoke-*")
    assert record["dims"] == {"name": "2.5d", "adapter": "orthogonal planes"}
    assert record["backbone"]["name"] == "unet2d" and record["identity"]["dims"] == "2.5d"


def test_a_2d_method_pretrains_a_2d_network_and_genesis_xray_reads_radiographs(tmp_path: Path) -> None:
    assert main(["run", "--method", "genesis-xray", "--task", "ncs", "--results", str(tmp_path), *FAST,
                 "--profile-arg", "pretrain_epochs=1"]) == 0
    record = record_of(tmp_path, "ncs-genesis-xray-smoke-*")
    assert record["dims"]["name"] == "2d" and record["transfer"]["transferred"] == "encoder+decoder"
    assert "radiograph" in record["pretrain_data"]["root"]


@pytest.mark.parametrize("arguments, message", [
    (["--method", "genesis", "--task", "ncc", "--backbone", "unet2d"], "cannot pretrain or initialise"),
    (["--method", "scratch-he", "--task", "ncc", "--dims", "2d"], "3D network"),
    (["--method", "scratch-2d", "--task", "ncc", "--dims", "3d"], "2D network"),
])
def test_dimensionality_mistakes_are_one_line_errors(tmp_path: Path, capsys, arguments: list[str],
                                                     message: str) -> None:
    assert main(["run", *arguments, "--results", str(tmp_path), *FAST]) == 2
    error = error_line(capsys.readouterr().err)
    assert message in error


def test_the_report_of_a_small_sweep_shows_3d_against_2d_and_2_5d(tmp_path: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "report"
    assert main(["sweep", "--methods", "scratch-he,scratch-2d", "--tasks", "ncc", "--dims", "2d,2.5d,3d",
                 "--seeds", "0,1", "--results", str(results), *FAST]) == 0
    assert len(list(results.glob("runs/*/result.json"))) == 6  # scratch-2d in 2d and 2.5d, scratch-he in 3d
    assert main(["report", "--results", str(results), "--out", str(out), "--no-progress"]) == 0
    table = (out / "dimensions.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| scratch")]
    assert [row.split(" | ")[1] for row in rows] == ["2d", "2.5d", "3d"]
    assert "central slice" in table and "orthogonal planes" in table
    assert "3D vs 2D/2.5D" in (out / "index.html").read_text()


def test_a_broken_radiograph_folder_stops_genesis_xray_and_verify_data_names_the_file(tmp_path: Path, capsys) -> None:
    from benchmark.data.phantoms.radiograph import write_radiograph_phantom
    from benchmark.data.xray import IMAGES, xray_splits

    root = tmp_path / "chestxray14"
    write_radiograph_phantom(root, 0)
    broken = root / IMAGES / xray_splits(root)["train"][0]
    broken.write_bytes(broken.read_bytes()[:100])
    assert main(["run", "--method", "genesis-xray", "--task", "ncc", "--pretrain-root", str(root),
                 "--results", str(tmp_path / "results"), *FAST]) == 2
    assert str(broken) in capsys.readouterr().err
    assert main(["verify-data", "--task", "ncc", "--data-root", str(root), "--pretrain-root", str(root),
                 "--pretrain-layout", "chestxray14"]) == 2
    assert f"{broken}: not a readable PNG" in capsys.readouterr().out


def test_batch_norm_on_a_single_voxel_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    assert main(["run", "--method", "scratch-2d", "--backbone", "resnet2d", "--task", "ncc", "--results",
                 str(tmp_path), *FAST, "--profile-arg", "classification.batch=1"]) == 2
    error = error_line(capsys.readouterr().err)
    assert "classification.batch=2" in error
