"""Reading, writing and cropping medical images (SimpleITK for every format).

SimpleITK arrays are (z, y, x) while sizes, spacings, origins and physical points are
(x, y, z); every function here says which order it takes.

Every image is read through ``read_image``, which checks the file against its header first:
SimpleITK fills a NIfTI file shorter than its header says, or a ``.nii.gz`` whose gzip
stream ends early, with zeros without a word, and reads NaN and infinite voxels of NIfTI
files as 0. So an uncompressed file (``.nii``, a MetaImage's ``.raw`` or ``.mha``) must hold
its header's offset + voxels x bytes, a compressed one (``.nii.gz``, a compressed MetaImage)
must be a complete stream of that many bytes, and float voxels must be finite, read with a
reader that keeps NaN (nibabel for NIfTI; SimpleITK keeps them in MetaImage files). Each
fault is a UserError naming the file. The cost: a compressed file is decompressed once more
to check its stream, a float NIfTI file read once more by nibabel. Before any voxel is read, the
header's size is checked against ``MAX_VOXELS``, so that a small file claiming a huge image (a
compressed stream of zeros) is refused before SimpleITK allocates it.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import nibabel
import numpy as np
import SimpleITK as sitk
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from benchmark.errors import UserError

HU_MIN, HU_MAX = -1000.0, 1000.0
CHUNK = 1 << 24  # bytes read (and decompressed) at a time by the stream checks
_METAIMAGE_SCALAR_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4,
                           "MET_UINT": 4, "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8,
                           "MET_FLOAT": 4, "MET_DOUBLE": 8}
# bytes per channel of each ElementType; a ``MET_*_ARRAY`` voxel is ElementNumberOfChannels of its scalar type
METAIMAGE_BYTES = {**_METAIMAGE_SCALAR_BYTES,
                   **{f"{name}_ARRAY": size for name, size in _METAIMAGE_SCALAR_BYTES.items()}}
METAIMAGE_HEADER_LINES = 200
MAX_VOXELS = 2**30  # voxels x components of one image (4 GiB as float32; a 512 x 512 x 1000 CT scan is 2**28)


def read_image(path: Path) -> sitk.Image:
    """Read any SimpleITK-readable file (mhd/raw, nii, nii.gz, ...), checked against its header, for
    its size (at most ``MAX_VOXELS``, before its voxels are read), for NaN/inf voxels and for a geometry
    that is no geometry (an empty axis, a spacing that is not a positive number, a non-finite origin
    or direction); UserError naming the file and the fault."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    nifti = _nifti(path) if is_nifti(path) else None  # its header read once, for the checks before and after
    if nifti is not None:  # before SimpleITK, which reads a non-finite geometry with a page of warnings
        _check_nifti_geometry(path, _header_as_written(path, nifti))
    try:
        reader = read_header(path)
        check_voxel_count(path, reader, MAX_VOXELS, "voxels")
        check_real(path, reader)
        check_complete(path)
        image = reader.Execute()
    except RuntimeError as error:
        check_complete(path)  # a file cut short or corrupt is named so, not in SimpleITK's words
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else "unreadable"
        raise UserError(f"{path}: cannot read image ({reason})") from error
    check_geometry(path, image)
    check_finite(path, image, nifti)
    return image


