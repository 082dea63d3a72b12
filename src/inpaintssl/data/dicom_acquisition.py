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
named.

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

from types import MappingProxyType
from typing import Any

from inpaintssl.data.dicom import DicomVolume, finite_number, first_slice_header

__all__ = ["GE_ACQUISITION_CREATOR", "SCAN_PARAMETER_KEYS", "scan_parameters", "stated_parameters"]

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
