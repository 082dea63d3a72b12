"""A DICOM series (a folder of slices, or one ``.dcm`` file) read as one volume, with its checks.

:class:`DicomVolume` orders the slices along the slice normal and refuses a folder that is not one
volume: several series, several planes, slices that share a position, a mix of slices with and
without a position, differing matrix sizes, CT slices without (or with unusable) rescale tags,
multi-frame files without per-frame functional groups, and files that are not DICOM. The frames
of an Enhanced CT or MR file are its slices, each with the geometry and rescale its functional
groups state (DICOM PS3.3 C.7.6.16), checked as single-frame slices are. A series whose slices
are unevenly spaced (a missing slice, mixed spacing) is read with a warning and says so in
:attr:`DicomVolume.uneven_slices`: its 2D slices train as they are, but no single slice spacing
(and no one affine) describes it, so prediction refuses it (its label map would be misplaced).
A slice shifted within its plane from where that one affine puts it (evenly spaced along the
normal, but re-centred) is read with a warning too, and named in :attr:`DicomVolume.shifted_slices`:
the affine, and a NIfTI written with it, misplaces that slice; each slice's own geometry
(:meth:`DicomVolume.slice_pixel_to_patient`) places it where it lies.

Geometry: row/column spacing is ``PixelSpacing``. The slice spacing is the step between
neighbouring ``ImagePositionPatient`` projected on the slice normal (from
``ImageOrientationPatient``) where every slice states both; otherwise (no orientation, so no
normal to measure along) ``SpacingBetweenSlices`` (its size: some writers sign it), else
``SliceThickness``, else 1 mm (with a warning for a series of several slices); a file whose tags
state only a spacing that is no size > 0 (not a number, not finite, 0) is refused, naming them.
Every slice must have the first one's ``PixelSpacing``. The voxel-to-world affine
(:attr:`DicomVolume.patient_affine`) needs both tags on the first slice; its slice column is the
step from the first slice's position to the last's, which may lean off the normal (a
gantry-tilted CT: a sheared affine).
It is re-exported by :mod:`inpaintssl.data.readers`, whose :func:`~inpaintssl.data.readers.open_volume`
opens a folder or ``.dcm`` file with it. Needs pydicom (``dicom`` extra).

Example:
    >>> import tempfile
    >>> DicomVolume(tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    inpaintssl.data.base.DataError: DICOM series folder ... holds no files
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any, BinaryIO, TypeGuard

import numpy as np

from inpaintssl.data.base import DataError
from inpaintssl.data.checks import existing_path
from inpaintssl.data.dicom_pixels import is_compressed, missing_decoder
from inpaintssl.data.orientation import LPS_TO_RAS
from inpaintssl.data.preprocess import root_sum_of_squares
from inpaintssl.data.readers import Volume
from inpaintssl.extras import import_optional
from inpaintssl.listing import first_and_more
from inpaintssl.warning_format import warn_each_time

__all__ = [
    "DicomEchoesRssVolume",
    "DicomVolume",
    "SeriesAnnotation",
    "SeriesSummary",
    "SeveralSeriesError",
    "check_series_param",
    "dicom_object_kind",
    "echoes_of",
    "finite_number",
    "first_slice_header",
    "headers_read_once",
    "is_echo_number",
    "is_series_choice",
    "list_series",
    "open_echoes",
    "open_series",
    "select_series",
    "slice_header",
]


class SeveralSeriesError(DataError):
    """A folder (or file) read as one DICOM series holds the files of several: a study, from which
    ``series=`` chooses one (:func:`select_series`). The message lists them, or names the file that
    is a series of its own and no slice (a SEG, an RT Structure Set, or an object without Rows and
    Columns such as a structured report), as study exports hold them beside the images."""


class DicomVolume(Volume):
    """A DICOM series folder (or one ``.dcm`` file) as HU: ``pixel * RescaleSlope + RescaleIntercept``.

    Headers are read at construction to order the slices along the slice normal
    (``ImagePositionPatient`` projected on the ``ImageOrientationPatient`` normal, falling back to
    ``InstanceNumber``) and to check that the files are one series: one ``SeriesInstanceUID`` (files
    without one are taken as one series), one ``ImageOrientationPatient``, one slice per position
    and one matrix size; an ``ImagePositionPatient`` that is no 3 finite numbers, or an
    ``ImageOrientationPatient`` that is no two perpendicular unit vectors (6 numbers, within 0.01),
    is refused naming the file (and frame) and the tag. An Enhanced CT/MR file's frames are slices
    too: each frame's position, orientation, pixel spacing and rescale come from its own
    functional groups, else the shared ones (``PerFrameFunctionalGroupsSequence``,
    ``SharedFunctionalGroupsSequence``), and its frames are decoded together on the first read; a
    multi-frame file without per-frame groups is refused (nothing says where its frames lie).
    Slices whose steps differ from their median by more than 1 % (or 0.02 mm: the rounding of
    positions written to two decimals) are read with a warning (:attr:`uneven_slices`); so are slices whose
    ``ImagePositionPatient`` lies within their plane off the line the affine steps along, by more
    than a tenth of a pixel (:attr:`shifted_slices`). Pixel data is read per slice.
    Row/column spacing comes from ``PixelSpacing``; slice spacing from the positions along the
    normal where every slice states ``ImagePositionPatient`` and ``ImageOrientationPatient``, else
    ``SpacingBetweenSlices``, else ``SliceThickness``. Slices are rows x columns as stored.
    A CT slice (``Modality`` CT) must carry both rescale tags; other modalities default to slope 1,
    intercept 0. ``MONOCHROME1`` slices are read as stored, not inverted: the photometric
    interpretation tells a viewer to draw low values bright, while HU and MR signal are the values
    themselves (the modality LUT; pydicom's ``apply_modality_lut`` does the same). Colour slices
    are refused. Needs pydicom (``dicom`` extra).
    """

    # pydicom parses each file in Python, holding its lock: on threads the reads took turns and
    # contended (12 CT series of 64 slices checked on 2 threads: 1.34 s against 1.13 s one by one).
    reads_on_threads = False

    def __init__(self, path: str | Path, *, echo: int | None = None, series: str | int | None = None) -> None:
        path = existing_path(path, what="DICOM series", directory_ok=True)
        self._open(path, _read_headers(path, series=series), echo=echo, series=series)

    def _open(
        self,
        path: Path,
        headers: list[tuple[Any, Path]],
        *,
        echo: int | None,
        series: str | int | None = None,
    ) -> None:
        """Check the series' ``headers`` (each slice's, unsorted) and set the volume up from them."""
        _check_one_series(headers, path)
        self.series = series
        """The series chosen among those under ``path`` (see :func:`select_series`), or ``None``:
        ``path`` holds one series."""
        self.series_files = tuple(sorted(dict.fromkeys(str(f) for _, f in headers)))
        """Every file of the series, every echo's (:attr:`files`: the echo read), in path order:
        what :func:`echoes_of` reads, and no other file under a study's folder."""
        echoes = _SeriesEchoes.of(headers)
        if echo is not None:
            headers = echoes.select(headers, _checked_echo(echo), path)
        _check_plane_tags(headers)
        _check_one_orientation(headers, path)
        _check_one_ordering(headers, path)
        headers.sort(key=lambda pair: _slice_position(pair[0]))
        _check_distinct_positions(headers, path, echoes=None if echo is not None else echoes)
        self.echo = echo
        """The echo read (1: the shortest echo time), or ``None``: the series as it is."""
        self.echo_times_ms = echoes.times_ms
        """Every echo time of the series in ms, shortest first (``EchoTime``, an Enhanced frame's
        ``EffectiveEchoTime``); ``()`` where its slices do not all state one."""
        first = headers[0][0]
        size = (int(first.Rows), int(first.Columns))
        pixel_spacing = _pixel_spacing(first, headers[0][1])
        for ds, f in headers:
            if (int(ds.Rows), int(ds.Columns)) != size:
                raise DataError(
                    f"DICOM file {f} is {int(ds.Rows)}x{int(ds.Columns)} but the series {path} is "
                    f"{size[0]}x{size[1]}; expected one matrix size per series"
                )
            _check_greyscale(ds, f)
            if not all(
                math.isclose(a, b, rel_tol=1e-4) for a, b in zip(_pixel_spacing(ds, f), pixel_spacing)
            ):
                raise DataError(
                    f"DICOM file {_named(ds, f)} has PixelSpacing {_spacing_text(ds, f)} but the series "
                    f"{path} has {_spacing_text(first, headers[0][1])} (its first slice, "
                    f"{_named(*headers[0], short=True)}); "
                    "expected one pixel spacing per series"
                )
            _check_ct_rescale(ds, f)
            _check_rescale_values(ds, f)
        # After the per-file checks: a stray file of another size is named as such, not as a gap.
        self.uneven_slices = _uneven_steps(headers, path)
        """Where the slice spacing breaks (a missing slice, mixed spacing); ``None``: evenly spaced."""
        if self.uneven_slices is not None:
            warn_each_time(
                f"{self.uneven_slices}. Its slices are read as they are, but no one slice spacing fits "
                "them: the spacing taken (the median step) and the volumes in mL along the slice axis "
                "are approximate, and predict refuses the series",
                UserWarning,
            )
        self.shifted_slices = _shifted_in_plane(headers, path, pixel_spacing)
        """Which slice lies off the series' one affine within its plane, and by how much; ``None``:
        every slice lies where the affine puts it (within a tenth of a pixel)."""
        if self.shifted_slices is not None:
            warn_each_time(
                f"{self.shifted_slices}. Its pixels are read as stored, and RT Structure Set contours and "
                "DICOM SEG frames that reference the slice are placed on it where it lies; but a NIfTI "
                "image or label map written "
                "with the series' one affine (patient_affine, as predict's NIfTI output is) puts that "
                "slice's pixels that far from where they were scanned",
                UserWarning,
            )
        self._files = [f for _, f in headers]
        self._planes = _pixel_to_patient(headers)
        self._instances = tuple(
            (
                str(getattr(ds, "SOPInstanceUID", "") or ""),
                ds.frame + 1 if isinstance(ds, _Frame) else None,
            )
            for ds, _ in headers
        )
        self.compressed = any(is_compressed(ds) for ds, _ in headers)
        """Whether the series' pixel data is stored compressed (JPEG, JPEG-LS, JPEG 2000, RLE: see
        :mod:`~inpaintssl.data.dicom_pixels`). Under a decompressed folder (``data.cache_dir``) such
        a series is decoded once, whole, and its copy memory-mapped by every read after
        (:mod:`~inpaintssl.data.decompressed`); without one, each read decodes its slice."""
        self.frame_of_reference_uid = str(getattr(first, "FrameOfReferenceUID", "") or "") or None
        """The series' ``FrameOfReferenceUID`` (its first slice's); ``None`` where it states none."""
        self.modality = str(getattr(first, "Modality", "") or "").strip().upper() or None
        """The series' ``Modality`` (``"CT"``, ``"MR"``, ...: its first slice's); ``None`` if it has none."""
        self._frames: list[_FrameRead | None] = [
            _FrameRead.of(ds) if isinstance(ds, _Frame) else None for ds, _ in headers
        ]
        """Per stored slice: where an Enhanced file's frame is read from; ``None`` for a single-frame file."""
        step = _slice_spacing(headers)
        if step is None and len(headers) > 1:
            warn_each_time(
                f"DICOM series {path} states no slice spacing (no ImagePositionPatient with "
                "ImageOrientationPatient on every slice, no SpacingBetweenSlices, no SliceThickness): "
                "1 mm is assumed, so its volumes in mL along the slice axis are slice counts x 1 mm",
                UserWarning,
            )
        spacing = (*pixel_spacing, 1.0 if step is None else step)
        super().__init__(
            path, (*size, len(headers)), slice_axis=2, ranks={3}, spacing=spacing, what="DICOM series"
        )
        self.files = tuple(dict.fromkeys(str(f) for f in self._files))  # an Enhanced file once
        # Spacing is geometry only when the file states it; the 1 mm fallbacks are placeholders.
        self.has_geometry = _states_pixel_spacing(first)
        self.patient_affine = _patient_affine(headers[0][0], headers[-1][0], self.spacing, len(headers))
        """Voxel-to-world (RAS+) matrix from the series' patient geometry; ``None`` without it."""

    @property
    def source(self) -> str:
        """The series, and the series and echo read where they were chosen (see :attr:`Volume.source`).

        Two echoes of one Enhanced file read the same file: the echo tells their decompressed
        copies apart (:mod:`~inpaintssl.data.decompressed` names a copy by its source).
        """
        chosen = [] if self.series is None else [f"series {self.series!r}"]
        chosen += [] if self.echo is None else [f"echo {self.echo}"]
        return f"{self.path} ({', '.join(chosen)})" if chosen else str(self.path)

    @property
    def slice_sources(self) -> tuple[tuple[Path, int | None], ...]:
        """Per stored slice (along axis 2, in position order): its file, and its frame in an Enhanced file.

        The frame is 0-based (DICOM counts from 1); ``None`` for a single-frame file. What a
        derived object such as a DICOM SEG references, slice by slice.
        """
        return tuple(
            (f, None if frame is None else frame.frame) for f, frame in zip(self._files, self._frames)
        )

    def slices_by_instance(self) -> dict[tuple[str, int | None], int]:
        """``(SOPInstanceUID, frame number)`` -> stored slice: how derived objects name a slice.

        The frame number counts from 1 as DICOM's ``ReferencedFrameNumber`` does; ``None`` for a
        single-frame file. A DICOM SEG's frames and an RT Structure Set's contours reference the
        slices they were drawn on so; files without a ``SOPInstanceUID`` are left out. Read from
        the headers opened with the series: nothing is read again.
        """
        return {key: k for k, key in enumerate(self._instances) if key[0]}

    def slice_pixel_to_patient(self) -> np.ndarray | None:
        """Per stored slice, the matrix from its pixels to patient LPS mm, from its own header.

        ``(slices, 3, 4)``: slice ``k``'s ``(row, column, 0, 1)`` -> its point in millimetres, by
        DICOM's pixel-to-patient formula (PS3.3 C.7.6.2.1.1) with that slice's
        ``ImagePositionPatient``, ``ImageOrientationPatient`` and ``PixelSpacing`` (an Enhanced
        frame's from its functional groups, as :func:`slice_header` gives them). Where a slice lies
        off the series' one affine (:attr:`shifted_slices`), this places it where it lies, as
        derived objects drawn on it (an RT Structure Set's contours) do. Read from the headers
        opened with the series: nothing is read again.

        Returns:
            A copy, or ``None`` where the slices state no ``ImagePositionPatient`` and
            ``ImageOrientationPatient`` (their ``PixelSpacing`` taken as 1 mm where absent, as the
            volume's spacing is).
        """
        return None if self._planes is None else self._planes.copy()

    @property
    def world_affine(self) -> np.ndarray | None:
        """:attr:`patient_affine`: DICOM states its geometry per slice, not as one affine."""
        return self.patient_affine

    def _set_world_affine(self, affine: np.ndarray) -> None:
        self.patient_affine = affine

    @property
    def _decoded_once(self) -> bool:
        # A compressed series under a decompressed folder (data.cache_dir) is decoded once, whole,
        # for every process and run: decoding a JPEG 2000 slice costs more than a training step's
        # share of it, on every read, while its memory-mapped copy is read in place.
        return self.compressed and self.decompressed_folder is not None

    def _array(self) -> np.ndarray:
        # Only a reorientation that slices across the stored slices, an Enhanced file (whose
        # frames decode together) or a compressed series kept decoded reads the whole series.
        return self._kept(self._read_series)

    def _read_series(self) -> np.ndarray:
        """The whole series in HU, in Fortran order: each stored slice one contiguous block, as
        reads along the stored slices take them (:meth:`Volume._kept` lays it out for others)."""
        decoded: dict[Path, np.ndarray] = {}  # each Enhanced file's frames, decoded once
        series = np.empty(self.stored_shape, dtype=np.float32, order="F")
        for index, (f, frame) in enumerate(zip(self._files, self._frames)):
            if frame is None:
                series[:, :, index] = self._read_file(index)
                continue
            if f not in decoded:
                decoded[f] = _decoded_frames(f)
            series[:, :, index] = frame.values(decoded[f])
        return series

    def _read_stored(self, axis: int, index: int) -> np.ndarray:
        """Slice ``index`` in HU (float32, before any clipping): one file along the stored slices."""
        if axis != 2 or self._frames[index] is not None or self._decoded_once:
            return super()._read_stored(axis, index)  # basic indexing: np.take copies an F array whole
        return self._read_file(index)

    def _read_file(self, index: int) -> np.ndarray:
        """Stored slice ``index``, a single-frame file, in HU."""
        pydicom = import_optional("pydicom", extra="dicom", purpose="reading DICOM")
        path = self._files[index]
        ds = _read_dicom(pydicom, path, pixels=True)
        # Each read parses the file again (Volume.read does not refuse a rewritten DICOM file), so
        # the checks made when the series was opened hold for this header only if made again: a
        # file replaced since would be read at another size, in colour or with a broken rescale.
        _check_greyscale(ds, path)
        stored = np.asarray(ds.pixel_array)
        rows, columns = self.stored_shape[:2]
        if stored.shape != (rows, columns):
            raise DataError(
                f"DICOM file {path} holds {'x'.join(str(n) for n in stored.shape)} pixels but the series "
                f"{self.path} was opened with {rows}x{columns} slices: the file changed since the series "
                "was opened (rewritten or replaced); expected its slices as they were when opened (open "
                "the series again)"
            )
        _check_ct_rescale(ds, path)
        _check_rescale_values(ds, path)
        pixels = stored.astype(np.float32, copy=False)
        # Absent or empty tags mean identity (non-CT modalities); a present slope of 0 was refused
        # above, as when the series was opened, not mended to 1.
        slope = _rescale_value(ds, "RescaleSlope", 1.0)
        intercept = _rescale_value(ds, "RescaleIntercept", 0.0)
        values: np.ndarray = pixels * np.float32(slope) + np.float32(intercept)
        return values


