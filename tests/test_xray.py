"""Radiographs: the ChestX-ray14 layout reader, the 2D pretraining pool and the DRR phantom."""

from __future__ import annotations

import csv
import logging
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from benchmark.data.phantoms.radiograph import (
    SIZE,
    TEST_PATIENTS,
    attenuation,
    grey_levels,
    line_integrals,
    on_detector,
    patient_scan,
    radiograph,
    write_patient,
)
from benchmark.data.phantoms.radiograph import write_radiograph_phantom as write_phantom
from benchmark.data.xray import (
    DATA_ENTRY,
    IMAGES,
    TEST_LIST,
    TRAIN_VAL_LIST,
    downsample,
    is_validation_patient,
    load_xray_pool,
    read_radiograph,
    verify_xray_root,
    xray_splits,
)
from benchmark.errors import UserError

SEED = 0
PATCH = (32, 32)
HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
          "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("xray-phantom")
    write_phantom(root, SEED)
    return root


@pytest.fixture
def copy(phantom: Path, tmp_path: Path) -> Path:
    """A copy of the phantom that a test may damage."""
    return Path(shutil.copytree(phantom, tmp_path / "copy"))


def rows(root: Path) -> list[dict[str, str]]:
    with open(root / DATA_ENTRY, newline="") as handle:
        return list(csv.DictReader(handle))


def patients_of(root: Path, names: list[str]) -> set[str]:
    patient = {row["Image Index"]: row["Patient ID"] for row in rows(root)}
    return {patient[name] for name in names}


def one_line_error(call, *names: str) -> str:
    """Run ``call``; it must raise a one-line UserError naming each of ``names``."""
    with pytest.raises(UserError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    for name in names:
        assert name in message
    return message


def write_png(path: Path, pixels: np.ndarray, vector: bool = False) -> None:
    sitk.WriteImage(sitk.GetImageFromArray(pixels, isVector=vector), str(path))


def drop_lines(path: Path, text: str) -> None:
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines() if text not in line))


# --- the phantom ---------------------------------------------------------------------------------


def test_phantom_writes_the_chestxray14_layout(phantom: Path) -> None:
    assert (phantom / DATA_ENTRY).read_text().splitlines()[0] == HEADER
    table = rows(phantom)
    names = [row["Image Index"] for row in table]
    assert len(names) == 30 and len({row["Patient ID"] for row in table}) == 24
    assert sorted(p.name for p in (phantom / IMAGES).iterdir()) == sorted(names)
    assert {row["Finding Labels"] for row in table} == {"No Finding", "Nodule"}
    assert {row["View Position"] for row in table} == {"PA"}
    assert any(row["Follow-up #"] == "1" for row in table)
    for row in table:
        assert 1.0 < float(row["OriginalImagePixelSpacing[x"]) < 2.0
        assert row["Image Index"] == f"{int(row['Patient ID']):08d}_{int(row['Follow-up #']):03d}.png"
        image = sitk.ReadImage(str(phantom / IMAGES / row["Image Index"]), imageIO="PNGImageIO")
        assert image.GetPixelID() == sitk.sitkUInt8 and image.GetSize() == (SIZE, SIZE)
    train_val = (phantom / TRAIN_VAL_LIST).read_text().split()
    test = (phantom / TEST_LIST).read_text().split()
    assert sorted(train_val + test) == sorted(names)
    assert patients_of(phantom, test) == {str(p) for p in TEST_PATIENTS}
    assert not patients_of(phantom, train_val) & patients_of(phantom, test)


def test_phantom_is_deterministic_in_the_seed(phantom: Path, tmp_path: Path) -> None:
    (tmp_path / IMAGES).mkdir()
    again = write_patient(tmp_path, SEED, 4)  # a patient with a follow-up
    assert [row[0] for row in again] == ["00000004_000.png", "00000004_001.png"]
    for row in again:
        assert (tmp_path / IMAGES / row[0]).read_bytes() == (phantom / IMAGES / row[0]).read_bytes()
    other = tmp_path / "other"
    (other / IMAGES).mkdir(parents=True)
    write_patient(other, SEED + 1, 4)
    assert (other / IMAGES / again[0][0]).read_bytes() != (phantom / IMAGES / again[0][0]).read_bytes()