def read_header(path: Path, image_io: str = "") -> sitk.ImageFileReader:
    """A reader of ``path`` (with SimpleITK's ``image_io``, or the one the file calls for) that has read
    the header (size, pixel type, geometry) but no voxel; RuntimeError as SimpleITK raises it."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    if image_io:
        reader.SetImageIO(image_io)
    reader.ReadImageInformation()
    return reader


def check_voxel_count(path: Path, reader: sitk.ImageFileReader, limit: int, unit: str) -> None:
    """UserError if the header read by ``reader`` asks for more than ``limit`` voxels x components (a
    small compressed file can claim an image that does not fit in memory)."""
    count = math.prod(reader.GetSize()) * reader.GetNumberOfComponents()
    if count > limit:
        raise UserError(f"{path}: size {reader.GetSize()} x {reader.GetNumberOfComponents()} component(s) is "
                        f"{count} {unit}, more than the {limit} (2**{limit.bit_length() - 1}) an image may hold")


def check_real(path: Path, reader: sitk.ImageFileReader) -> None:
    """UserError if the header read by ``reader`` gives complex voxels: every later step would keep only
    their real part."""
    pixel_type = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    if "complex" in pixel_type:
        raise UserError(f"{path}: {pixel_type} voxels; expected real numbers")


def check_geometry(path: Path, image: sitk.Image) -> None:
    """UserError if the image has an empty axis or a spacing, origin or direction that is not finite
    (spacing: not positive). (A NIfTI header is checked before: SimpleITK puts 1 in place of a
    non-finite voxel size there.)"""
    size, spacing = image.GetSize(), np.array(image.GetSpacing())
    if min(size) < 1:
        raise UserError(f"{path}: size {size}: an image needs at least one voxel along each axis")
    if not (np.isfinite(spacing).all() and (spacing > 0).all()):
        raise UserError(f"{path}: voxel spacing {tuple(spacing)} is not a positive number along each axis")
    if not (np.isfinite(image.GetOrigin()).all() and np.isfinite(image.GetDirection()).all()):
        raise UserError(f"{path}: origin {image.GetOrigin()} or direction {image.GetDirection()} is not finite")


def _header_as_written(path: Path, nifti: nibabel.Nifti1Image) -> nibabel.Nifti1Header:
    """The NIfTI header's fields as the file holds them: nibabel's load mends some (a zero voxel size
    becomes 1, with only a log message)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as handle:
        return type(nifti.header).from_fileobj(handle, check=False)


def _check_nifti_geometry(path: Path, header: nibabel.Nifti1Header) -> None:
    """UserError if a number the header's geometry is built from is not finite (the voxel size, the
    qform's fields where qform_code > 0, the sform's rows where sform_code > 0): the readers would put
    a default in its place. (A NaN scl_slope is NIfTI's "no scaling"; a scaling that overflows is
    caught in the voxels.)"""
    keys = ["pixdim"]
    if header["qform_code"] > 0:
        keys += ["quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z"]
    if header["sform_code"] > 0:
        keys += ["srow_x", "srow_y", "srow_z"]
    for key in keys:
        values = np.asarray(header[key], dtype=np.float64)
        if key == "pixdim":  # the voxel size along the spatial axes present; 0 would be read as 1
            values = values[1:1 + min(3, len(header.get_data_shape()))]
            if not values.all():
                raise UserError(f"{path}: the NIfTI header's voxel size {values.tolist()} has a zero")
        if not np.isfinite(values).all():
            raise UserError(f"{path}: the NIfTI header's {key} {values.tolist()} is not finite")


def read_array(path: Path, dtype: type = np.float32) -> np.ndarray:
    """The voxels of an image file as a (z, y, x) array."""
    return sitk.GetArrayFromImage(read_image(path)).astype(dtype, copy=False)


def is_nifti(path: Path) -> bool:
    return Path(path).name.lower().endswith((".nii", ".nii.gz"))


def check_complete(path: Path) -> None:
    """UserError if a NIfTI or MetaImage file holds fewer bytes than its header says (other formats:
    SimpleITK's own checks)."""
    name = Path(path).name.lower()
    if is_nifti(path):
        _check_nifti_bytes(Path(path))
    elif name.endswith((".mhd", ".mha")):
        _check_metaimage_bytes(Path(path))


def check_finite(path: Path, image: sitk.Image, nifti: nibabel.Nifti1Image | None = None) -> None:
    """UserError if float voxels are NaN or infinite: in ``image`` (a scaling can overflow float32 there)
    and, for a NIfTI file (``nifti``), as nibabel reads them (SimpleITK reads a NaN as 0)."""
    arrays = [sitk.GetArrayViewFromImage(image)]
    if nifti is not None and nifti.get_data_dtype().kind in "fc":
        arrays.append(np.asanyarray(nifti.dataobj))
    for array in arrays:
        if array.dtype.kind not in "fc":
            continue
        bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        if bad:
            raise UserError(f"{path}: {bad} voxel(s) are NaN or infinite")