class DicomEchoesRssVolume(DicomVolume):
    """A multi-echo DICOM series read as the root-sum-of-squares of its echoes: ``sqrt(sum_k e_k**2)``.

    What an SKM-TEA run trains on, from the scanner's own qDESS series: the ``skmtea`` dataset's
    image is ``sqrt(echo1**2 + echo2**2)`` of the two qDESS echoes (paper sec. 2.2), and a qDESS
    series exported to DICOM holds both echoes at every position (:class:`DicomVolume` tells them
    apart by echo time). ``inpaintssl predict`` reads such a series with it for a run trained on
    ``skmtea``, and the ``dicom`` dataset with ``echo: rss``. Each echo is checked as a series of
    its own, and every echo must lie on the first one's grid (same slices, same positions). The
    volume's headers, geometry and references are its first echo's; each voxel is computed in
    float32 from the echoes' rescaled values.

    Args:
        path: The series folder, or an Enhanced ``.dcm`` file, holding at least two echoes.

    Raises:
        DataError: The series holds one echo, or its echoes lie on different grids; and
            everything :class:`DicomVolume` refuses.

    Example:
        >>> volume = DicomEchoesRssVolume("knee/qdess-series/")  # doctest: +SKIP
        >>> volume.echo_times_ms, volume.stored_shape  # doctest: +SKIP
        ((6.0, 34.5), (512, 512, 160))
    """

    def __init__(self, path: str | Path, *, series: str | int | None = None) -> None:
        self._combine(*_series_headers(path, series=series), series=series)

    def _combine(
        self,
        path: Path,
        headers: list[tuple[Any, Path]],
        echoes: _SeriesEchoes,
        *,
        series: str | int | None = None,
    ) -> None:
        """Set the volume up from the series' ``headers`` (each slice's, unsorted) and its ``echoes``."""
        if len(echoes.values) < 2:
            stated = f" ({echoes.text()})" if echoes.values else ""
            raise DataError(
                f"DICOM {_series_text(path)} holds one echo{stated}; expected a series of several echoes "
                "(qDESS: two) to take their root-sum-of-squares; a single-echo image is read as it is"
            )
        # Every echo is read through a plain volume of its own (the first one too): this one's
        # reads are their combination, on the first echo's grid and headers.
        self._echo_volumes = _echoes_of(path, headers, len(echoes.values), series=series)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its first echo's, given already
            self._open(path, list(headers), echo=1, series=series)
        self.echo = None
        self.compressed = any(volume.compressed for volume in self._echo_volumes)
        # Every echo's files: a check, a resume or a predict notices any of them changing.
        self.files = tuple(dict.fromkeys(f for volume in self._echo_volumes for f in volume.files))

    @property
    def source(self) -> str:
        """The series, and that its echoes are combined (see :attr:`Volume.source`)."""
        chosen = "" if self.series is None else f"series {self.series!r}, "
        return f"{self.path} ({chosen}root-sum-of-squares of its {len(self._echo_volumes)} echoes)"

    def _read_series(self) -> np.ndarray:
        return root_sum_of_squares([v._read_series() for v in self._echo_volumes])

    def _read_file(self, index: int) -> np.ndarray:
        return root_sum_of_squares([v._read_file(index) for v in self._echo_volumes])


