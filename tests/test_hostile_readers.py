"""Hostile inputs to the candidate, LIDC-IDRI and embolus-mask readers: each is a UserError naming the file
(or a nodule skipped with a warning), never a traceback nor wrong data accepted silently."""

from __future__ import annotations

import gzip
import logging
import re
import struct
import zlib
from pathlib import Path

import benchmark.tasks._lidc as lidc
import nibabel
import numpy as np
import pytest
import SimpleITK as sitk
from benchmark.tasks._candidates import read_candidates
from helpers import write_ct_series

from benchmark.data.convert import convert_emboli
from benchmark.data.imageio import read_image
from benchmark.errors import UserError

HEADER = "seriesuid,coordX,coordY,coordZ,class\n"
SLICE_SHAPE = (48, 48)  # (y, x), 1 mm pixels
SPACING_Z = 2.5
SQUARE = (30, 35, 30, 35)  # a nodule: rows, columns (inclusive bounds), 30 mm from the faulty ones


# --- candidates -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["inf", "0.9", "-0.5", "1.7", "nan", "2", "1.0"])
def test_a_class_other_than_0_or_1_is_refused_not_truncated(tmp_path: Path, value: str) -> None:
    path = tmp_path / "candidates.csv"
    path.write_text(f"{HEADER}a,1,2,3,1\na,1,2,3,{value}\n")
    with pytest.raises(UserError, match=rf"candidates\.csv: line 3: class '{value}' is not 0 or 1") as raised:
        read_candidates(path)
    assert len(str(raised.value).splitlines()) == 1


def test_classes_0_and_1_are_read(tmp_path: Path) -> None:
    path = tmp_path / "candidates.csv"
    path.write_text(f"{HEADER}a,1,2,3,1\na,4,5,6, 0\n")
    assert [c.label for c in read_candidates(path)["a"]] == [1, 0]



@pytest.mark.parametrize(("text", "message"), [
    ("seriesuid,coordX,coordY,coordZ,class,class\na,1,2,3,1,0\n", r"line 1: column\(s\) class named twice"),
    (f"{HEADER}a,1,2,3,1\na,1,2,3,1,0\n", r"line 3: 6 fields, more than the header's 5"),
], ids=["repeated column", "extra field"])
def test_a_repeated_column_or_a_row_longer_than_the_header_is_refused(tmp_path: Path, text: str,
                                                                      message: str) -> None:
    path = tmp_path / "candidates.csv"
    path.write_text(text)
    with pytest.raises(UserError, match=rf"candidates\.csv: {message}$"):
        read_candidates(path)

# --- LIDC-IDRI: DICOM series and XML reads ----------------------------------------------------------


def write_series(folder: Path, heights: list[float]) -> list[Path]:
    """One CT slice per height (mm), a bright square on every slice; returns the files."""
    hu = np.full((len(heights), *SLICE_SHAPE), -800, np.int16)
    hu[:, SQUARE[0]:SQUARE[1] + 1, SQUARE[2]:SQUARE[3] + 1] = 40
    return write_ct_series(folder, hu, heights, (1.0, 1.0, SPACING_Z), series="1.2.826.0.1.3680043.2.1125.9")


def outline(rows_cols: tuple[int, int, int, int]) -> list[tuple[int, int]]:
    r0, r1, c0, c1 = rows_cols
    return [(c, r) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1) if r in (r0, r1) or c in (c0, c1)]


def roi_xml(z: float | str, points: list[tuple[int, int]], inclusion: bool = True) -> str:
    edges = "".join(f"<edgeMap><xCoord>{x}</xCoord><yCoord>{y}</yCoord></edgeMap>" for x, y in points)
    return (f"<roi><imageZposition>{z}</imageZposition><inclusion>{'TRUE' if inclusion else 'FALSE'}</inclusion>"
            f"{edges}</roi>")


def write_reads(path: Path, readers: list[list[str]]) -> Path:
    """An LIDC XML file: per reader, per nodule, its rois (``roi_xml``) joined."""
    sessions = "".join("<readingSession>" + "".join(f"<unblindedReadNodule>{rois}</unblindedReadNodule>"
                                                    for rois in nodules) + "</readingSession>"
                       for nodules in readers)
    path.write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n'
                    f'<LidcReadMessage xmlns="http://www.nih.gov">{sessions}</LidcReadMessage>\n')
    return path


