"""T2 maps of the scans ``predict(t2=True)`` labels, and each predicted tissue's mean T2 (sec. 2.7).

Cartilage T2 is one of the numbers the library's users report. The paper computes it from the
two qDESS echoes of SKM-TEA (:mod:`inpaintssl.metrics.qdess`, the ``clinical`` study); clinics and
cohorts (the Osteoarthritis Initiative among them) measure it with a multi-echo spin-echo (MESE)
series: the same slices at several echo times. For such an input, given as a DICOM series that
holds every echo, :func:`check_t2_input` refuses what cannot be fitted before anything is
predicted, and :func:`t2_map` fits every voxel with :func:`~inpaintssl.metrics.mese_t2` (first
echo left out) on the series' stored grid, where the label map lies; :func:`class_mean_t2` is
each class's mean over its labelled voxels with a T2 (:func:`~inpaintssl.metrics.mean_t2`).

Example:
    >>> import numpy as np
    >>> t2 = np.array([[[30.0], [np.nan]], [[50.0], [40.0]]])
    >>> labels = np.array([[[1], [1]], [[2], [1]]], dtype=np.uint8)
    >>> class_mean_t2(t2, labels, ["femoral_cartilage", "tibial_cartilage"])
    {'femoral_cartilage': 35.0, 'tibial_cartilage': 50.0}
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inpaintssl.data.dicom import DicomVolume, echoes_of
from inpaintssl.data.readers import Volume
from inpaintssl.inference.results import PredictionError
from inpaintssl.metrics import mean_t2, mese_t2
from inpaintssl.metrics.mese import MESE_MIN_ECHOES

__all__ = ["check_t2_input", "class_mean_t2", "t2_map"]


def check_t2_input(volume: Volume, path: Path) -> tuple[float, ...]:
    """The echo times (ms) of an input a T2 map is asked for; refuse one that cannot give it.

    Raises:
        PredictionError: The input is not a DICOM series, or its slices do not all state an
            ``EchoTime``, or it holds fewer than :data:`~inpaintssl.metrics.mese.MESE_MIN_ECHOES` echoes.
    """
    if not isinstance(volume, DicomVolume):
        raise PredictionError(
            f"input {path}: t2=True fits a T2 map to the echoes of a multi-echo spin-echo DICOM series, "
            f"but it is a {type(volume).__name__}; give the series (every echo in one folder or Enhanced "
            "file), or leave t2 (--t2) off"
        )
    times = volume.echo_times_ms
    if len(times) < MESE_MIN_ECHOES:
        held = (
            f"holds {len(times)} echo(es) ({', '.join(f'{t:g}' for t in times)} ms)"
            if times
            else "states no EchoTime on every slice (one echo, as far as it says)"
        )
        raise PredictionError(
            f"input {path}: t2=True needs a multi-echo spin-echo series of at least {MESE_MIN_ECHOES} echoes "
            f"(the first is left out of the fit), but it {held}. A qDESS series' T2 comes from its "
            "two echoes and the scan's spoiler parameters instead (inpaintssl.metrics.qdess_t2)"
        )
    return times


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
