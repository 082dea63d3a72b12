"""T2 maps of the scans ``predict(t2=True)`` labels, and each predicted tissue's mean T2 (sec. 2.7).

Cartilage T2 is one of the numbers the library's users report. Two acquisitions give it, each a
DICOM series that holds every echo:

- **qDESS** (two echoes): the paper's, from SKM-TEA. The T2 of each voxel follows analytically
  from the ratio of its two echoes (:func:`~inpaintssl.metrics.qdess_t2`, as DOSMA computes it),
  given the scan parameters: the repetition time, the first echo time and the flip angle from the
  series' tags, and the spoiler gradient's area and duration from GE's private tags or as given
  (:mod:`inpaintssl.data.dicom_acquisition`). The model also assumes each tissue's T1: a voxel
  labelled as a class named in :data:`~inpaintssl.metrics.T1_DEFAULTS_MS` gets that class's T1
  (``femoral_cartilage`` 1200 ms, the other cartilages and the meniscus 1000 ms), every other voxel
  1200 ms, as the ``clinical`` study assumes; so each class's mean T2 is the one the study reports
  for that tissue.
  An SKM-TEA scan's HDF5 file (``echo1``, ``echo2``) is such an input too, all of whose scan
  parameters are given (it states none).
- **Multi-echo spin echo** (MESE, three echoes or more): what clinics and cohorts (the
  Osteoarthritis Initiative among them) measure with. Every voxel's decay is fitted with
  :func:`~inpaintssl.metrics.mese_t2`, the first echo left out. A series that states a gradient
  echo (``ScanningSequence`` ``GR`` without ``SE``, ``EchoPulseSequence`` ``GRADIENT``: a T2*
  map's echoes) is refused (:func:`~inpaintssl.data.dicom_acquisition.gradient_echo_refusal`); one
  that states neither is fitted.

:func:`check_t2_input` refuses what cannot be fitted before anything is predicted and says how
(a :class:`QdessFit` or :class:`MeseFit`); :func:`fitted_t2_map` computes the map on the series'
stored grid, where the label map lies; :func:`class_mean_t2` is each class's mean over its
labelled voxels with a T2 (:func:`~inpaintssl.metrics.mean_t2`).

Example:
    >>> import numpy as np
    >>> t2 = np.array([[[30.0], [np.nan]], [[50.0], [40.0]]])
    >>> labels = np.array([[[1], [1]], [[2], [1]]], dtype=np.uint8)
    >>> class_mean_t2(t2, labels, ["femoral_cartilage", "tibial_cartilage"])
    {'femoral_cartilage': 35.0, 'tibial_cartilage': 50.0}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from inpaintssl.data.base import DataError
from inpaintssl.data.dicom import DicomVolume, echoes_of
from inpaintssl.data.dicom_acquisition import (
    SCAN_PARAMETER_KEYS,
    gradient_echo_refusal,
    scan_parameters,
)
from inpaintssl.data.readers import H5Volume, Volume
from inpaintssl.data.scan_parameter_table import SCAN_PARAM_COLUMNS, ScanParameterTable
from inpaintssl.data.skmtea import echo_slices, holds_qdess_echoes
from inpaintssl.inference.results import PredictionError
from inpaintssl.metrics import T1_DEFAULTS_MS, T1_OTHER_MS, mean_t2, mese_t2, qdess_t2
from inpaintssl.metrics.fit_arguments import one_number
from inpaintssl.metrics.mese import MESE_MIN_ECHOES

__all__ = [
    "MeseFit",
    "QdessFit",
    "T2Fit",
    "check_qdess_parameters",
    "check_t2_input",
    "class_mean_t2",
    "fitted_t2_map",
    "qdess_t2_map",
    "t2_map",
]

_QDESS_ECHOES = 2
_UNITS = MappingProxyType(
    {
        "tr_ms": "ms",
        "te_ms": "ms",
        "flip_angle_deg": "degrees",
        "gl_area": "the scanner's units",
        "tg_us": "us",
    }
)
"""The unit of each of :data:`~inpaintssl.data.dicom_acquisition.SCAN_PARAMETER_KEYS`, for messages."""
_GIVE = (
    "qdess_parameters={...} (--qdess-parameter KEY=VALUE), or per case in a table "
    "(qdess_parameters_csv, --qdess-parameters-csv)"
)


@dataclass(frozen=True)
class MeseFit:
    """A multi-echo spin-echo series' T2: every voxel's decay fitted over its echo times.

    Attributes:
        echo_times_ms: The series' echo times in ms, shortest first.
    """

    echo_times_ms: tuple[float, ...]


@dataclass(frozen=True)
class QdessFit:
    """A qDESS series' T2: the analytic model over its two echoes.

    Attributes:
        scan: Every scan parameter of :func:`~inpaintssl.metrics.qdess_t2`
            (:data:`~inpaintssl.data.dicom_acquisition.SCAN_PARAMETER_KEYS`), in its units.
    """

    scan: Mapping[str, float]


T2Fit = MeseFit | QdessFit
"""How :func:`fitted_t2_map` computes an input's T2 map, as :func:`check_t2_input` found it."""