@pytest.mark.parametrize("cut", [2, 4000])
def test_a_truncated_slice_is_refused_not_dropped(tmp_path: Path, cut: int) -> None:
    paths = write_series(tmp_path / "series", [0.0, 2.5, 5.0, 7.5])
    assert lidc.read_series(tmp_path / "series").GetSize()[2] == 4
    paths[1].write_bytes(paths[1].read_bytes()[:-cut])
    with pytest.raises(UserError, match=rf"{paths[1]}: not a readable DICOM slice"):
        lidc.read_series(tmp_path / "series")


def test_a_series_larger_than_an_image_may_be_is_refused_before_it_is_read(tmp_path: Path, monkeypatch) -> None:
    write_series(tmp_path / "series", [0.0, 2.5, 5.0, 7.5])
    size = lidc.read_series(tmp_path / "series").GetSize()
    monkeypatch.setattr("benchmark.data.imageio.MAX_VOXELS", size[0] * size[1] * 4 - 1)  # one voxel short
    with pytest.raises(UserError, match=rf"{tmp_path / 'series'}: 4 slices of {size[0]} x {size[1]} x 1 component"):
        lidc.read_series(tmp_path / "series")


def test_a_missing_slice_is_refused(tmp_path: Path) -> None:
    write_series(tmp_path / "series", [0.0, 2.5, 5.0, 10.0, 12.5])
    with pytest.raises(UserError, match=rf"{tmp_path / 'series'}: slices at 5 and 10 mm are 5 mm apart, "
                                        r"the series' median gap is 2.5 mm"):
        lidc.read_series(tmp_path / "series")


@pytest.mark.parametrize("z", ["nan", "inf", "-inf"])
def test_a_non_finite_roi_height_is_refused(tmp_path: Path, z: str) -> None:
    xml = write_reads(tmp_path / "069.xml", [[roi_xml(z, outline(SQUARE))]])
    with pytest.raises(UserError, match=rf"069\.xml: an roi at imageZposition {z}, not a finite number"):
        lidc.read_reads(xml)


@pytest.mark.parametrize(("readers", "skipped"), [
    ([[roi_xml(2.5, outline(SQUARE), inclusion=False)]], "only exclusion rois"),
    ([[roi_xml(2.5, outline((r, r + 2, 8, 10)))] for r in (6, 10, 14)], "half of its 3 readers"),
], ids=["exclusions only", "no consensus"])
def test_a_nodule_without_voxels_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, readers: list[list[str]], skipped: str
) -> None:
    folder = tmp_path / "series"
    write_series(folder, [0.0, 2.5, 5.0])
    nodule = "".join(roi_xml(z, outline(SQUARE)) for z in (0.0, 2.5, 5.0))
    xml = write_reads(folder / "069.xml", [[nodule], *readers])
    with caplog.at_level(logging.WARNING, logger=lidc.__name__):
        crops = lidc.nodule_crops(xml).arrays
    assert skipped in caplog.text
    assert crops["mask"].shape[0] == 1 and crops["mask"][0].any()
    assert np.isfinite(crops["hu"]).all()


# --- embolus masks -> candidates ------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8, 8), (2, 8, 8, 8)], ids=["2-D", "4-D"])
def test_a_volume_that_is_not_3d_is_refused(tmp_path: Path, shape: tuple[int, ...]) -> None:
    mask = np.zeros(shape, np.uint8)
    mask[(slice(3, 5),) * len(shape)] = 1
    for folder, array in (("volumes", np.full(shape, 200, np.int16)), ("masks", mask)):
        (tmp_path / folder).mkdir()
        sitk.WriteImage(sitk.GetImageFromArray(array, isVector=False), str(tmp_path / folder / "1.2.3.nii"))
    with pytest.raises(UserError, match=rf"volumes/1\.2\.3\.nii: a {len(shape)}-D image") as raised:
        convert_emboli(tmp_path / "volumes", tmp_path / "masks", tmp_path / "out.csv", negatives=2)
    assert len(str(raised.value).splitlines()) == 1



def write_volume_and_mask(folder: Path, mask: np.ndarray) -> tuple[Path, Path]:
    """A CTPA-like volume ``1.2.3.nii`` (vessel HU) and ``mask`` on its grid; returns the two folders."""
    for name, array in (("volumes", np.full(mask.shape, 200, np.int16)), ("masks", mask)):
        (folder / name).mkdir(exist_ok=True)
        sitk.WriteImage(sitk.GetImageFromArray(array), str(folder / name / "1.2.3.nii"))
    return folder / "volumes", folder / "masks"