def open_series(
    path: str | Path,
    *,
    echo: int | None = None,
    combine_echoes: bool = False,
    series: str | int | None = None,
) -> DicomVolume:
    """The DICOM series ``path`` as a run's images were made from it, its headers read once.

    A multi-echo series gives its root-sum-of-squares with ``combine_echoes``
    (:class:`DicomEchoesRssVolume`), else its echo ``echo`` (``None``: refused, naming its echoes,
    as :class:`DicomVolume` refuses it); a single-echo series is read as it is either way: the
    echo a run trained on, or an image already combined. ``series`` chooses one series among
    several under ``path`` (:func:`select_series`). What ``inpaintssl predict`` opens a DICOM
    input with.

    Example:
        >>> open_series("knee/qdess-series/", combine_echoes=True).source  # doctest: +SKIP
        'knee/qdess-series (root-sum-of-squares of its 2 echoes)'
    """
    path, headers, echoes = _series_headers(path, series=series)
    if len(echoes.values) > 1 and combine_echoes:
        combined = DicomEchoesRssVolume.__new__(DicomEchoesRssVolume)
        combined._combine(path, headers, echoes, series=series)
        return combined
    return _echo_volume(path, headers, echo if len(echoes.values) > 1 else None, series=series)


def open_echoes(path: str | Path, *, series: str | int | None = None) -> list[DicomVolume]:
    """Every echo of the DICOM series ``path`` (a folder, or an Enhanced file), shortest first,
    each as the :class:`DicomVolume` ``DicomVolume(path, echo=k)`` gives; the headers are read once.

    A series whose slices state no echo time or number is its one echo. Each echo is checked as
    a series of its own, and every one must lie on the first one's grid.

    Raises:
        DataError: What :class:`DicomVolume` refuses, or echoes on different grids.

    Example:
        >>> [echo.echo for echo in open_echoes("knee/mese-series/")]  # doctest: +SKIP
        [1, 2, 3, 4, 5, 6, 7]
    """
    path = existing_path(path, what="DICOM series", directory_ok=True)
    return _every_echo(path, _read_headers(path, series=series), series=series)


def echoes_of(volume: DicomVolume) -> list[DicomVolume]:
    """Every echo of the series ``volume`` was read from, as :func:`open_echoes` gives them, reading
    that series' files alone (:attr:`DicomVolume.series_files`), not the rest of a study's folder.

    Raises:
        DataError: A file of the series cannot be read any more, or what :func:`open_echoes` refuses.

    Example:
        >>> volume = DicomVolume("study/", series="SAG T2 MAP", echo=2)  # doctest: +SKIP
        >>> [echo.echo for echo in echoes_of(volume)]  # doctest: +SKIP
        [1, 2, 3]
    """
    pydicom = import_optional("pydicom", extra="dicom", purpose="reading DICOM")
    headers = _file_headers(pydicom, [Path(f) for f in volume.series_files])
    return _every_echo(volume.path, headers, series=volume.series)


def first_slice_header(volume: DicomVolume) -> Any:
    """The header of the first file ``volume`` reads, read again without its pixels: a single-frame
    slice's, or an Enhanced file's first frame with its functional groups (``RepetitionTime``,
    ``FlipAngle``, ``PixelSpacing``, ... as a classic slice states them).

    Raises:
        DataError: The file cannot be read any more.
    """
    pydicom = import_optional("pydicom", extra="dicom", purpose="reading DICOM")
    return _file_headers(pydicom, [Path(volume.files[0])])[0][0]


def _every_echo(
    path: Path, headers: list[tuple[Any, Path]], *, series: str | int | None
) -> list[DicomVolume]:
    """Every echo of the series whose slices' ``headers`` were read under ``path``, checked one series."""
    _check_one_series(headers, path)
    return _echoes_of(path, headers, max(1, len(_SeriesEchoes.of(headers).values)), series=series)


def _series_headers(
    path: str | Path, *, series: str | int | None = None
) -> tuple[Path, list[tuple[Any, Path]], _SeriesEchoes]:
    """The series ``path`` (or ``series`` under it): its path checked, every slice's header (one
    series) and its echoes."""
    path = existing_path(path, what="DICOM series", directory_ok=True)
    headers = _read_headers(path, series=series)
    _check_one_series(headers, path)
    return path, headers, _SeriesEchoes.of(headers)


def _echo_volume(
    path: Path, headers: list[tuple[Any, Path]], echo: int | None, *, series: str | int | None = None
) -> DicomVolume:
    """``DicomVolume(path, echo=echo, series=series)`` from ``headers`` read (and chosen) already."""
    volume = DicomVolume.__new__(DicomVolume)
    volume._open(path, list(headers), echo=echo, series=series)
    return volume


def _echoes_of(
    path: Path, headers: list[tuple[Any, Path]], count: int, *, series: str | int | None = None
) -> list[DicomVolume]:
    """Echoes 1 to ``count`` of the series whose ``headers`` were read once for all of them, each
    checked, and every one on the first one's grid."""
    echoes = [_echo_volume(path, headers, 1, series=series)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the first echo's warnings were given; the others repeat them
        echoes += [_echo_volume(path, headers, k, series=series) for k in range(2, count + 1)]
    for k, other in enumerate(echoes[1:], start=2):
        _check_same_grid(echoes[0], other, path, echo=k)
    return echoes


def _check_same_grid(first: DicomVolume, other: DicomVolume, path: Path, *, echo: int) -> None:
    a, b = first.patient_affine, other.patient_affine
    same_affine = (a is None and b is None) or (
        a is not None and b is not None and bool(np.allclose(a, b, atol=1e-3))
    )
    if other.stored_shape != first.stored_shape or not same_affine:
        raise DataError(
            f"DICOM {_series_text(path)}: echo {echo} is {other.stored_shape} voxels"
            f"{'' if same_affine else ' at other positions'} where echo 1 is {first.stored_shape}; expected "
            "every echo on one grid (the same slices at the same positions) to combine them voxel by voxel"
        )


class SeriesAnnotation(Volume):
    """A label map on a DICOM series' stored grid, built from a DICOM object that annotates the series.

    The base of :class:`~inpaintssl.data.dicom_seg.DicomSegVolume` and
    :class:`~inpaintssl.data.dicom_rtstruct.DicomRtStructVolume`: ``(rows, columns, slices)`` with
    the series' spacing and patient geometry, so both may be reoriented afterwards, alike. A
    subclass builds its labels (:meth:`_build`) before calling ``__init__`` with them, and again
    after a :meth:`~Volume.release` or in a worker the dataset was pickled to.

    Example:
        >>> series = DicomVolume("ct/series-01")  # doctest: +SKIP
        >>> SeriesAnnotation.series_of(series, owner="MyLabels").stored_shape  # doctest: +SKIP
        (512, 512, 120)
    """

    reads_on_threads = False  # pydicom parses in Python, holding its lock

    def __init__(self, path: Path, labels: np.ndarray, *, reference: DicomVolume, what: str) -> None:
        super().__init__(
            path, labels.shape, slice_axis=2, ranks={3}, spacing=reference.stored_zooms, what=what
        )
        self.__dict__["_cache"] = labels
        self.has_geometry = reference.has_geometry
        self._affine = None if reference.world_affine is None else reference.world_affine.copy()

    @staticmethod
    def series_of(reference: Volume, *, owner: str) -> DicomVolume:
        """``reference`` as the DICOM series, opened as stored, that ``owner`` lays its labels on.

        Typed as any Volume so that callers' documentation need not choose between the two names
        DicomVolume is documented under.

        Raises:
            TypeError: ``reference`` is not a DICOM series.
            ValueError: ``reference`` is reoriented (the labels are built on the stored grid).
        """
        if not isinstance(reference, DicomVolume):
            raise TypeError(
                f"{owner}: reference is a {type(reference).__name__}; expected the DicomVolume of the series "
                "it annotates"
            )
        if reference.reorientation is not None:
            raise ValueError(f"{owner}: open the reference series as stored, then reorient both")
        return reference

    @property
    def world_affine(self) -> np.ndarray | None:
        """The series' voxel-to-world matrix (RAS+): the labels lie on its grid."""
        return self._affine

    def _set_world_affine(self, affine: np.ndarray) -> None:
        self._affine = affine

    def _array(self) -> Any:
        if "_cache" not in self.__dict__:
            self.__dict__["_cache"] = self._build()
        return self.__dict__["_cache"]

    def _build(self) -> np.ndarray:
        """The label map on the series' stored grid, from what the subclass kept."""
        raise NotImplementedError


def _read_headers(path: Path, *, series: str | int | None = None) -> list[tuple[Any, Path]]:
    """Every slice's header in the series folder (or file) ``path``, with its file: an Enhanced
    file's frames each as a slice (:class:`_Frame`). Unsorted, unchecked. With ``series``, those
    of that series among every DICOM file under ``path``, subfolders included (:func:`select_series`)."""
    pydicom = import_optional("pydicom", extra="dicom", purpose="reading DICOM")
    if series is not None:
        series = _checked_series(series)
        if path.is_dir():
            # Chosen among the study's images: it also holds objects that are no slices (reports,
            # key images and presentation states without pixels, SEGs, RT Structure Sets), each a
            # series of its own, never the one to read; the image checks below would refuse them.
            found = [(ds, f) for ds, f in _study_headers(pydicom, path) if _is_image(ds)]
            if not found:
                raise DataError(f"DICOM folder {path} holds no DICOM images, in it or its subfolders")
            chosen = select_series(found, series, path)
            for ds, f in chosen:
                _check_frames(ds, f)  # the rest of _read_dicom's checks: _is_image passed them
            return [(frame, f) for ds, f in chosen for frame in _slices_of(ds, f)]
    candidates = sorted(_series_files(path)) if path.is_dir() else [path]
    if not candidates:
        raise DataError(f"DICOM series folder {path} holds no files")
    headers = _file_headers(pydicom, candidates, series_folder=path if path.is_dir() else None)
    return headers if series is None else select_series(headers, series, path)


def _file_headers(
    pydicom: ModuleType, files: Sequence[Path], *, series_folder: Path | None = None
) -> list[tuple[Any, Path]]:
    """Every slice's header in ``files`` (an Enhanced file's frames each), each file checked an image."""
    return [
        (frame, f)
        for f in files
        for frame in _slices_of(_read_dicom(pydicom, f, pixels=False, series_folder=series_folder), f)
    ]


_HEADERS_READ: ContextVar[dict[Path, Any] | None] = ContextVar("_HEADERS_READ", default=None)
"""Within :func:`headers_read_once`: each file's header parsed so far, by its path."""


@contextlib.contextmanager
def headers_read_once() -> Iterator[None]:
    """Within the block, each DICOM file's header (no pixels) is parsed once, however often it is read.

    ``predict`` reads a folder as one series first and, where it turns out to be a study (several
    series, or a report or SEG beside the slices), again as a study to take the run's series
    from; it then reads the first slice's header again for the series' tags. On a network share
    each parse is a round of reads: a study of hundreds of files paid them two or three times.
    The headers are shared as read, so the block's callers must not change them. Files changed
    within the block are not read again.

    Example:
        >>> with headers_read_once():
        ...     volume = open_series("study/", series="AX T1")  # doctest: +SKIP
    """
    token = _HEADERS_READ.set({})
    try:
        yield
    finally:
        _HEADERS_READ.reset(token)


def _parsed_header(pydicom: ModuleType, path: Path, handle: BinaryIO | None = None) -> Any:
    """``pydicom.dcmread`` of ``path``'s header (from ``handle`` where it is open already), parsed
    once within :func:`headers_read_once`. pydicom's own exceptions pass through."""
    read = _HEADERS_READ.get()
    if read is not None and (ds := read.get(path)) is not None:
        return ds
    ds = pydicom.dcmread(path if handle is None else handle, stop_before_pixels=True)
    if read is not None:
        read[path] = ds
    return ds


def _header(pydicom: ModuleType, path: Path, handle: BinaryIO | None = None) -> Any:
    """A DICOM file's header as it is (no pixels, no checks), or a DataError naming the file;
    read from ``handle`` (at its start) where the file is open already."""
    try:
        return _parsed_header(pydicom, path, handle)
    except Exception as exc:  # pydicom raises many types for a bad file
        raise DataError(f"DICOM file {path} cannot be read: {type(exc).__name__}: {exc}") from exc


def _is_image(ds: Any) -> bool:
    """Whether a header is of an image's slice or frames: rows and columns, and no SEG or RTSTRUCT."""
    return "Rows" in ds and "Columns" in ds and _object_kind(ds) is None


def _study_headers(pydicom: ModuleType, folder: Path) -> list[tuple[Any, Path]]:
    """The header (no pixels, no checks) of every DICOM file under ``folder``, subfolders included,
    in path order, each file opened once.

    A study or CD export holds more than slices: its DICOMDIR index, viewer programs, text and
    thumbnails. Only files with the DICOM preamble (``DICM`` at byte 128) are taken, which every
    file written to the standard's file format (PS3.10) has; hidden files and folders are not.
    The preamble is read through the handle the header is then parsed from: a study on a network
    share of thousands of files pays one open each, not two.

    Raises:
        DataError: A file cannot be opened, or a file with the preamble cannot be parsed.
    """
    candidates = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.name != "DICOMDIR"
    )
    found = []
    read = _HEADERS_READ.get() or {}
    for path in candidates:
        if path in read:  # parsed within headers_read_once: it had the preamble
            found.append((read[path], path))
            continue
        try:
            handle = path.open("rb")
        except OSError as exc:
            raise DataError(f"DICOM file {path} cannot be read: {type(exc).__name__}: {exc}") from exc
        with handle:
            if not _reads_dicm_prefix(handle):
                continue
            handle.seek(0)
            found.append((_header(pydicom, path, handle), path))
    return found