def check_qdess_parameters(given: Mapping[str, float] | None) -> dict[str, float]:
    """``predict``'s ``qdess_parameters``, checked: names of
    :data:`~inpaintssl.data.dicom_acquisition.SCAN_PARAMETER_KEYS`, each one finite real number,
    as :func:`~inpaintssl.metrics.qdess_t2` takes them (the command line's ``--qdess-parameter``
    gives floats).

    Raises:
        ValueError: An unknown name, or a value that is no finite real number (a bool, text, an
            array of more than one value, NaN, inf); the message names it.
    """
    checked: dict[str, float] = {}
    for key, value in (given or {}).items():
        if key not in SCAN_PARAMETER_KEYS:
            raise ValueError(
                f"qdess_parameters: unknown scan parameter {key!r}; expected some of "
                f"{', '.join(SCAN_PARAMETER_KEYS)} (inpaintssl.metrics.qdess_t2's keywords)"
            )
        # float() took True for 1.0 and "18" for 18.0, where qdess_t2 refuses both: a bool here is
        # a mistake, and the map would be computed from a spoiler area or TR of 1.
        try:
            checked[key] = one_number(value, name=key, unit=_UNITS[key])
        except ValueError as exc:
            raise ValueError(
                f"qdess_parameters: {key}={value!r}; expected a finite number in "
                f"{_UNITS[key]} (an int or float, not a bool, text or array)"
            ) from exc
    return checked


def check_t2_input(
    volume: Volume,
    path: Path,
    *,
    qdess_parameters: Mapping[str, float] | None = None,
    qdess_table: ScanParameterTable | None = None,
    case: str | None = None,
) -> T2Fit:
    """How the T2 map of an input is fitted (see the module docstring); refuse one that cannot be.

    ``qdess_parameters`` (checked by :func:`check_qdess_parameters`) and the row of ``case`` in
    ``qdess_table`` (:mod:`~inpaintssl.data.scan_parameter_table`; the two give different
    parameters) give scan parameters of a qDESS series in place of, or where it lacks, its own.

    Raises:
        PredictionError: The input is neither a DICOM series nor an HDF5 file of both qDESS
            echoes (an SKM-TEA scan), or its slices do not all state an ``EchoTime``, or it holds
            one echo; a series of three echoes or more that states a gradient echo (whose decay
            is T2*, not T2); a qDESS input that neither states nor is given every scan parameter, or
            whose parameters the model refuses (out of range, in the wrong unit), or whose row in
            ``qdess_table`` is damaged; the message names the file.
        ValueError: ``qdess_table`` without ``case``.
    """
    if isinstance(volume, H5Volume) and holds_qdess_echoes(volume.path):
        given = _given(path, qdess_parameters, qdess_table, case)
        return QdessFit(_given_scan(path, given, _table_note(qdess_table, case)))
    if not isinstance(volume, DicomVolume):
        raise PredictionError(
            f"input {path}: t2=True fits a T2 map to the echoes of a qDESS or multi-echo spin-echo DICOM "
            f"series or an SKM-TEA scan's HDF5 file, but it is a {type(volume).__name__}; give the series "
            "(every echo in one folder or Enhanced file), or leave t2 (--t2) off"
        )
    times = volume.echo_times_ms
    if len(times) >= MESE_MIN_ECHOES:
        try:
            refusal = gradient_echo_refusal(volume)
        except DataError as exc:
            raise PredictionError(f"input {path}: {exc}") from exc
        if refusal is not None:
            raise PredictionError(
                f"input {path}: t2=True fits a series of {len(times)} echoes as a multi-echo spin echo, but "
                f"{refusal}; leave t2 (--t2) off for it"
            )
        return MeseFit(tuple(float(t) for t in times))
    if len(times) == _QDESS_ECHOES:
        given = _given(path, qdess_parameters, qdess_table, case)
        return QdessFit(_qdess_scan(volume, path, given, _table_note(qdess_table, case)))
    held = (
        f"holds {len(times)} echo ({times[0]:g} ms)"
        if times
        else "states no EchoTime on every slice (one echo, as far as it says)"
    )
    raise PredictionError(
        f"input {path}: t2=True needs a qDESS series (two echoes) or a multi-echo spin-echo series of at "
        f"least {MESE_MIN_ECHOES} echoes (the first is left out of the fit), but it {held}"
    )