def test_drr_is_darker_where_the_lungs_are(phantom: Path) -> None:
    scan = patient_scan(SEED, 1)
    pixels, _ = radiograph(scan)
    assert np.array_equal(read_radiograph(phantom / IMAGES / "00000001_000.png"), pixels)
    spacing_z, spacing_y, spacing_x = scan.image.GetSpacing()[::-1]
    hu = sitk.GetArrayFromImage(scan.image)

    def path_mm(mask: np.ndarray) -> np.ndarray:
        return on_detector(line_integrals(mask.astype(np.float32), spacing_y), (spacing_z, spacing_x))[0]

    lung, body = path_mm(scan.lung), path_mm(hu > -500)
    through_lungs = pixels[lung > 60].astype(float).mean()
    tissue_only = pixels[(lung == 0) & (body > 100)].astype(float).mean()
    assert through_lungs + 40 < tissue_only
    assert pixels[body < 1].max() < 30  # air beside the body is nearly black


def test_drr_grey_levels_rise_with_the_line_integral() -> None:
    integrals = np.linspace(0.0, 6.0, 601)
    grey = grey_levels(integrals)
    assert grey[0] == 0 and grey.dtype == np.uint8
    assert np.all(np.diff(grey.astype(int)) >= 0) and grey[-1] > 240
    assert attenuation(np.array([-1000.0, -2000.0]))[1] == 0.0
    assert attenuation(np.array([0.0]))[0] < attenuation(np.array([400.0]))[0]


def test_drr_projects_along_y_with_the_head_up() -> None:
    hu = np.full((40, 30, 40), -1000.0, np.float32)
    hu[34:36, :, 4:6] = 400.0  # a bone rod along y (AP), high in z (near the head), low in x
    hu[2:4, 10:11, 30:32] = 400.0  # a short one low in z, high in x
    image = on_detector(line_integrals(attenuation(hu), 2.0), (2.0, 2.0))[0]
    top, left = np.unravel_index(np.argmax(image), image.shape)
    assert top < SIZE // 4 and left < SIZE // 4
    low = image[3 * SIZE // 4:, 3 * SIZE // 4:]
    assert 0 < low.max() < image.max() / 10  # the short rod: about 1/30th of the long one's path


# --- the splits ----------------------------------------------------------------------------------


def test_splits_are_disjoint_by_patient(phantom: Path) -> None:
    splits = xray_splits(phantom)
    patients = {name: patients_of(phantom, names) for name, names in splits.items()}
    assert all(patients.values())
    assert not patients["train"] & patients["val"]
    assert not (patients["train"] | patients["val"]) & patients["test"]
    assert all(is_validation_patient(p) for p in patients["val"])
    assert sum(map(len, splits.values())) == 30


def test_rows_without_the_trailing_empty_column_are_read(phantom: Path, copy: Path) -> None:
    table = (copy / DATA_ENTRY).read_text().splitlines()
    (copy / DATA_ENTRY).write_text("\n".join(line.rstrip(",") for line in table) + "\n")
    assert xray_splits(copy) == xray_splits(phantom)


# --- the pool ------------------------------------------------------------------------------------


def test_pool_shape_range_and_determinism(phantom: Path) -> None:
    pool = load_xray_pool(phantom, PATCH, "train", 3, SEED)
    train = xray_splits(phantom)["train"]
    assert pool.shape == (3 * len(train), 1, 1, *PATCH) and pool.dtype == np.float32
    assert pool.min() >= 0.0 and pool.max() <= 1.0 and pool.std() > 0.05
    assert np.array_equal(pool, load_xray_pool(phantom, PATCH, "train", 3, SEED))
    assert not np.array_equal(pool, load_xray_pool(phantom, PATCH, "train", 3, SEED + 1))
    val = load_xray_pool(phantom, (SIZE, SIZE), "val", 1, SEED)
    first = read_radiograph(phantom / IMAGES / xray_splits(phantom)["val"][0])
    assert np.array_equal(val[0, 0, 0], first / np.float32(255))  # grey / 255, unclipped, unresized


def test_an_images_patches_do_not_depend_on_the_others(phantom: Path, copy: Path) -> None:
    pool = load_xray_pool(phantom, PATCH, "train", 2, SEED)
    drop_lines(copy / TRAIN_VAL_LIST, "00000001_")
    drop_lines(copy / DATA_ENTRY, "00000001_")
    assert np.array_equal(load_xray_pool(copy, PATCH, "train", 2, SEED), pool[2:])


def test_the_test_list_is_never_pooled(phantom: Path) -> None:
    one_line_error(lambda: load_xray_pool(phantom, PATCH, "test", 1, SEED), TEST_LIST)


def test_a_patch_larger_than_the_image_is_refused(phantom: Path) -> None:
    one_line_error(lambda: load_xray_pool(phantom, (SIZE + 1, 8), "train", 1, SEED), ".png", "patch")


def test_real_size_images_are_downsampled_by_an_integer_factor() -> None:
    real = np.random.default_rng(0).integers(0, 256, (1024, 1024)).astype(np.uint8)
    small = downsample(real)
    assert small.shape == (256, 256) and small.dtype == np.float32
    assert small[1, 2] == pytest.approx(real[4:8, 8:12].mean())
    phantom_sized = real[:128, :100]
    assert np.array_equal(downsample(phantom_sized), phantom_sized.astype(np.float32))
    assert downsample(real[:700, :1000]).shape == (350, 500)  # factor 2; the odd column dropped


# --- strict reading ------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", ["half", "all but IEND"])
def test_a_truncated_png_is_a_one_line_error(copy: Path, keep: str) -> None:
    path = copy / IMAGES / xray_splits(copy)["train"][0]
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2] if keep == "half" else whole[:-12])
    one_line_error(lambda: load_xray_pool(copy, PATCH, "train", 1, SEED), str(path), "PNG")
    assert verify_xray_root(copy) == [f"{path}: not a readable PNG (truncated, corrupt or another format)"]


