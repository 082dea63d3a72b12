"""What a DICOM MR series states of its acquisition: the scan parameters of the qDESS T2 model.

The analytic qDESS T2 (:func:`inpaintssl.metrics.qdess_t2`, paper sec. 2.7) needs the repetition
time, the first echo time, the flip angle, and the area and duration of the spoiler gradient
between the two echoes. The first three are standard tags (``RepetitionTime``, ``EchoTime``,
``FlipAngle``; an Enhanced MR file's MR Timing and Related Parameters and MR Echo functional
groups). The spoiler is no standard tag: GE's qDESS, the sequence of SKM-TEA, states it in the
private block of the creator ``GEMS_ACQU_01`` at elements ``B6`` (area) and ``B7`` (duration in
us) of group ``0019``, which DOSMA's ``QDess.generate_t2_map`` reads as ``(0019,10B6)`` and
``(0019,10B7)``. Here the block is looked up by its creator, so another vendor's private data at
those numbers is never taken for a spoiler; a series without it needs the two values given.

:func:`scan_parameters` returns what the series states, under the names of
:func:`~inpaintssl.metrics.qdess_t2`'s keywords, as the SKM-TEA dataset's ``scan_params`` are
named. :func:`gradient_echo_refusal` says whether a series states a gradient-echo acquisition,
whose echoes decay with T2* rather than T2 (a multi-echo spin-echo fit of them is no T2).

Example:
    >>> from pydicom.dataset import Dataset
    >>> ds = Dataset()
    >>> ds.RepetitionTime, ds.FlipAngle = "18.176", "20"
    >>> block = ds.private_block(0x0019, GE_ACQUISITION_CREATOR, create=True)
    >>> block.add_new(0xB6, "DS", "3132"); block.add_new(0xB7, "DS", "1792")
    >>> stated_parameters(ds)
    {'tr_ms': 18.176, 'flip_angle_deg': 20.0, 'gl_area': 3132.0, 'tg_us': 1792.0}
"""

from __future__ import annotations

from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

from inpaintssl.data.dicom import DicomVolume, finite_number, first_slice_header

__all__ = [
    "GE_ACQUISITION_CREATOR",
    "SCAN_PARAMETER_KEYS",
    "gradient_echo_refusal",
    "scan_parameters",
    "stated_parameters",
]

SCAN_PARAMETER_KEYS = ("tr_ms", "te_ms", "flip_angle_deg", "gl_area", "tg_us")
"""The scan parameters of :func:`~inpaintssl.metrics.qdess_t2`, by its keyword names."""

GE_ACQUISITION_CREATOR = "GEMS_ACQU_01"
"""The private creator of the block in group ``0019`` where GE states the qDESS spoiler."""

_GE_SPOILER_ELEMENTS = MappingProxyType({"gl_area": 0xB6, "tg_us": 0xB7})
"""Element offsets in :data:`GE_ACQUISITION_CREATOR`'s block: spoiler area and duration (us)."""

_STANDARD_TAGS = MappingProxyType({"tr_ms": "RepetitionTime", "flip_angle_deg": "FlipAngle"})


def _number(value: Any) -> float | None:
    """:func:`~inpaintssl.data.dicom.finite_number` of a tag's value, also where it is raw bytes: an
    implicit-VR file's private element reads as VR ``UN`` (``b"3132 "``)."""
    if isinstance(value, bytes):
        value = value.rstrip(b"\x00 ").decode("ascii", errors="replace").split("\\")[0]
    return finite_number(value)


def stated_parameters(header: Any) -> dict[str, float]:
    """Those of ``tr_ms``, ``flip_angle_deg``, ``gl_area`` and ``tg_us`` that one slice's header
    states as finite numbers (see the module docstring); an Enhanced frame resolves the first two
    from its functional groups, the private block is the file's."""
    found: dict[str, float] = {}
    for key, tag in _STANDARD_TAGS.items():
        value = _number(getattr(header, tag, None))
        if value is not None:
            found[key] = value
    dataset = getattr(header, "file", header)  # an Enhanced frame's file holds the private block
    try:
        block = dataset.private_block(0x0019, GE_ACQUISITION_CREATOR)
    except KeyError:
        return found
    for key, element in _GE_SPOILER_ELEMENTS.items():
        if element in block:
            value = _number(block[element].value)
            if value is not None:
                found[key] = value
    return found