def _given(
    path: Path,
    qdess_parameters: Mapping[str, float] | None,
    qdess_table: ScanParameterTable | None,
    case: str | None,
) -> dict[str, float]:
    """The scan parameters given for one input: its row of the table, and those given for all."""
    if qdess_table is None:
        return dict(qdess_parameters or {})
    if case is None:
        raise ValueError("check_t2_input: qdess_table without case; expected the input's case name")
    try:
        row = qdess_table.parameters_of(case)
    except DataError as exc:
        raise PredictionError(f"input {path}: {exc}") from exc
    return {**row, **(qdess_parameters or {})}


def _table_note(qdess_table: ScanParameterTable | None, case: str | None) -> str:
    """Where the table was looked in, for a refusal of missing parameters ('' without a table)."""
    if qdess_table is None:
        return ""
    row = f"{qdess_table.case_column} {case!r}"
    if case in qdess_table:
        return f"; the row of {row} in {qdess_table.path} leaves them empty"
    return f"; {qdess_table.path} has no row of {row}"


def _qdess_scan(
    volume: DicomVolume, path: Path, given: Mapping[str, float], table_note: str
) -> dict[str, float]:
    """Every scan parameter of a qDESS series: given ones first, else its own; checked by the model."""
    stated = scan_parameters(volume)
    scan = {**stated, **given}
    missing = [key for key in SCAN_PARAMETER_KEYS if key not in scan]
    if missing:
        where = {
            "tr_ms": "RepetitionTime",
            "te_ms": "EchoTime",
            "flip_angle_deg": "FlipAngle",
            "gl_area": "GE's private (0019,xxB6) of GEMS_ACQU_01",
            "tg_us": "GE's private (0019,xxB7) of GEMS_ACQU_01",
        }
        lacking = ", ".join(f"{key} ({where[key]})" for key in missing)
        raise PredictionError(
            f"input {path}: a series of two echoes, whose T2 comes from the qDESS model, but it does not "
            f"state {lacking}; give the scan's own with {_GIVE}, from its protocol (for SKM-TEA: "
            "all_metadata.csv). A two-echo series that is no qDESS (Dixon) has no T2 map: leave t2 "
            f"off{table_note}"
        )
    return _checked_scan(path, scan, given)


def _checked_scan(path: Path, scan: dict[str, float], given: Mapping[str, float]) -> dict[str, float]:
    """``scan`` (every parameter), refused where the model refuses it (out of range, a unit slip)."""
    try:
        _qdess(np.ones(1, dtype=np.float32), np.ones(1, dtype=np.float32), scan, t1_ms=T1_OTHER_MS)
    except ValueError as exc:
        came = ", ".join(f"{k}={v:g}" + (" (given)" if k in given else "") for k, v in scan.items())
        raise PredictionError(
            f"input {path}: its qDESS scan parameters ({came}) do not fit the model: {exc}; correct them "
            f"with {_GIVE}"
        ) from exc
    return {key: scan[key] for key in SCAN_PARAMETER_KEYS}


def _qdess(s1: np.ndarray, s2: np.ndarray, scan: Mapping[str, float], *, t1_ms: float) -> np.ndarray:
    return np.asarray(
        qdess_t2(
            s1,
            s2,
            tr_ms=scan["tr_ms"],
            te_ms=scan["te_ms"],
            flip_angle_deg=scan["flip_angle_deg"],
            gl_area=scan["gl_area"],
            tg_us=scan["tg_us"],
            t1_ms=t1_ms,
        )
    )


def _given_scan(path: Path, given: Mapping[str, float], table_note: str) -> dict[str, float]:
    """Every scan parameter of an SKM-TEA scan's file, which states none: all given."""
    missing = [key for key in SCAN_PARAMETER_KEYS if key not in given]
    if missing:
        columns = ", ".join(f"{key} ({SCAN_PARAM_COLUMNS[key]})" for key in missing)
        raise PredictionError(
            f"input {path}: an HDF5 file of both qDESS echoes (an SKM-TEA scan), whose T2 comes from the "
            f"qDESS model, but an HDF5 file states no scan parameters; give {columns} with {_GIVE}: "
            f"SKM-TEA's all_metadata.csv holds them in the columns named, in the scan's row{table_note}"
        )
    return _checked_scan(path, dict(given), given)