@pytest.mark.parametrize("name", [TRAIN_VAL_LIST, TEST_LIST, DATA_ENTRY])
def test_a_missing_list_or_table_is_a_one_line_error(copy: Path, name: str) -> None:
    (copy / name).unlink()
    one_line_error(lambda: load_xray_pool(copy, PATCH, "train", 1, SEED), str(copy / name))
    assert len(verify_xray_root(copy)) == 1


def test_a_listed_image_absent_is_a_one_line_error(copy: Path) -> None:
    path = copy / IMAGES / xray_splits(copy)["val"][-1]
    path.unlink()
    one_line_error(lambda: load_xray_pool(copy, PATCH, "val", 1, SEED), str(path), TRAIN_VAL_LIST)
    assert verify_xray_root(copy) == [f"{path}: file not found"]


def test_lists_and_table_must_agree(copy: Path) -> None:
    original = (copy / TRAIN_VAL_LIST).read_text()
    (copy / TRAIN_VAL_LIST).write_text(original + "99999999_000.png\n")
    one_line_error(lambda: xray_splits(copy), DATA_ENTRY, "99999999_000.png")
    (copy / TRAIN_VAL_LIST).write_text(original.replace("00000002_000.png\n", ""))
    one_line_error(lambda: xray_splits(copy), DATA_ENTRY, "00000002_000.png", "neither")
    (copy / TRAIN_VAL_LIST).write_text(original + "00000024_000.png\n")
    one_line_error(lambda: xray_splits(copy), TEST_LIST, "00000024_000.png", TRAIN_VAL_LIST)
    (copy / TRAIN_VAL_LIST).write_text(original + original.splitlines()[0] + "\n")
    one_line_error(lambda: xray_splits(copy), TRAIN_VAL_LIST, "twice")