@pytest.mark.parametrize(("values", "shown"), [((0.3, -2.0), "-2, 0.3"), ((-1000, 40), "-1000"), ((0, 300), "300")],
                         ids=["probabilities", "a CT volume", "beyond 255"])
def test_a_mask_that_is_not_whole_labels_is_refused_not_thresholded(tmp_path: Path, values: tuple,
                                                                   shown: str) -> None:
    mask = np.zeros((6, 6, 6), np.float32 if isinstance(values[0], float) else np.int16)
    mask[:3], mask[3:] = values
    volumes, masks = write_volume_and_mask(tmp_path, mask)
    with pytest.raises(UserError, match=rf"masks/1\.2\.3\.nii: label values {shown}: an embolus mask holds whole"):
        convert_emboli(volumes, masks, tmp_path / "out.csv", negatives=2)


def test_a_mask_labelled_per_embolus_is_read(tmp_path: Path) -> None:
    mask = np.zeros((6, 6, 12), np.uint8)
    mask[1:3, 1:3, 1:3], mask[1:3, 1:3, 8:10] = 1, 2
    volumes, masks = write_volume_and_mask(tmp_path, mask)
    assert convert_emboli(volumes, masks, tmp_path / "out.csv", negatives=0)["class"].tolist() == [1, 1]


@pytest.mark.parametrize(("settings", "message"), [
    ({"hu_range": (float("nan"), 5.0)}, "--hu-range nan 5: must be two finite numbers LOW HIGH with LOW < HIGH"),
    ({"hu_range": (5.0, 5.0)}, "--hu-range 5 5: must be"),
    ({"min_distance_mm": float("nan")}, "--min-distance nan: must be a finite number of mm above 0"),
    ({"min_distance_mm": 0.0}, "--min-distance 0: must be"),
    ({"negatives": -1}, "--negatives -1: must be 0 or more"),
])
def test_settings_that_mean_nothing_are_refused(tmp_path: Path, settings: dict, message: str) -> None:
    mask = np.zeros((6, 6, 6), np.uint8)
    mask[2:4, 2:4, 2:4] = 1
    volumes, masks = write_volume_and_mask(tmp_path, mask)
    with pytest.raises(UserError, match=re.escape(message)):
        convert_emboli(volumes, masks, tmp_path / "out.csv", **settings)


def test_an_out_path_that_is_a_folder_is_named(tmp_path: Path) -> None:
    mask = np.zeros((6, 6, 6), np.uint8)
    mask[2:4, 2:4, 2:4] = 1
    volumes, masks = write_volume_and_mask(tmp_path, mask)
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match=rf"^{re.escape(str(tmp_path / 'out'))}: is a folder; --out names the"):
        convert_emboli(volumes, masks, tmp_path / "out")

# --- images: a header that describes no geometry ----------------------------------------------------


def nifti_with(path: Path, offset: int, fmt: str, values: tuple) -> Path:
    """A 2 x 2 x 2 float32 NIfTI with the header bytes at ``offset`` replaced by ``values``."""
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(8, dtype=np.float32).reshape(2, 2, 2)), str(path))
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, offset, *values)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(("offset", "fmt", "values", "message"), [
    (40, "<4h", (3, 2, -2, 2), r"header dimensions \(2, -2, 2\)"),
    (40, "<4h", (3, 2, 0, 2), r"header dimensions \(2, 0, 2\)"),
    (80, "<f", (float("nan"),), "pixdim"),
    (84, "<f", (0.0,), r"voxel size \[1.0, 0.0, 1.0\] has a zero"),  # nibabel's load makes it 1
    (268, "<f", (float("nan"),), "qoffset_x"),
    (112, "<f", (1e38,), "voxel"),  # a scaling that overflows float32
])
def test_a_nifti_header_without_a_geometry_is_refused(tmp_path: Path, offset: int, fmt: str, values: tuple,
                                                      message: str) -> None:
    path = nifti_with(tmp_path / "image.nii", offset, fmt, values)
    with pytest.raises(UserError, match=rf"image\.nii: .*{message}"):
        read_image(path)


def test_a_compressed_nifti_header_with_a_zero_voxel_size_is_refused(tmp_path: Path) -> None:
    plain = nifti_with(tmp_path / "image.nii", 88, "<f", (0.0,))
    packed = tmp_path / "image.nii.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    with pytest.raises(UserError, match=r"image\.nii\.gz: the NIfTI header's voxel size \[1.0, 1.0, 0.0\] has a zero"):
        read_image(packed)