def _nifti(path: Path) -> nibabel.Nifti1Image:
    """The NIfTI image (header read, voxels not yet); UserError if the header cannot be read (for a
    ``.nii.gz`` whose stream ends or breaks within its first ``CHUNK`` bytes: that fault)."""
    try:
        return nibabel.load(path)
    except (ImageFileError, HeaderDataError, OSError, EOFError, ValueError, zlib.error) as error:
        if path.name.lower().endswith(".gz"):
            _gzip_length(path, CHUNK)
        raise UserError(f"{path}: cannot read image (no valid NIfTI header)") from error


def _check_nifti_bytes(path: Path) -> None:
    available = _gzip_length(path) if path.name.lower().endswith(".gz") else path.stat().st_size
    header = _nifti(path)
    if not header.shape or min(header.shape) < 1:
        raise UserError(f"{path}: header dimensions {header.shape}: each must be at least 1")
    needed = header.dataobj.offset + math.prod(header.shape) * header.get_data_dtype().itemsize
    if available < needed:
        raise UserError(f"{path}: truncated: {available} of {needed} bytes")


def _gzip_length(path: Path, most: int | None = None) -> int:
    """The decompressed length of a gzip file (reading ``most`` bytes at most, if given); UserError if its
    stream ends early or is corrupt."""
    total = 0
    try:
        with gzip.open(path, "rb") as stream:
            while (most is None or total < most) and (chunk := stream.read(CHUNK)):
                total += len(chunk)
    except EOFError as error:
        raise UserError(f"{path}: truncated gzip stream") from error
    except (gzip.BadGzipFile, zlib.error) as error:
        raise UserError(f"{path}: corrupt gzip stream ({error})") from error
    return total


def _metaimage_header(path: Path) -> tuple[dict[str, str], int]:
    """The ``key = value`` fields of a MetaImage header up to ``ElementDataFile`` (its last field), and
    the byte offset where the header ends (where ``LOCAL`` data starts)."""
    fields: dict[str, str] = {}
    with open(path, "rb") as handle:
        for _ in range(METAIMAGE_HEADER_LINES):
            key, _, value = handle.readline(4096).decode("latin-1").partition("=")
            fields[key.strip()] = value.strip()
            if key.strip() == "ElementDataFile":
                return fields, handle.tell()
    return fields, 0


MAX_METAIMAGE_FILES = 100_000  # slice files a MetaImage header may name (a LIST or a numbered pattern)


def metaimage_data_files(path: Path) -> list[Path]:
    """The files that hold a MetaImage's voxels, as its header's ``ElementDataFile`` names them: none for
    ``LOCAL`` (or a file that is not a MetaImage), the one named (``.raw``, ``.zraw`` or any other name),
    the ones listed after ``LIST``, or the numbered ones of a pattern (``slice%03d.raw 1 40 1``); those
    that exist (a missing one is the reader's error to report)."""
    path = Path(path)
    if path.suffix.lower() not in (".mhd", ".mha"):
        return []
    fields, header_end = _metaimage_header(path)
    files = (path.parent / name for name in _metaimage_data_names(path, fields, header_end))
    return [file for file in files if file.is_file()]


def _metaimage_data_names(path: Path, fields: dict[str, str], header_end: int) -> list[str]:
    """The file names ``ElementDataFile`` gives (none for ``LOCAL``), relative to the header's folder."""
    value = fields.get("ElementDataFile", "")
    if value in ("", "LOCAL"):
        return []
    if value.startswith("LIST"):
        with open(path, "rb") as handle:
            handle.seek(header_end)
            names = handle.read().decode("latin-1").split()
    elif "%" in value:
        names = _numbered_names(path, value)
    else:
        names = [value]
    if len(names) > MAX_METAIMAGE_FILES:
        raise UserError(f"{path}: ElementDataFile names {len(names)} files (at most {MAX_METAIMAGE_FILES})")
    return names