def fitted_t2_map(volume: Volume, fit: T2Fit, labels: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """The T2 map in ms (float32, NaN where invalid) of the input ``volume`` was read from, on its
    stored grid: :func:`t2_map` for a :class:`MeseFit`, :func:`qdess_t2_map` for a :class:`QdessFit`
    (whose T1 follows ``labels``, ``k + 1`` for ``class_names[k]``)."""
    if isinstance(fit, MeseFit):
        assert isinstance(volume, DicomVolume)  # check_t2_input gives a MeseFit for a series alone
        return t2_map(volume, fit.echo_times_ms)
    return qdess_t2_map(volume, fit.scan, labels, class_names)


def _echo_pairs(volume: Volume) -> tuple[tuple[int, ...], Iterator[tuple[np.ndarray, np.ndarray]]]:
    """The stored grid of a qDESS input's echoes, and ``(S1, S2)`` of each slice along its last axis:
    a two-echo DICOM series' (every echo's files read again), or an SKM-TEA file's."""
    if isinstance(volume, DicomVolume):
        first, second = echoes_of(volume)
        pairs = (
            (first.read(k).astype(np.float32), second.read(k).astype(np.float32))
            for k in range(first.num_slices)
        )
        return first.grid, pairs
    return echo_slices(volume.path)


def qdess_t2_map(
    volume: Volume, scan: Mapping[str, float], labels: np.ndarray, class_names: Sequence[str]
) -> np.ndarray:
    """The qDESS T2 map in ms (float32, NaN where invalid) of the two-echo series ``volume`` was read
    from (its echoes read again), or of the SKM-TEA scan's file, on its stored grid.

    Each voxel's T1 is that of its class in ``labels`` (``k + 1`` for ``class_names[k]``) in
    :data:`~inpaintssl.metrics.T1_DEFAULTS_MS`, else :data:`~inpaintssl.metrics.T1_OTHER_MS`.
    Computed slice by slice.

    Example:
        >>> fit = check_t2_input(volume, path)  # doctest: +SKIP
        >>> t2 = qdess_t2_map(volume, fit.scan, labels, ["femoral_cartilage"])  # doctest: +SKIP
    """
    grid, pairs = _echo_pairs(volume)
    if labels.shape != grid:
        raise ValueError(f"the label map is {labels.shape} but the echoes {grid}; expected one grid")
    t1_of_label = np.full(len(class_names) + 1, T1_OTHER_MS)
    for k, name in enumerate(class_names):
        t1_of_label[k + 1] = T1_DEFAULTS_MS.get(name, T1_OTHER_MS)
    t2 = np.empty(grid, dtype=np.float32)
    for k, (s1, s2) in enumerate(pairs):
        t1 = t1_of_label[labels[..., k]]
        plane = np.full(s1.shape, np.nan, dtype=np.float32)
        for value in np.unique(t1):
            where = t1 == value
            plane[where] = _qdess(s1[where], s2[where], scan, t1_ms=float(value))
        t2[..., k] = plane
    return t2


def t2_map(volume: DicomVolume, echo_times_ms: Sequence[float]) -> np.ndarray:
    """T2 in ms (float32, NaN where no decay) on the stored grid ``(rows, columns, slices)`` of the
    series ``volume`` was read from, every echo's files read again but no other file of a study
    (:func:`~inpaintssl.data.dicom.echoes_of`).

    Fitted slice by slice: the fit's working arrays are several times its input, which for a
    whole 7-echo 512 x 512 x 160 series would be gigabytes.
    """
    echoes = echoes_of(volume)  # as stored: the label map's grid
    first = echoes[0]
    t2 = np.empty(first.grid, dtype=np.float32)
    for k in range(first.num_slices):
        t2[..., k] = mese_t2(np.stack([echo.read(k) for echo in echoes]), echo_times_ms)
    return t2


def class_mean_t2(t2: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Each class's mean T2 (ms) over its voxels in ``labels`` (``k + 1`` for ``names[k]``) that have
    one; NaN for a class with no such voxel."""
    if t2.shape != labels.shape:
        raise ValueError(f"the T2 map is {t2.shape} but the label map {labels.shape}; expected one grid")
    return {name: float(mean_t2(t2, labels == k + 1)) for k, name in enumerate(names)}