def scan_parameters(volume: DicomVolume) -> dict[str, float]:
    """The scan parameters (:data:`SCAN_PARAMETER_KEYS`) the series of ``volume`` states: its first
    file's header (:func:`~inpaintssl.data.dicom.first_slice_header`) and, as ``te_ms``, its
    shortest echo time. Those it does not state are absent.

    Raises:
        DataError: The file cannot be read any more.

    Example:
        >>> scan_parameters(DicomVolume("knee/qdess", echo=1))  # doctest: +SKIP
        {'tr_ms': 18.176, 'flip_angle_deg': 20.0, 'gl_area': 3132.0, 'tg_us': 1792.0, 'te_ms': 5.712}
    """
    found = stated_parameters(first_slice_header(volume))
    if volume.echo_times_ms:
        found["te_ms"] = float(volume.echo_times_ms[0])
    return found


_BACKSLASH = "\\"  # DICOM's separator of a tag's values
_EXPECTED = (
    "whose echoes decay with T2*, not T2; expected a multi-echo spin-echo series (ScanningSequence SE, "
    "or an Enhanced file's EchoPulseSequence SPIN)"
)


def _values(value: Any) -> list[str]:
    """A code string tag's values, upper case: a multi-value's each, a backslash-joined text's each."""
    if isinstance(value, bytes):
        value = value.decode("ascii", errors="replace")
    items = value.split(_BACKSLASH) if isinstance(value, str) else list(value)
    return [str(item).strip(" \x00").upper() for item in items]


def _echo_pulse_sequences(dataset: Any) -> Iterator[tuple[str, Any]]:
    """Every ``EchoPulseSequence`` an Enhanced MR file states, with where: the MR Pulse Sequence
    module at its top level (PS3.3 C.8.13.4), or, as some writers keep it, the shared or per-frame
    functional groups or one of their macros (MR Timing and Related Parameters, MR Echo, ...)."""
    value = getattr(dataset, "EchoPulseSequence", None)
    if value is not None:
        yield "EchoPulseSequence", value
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for index, group in enumerate(getattr(dataset, groups, None) or ()):
            value = getattr(group, "EchoPulseSequence", None)
            if value is not None:
                yield f"{groups}[{index}].EchoPulseSequence", value
            for element in group:
                if element.VR != "SQ":
                    continue
                for item in element.value or ():
                    value = getattr(item, "EchoPulseSequence", None)
                    if value is not None:
                        yield f"{groups}[{index}].{element.keyword}.EchoPulseSequence", value


def gradient_echo_refusal(volume: DicomVolume) -> str | None:
    """Why the series of ``volume`` is no multi-echo spin echo, if its first file says so: ``None``
    where it states a spin echo or nothing of its sequence, else a message's clause naming the
    file, the tag, its value and what was expected.

    A gradient-echo series (multi-echo GRE, T2* mapping) decays with T2*, which field
    inhomogeneity makes shorter than T2: fitted as a spin echo, its map would be reported as T2
    with nothing to tell it apart. A classic slice states its sequence in
    ``ScanningSequence`` (``GR`` without ``SE``: a gradient echo; both: a hybrid such as GRASE),
    an Enhanced MR file in ``EchoPulseSequence`` (``SPIN``, ``GRADIENT`` or ``BOTH``). A series
    stating neither is taken as it comes: many anonymised exports strip them.

    Raises:
        DataError: The file cannot be read any more.

    Example:
        >>> gradient_echo_refusal(DicomVolume("knee/mgre", echo=1))  # doctest: +SKIP
        "knee/mgre/IM0001.dcm states ScanningSequence 'GR' (a gradient echo, no SE), whose echoes ..."
    """
    header = first_slice_header(volume)
    dataset = getattr(header, "file", header)  # an Enhanced frame: its file holds the modules
    where = volume.files[0]
    scanning = getattr(dataset, "ScanningSequence", None)
    if scanning is not None:
        codes = _values(scanning)
        if "GR" in codes and "SE" not in codes:
            stated = _BACKSLASH.join(codes)
            return f"{where} states ScanningSequence '{stated}' (a gradient echo, no SE), {_EXPECTED}"
    for tag, value in _echo_pulse_sequences(dataset):
        codes = _values(value)
        if "GRADIENT" in codes:
            return f"{where} states {tag} '{_BACKSLASH.join(codes)}' (a gradient echo), {_EXPECTED}"
    return None