def test_a_patient_in_both_lists_is_a_one_line_error(copy: Path) -> None:
    test_image = (copy / TEST_LIST).read_text().split()[0]
    (copy / TRAIN_VAL_LIST).write_text((copy / TRAIN_VAL_LIST).read_text() + test_image.replace("_000", "_001") + "\n")
    table = (copy / DATA_ENTRY).read_text()
    row = next(line for line in table.splitlines() if line.startswith(test_image))
    (copy / DATA_ENTRY).write_text(table + row.replace("_000", "_001") + "\n")
    one_line_error(lambda: xray_splits(copy), TEST_LIST, "patient 19", "by patient")


def test_a_malformed_table_is_a_one_line_error(copy: Path) -> None:
    table = (copy / DATA_ENTRY).read_text().splitlines()
    (copy / DATA_ENTRY).write_text("\n".join([table[0], "00000001_000.png,Nodule"] + table[2:]) + "\n")
    one_line_error(lambda: xray_splits(copy), DATA_ENTRY, "line 2")
    (copy / DATA_ENTRY).write_text("\n".join([table[0].replace("Patient ID", "Patient")] + table[1:]) + "\n")
    one_line_error(lambda: xray_splits(copy), DATA_ENTRY, "Patient ID")


@pytest.mark.parametrize("name", [TRAIN_VAL_LIST, TEST_LIST, DATA_ENTRY])
def test_a_list_or_table_that_is_not_utf8_text_is_a_one_line_error(copy: Path, name: str) -> None:
    (copy / name).write_bytes((copy / name).read_bytes() + b"\xff\xfe.png\n")
    one_line_error(lambda: xray_splits(copy), str(copy / name), "not utf-8")


def test_a_table_the_csv_reader_refuses_is_a_one_line_error(copy: Path) -> None:
    (copy / DATA_ENTRY).write_bytes((copy / DATA_ENTRY).read_bytes() + b'"' + b"x" * 200_000 + b'",1\n')
    one_line_error(lambda: xray_splits(copy), str(copy / DATA_ENTRY), "not a readable CSV table")


def test_other_pngs_and_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    grey = np.random.default_rng(0).integers(0, 256, (20, 30)).astype(np.uint8)
    rgba = np.stack([grey, grey, grey, np.full_like(grey, 255)], axis=-1)
    write_png(tmp_path / "rgba.png", rgba, vector=True)
    with caplog.at_level(logging.INFO, logger="benchmark.data.xray"):
        assert np.array_equal(read_radiograph(tmp_path / "rgba.png"), grey)
    assert "4 channels; the first is used" in caplog.text
    write_png(tmp_path / "deep.png", grey.astype(np.uint16) * 257)
    one_line_error(lambda: read_radiograph(tmp_path / "deep.png"), "deep.png", "16-bit")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 20, 30), np.uint8)), str(tmp_path / "volume.mha"))
    (tmp_path / "volume.png").write_bytes((tmp_path / "volume.mha").read_bytes())
    one_line_error(lambda: read_radiograph(tmp_path / "volume.png"), "volume.png", "not a readable PNG")


def test_a_png_claiming_more_than_max_pixels_is_refused_before_its_pixels_are_decoded(tmp_path: Path) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 9000, 9000, 8, 0, 0, 0, 0)  # 8-bit grey, of which one row is written
    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                                        + chunk(b"IDAT", zlib.compress(bytes(9001))) + chunk(b"IEND", b""))
    one_line_error(lambda: read_radiograph(tmp_path / "huge.png"), "huge.png",
                   "size (9000, 9000) x 1 component(s) is 81000000 pixels, more than the 67108864 (2**26)")


def test_an_empty_validation_split_is_a_one_line_error(copy: Path) -> None:
    val = set(xray_splits(copy)["val"])
    (copy / TRAIN_VAL_LIST).write_text("".join(f"{n}\n" for n in xray_splits(copy)["train"]))
    (copy / TEST_LIST).write_text((copy / TEST_LIST).read_text() + "".join(f"{n}\n" for n in sorted(val)))
    one_line_error(lambda: load_xray_pool(copy, PATCH, "val", 1, SEED), TRAIN_VAL_LIST, "no images")
    assert verify_xray_root(copy) == [f"{copy / TRAIN_VAL_LIST}: no images in the val split"]


def test_verify_finds_nothing_in_the_phantom(phantom: Path) -> None:
    assert verify_xray_root(phantom) == []