def is_series_choice(series: object) -> TypeGuard[str | int]:
    """Whether ``series`` can name a series (:func:`select_series`): non-empty text, or a whole
    number (not a bool).

    Example:
        >>> [is_series_choice(v) for v in ("SAG T2", 5, "", True, 1.5)]
        [True, True, False, False, False]
    """
    return not isinstance(series, bool) and isinstance(series, (str, int)) and bool(str(series).strip())


def check_series_param(series: object, *, dataset: str) -> None:
    """Refuse a dataset's ``series`` parameter that names no series (``None`` names none: allowed).

    Raises:
        DataError: ``series`` is neither ``None`` nor a :func:`is_series_choice`; the message
            names the dataset.
    """
    if series is not None and not is_series_choice(series):
        raise DataError(
            f"{dataset}: series={series!r}; expected a SeriesDescription or SeriesInstanceUID (text), a "
            "SeriesNumber (a whole number), or none"
        )


def _checked_series(series: object) -> str | int:
    if not is_series_choice(series):
        raise ValueError(
            f"series={series!r}: expected a SeriesInstanceUID or SeriesDescription (text), or a "
            "SeriesNumber (a whole number)"
        )
    return series


def select_series(
    headers: Sequence[tuple[Any, Path]], series: str | int, path: Path
) -> list[tuple[Any, Path]]:
    """The headers of the one series ``series`` names among ``headers`` (read under ``path``).

    A study exported flat (every series' files in one folder), or as a tree of folders, holds
    several series; ``series`` picks one: text is its ``SeriesInstanceUID`` or its
    ``SeriesDescription`` (compared without case and surrounding spaces, e.g. ``"sag t2 map"``),
    a whole number its ``SeriesNumber``.

    Raises:
        DataError: No series, or several, match (two of one description: a repeated scan); the
            message lists the series found, each with its UID, description, number and files.
        ValueError: ``series`` is neither text nor a whole number, or is empty.

    Example:
        >>> select_series([], "SAG T2", Path("study"))
        Traceback (most recent call last):
        ...
        inpaintssl.data.base.DataError: DICOM folder study holds no series 'SAG T2' (by ...); it holds none
    """
    series = _checked_series(series)
    groups = _by_series(headers)

    def matches(uid: str | None, ds: Any) -> bool:
        if isinstance(series, int):
            return _series_number(ds) == series
        description = str(getattr(ds, "SeriesDescription", "") or "").strip().casefold()
        return uid == series.strip() or description == series.strip().casefold()

    chosen = [uid for uid, members in groups.items() if matches(uid, members[0][0])]
    if len(chosen) == 1:
        return groups[chosen[0]]
    by = "SeriesNumber" if isinstance(series, int) else "SeriesInstanceUID or SeriesDescription"

    def described(uids: Sequence[str | None]) -> str:
        if not uids:
            return "none"
        return "; ".join(_describe_series(uid, groups[uid]) for uid in uids)

    if not chosen:
        raise DataError(
            f"DICOM folder {path} holds no series {series!r} (by {by}); it holds {described(list(groups))}"
        )
    raise DataError(
        f"DICOM folder {path} holds {len(chosen)} series {series!r} (by {by}): {described(chosen)}; "
        "expected one: name it by its SeriesInstanceUID"
    )


@dataclass(frozen=True)
class SeriesSummary:
    """One series found under a folder (:func:`list_series`): what ``series=`` can name it by."""

    uid: str | None
    """``SeriesInstanceUID``; ``None`` for files without one (taken as one series)."""
    number: int | None
    """``SeriesNumber``, where it states one."""
    description: str
    """``SeriesDescription`` (empty where it states none)."""
    modality: str
    image: bool
    """Whether its files are images (a volume to read); not a report, SEG or RT Structure Set."""
    files: int
    slices: int
    """Images held: one per single-frame file, each frame of an Enhanced file."""
    echo_times_ms: tuple[float, ...]
    """The echo times of its images (ms, shortest first): several for a multi-echo series; ``()``
    where they state none (``EchoTime``, an Enhanced frame's ``EffectiveEchoTime``)."""
    folder: Path
    """The folder holding its files (their deepest common one)."""


def list_series(path: str | Path) -> list[SeriesSummary]:
    """Every series under ``path`` (a folder, its subfolders included, or one file), by header.

    What a study export holds, to choose the ``series`` of :class:`DicomVolume`, the ``dicom`` and
    ``ct`` datasets and ``predict`` (``inpaintssl series PATH`` prints it). Files without the DICOM
    preamble are passed over, as :func:`select_series` passes them. Ordered by ``SeriesNumber``
    (series without one last), images first, then description.

    Raises:
        DataError: ``path`` does not exist, or a DICOM file under it cannot be read (naming it).

    Example:
        >>> import tempfile
        >>> list_series(tempfile.mkdtemp())
        []
    """
    path = existing_path(path, what="DICOM folder", directory_ok=True)
    pydicom = import_optional("pydicom", extra="dicom", purpose="reading DICOM")
    headers = _study_headers(pydicom, path) if path.is_dir() else [(_header(pydicom, path), path)]
    groups = _by_series(headers)
    found = []
    for uid, members in groups.items():
        first = members[0][0]
        image = all(_is_image(ds) for ds, _ in members)
        slices = [(frame, f) for ds, f in members for frame in _slices_of(ds, f)] if image else []
        found.append(
            SeriesSummary(
                uid=uid,
                number=_series_number(first),
                description=str(getattr(first, "SeriesDescription", "") or "").strip(),
                modality=str(getattr(first, "Modality", "") or "").strip(),
                image=image,
                files=len(members),
                slices=len(slices),
                echo_times_ms=_SeriesEchoes.of(slices).times_ms if len(slices) else (),
                folder=Path(os.path.commonpath([str(f.parent) for _, f in members])),
            )
        )
    return sorted(
        found, key=lambda s: (s.number is None, s.number or 0, not s.image, s.description, s.uid or "")
    )


def _by_series(headers: Sequence[tuple[Any, Path]]) -> dict[str | None, list[tuple[Any, Path]]]:
    """``headers`` by ``SeriesInstanceUID``, in the order met; files without one are one series (``None``)."""
    groups: dict[str | None, list[tuple[Any, Path]]] = {}
    for ds, f in headers:
        groups.setdefault(str(getattr(ds, "SeriesInstanceUID", "") or "").strip() or None, []).append((ds, f))
    return groups


def _series_number(ds: Any) -> int | None:
    """``SeriesNumber`` as a whole number; ``None`` where absent or not one."""
    number = str(getattr(ds, "SeriesNumber", "") or "").strip()
    return int(number) if number.lstrip("+-").isdigit() else None