METAIMAGE = ("ObjectType = Image\nNDims = 3\nDimSize = {dims}\nElementType = MET_UCHAR\n{extra}"
             "ElementDataFile = {data}\n")


@pytest.mark.parametrize(("dims", "extra", "data", "message"), [
    ("2 0 2", "", "image.raw", "DimSize 2 0 2"),
    ("2 2 2", "Offset = nan 0 0\n", "image.raw", "Offset = 'nan 0 0' is not a list of finite numbers"),
    ("2 2 2", "HeaderSize = -5\n", "image.raw", "HeaderSize -5"),
    ("2 2 2", "", "../outside.raw", "lies outside the header's folder"),
    ("2 2 2", "", "/etc/passwd", "lies outside the header's folder"),
    ("2 2 2", "Comment = x\n" * 300, "image.raw", "no ElementDataFile in the first"),
])
def test_a_metaimage_header_without_a_geometry_or_outside_its_folder_is_refused(
        tmp_path: Path, dims: str, extra: str, data: str, message: str) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for raw in (folder / "image.raw", tmp_path / "outside.raw"):
        raw.write_bytes(bytes(range(8)))
    (folder / "image.mhd").write_text(METAIMAGE.format(dims=dims, extra=extra, data=data))
    with pytest.raises(UserError, match=re.escape(message)):
        read_image(folder / "image.mhd")


# --- images: a header asking for too many voxels, complex voxels, array element types ------------------


def header_only(folder: Path, name: str, shape_xyz: tuple[int, int, int]) -> Path:
    """An image file whose header claims ``shape_xyz`` uint8 voxels but holds (almost) none of them."""
    if name.endswith(".mhd"):
        (folder / "image.zraw").write_bytes(zlib.compress(bytes(8)))
        dims = " ".join(map(str, shape_xyz))
        (folder / name).write_text(METAIMAGE.format(dims=dims, extra="CompressedData = True\n", data="image.zraw"))
        return folder / name
    header = nibabel.Nifti1Header()
    header.set_data_shape(shape_xyz)
    header.set_data_dtype(np.uint8)
    data = header.binaryblock + bytes(4 + 8)  # the extension flag, then 8 voxels
    (folder / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return folder / name


@pytest.mark.parametrize("name", ["image.nii", "image.nii.gz", "image.mhd"])
def test_a_header_asking_for_more_than_max_voxels_is_refused_before_its_voxels_are_read(
        tmp_path: Path, name: str) -> None:
    path = header_only(tmp_path, name, (1100, 1100, 1000))
    expected = f"{name}: size (1100, 1100, 1000) x 1 component(s) is 1210000000 voxels, more than the 1073741824"
    with pytest.raises(UserError, match=re.escape(expected)):
        read_image(path)


def test_complex_voxels_are_refused_not_cast_to_their_real_part(tmp_path: Path) -> None:
    path = tmp_path / "image.nii"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((2, 2, 2), 1 + 2j, np.complex64)), str(path))
    with pytest.raises(UserError, match=r"image\.nii: complex of 32-bit float voxels; expected real numbers"):
        read_image(path)


@pytest.mark.parametrize("channels", [1, 3])
def test_a_truncated_metaimage_of_an_array_element_type_is_named_as_truncated(tmp_path: Path, channels: int) -> None:
    extra = f"ElementNumberOfChannels = {channels}\n"
    (tmp_path / "image.mhd").write_text(METAIMAGE.format(dims="4 4 4", extra=extra, data="image.raw")
                                        .replace("MET_UCHAR", "MET_SHORT_ARRAY"))
    (tmp_path / "image.raw").write_bytes(bytes(100))
    with pytest.raises(UserError, match=rf"image\.raw: truncated: 100 of {4 ** 3 * 2 * channels} bytes"):
        read_image(tmp_path / "image.mhd")


def test_a_non_finite_nifti_orientation_is_refused_before_simpleitk_reads_it(
        tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    path = nifti_with(tmp_path / "image.nii", 280, "<f", (float("nan"),))  # srow_x[0], the sform in use
    with pytest.raises(UserError, match=r"image\.nii: the NIfTI header's srow_x \[nan"):
        read_image(path)
    assert capfd.readouterr().err == ""  # no page of ITK warnings about the matrix