def _numbered_names(path: Path, value: str) -> list[str]:
    """The file names of a numbered ``ElementDataFile`` pattern: ``pattern first last [step]``."""
    pattern, *numbers = value.split()
    try:
        first, last, step = (int(n) for n in (*numbers, "1")[:3])
        numbered = range(first, last + 1, step)
        if len(numbered) > MAX_METAIMAGE_FILES:
            raise ValueError(f"{len(numbered)} files (at most {MAX_METAIMAGE_FILES})")
        return [pattern % number for number in numbered]
    except (ValueError, TypeError) as error:
        raise UserError(f"{path}: ElementDataFile {value!r}: not a pattern, first, last and step ({error})") \
            from error


def _check_metaimage_bytes(path: Path) -> None:
    """A MetaImage's data (in its own file, in the slice files of a ``LIST`` or a numbered pattern, each an
    equal share, or ``LOCAL`` after the header) must hold DimSize x channels x bytes per voxel, after
    ``HeaderSize`` bytes of each file; a compressed one must be a complete zlib stream of that many bytes.
    SimpleITK reads a short file with a warning and an error that names no file, or none at all. A header
    whose numbers this cannot read (an unknown type) is left to SimpleITK."""
    fields, header_end = _metaimage_header(path)
    if "ElementDataFile" not in fields:
        raise UserError(f"{path}: no ElementDataFile in the first {METAIMAGE_HEADER_LINES} lines of the header")
    _check_metaimage_numbers(path, fields)
    try:
        sizes = [int(v) for v in fields["DimSize"].split()]
        channels = int(fields.get("ElementNumberOfChannels", "1"))
        header_size = int(fields.get("HeaderSize", "0"))
        itemsize = METAIMAGE_BYTES[fields["ElementType"]]
    except (KeyError, ValueError):
        return
    if min(sizes, default=0) < 1:
        raise UserError(f"{path}: DimSize {fields['DimSize']}: each must be at least 1")
    if header_size < -1:
        raise UserError(f"{path}: HeaderSize {header_size}: -1 (the voxels end the file) or a byte count")
    names = _metaimage_data_names(path, fields, header_end)
    data = [(path.parent / name, 0) for name in names] or [(path, header_end)]  # LOCAL: after the header
    needed, left = divmod(math.prod(sizes) * channels * itemsize, len(data))
    if left:
        raise UserError(f"{path}: its {len(data)} data files cannot hold equal shares of DimSize {fields['DimSize']}")
    compressed = fields.get("CompressedData", "").lower() == "true"
    for (file, start), name in zip(data, names or ["LOCAL"]):
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise UserError(f"{path}: ElementDataFile {name!r} lies outside the header's folder")
        if not file.is_file():
            raise UserError(f"{file}: file not found (the voxels of {path.name})")
        _check_data_bytes(file, start, header_size, needed, compressed)


def _check_data_bytes(file: Path, start: int, header_size: int, needed: int, compressed: bool) -> None:
    """UserError unless ``file`` holds ``needed`` bytes of voxels from ``start`` past ``HeaderSize``."""
    if compressed:
        available = _zlib_length(file, start + max(header_size, 0))
    elif header_size == -1:  # the voxels are the file's last bytes
        available = file.stat().st_size
    else:
        available, needed = file.stat().st_size, needed + start + header_size
    if available < needed:
        raise UserError(f"{file}: truncated: {available} of {needed} bytes")


METAIMAGE_GEOMETRY = ("Offset", "Origin", "Position", "ElementSpacing", "ElementSize", "TransformMatrix", "Rotation",
                      "Orientation", "CenterOfRotation")


def _check_metaimage_numbers(path: Path, fields: dict[str, str]) -> None:
    """UserError if a geometry field holds something that is not a finite number (SimpleITK reads
    ``nan`` there as 0)."""
    for key in METAIMAGE_GEOMETRY:
        try:
            values = [float(value) for value in fields.get(key, "").split()]
        except ValueError:
            values = [math.nan]
        if not all(map(math.isfinite, values)):
            raise UserError(f"{path}: {key} = {fields[key]!r} is not a list of finite numbers")