def is_echo_number(echo: object) -> TypeGuard[int]:
    """Whether ``echo`` names an echo: a whole number >= 1 (not a bool, not a float or string).

    Example:
        >>> [is_echo_number(v) for v in (1, 2, 0, True, 1.0, "1")]
        [True, True, False, False, False, False]
    """
    return isinstance(echo, int) and not isinstance(echo, bool) and echo >= 1


def _checked_echo(echo: object) -> int:
    if not is_echo_number(echo):
        raise ValueError(f"echo={echo!r}: expected an echo number >= 1 (1: the shortest echo time)")
    return echo


def _tag_number(ds: Any, tag: str) -> float | None:
    """A numeric tag's (first) value; ``None`` where the slice states none, or no finite number.

    Lenient: a series read as one echo never needed these tags, and one with an unreadable
    EchoTime still reads as it did; a series whose echoes are asked for says it states none.
    """
    return finite_number(getattr(ds, tag, None))


def finite_number(value: Any) -> float | None:
    """A tag value (a multi-value's first) as a finite number; ``None`` where it is none.

    Example:
        >>> finite_number(["18.176", "20"]), finite_number(""), finite_number(float("nan"))
        (18.176, None, None)
    """
    if value is not None and not isinstance(value, (str, bytes)) and isinstance(value, Sequence):
        value = value[0] if len(value) else None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _echo_time(ds: Any) -> float | None:
    # An Enhanced MR frame states its echo in its MR Echo macro, a classic slice at its top level.
    found = _tag_number(ds, "EffectiveEchoTime")
    return found if found is not None else _tag_number(ds, "EchoTime")


@dataclass(frozen=True)
class _SeriesEchoes:
    """The echoes of a series: each slice's echo time, else (where some slice states none) its
    ``EchoNumbers``; a series whose slices state neither holds one echo.

    Echo ``k`` is the ``k``-th shortest echo time (or the ``k``-th echo number): what scanners
    number echoes by, and what both classic slices (``EchoTime``) and Enhanced frames
    (``EffectiveEchoTime``, which states no echo number) say.
    """

    tag: str | None
    values: tuple[float, ...]

    @classmethod
    def of(cls, headers: Sequence[tuple[Any, Path]]) -> _SeriesEchoes:
        for tag in ("EchoTime", "EchoNumbers"):
            found = cls(tag, ())
            keys = [found.key(ds) for ds, _ in headers]
            if all(k is not None for k in keys):
                return cls(tag, tuple(sorted({k for k in keys if k is not None})))
        return cls(None, ())

    def key(self, ds: Any) -> float | None:
        """The slice's echo as this series tells echoes apart (its time to the microsecond, or number)."""
        if self.tag == "EchoTime":
            time = _echo_time(ds)
            return None if time is None else round(time, 3)
        if self.tag == "EchoNumbers":
            return _tag_number(ds, "EchoNumbers")
        return None

    @property
    def times_ms(self) -> tuple[float, ...]:
        return self.values if self.tag == "EchoTime" else ()

    def text(self) -> str:
        unit = " ms" if self.tag == "EchoTime" else ""
        return f"{self.tag} " + ", ".join(f"{v:g}" for v in self.values) + unit

    def select(self, headers: list[tuple[Any, Path]], echo: int, path: Path) -> list[tuple[Any, Path]]:
        """The slices of echo ``echo`` (1-based)."""
        if not self.values:
            if echo == 1:
                return headers
            raise DataError(
                f"DICOM {_series_text(path)}: echo={echo} asks for its echo {echo}, but its slices state "
                "no EchoTime (an Enhanced file's EffectiveEchoTime) or EchoNumbers on every slice, so it "
                "is read as one echo; expected echo=1, or none"
            )
        if echo > len(self.values):
            raise DataError(
                f"DICOM {_series_text(path)} holds {len(self.values)} echo(es) ({self.text()}); echo={echo} "
                f"asks for echo {echo}; expected 1 to {len(self.values)} (1: the shortest)"
            )
        wanted = self.values[echo - 1]
        return [(ds, f) for ds, f in headers if self.key(ds) == wanted]


def _patient_affine(
    first: Any, last: Any, spacing: tuple[float, float, float], num_slices: int
) -> np.ndarray | None:
    """A series' voxel-to-world matrix in NIfTI's RAS+ (DICOM's patient space is LPS+).

    Array axis 0 walks down the rows (ImageOrientationPatient's column direction), axis 1 along
    a row, axis 2 from the first slice to the last, whose ImagePositionPatient fix the step.
    """
    position = getattr(first, "ImagePositionPatient", None)
    orientation = getattr(first, "ImageOrientationPatient", None)
    if position is None or orientation is None or len(orientation) != 6:
        return None
    rows_mm, cols_mm, slice_mm = spacing
    along_row = np.asarray(orientation[:3], dtype=np.float64)  # direction of increasing column
    along_col = np.asarray(orientation[3:], dtype=np.float64)  # direction of increasing row
    origin = np.asarray(position, dtype=np.float64)
    if num_slices > 1 and getattr(last, "ImagePositionPatient", None) is not None:
        step = (np.asarray(last.ImagePositionPatient, dtype=np.float64) - origin) / (num_slices - 1)
    else:
        step = np.cross(along_row, along_col) * slice_mm
    lps = np.eye(4)
    lps[:3, 0] = along_col * rows_mm
    lps[:3, 1] = along_row * cols_mm
    lps[:3, 2] = step
    lps[:3, 3] = origin
    affine: np.ndarray = LPS_TO_RAS @ lps
    return affine


def _pixel_to_patient(headers: Sequence[tuple[Any, Path]]) -> np.ndarray | None:
    """Each slice's ``(row, column, 0, 1)`` -> patient LPS mm (``(slices, 3, 4)``), from its own header.

    ``None`` unless every slice states ImagePositionPatient and ImageOrientationPatient (a series
    states them on every slice or none: :func:`_check_one_ordering`).
    """
    if not all(_has_position(ds) for ds, _ in headers):
        return None
    planes = np.zeros((len(headers), 3, 4))
    for k, (ds, f) in enumerate(headers):
        orientation = _orientation(ds)
        assert orientation is not None  # _has_position
        between_rows, between_columns = _pixel_spacing(ds, f)
        planes[k, :, 0] = orientation[3:] * between_rows  # rows step along the column direction
        planes[k, :, 1] = orientation[:3] * between_columns
        planes[k, :, 3] = [float(v) for v in ds.ImagePositionPatient]
    return planes


def _series_files(folder: Path) -> list[Path]:
    # Hidden files and the DICOMDIR index are not slices; anything else that fails to parse is
    # reported rather than skipped, so a half-copied series is not silently shortened.
    return [
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name != "DICOMDIR"
    ]


def _read_dicom(pydicom: ModuleType, path: Path, *, pixels: bool, series_folder: Path | None = None) -> Any:
    """One file's dataset (with decoded pixels if ``pixels``), or a DataError naming it.

    ``series_folder``: the folder ``path`` was found in, read as one series (for the message about a
    file that is not DICOM, and to refuse a file that is no slice as a series of its own, a
    :class:`SeveralSeriesError`); ``None`` for a file given on its own.
    """
    try:
        ds = pydicom.dcmread(path) if pixels else _parsed_header(pydicom, path)
        _check_is_image(ds, path, series_folder)
        if not pixels:
            _ = int(ds.Rows), int(ds.Columns)
    except DataError:
        raise
    except Exception as exc:  # pydicom raises many types for a bad file
        if not _has_dicm_prefix(path):
            # pydicom's own words ("Use force=True to force reading") point the wrong way: a stray
            # notes.txt or a viewer's index file in the folder is no slice, forced or not.
            remedy = (
                f"remove non-DICOM files from the series folder {series_folder}"
                if series_folder is not None
                else "expected a DICOM image file (a web page or text saved under a .dcm name?)"
            )
            raise DataError(
                f"DICOM file {path} cannot be read: it is not a DICOM file (no DICM preamble); {remedy}"
            ) from exc
        raise DataError(f"DICOM file {path} cannot be read: {type(exc).__name__}: {exc}") from exc
    _check_frames(ds, path)
    if pixels:
        try:
            _ = ds.pixel_array
        except Exception as exc:  # pydicom raises many types for undecodable pixel data
            why = missing_decoder(ds) or f"{type(exc).__name__}: {exc}"
            raise DataError(f"DICOM file {path} cannot be read: {why}") from exc
    return ds


_NOT_IMAGES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "SEG": (
            "a Segmentation (SEG): label maps of another series, not an image",
            "the ct dataset reads a SEG as the label of the DICOM series it segments ({image: <series>, "
            "label: <seg>.dcm}); elsewhere give labels as NIfTI, MetaImage or NRRD on the series' grid "
            "(3D Slicer, or dcmqi's segimage2itkimage, exports a SEG's segments so)",
        ),
        "RTSTRUCT": (
            "an RT Structure Set (RTSTRUCT): contours drawn on another series, not an image",
            "the ct dataset fills an RTSTRUCT's contours on the DICOM series they were drawn on "
            "({image: <series>, label: <rtstruct>.dcm}, classes named as its ROIs); elsewhere fill them "
            "on the series' grid first (3D Slicer's SlicerRT, or rt-utils) and give the label map as NIfTI",
        ),
    }
)
"""Modality of a DICOM object that refers to an image series without being one -> what it is, what to do."""

_NOT_IMAGE_CLASSES = MappingProxyType(
    {
        "1.2.840.10008.5.1.4.1.1.66.4": "SEG",  # Segmentation Storage
        "1.2.840.10008.5.1.4.1.1.66.7": "SEG",  # Label Map Segmentation Storage
        "1.2.840.10008.5.1.4.1.1.481.3": "RTSTRUCT",  # RT Structure Set Storage
    }
)
"""SOP classes of the objects in :data:`_NOT_IMAGES`, for files whose Modality is missing or other."""


def _object_kind(ds: Any) -> str | None:
    """``"SEG"`` or ``"RTSTRUCT"`` for such an object (by its SOP class, else its Modality); else ``None``."""
    kind = _NOT_IMAGE_CLASSES.get(str(getattr(ds, "SOPClassUID", "") or ""))
    if kind is None:
        modality = str(getattr(ds, "Modality", "") or "").strip().upper()
        kind = modality if modality in _NOT_IMAGES else None
    return kind


def dicom_object_kind(path: str | Path) -> str | None:
    """``"SEG"`` or ``"RTSTRUCT"`` where ``path`` is a ``.dcm`` file holding one; ``None`` otherwise.

    What a label file is decides how it is read: a DICOM Segmentation as a label map of its series
    (:mod:`~inpaintssl.data.dicom_seg`), an RT Structure Set's contours filled on its series'
    grid (:mod:`~inpaintssl.data.dicom_rtstruct`). Decided by the SOP class, else the Modality. A
    folder, a file of another suffix, or one pydicom cannot read is neither (the image readers
    say why such a file is refused, naming it). Reads the header only.
    """
    path = Path(path)
    if not path.is_file() or not path.name.lower().endswith(".dcm"):
        return None
    pydicom = import_optional("pydicom", extra="dicom", purpose="reading DICOM")
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - not DICOM: the image reader says why, naming it
        return None
    return _object_kind(ds)


def _check_is_image(ds: Any, path: Path, series_folder: Path | None) -> None:
    """Refuse a file that is no slice by what it is (a SEG or RTSTRUCT, or an object without Rows
    and Columns), before its frames or missing pixels say something else.

    Read as a series, a SEG's frames (one per segment and slice) repeat positions, and an
    RTSTRUCT has no pixels at all: both messages would point away from the cause. Among a
    folder's slices such a file is a series of its own: that folder is a study's export, from
    which predict then takes the series the run read (a :class:`SeveralSeriesError` says so).
    :func:`_is_image` is the same test, for choosing among a study's files.
    """
    kind = _object_kind(ds)
    if kind is not None:
        what, remedy = _NOT_IMAGES[kind]
        message = f"DICOM file {path} is {what}; expected an image (a CT or MR slice or frames): "
        if series_folder is None:
            raise DataError(message + remedy)
        raise SeveralSeriesError(
            f"{message}it is a series of its own: move it out of the series folder {series_folder}; {remedy}"
        )
    if "Rows" in ds and "Columns" in ds:
        return
    message = f"DICOM file {path} has no Rows/Columns; is it an image?"
    if series_folder is None:
        raise DataError(message)
    raise SeveralSeriesError(
        f"{message} A structured report, key-object selection or presentation state is a series "
        f"of its own: move it out of the series folder {series_folder}"
    )


_DICM_OFFSET = 128
"""Where the File Format's ``DICM`` prefix starts, after the 128-byte preamble (PS3.10 sec. 7.1)."""


def _has_dicm_prefix(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return _reads_dicm_prefix(handle)
    except OSError:
        return True  # unreadable: let pydicom's own error say why


def _reads_dicm_prefix(handle: BinaryIO) -> bool:
    """Whether the file open in ``handle`` has the DICOM preamble (``DICM`` at byte 128)."""
    handle.seek(_DICM_OFFSET)
    return handle.read(4) == b"DICM"


def _number_of_frames(ds: Any, path: Path) -> int:
    value = getattr(ds, "NumberOfFrames", None)
    if value is None or value == "":
        return 1
    try:
        frames = int(value)
    except (TypeError, ValueError):
        raise DataError(f"DICOM file {path} has NumberOfFrames {value!r}; expected an integer") from None
    return frames


def _check_frames(ds: Any, path: Path) -> None:
    """Refuse a multi-frame file without per-frame functional groups: its frames' geometry is unknown.

    Enhanced CT/MR state each frame's position (and, where they vary, its orientation, pixel
    spacing and rescale) in ``PerFrameFunctionalGroupsSequence``, and are read frame by frame
    (:class:`_Frame`). A file of several frames without it (a legacy multi-frame secondary
    capture) says nowhere where each frame lies: read as one slice, its frames would become the
    channels of a slice without geometry, and fail far from the cause.
    """
    frames = _number_of_frames(ds, path)
    per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    if frames > 1 and not per_frame:
        raise DataError(
            f"DICOM file {path} holds {frames} frames (NumberOfFrames) without per-frame functional "
            "groups (PerFrameFunctionalGroupsSequence, as Enhanced CT and MR files state each frame's "
            "position in): where each frame lies is unknown; convert it to single-frame DICOM or NIfTI "
            "first (e.g. dcm2niix)"
        )
    if per_frame and len(per_frame) != frames:
        raise DataError(
            f"DICOM file {path} has {len(per_frame)} item(s) in PerFrameFunctionalGroupsSequence but "
            f"NumberOfFrames {frames}; expected one item per frame"
        )


_FRAME_MACROS = (
    ("PixelMeasuresSequence", ("PixelSpacing", "SliceThickness", "SpacingBetweenSlices")),
    ("PlanePositionSequence", ("ImagePositionPatient",)),
    ("PlaneOrientationSequence", ("ImageOrientationPatient",)),
    ("PixelValueTransformationSequence", ("RescaleSlope", "RescaleIntercept")),
    ("MREchoSequence", ("EffectiveEchoTime",)),
    ("MRTimingAndRelatedParametersSequence", ("RepetitionTime", "FlipAngle")),
)
_FRAME_TAGS = MappingProxyType({tag: macro for macro, tags in _FRAME_MACROS for tag in tags})
"""Where an Enhanced file keeps what a single-frame slice has at its top level (DICOM PS3.3
C.7.6.16.2): tag -> the functional group macro's sequence that holds it."""


class _Frame:
    """One frame of an Enhanced (multi-frame) CT/MR file, read as the header of a single-frame slice.

    A tag of :data:`_FRAME_TAGS` comes from the frame's own functional groups, else the shared
    ones, else the file's top level (where some writers keep it); every other tag (Rows,
    Modality, SeriesInstanceUID, ...) from the top level.
    """

    def __init__(self, ds: Any, frame: int, groups: Sequence[Any]) -> None:
        self.file = ds
        self.frame = frame
        """The frame's index in the file (0-based; messages count from 1, as DICOM does)."""
        self._groups = groups

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)  # copy and pickle probe an instance before __init__ ran
        macro = _FRAME_TAGS.get(name)
        if macro is not None:
            for group in self._groups:
                items = getattr(group, macro, None)
                value = getattr(items[0], name, None) if items else None
                if value is not None:
                    return value
        return getattr(self.file, name)


def _slices_of(ds: Any, path: Path) -> list[Any]:
    """The slices a file holds: the file itself, or each frame of an Enhanced file."""
    per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    if not per_frame:
        return [ds]
    return [slice_header(ds, k) for k in range(len(per_frame))]


def slice_header(header: Any, frame: int | None) -> Any:
    """One slice's header, as :attr:`DicomVolume.slice_sources` names the slice: ``header`` itself
    (a single-frame file's), or frame ``frame`` (0-based) of the Enhanced file whose header it is.

    A frame's ``ImagePositionPatient``, ``ImageOrientationPatient``, ``PixelSpacing``, rescale ...
    come from its own functional groups, else the shared ones, as :class:`DicomVolume` read them;
    every other tag from the file's top level. What a derived object (an RT Structure Set's
    contours) places a slice's pixels by.

    Example:
        >>> header = object()  # a single-frame file's dataset
        >>> slice_header(header, None) is header
        True
    """
    if frame is None:
        return header
    shared = getattr(header, "SharedFunctionalGroupsSequence", None)
    groups_shared = [shared[0]] if shared else []
    return _Frame(header, frame, [header.PerFrameFunctionalGroupsSequence[frame], *groups_shared])


def _series_text(path: Path) -> str:
    """What a series was given as, in messages: its folder, or the one (Enhanced) file that holds it."""
    return f"file {path}" if path.is_file() else f"series folder {path}"


def _named(ds: Any, path: Path, *, short: bool = False) -> str:
    """A slice as messages name it: its file (name only if ``short``), and its frame in an Enhanced file."""
    name = path.name if short else str(path)
    return f"{name} (frame {ds.frame + 1})" if isinstance(ds, _Frame) else name


@dataclass(frozen=True)
class _FrameRead:
    """How one frame of an Enhanced file is read: its index among the decoded frames, its rescale."""

    frame: int
    slope: float
    intercept: float

    @classmethod
    def of(cls, frame: _Frame) -> _FrameRead:
        return cls(
            frame.frame,
            _rescale_value(frame, "RescaleSlope", 1.0),
            _rescale_value(frame, "RescaleIntercept", 0.0),
        )

    def values(self, decoded: np.ndarray) -> np.ndarray:
        """The frame in HU (float32), from every frame of its file (``(frames, rows, columns)``)."""
        pixels = np.asarray(decoded[self.frame], dtype=np.float32)
        values: np.ndarray = pixels * np.float32(self.slope) + np.float32(self.intercept)
        return values


def _decoded_frames(path: Path) -> np.ndarray:
    """Every frame of an Enhanced file, decoded: ``(frames, rows, columns)``, as stored."""
    pydicom = import_optional("pydicom", extra="dicom", purpose="reading DICOM")
    ds = _read_dicom(pydicom, path, pixels=True)
    pixels = np.asarray(ds.pixel_array)
    return pixels.reshape(_number_of_frames(ds, path), int(ds.Rows), int(ds.Columns))


_ORIENTATION_TOLERANCE = 1e-3
"""How far two slices' ImageOrientationPatient direction cosines may differ within one series:
scanners write them rounded to a few decimals, while another plane differs by far more (a 1 degree
tilt changes a cosine by 0.017)."""
_SAME_POSITION_MM = 1e-3
"""Slices closer than this along the slice normal (mm) are at one position: far below any real
slice spacing, far above the rounding of ImagePositionPatient's decimal strings."""
_REGULAR_STEP_TOLERANCE = 0.01
"""How far (relative) a step between neighbouring slices may differ from the series' median step.

A series is one volume only on one regular grid: a NIfTI affine has one slice step, and every
voxel one volume. A missing slice doubles one step (+100 %), mixed spacing changes steps by tens of
percent, while scanners' own jitter and the decimal rounding of ImagePositionPatient stay far below
1 %. ITK and dcm2niix warn on such series too."""
_STEP_ROUNDING_MM = 0.02
"""Absolute allowance (mm) on a step, for positions written to two decimals (each off by up to
0.005 mm, a step by 0.01 mm): for sub-millimetre slices that rounding alone exceeds 1 %."""
_STEPS_LISTED = 5
"""How many distinct slice steps a message about an uneven series lists."""
_IN_PLANE_TOLERANCE = 0.1
"""How far (in pixels, of the finer pixel spacing) a slice's position may lie within its plane off
the line the series' affine steps along, with :data:`_STEP_ROUNDING_MM` as the least allowance.

A label map filled by pixel centre changes from half a pixel's shift; a tenth stays well below
that and below what a segmentation resolves, while a slice re-centred or stitched in from another
reconstruction is off by millimetres. The rounding of positions written to two decimals (up to
0.02 mm off the line, the allowance the step check gives them) stays below it for pixels over
0.2 mm, and below the least allowance for finer ones."""