def _zlib_length(path: Path, start: int) -> int:
    """The decompressed length of the zlib (or gzip) stream starting at byte ``start``; UserError if it
    ends early or is corrupt."""
    inflate, total = zlib.decompressobj(zlib.MAX_WBITS | 32), 0  # | 32: zlib or gzip header
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            while not inflate.eof and (chunk := handle.read(CHUNK)):
                while chunk and not inflate.eof:
                    total += len(inflate.decompress(chunk, CHUNK))  # at most CHUNK bytes out at a time
                    chunk = inflate.unconsumed_tail
            if not inflate.eof:
                total += len(inflate.flush())  # what the output limit held back
    except zlib.error as error:
        raise UserError(f"{path}: corrupt zlib stream ({error})") from error
    if not inflate.eof:
        raise UserError(f"{path}: truncated zlib stream")
    return total


def write_image(
    array: np.ndarray,
    path: Path,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
    direction: tuple[float, ...] | None = None,
) -> sitk.Image:
    """Write a (z, y, x) array with geometry given in (x, y, z); the format follows the suffix."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    if direction is not None:
        image.SetDirection(tuple(float(d) for d in direction))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=str(path).endswith(".gz"))
    return image


def scale_ct(hu: np.ndarray) -> np.ndarray:
    """Clip Hounsfield units to [-1000, 1000] and scale to [0, 1] (the paper's CT preprocessing)."""
    return ((np.clip(hu, HU_MIN, HU_MAX) - HU_MIN) / (HU_MAX - HU_MIN)).astype(np.float32)


def scale_min_max(array: np.ndarray) -> np.ndarray:
    """Per-image min-max scaling to [0, 1] (the paper's MRI preprocessing); constant -> 0."""
    low, high = float(array.min()), float(array.max())
    if high <= low:
        return np.zeros_like(array, dtype=np.float32)
    return ((array - low) / (high - low)).astype(np.float32)


def pad_to_cube(array: np.ndarray, cube: tuple[int, int, int], value: float = 0.0) -> np.ndarray:
    """Pad the last three axes symmetrically so that each is at least the cube's side (unchanged if already)."""
    widths = []
    for side, want in zip(array.shape[-3:], cube, strict=True):
        missing = max(want - side, 0)
        widths.append((missing // 2, missing - missing // 2))
    if not any(before or after for before, after in widths):
        return array
    return np.pad(array, [(0, 0)] * (array.ndim - 3) + widths, constant_values=value)


def geometry(image: sitk.Image) -> dict[str, list[float]]:
    """Origin, spacing and direction of an image, (x, y, z) order, as plain lists (JSON-ready)."""
    return {"origin": list(image.GetOrigin()), "spacing": list(image.GetSpacing()),
            "direction": list(image.GetDirection())}


def geometry_image(geometry: dict[str, list[float]]) -> sitk.Image:
    """A one-voxel image carrying ``geometry``: enough for ``world_to_index`` without the voxels."""
    image = sitk.Image([1, 1, 1], sitk.sitkUInt8)
    image.SetOrigin(geometry["origin"])
    image.SetSpacing(geometry["spacing"])
    image.SetDirection(geometry["direction"])
    return image


def world_to_index(image: sitk.Image, point_xyz: tuple[float, float, float]) -> tuple[int, int, int]:
    """The (z, y, x) voxel holding a world point in mm, using the image's direction matrix."""
    continuous = image.TransformPhysicalPointToContinuousIndex(tuple(float(p) for p in point_xyz))
    x, y, z = (int(np.floor(c + 0.5)) for c in continuous)
    return z, y, x


def crop_centered(
    array: np.ndarray, center: tuple[int, ...], size: tuple[int, ...], pad_value: float = 0.0
) -> np.ndarray:
    """A ``size`` crop of the last len(size) axes centred on ``center``; outside is padded.

    The centre voxel sits at index ``size // 2`` of the crop whatever the border, so a
    candidate near the edge stays centred (padding, never shifting).
    """
    spatial = array.shape[-len(size):]
    out = np.full(array.shape[: -len(size)] + tuple(size), pad_value, dtype=array.dtype)
    source, target = [], []
    for c, s, n in zip(center, size, spatial):
        start = int(c) - s // 2
        lo, hi = max(start, 0), min(start + s, n)
        if hi <= lo:
            return out
        source.append(slice(lo, hi))
        target.append(slice(lo - start, hi - start))
    lead = (slice(None),) * (array.ndim - len(size))
    out[lead + tuple(target)] = array[lead + tuple(source)]
    return out