def _check_one_series(headers: Sequence[tuple[Any, Path]], folder: Path) -> None:
    """Refuse files of more than one SeriesInstanceUID (files without one count as one series), with
    a :class:`SeveralSeriesError`.

    Stacked together, a T1 and a T2 (or two reconstructions) at the same positions would make one
    volume of twice the slices, with a wrong slice spacing and doubled tissue volumes.
    """
    groups = _by_series(headers)
    if len(groups) <= 1:
        return
    found = "; ".join(_describe_series(uid, members) for uid, members in groups.items())
    if all(
        len({f for _, f in members}) == 1 and isinstance(members[0][0], _Frame) for members in groups.values()
    ):
        # A study exported by a newer scanner: each series is one Enhanced file, and a volume.
        remedy = (
            f"each series is one Enhanced file: give each file on its own (as a predict input or a "
            f"dataset case), e.g. {folder / '*.dcm'}"
        )
    else:
        remedy = (
            "choose one by its SeriesDescription, SeriesNumber or SeriesInstanceUID (series=..., the "
            "dicom dataset's data.params.series, predict's --series), or move each series into a folder "
            "of its own"
        )
    raise SeveralSeriesError(
        f"DICOM series folder {folder} holds {len(groups)} series: {found}; expected one series per "
        f"folder (it is read as one volume): {remedy}"
    )


def _describe_series(uid: str | None, members: Sequence[tuple[Any, Path]]) -> str:
    """A series in messages: its UID, description and number, files and frames, and a file's name."""
    ds = members[0][0]
    files: dict[Path, int] = {}  # its files -> the slices each holds
    for _, f in members:
        files[f] = files.get(f, 0) + 1
    details = []
    description = str(getattr(ds, "SeriesDescription", "") or "").strip()
    if description:
        details.append(f"SeriesDescription {description!r}")
    number = getattr(ds, "SeriesNumber", None)
    if number is not None and str(number).strip():
        details.append(f"SeriesNumber {number}")
    name = "files without SeriesInstanceUID" if uid is None else f"SeriesInstanceUID {uid}"
    shown = f" ({', '.join(details)})" if details else ""
    slices = sum(files.values())
    frames = f" ({slices} frames)" if slices != len(files) else ""
    return f"{name}{shown}: {len(files)} file(s){frames}, e.g. {next(iter(files)).name}"


_UNIT_TOLERANCE = 0.01
"""How far ImageOrientationPatient's row and column cosines may be from unit length and from
perpendicular: decimal strings round them by far less, while a zero, repeated or swapped-in value
(a header a converter wrote wrongly) is off by 0.3 and more."""


def _numbers(value: Any) -> list[float] | None:
    """The numbers of a multi-valued tag, or ``None`` where one is no number."""
    try:
        return [float(v) for v in _values(value)]
    except (TypeError, ValueError):
        return None


def _values(value: Any) -> list[Any]:
    """A tag's values as a list: pydicom gives a one-valued tag as the value itself."""
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]


def _finite_numbers(value: Any, count: int) -> list[float] | None:
    """The ``count`` finite numbers of a multi-valued tag, or ``None`` where it holds anything else."""
    numbers = _numbers(value)
    if numbers is None or len(numbers) != count or not all(math.isfinite(v) for v in numbers):
        return None
    return numbers


def _values_text(value: Any) -> str:
    """A multi-valued tag as DICOM writes it, values split by backslashes: ``0\\0\\n/a``."""
    return "\\".join(str(v) for v in _values(value))


def _check_plane_tags(headers: Sequence[tuple[Any, Path]]) -> None:
    """Refuse an ImagePositionPatient or ImageOrientationPatient that places no slice, naming it.

    Sorting and the affine compute with them: two values or ``n/a`` raised NumPy's error naming no
    file, and an orientation of zeros put every slice at 0 mm (refused as repeated slices) or gave
    a singular affine.
    """
    for ds, f in headers:
        for tag, count in (("ImagePositionPatient", 3), ("ImageOrientationPatient", 6)):
            value = getattr(ds, tag, None)
            if value is None or value == "":
                continue  # not stated: the series is ordered by InstanceNumber
            numbers = _finite_numbers(value, count)
            if numbers is None:
                raise DataError(
                    f"DICOM file {_named(ds, f)}: {tag} is {_values_text(value)}; expected {count} finite "
                    "numbers (DICOM PS3.3 C.7.6.2)"
                )
            if tag == "ImageOrientationPatient":
                row, column = np.asarray(numbers[:3]), np.asarray(numbers[3:])
                lengths = (float(np.linalg.norm(row)), float(np.linalg.norm(column)))
                dot = float(row @ column)
                if (
                    max(abs(length - 1.0) for length in lengths) > _UNIT_TOLERANCE
                    or abs(dot) > _UNIT_TOLERANCE
                ):
                    raise DataError(
                        f"DICOM file {_named(ds, f)}: {_orientation_text(np.asarray(numbers))} holds row "
                        f"and column cosines of lengths {lengths[0]:.3g} and {lengths[1]:.3g} with dot "
                        f"product {dot:.3g}; expected two perpendicular unit vectors (within "
                        f"{_UNIT_TOLERANCE:g}, DICOM PS3.3 C.7.6.2.1.1)"
                    )


def _orientation(ds: Any) -> np.ndarray | None:
    orientation = getattr(ds, "ImageOrientationPatient", None)
    if orientation is None or len(orientation) != 6:
        return None
    return np.asarray([float(v) for v in orientation])


def _orientation_text(orientation: np.ndarray | None) -> str:
    if orientation is None:
        return "no ImageOrientationPatient"
    return "ImageOrientationPatient [" + ", ".join(f"{v:g}" for v in orientation) + "]"


def _check_one_orientation(headers: Sequence[tuple[Any, Path]], folder: Path) -> None:
    """Refuse slices of different planes: sorted along one normal they would not form a volume."""
    reference_ds, reference_file = headers[0]
    reference = _orientation(reference_ds)
    for ds, f in headers[1:]:
        orientation = _orientation(ds)
        same = (orientation is None and reference is None) or (
            orientation is not None
            and reference is not None
            and float(np.max(np.abs(orientation - reference))) <= _ORIENTATION_TOLERANCE
        )
        if not same:
            remedy = (
                "a multi-frame file of several planes (a localizer) is no volume"
                if f == reference_file
                else "slices of another plane, such as a coronal series next to an axial one, belong in a "
                "folder of their own"
            )
            raise DataError(
                f"DICOM file {_named(ds, f)} has {_orientation_text(orientation)} but "
                f"{_named(reference_ds, reference_file)} has {_orientation_text(reference)} "
                f"({_series_text(folder)}); expected one orientation per series (within "
                f"{_ORIENTATION_TOLERANCE:g}): {remedy}"
            )


def _has_position(ds: Any) -> bool:
    """Whether a slice's place along the normal comes from its position (else its InstanceNumber)."""
    return getattr(ds, "ImagePositionPatient", None) is not None and _orientation(ds) is not None


def _check_one_ordering(headers: Sequence[tuple[Any, Path]], folder: Path) -> None:
    """Refuse a series where only some slices state ImagePositionPatient and ImageOrientationPatient.

    The slices are sorted by one key: millimetres along the normal for slices with both tags,
    InstanceNumber for the rest. A mix compares millimetres with counts and interleaves the slices.
    """
    with_position = [_named(ds, f) for ds, f in headers if _has_position(ds)]
    if 0 < len(with_position) < len(headers):
        without = next(_named(ds, f) for ds, f in headers if not _has_position(ds))
        raise DataError(
            f"DICOM file {without} has no ImagePositionPatient or ImageOrientationPatient but "
            f"{with_position[0]} has both ({len(headers) - len(with_position)} of {len(headers)} slices "
            f"lack them, {_series_text(folder)}); expected every slice of a series to state its "
            "position, or none (then InstanceNumber orders them), so that the slices sort in one order"
        )


def _check_distinct_positions(
    headers: Sequence[tuple[Any, Path]], folder: Path, *, echoes: _SeriesEchoes | None = None
) -> None:
    """Refuse two slices at one position along the normal (``headers`` sorted by position).

    Only where every slice states its position: without ImagePositionPatient the InstanceNumber
    order is all there is, and files without either keep their name order as before. ``echoes``:
    the series' echoes where none was chosen, so that two echoes at one place are named as such.
    """
    if not all(_has_position(ds) for ds, _ in headers):
        return
    positions = [_slice_position(ds) for ds, _ in headers]
    same = [i for i in range(len(positions) - 1) if positions[i + 1] - positions[i] < _SAME_POSITION_MM]
    if not same:
        return
    i = same[0]
    more = f" ({len(same) - 1} more pair(s) too)" if len(same) > 1 else ""
    (a, file_a), (b, file_b) = headers[i], headers[i + 1]
    if echoes is not None and len(echoes.values) > 1 and echoes.key(a) != echoes.key(b):
        raise DataError(
            f"DICOM {_series_text(folder)} holds {len(echoes.values)} echoes ({echoes.text()}) at the same "
            f"slice positions: {_named(a, file_a)} and {_named(b, file_b)} are both at {positions[i]:g} mm "
            "along the slice normal; expected one image per position: choose an echo with echo=1 to "
            f"{len(echoes.values)} (1: the shortest; the dicom dataset's data.params.echo, predict's "
            "echo=... or --echo)"
        )
    if isinstance(a, _Frame) and isinstance(b, _Frame) and file_a == file_b:
        raise DataError(
            f"DICOM file {file_a} holds frames {min(a.frame, b.frame) + 1} and {max(a.frame, b.frame) + 1} "
            f"both at {positions[i]:g} mm along the slice normal (ImagePositionPatient projected on it)"
            f"{more}; expected one frame per position: a multi-frame file of several echoes, time "
            "points or stacks is several volumes; split it into one series per volume first (e.g. "
            "dcm2niix)"
        )
    raise DataError(
        f"DICOM files {_named(a, file_a)} and {_named(b, file_b)} are both at {positions[i]:g} mm along the "
        f"slice normal (ImagePositionPatient projected on it){more}, in series folder {folder}; "
        "expected one slice per position: repeated acquisitions (echoes, time points) or copied "
        "files belong in folders of their own"
    )


def _uneven_steps(headers: Sequence[tuple[Any, Path]], folder: Path) -> str | None:
    """Where a series' slices stop being evenly spaced (``headers`` sorted by position); ``None`` if
    they are.

    The affine steps from the first slice to the last in equal parts and the voxel volume takes one
    slice spacing: with a missing slice or mixed spacing, slices land at the wrong places in a
    label map and tissue volumes in mL are off. A 2D network sees each slice on its own, so
    training reads such a series (with a warning); prediction, which writes a label map on the
    series' grid, refuses it. Only where every slice states its position: InstanceNumbers say
    nothing about spacing.
    """
    if len(headers) < 3 or not all(_has_position(ds) for ds, _ in headers):
        return None
    positions = np.asarray([_slice_position(ds) for ds, _ in headers])
    steps = np.diff(positions)
    median = float(np.median(steps))
    deviations = np.abs(steps - median)
    allowed = max(_REGULAR_STEP_TOLERANCE * median, _STEP_ROUNDING_MM)
    if float(deviations.max()) <= allowed:
        return None
    # The step furthest off the median; of equals the larger (a missing slice is the usual cause).
    i = max(range(len(steps)), key=lambda k: (round(float(deviations[k]), 6), float(steps[k])))
    others = float(np.median(np.delete(steps, i)))
    values, counts = np.unique(np.round(steps, 3), return_counts=True)
    found = first_and_more(
        (f"{v:g} mm ({n}x)" for v, n in sorted(zip(values, counts), key=lambda vn: -vn[1])),
        limit=_STEPS_LISTED,
    )
    return (
        f"DICOM {_series_text(folder)}: slices {_named(*headers[i], short=True)} and "
        f"{_named(*headers[i + 1], short=True)} at "
        f"{positions[i]:g} and {positions[i + 1]:g} mm along the slice normal are {steps[i]:g} mm apart "
        f"where the series' other slices are {others:g} mm apart (steps between neighbouring slices: "
        f"{found}): a missing slice or a series of mixed spacing, not one regular grid"
    )


def _shifted_in_plane(
    headers: Sequence[tuple[Any, Path]], folder: Path, pixel_spacing: tuple[float, float]
) -> str | None:
    """Which slice lies furthest off the series' affine within its plane (``headers`` sorted by
    position), if any lies off it by more than :data:`_IN_PLANE_TOLERANCE`; ``None`` otherwise.

    The affine (:func:`_patient_affine`) puts every slice on the line from the first slice's
    ImagePositionPatient to the last's. Each slice's offset from that line is measured at its own
    place along the normal, so it lies within the slice's plane: along the normal the steps are
    :func:`_uneven_steps`' to judge, and a missing slice is not reported twice. A gantry-tilted
    series' positions lean off the normal along that line, as its sheared affine does, and are not
    reported. Only where every slice states its position and orientation, and with 3 slices or
    more (the line passes through both slices of 2).
    """
    if len(headers) < 3 or not all(_has_position(ds) for ds, _ in headers):
        return None
    orientation = _orientation(headers[0][0])
    assert orientation is not None  # _has_position
    along_row, along_column = orientation[:3], orientation[3:]
    positions = np.asarray([[float(v) for v in ds.ImagePositionPatient] for ds, _ in headers])
    depths = positions @ np.cross(along_row, along_column)  # the first slice's normal: offsets lie in-plane
    span = depths[-1] - depths[0]
    if span <= 0:  # sorted by each slice's own normal, which may differ within _ORIENTATION_TOLERANCE
        return None
    fraction = (depths - depths[0]) / span
    offsets = positions - (positions[0] + fraction[:, None] * (positions[-1] - positions[0]))
    distances = np.linalg.norm(offsets, axis=1)
    allowed = max(_IN_PLANE_TOLERANCE * min(pixel_spacing), _STEP_ROUNDING_MM)
    beyond = np.flatnonzero(distances > allowed)
    if beyond.size == 0:
        return None
    i = int(beyond[np.argmax(distances[beyond])])
    rows = float(offsets[i] @ along_column) / pixel_spacing[0]
    columns = float(offsets[i] @ along_row) / pixel_spacing[1]
    more = f"; {beyond.size - 1} more slice(s) lie off it by over {allowed:g} mm" if beyond.size > 1 else ""
    return (
        f"DICOM {_series_text(folder)}: slice {_named(*headers[i], short=True)} (slice {i + 1} of "
        f"{len(headers)} along the normal) has ImagePositionPatient "
        f"[{', '.join(f'{v:g}' for v in positions[i])}], {distances[i]:.3g} mm within its plane "
        f"({rows:+.3g} rows, {columns:+.3g} columns) off the line from the first slice's position to the "
        f"last's, on which the series' one affine puts every slice{more}: a slice shifted in-plane "
        "(re-centred, or from another reconstruction), not one regular grid"
    )


def _check_ct_rescale(ds: Any, path: Path) -> None:
    """Refuse a CT slice without RescaleSlope/RescaleIntercept (Type 1 in the CT Image module).

    Without them the stored values are not HU (often off by the usual -1024 intercept), and every
    HU window of sec. 2.2 would silently clip the wrong tissue.
    """
    if str(getattr(ds, "Modality", "")).upper() != "CT":
        return
    missing = [tag for tag in ("RescaleSlope", "RescaleIntercept") if getattr(ds, tag, None) in (None, "")]
    if missing:
        raise DataError(
            f"DICOM file {path} (Modality CT) has no {' or '.join(missing)}; expected both, to convert "
            "stored pixel values to HU (HU = pixel * RescaleSlope + RescaleIntercept)"
        )


def _check_greyscale(ds: Any, path: Path) -> None:
    """Refuse a colour slice (a screenshot, a fused overlay): its pixels are no MR or CT signal,
    and their three samples would reach the network as a slice of another shape."""
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    photometric = str(getattr(ds, "PhotometricInterpretation", "") or "MONOCHROME2")
    if samples != 1 or not photometric.upper().startswith("MONOCHROME"):
        raise DataError(
            f"DICOM file {path} is a colour image (SamplesPerPixel {samples}, PhotometricInterpretation "
            f"{photometric}); expected a greyscale MR or CT slice (one sample per pixel, MONOCHROME2 "
            "or MONOCHROME1)"
        )


def _check_rescale_values(ds: Any, path: Path) -> None:
    """Refuse a RescaleSlope of 0 (every pixel one value) and non-numeric or non-finite rescale tags."""
    for tag, default in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0)):
        try:
            value = _rescale_value(ds, tag, default)
        except (TypeError, ValueError):
            raise DataError(f"DICOM file {path} has {tag} {getattr(ds, tag)!r}; expected a number") from None
        if not math.isfinite(value) or (tag == "RescaleSlope" and value == 0.0):
            raise DataError(
                f"DICOM file {path} has {tag} {value!r}; expected a finite number"
                + (", not 0 (it would map every pixel to the intercept)" if tag == "RescaleSlope" else "")
            )


def _rescale_value(ds: Any, tag: str, default: float) -> float:
    value = getattr(ds, tag, None)
    return default if value is None or value == "" else float(value)


def _slice_position(ds: Any) -> float:
    position = getattr(ds, "ImagePositionPatient", None)
    orientation = getattr(ds, "ImageOrientationPatient", None)
    if position is not None and orientation is not None and len(orientation) == 6:
        normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
        return float(np.dot(normal, np.asarray(position, float)))
    return float(getattr(ds, "InstanceNumber", 0) or 0)


def _pixel_spacing(ds: Any, where: Path) -> tuple[float, float]:
    """``PixelSpacing``'s (row, column) spacing in mm; 1 mm each where the file has none."""
    if not _states_pixel_spacing(ds):
        return 1.0, 1.0
    spacing = ds.PixelSpacing
    numbers = _numbers(spacing) or []
    if len(numbers) != 2 or not all(math.isfinite(v) and v > 0 for v in numbers):
        # pydicom gives a single value as a number (DSfloat), several as a MultiValue (_values).
        count = len(_values(spacing))
        raise DataError(
            f"DICOM file {where}: PixelSpacing is {_values_text(spacing)} ({count} value(s)); expected "
            "two sizes > 0 in mm, row spacing then column spacing (DICOM PS3.3 C.7.6.2.1.1)"
        )
    return numbers[0], numbers[1]


def _slice_spacing(headers: Sequence[tuple[Any, Path]]) -> float | None:
    """Slice spacing (mm) of a series sorted by position; ``None`` when no tag states it.

    The positions' step along the normal where every slice states ImagePositionPatient and
    ImageOrientationPatient; without the orientation there is no normal to project on, and
    :func:`_slice_position` falls back to InstanceNumber, whose unit step is no spacing at all.
    Otherwise (and for one slice) the first slice's SpacingBetweenSlices, else its SliceThickness:
    the first that is a size > 0. A negative SpacingBetweenSlices is taken as its size: some CT and
    NM writers sign it with a direction, while the affine steps along the slice normal (row x
    column direction) whatever the sign.

    Raises:
        DataError: Neither tag is a usable size, and one of them states something (not a number,
            not finite, 0, a negative SliceThickness): no slice spacing, and a 1 mm guess would be
            wrong for a file that states one.
    """
    if len(headers) > 1 and all(_has_position(ds) for ds, _ in headers):
        steps = np.diff([_slice_position(ds) for ds, _ in headers])
        if np.all(steps > 0):
            return float(np.median(steps))
    first, where = headers[0]
    unusable: list[str] = []
    for tag in ("SpacingBetweenSlices", "SliceThickness"):
        value = getattr(first, tag, None)
        if value is None or value == "":
            continue  # an element without a value states nothing, as one absent
        size = finite_number(value)
        if size is not None and tag == "SpacingBetweenSlices":
            size = abs(size)
        if size is not None and size > 0:
            return size
        unusable.append(f"{tag} {str(value)!r}")
    if unusable:
        raise DataError(
            f"DICOM file {_named(first, where)} has {' and '.join(unusable)}; expected a slice spacing "
            "> 0 in mm (a file whose slices state no ImagePositionPatient with ImageOrientationPatient, "
            "or a single slice, takes its slice spacing from SpacingBetweenSlices, else SliceThickness)"
        )
    return None


def _states_pixel_spacing(ds: Any) -> bool:
    # An element present without a value (pydicom gives "" or None) states nothing, as one absent.
    return getattr(ds, "PixelSpacing", None) not in (None, "")


def _spacing_text(ds: Any, where: Path) -> str:
    rows, columns = _pixel_spacing(ds, where)
    return f"{rows:g} x {columns:g} mm"
