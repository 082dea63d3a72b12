"""DICOM series of any modality (MR, PET, ...) with their labels: the registered ``dicom`` dataset.

Scanners and archives hand out DICOM series; the ``nifti`` dataset needs them converted first
(dcm2niix), and the ``ct`` dataset windows Hounsfield units. ``dicom`` reads the series themselves
(:class:`~inpaintssl.data.dicom.DicomVolume`: a folder of single-frame files, or an Enhanced
file, checked as one series), preprocessed by the paper's rule for MRI (sec. 2.2: 2D slices
along the series' slices, z-scored per volume), as ``nifti`` reads a NIfTI of the same scan. A
case's label is a label map on the series' grid (NIfTI, MetaImage, NRRD, NumPy: rows x columns x
slices, slices in position order), a DICOM SEG of the series (classes take segment numbers) or
an RT Structure Set drawn on it (each class the ROI of its name)
(:mod:`~inpaintssl.data.dicom_labels`), so annotations saved by OHIF, 3D Slicer, MONAI Label or a
planning system train without conversion. Of a multi-echo series (the scanner's qDESS, a
multi-echo spin-echo or Dixon series) ``echo`` picks one echo, or ``"rss"`` their
root-sum-of-squares: a qDESS series so read is the ``skmtea`` dataset's image. With ``series``,
a case's image is a whole study's folder (exported flat, or one subfolder per series), and the
series of that description, UID or number is read from it. A CT series is
read too, with a warning: the ``ct`` dataset is the paper's CT preprocessing (three HU windows,
sec. 2.2). A series without ``PixelSpacing`` is read at 1 mm with a warning: its areas and
volumes are then pixel counts.

Example:
    >>> ds = dicom_dataset(split="train", cases={"train": [{"image": "knee/series-03/",  # doctest: +SKIP
    ...     "label": "knee/seg.dcm"}]}, class_names=["femoral_cartilage", "tibial_cartilage"])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from inpaintssl.config.errors import ConfigError
from inpaintssl.data.base import DataError
from inpaintssl.data.cases import CaseSpec, resolve_cases
from inpaintssl.data.checks import check_slice_axis
from inpaintssl.data.dicom import (
    DicomEchoesRssVolume,
    DicomVolume,
    check_series_param,
    dicom_object_kind,
    echoes_of,
    is_echo_number,
)
from inpaintssl.data.dicom_acquisition import gradient_echo_refusal
from inpaintssl.data.dicom_labels import open_dicom_annotation
from inpaintssl.data.labels import check_class_names
from inpaintssl.data.orientation import check_axis_codes
from inpaintssl.data.readers import LABEL_RANKS, Volume, open_volume, reader_class
from inpaintssl.data.volumes import Case, Normalize, VolumeSliceDataset, _some
from inpaintssl.metrics.mese import MESE_MIN_ECHOES
from inpaintssl.registry import DATASETS
from inpaintssl.warning_format import warn_each_time

__all__ = ["check_own_slices", "dicom_dataset"]


def check_own_slices(slice_axis: int, *, dataset: str, images: str) -> None:
    """Refuse a ``slice_axis`` other than 2 for DICOM series read without an ``orientation``.

    Read as stored, a series is rows x columns x slices and is cut along its own slices, whatever
    ``slice_axis`` says (its label map, on the series' grid, too). Ignored, the axis would still be
    recorded with the run, and ``predict`` would cut new scans along it: another plane than the
    network learned, labelled without an error.

    Args:
        slice_axis: The dataset's ``slice_axis`` (checked: -3 to 2).
        dataset: The dataset's name, which starts the message.
        images: Which images are DICOM series, for the message.

    Raises:
        ConfigError: ``slice_axis`` is not axis 2; the message names ``data.params.slice_axis`` and
            ``data.params.orientation``.
    """
    if slice_axis % 3 == 2:
        return
    raise ConfigError(
        f"{dataset}: data.params.slice_axis={slice_axis} without data.params.orientation, but {images}: "
        "a series read as stored is rows x columns x slices and is cut along its own slices (axis 2), "
        "which slice_axis cannot change; expected slice_axis 2 (or left out) to cut it so, or "
        "data.params.orientation (axis codes such as 'LPS') to read every series in that axis order "
        f"and cut it along axis {slice_axis} of it"
    )


@DATASETS.register("dicom")
def dicom_dataset(
    *,
    split: str,
    labelled: bool = True,
    cases: Any,
    root: str | Path | None = None,
    class_names: Sequence[str] = (),
    label_values: Mapping[str, int | Sequence[int]] | None = None,
    normalize: Normalize = "volume",
    orientation: str | None = None,
    slice_axis: int = 2,
    echo: int | Literal["rss"] | None = None,
    t2_echoes: bool = False,
    series: str | int | None = None,
) -> VolumeSliceDataset:
    """DICOM series (MR or any modality) with label maps, DICOM SEGs or RT Structure Sets (sec. 2.1-2.2).

    Args:
        split: Split name defined in ``cases``.
        labelled: Read labels (needs ``class_names``).
        cases: Series per split (see :mod:`inpaintssl.data.cases`): a folder of one series, or an
            Enhanced ``.dcm`` file; labels as in the module docstring.
        root: Folder relative paths start from.
        class_names: Foreground classes.
        label_values: Stored value(s) per class (default ``i + 1``): label-map values, SEG segment
            numbers; an RTSTRUCT ROI's pixels get the class's first value.
        normalize: ``volume``, ``channel`` or ``none``.
        orientation: Axis codes (:mod:`~inpaintssl.data.orientation`) every series and label is
            read in, e.g. ``"RAS"``: series stored in other axis orders are permuted and flipped
            (not resampled), and each cut along ``slice_axis`` of the reoriented volume. ``None``
            (default): as stored, cut along the series' own slices.
        slice_axis: With ``orientation``, the axis of the reoriented volume slices are taken along.
            Without it a series is cut along its own slices (axis 2), so any other axis is refused
            rather than ignored.
        echo: For multi-echo series (qDESS, multi-echo spin echo, Dixon: several echoes at every
            position): the echo to read, 1 being the shortest echo time
            (:class:`~inpaintssl.data.dicom.DicomVolume`), or ``"rss"``: the root-sum-of-squares
            of every echo (:class:`~inpaintssl.data.dicom.DicomEchoesRssVolume`; of qDESS's two,
            the ``skmtea`` dataset's image). ``None`` (default): each series as it is, and a
            multi-echo one is refused, naming its echoes. Every case must hold the echo asked
            for; labels lie on the series' grid, which every echo shares.
        t2_echoes: Items also carry every echo of their slice, for the ``clinical`` study's
            mean T2 of multi-echo spin-echo series (:func:`~inpaintssl.metrics.mese_t2`):
            ``echoes`` ``(E, H, W)`` float32 (each echo's values, shortest echo time first) and
            ``echo_times_ms`` ``(E,)``. Every series must hold the same number of echoes, at
            least three (the first is left out of the fit), and none that states a gradient echo
            (:func:`~inpaintssl.data.dicom_acquisition.gradient_echo_refusal`: its decay is T2*,
            not T2). Every item then holds E more slices, and the pre-flight check reads every
            echo completely (each file fingerprinted with its case): leave it off where nothing
            measures T2.
        series: Each case's image is a folder of a whole study (its series' files together, or
            in subfolders), and this names the series read from it: its ``SeriesDescription``
            (without case, e.g. ``"sag t2 map"``), ``SeriesInstanceUID``, or ``SeriesNumber``
            (a whole number), as :func:`~inpaintssl.data.dicom.select_series` takes it. One
            protocol for every case; a case with none or several such series is refused,
            listing the series it holds. ``None`` (default): each image is one series.

    Raises:
        ConfigError: ``slice_axis`` other than 2 without ``orientation``.
        DataError: An image that is no DICOM series, a label its reader refuses, ``labelled``
            without ``class_names``, an ``echo`` that is neither a whole number >= 1 nor ``"rss"``
            or that a series does not hold, ``t2_echoes`` with a series of fewer than three
            echoes, of another echo count than the others or that states a gradient echo, a
            ``series`` a case does not hold once; the message names the file.
    """
    names = check_class_names(class_names, where="dicom")
    if labelled and not names:
        raise DataError("dicom: labelled=True needs class_names (the foreground class of each label value)")
    if orientation is not None:
        orientation = check_axis_codes(orientation, where="dicom: orientation", error=DataError)
    slice_axis = check_slice_axis(slice_axis, where="dicom")
    if orientation is None:
        # A series (and its label map, on the series' grid) is read as stored and cut along its own
        # slices; another axis would be ignored in training, yet recorded, and predict would cut
        # new scans along it.
        check_own_slices(slice_axis, dataset="dicom", images="its images are DICOM series")
    if echo != "rss" and echo is not None and not is_echo_number(echo):
        raise DataError(
            f"dicom: echo={echo!r}; expected an echo number >= 1 (1: the shortest echo time), 'rss' (the "
            "root-sum-of-squares of every echo) or none"
        )
    check_series_param(series, dataset="dicom")

    def oriented(volume: Volume) -> Volume:
        if orientation is not None:
            volume.reorient(orientation, slice_axis=slice_axis)
        return volume

    def open_case(spec: CaseSpec) -> Case:
        found = reader_class(spec.image)
        if found is not DicomVolume:
            raise DataError(
                f"dicom case {spec.volume_id!r}: image {spec.image} is read as {found.__name__}, not a DICOM "
                "series; expected a folder of one series or an Enhanced .dcm file (use the nifti, metaimage "
                "or nrrd dataset for those formats)"
            )
        image = (
            DicomEchoesRssVolume(spec.image, series=series)
            if echo == "rss"
            else DicomVolume(spec.image, echo=echo, series=series)
        )
        label_path = spec.label if labelled else None
        if label_path is None:
            return Case(spec.volume_id, oriented(image), None)
        kind = dicom_object_kind(label_path)
        label = (
            open_dicom_annotation(
                label_path,
                image,
                kind,
                class_names=names,
                label_values=label_values,
                where=f"dicom case {spec.volume_id!r}",
            )
            if kind is not None
            else open_volume(label_path, slice_axis=2, ranks=LABEL_RANKS)
        )
        return Case(spec.volume_id, oriented(image), oriented(label))

    opened = [open_case(spec) for spec in resolve_cases(cases, split, root=root, dataset="dicom")]
    echoes = [[oriented(e) for e in _t2_echoes(case)] for case in opened] if t2_echoes else None
    assumed = [str(case.image.path) for case in opened if not case.image.has_geometry]
    if assumed:
        warn_each_time(
            f"dicom: {len(assumed)} series state no PixelSpacing ({_some(assumed)}); 1 mm is assumed, so "
            "their areas (mm^2) and volumes (mL) are pixel and voxel counts",
            UserWarning,
        )
    computed = [str(case.image.path) for case in opened if getattr(case.image, "modality", None) == "CT"]
    if computed:
        warn_each_time(
            f"dicom: {len(computed)} series are CT ({_some(computed)}); they are z-scored as MR is. The ct "
            "dataset reads CT as the paper does: three HU windows, each z-scored (sec. 2.2)",
            UserWarning,
        )
    common: dict[str, Any] = {
        "name": "dicom",
        "class_names": names if labelled else (),
        "label_values": label_values if labelled else None,
        "normalize": normalize,
    }
    if echoes is not None:
        return _EchoSliceDataset(opened, echoes, **common)
    return VolumeSliceDataset(opened, **common)


def _t2_echoes(case: Case) -> list[DicomVolume]:
    """Every echo of a case's series, for its T2; refused where a T2 cannot be fitted to them."""
    assert isinstance(case.image, DicomVolume)  # open_case opens every image so
    echoes = echoes_of(case.image)
    times = echoes[0].echo_times_ms
    if len(times) < MESE_MIN_ECHOES:
        held = (
            f"{len(times)} echo(es) ({', '.join(f'{t:g}' for t in times)} ms)"
            if times
            else f"{len(echoes)} echo(es) without an EchoTime on every slice"
        )
        raise DataError(
            f"dicom case {case.volume_id!r}: t2_echoes needs a multi-echo spin-echo series of at least "
            f"{MESE_MIN_ECHOES} echoes with an EchoTime each (the first is left out of the T2 fit), but "
            f"{case.image.path} holds {held}"
        )
    refusal = gradient_echo_refusal(case.image)
    if refusal is not None:
        raise DataError(
            f"dicom case {case.volume_id!r}: t2_echoes fits the {len(times)} echoes of {case.image.path} "
            f"as a multi-echo spin echo, but {refusal}; leave t2_echoes off for it"
        )
    return echoes


class _EchoSliceDataset(VolumeSliceDataset):
    """:class:`~inpaintssl.data.volumes.VolumeSliceDataset` whose items also carry every echo of
    their slice (``echoes``, ``echo_times_ms``): the ``dicom`` dataset with ``t2_echoes``.

    Args:
        cases: The opened cases.
        echoes: Per case, its series' echoes (shortest echo time first), read in the case's
            image's orientation.
        **options: As :class:`~inpaintssl.data.volumes.VolumeSliceDataset`.

    Raises:
        DataError: The cases' series hold different numbers of echoes (their items would not
            batch together); and what :class:`~inpaintssl.data.volumes.VolumeSliceDataset` refuses.
    """

    def __init__(self, cases: Sequence[Case], echoes: Sequence[Sequence[Volume]], **options: Any) -> None:
        super().__init__(cases, **options)
        counts = {len(e) for e in echoes}
        if len(counts) > 1:
            found = "; ".join(f"{case.image.path}: {len(e)}" for case, e in zip(cases, echoes))
            raise DataError(
                f"{self.name}: t2_echoes reads series of different echo counts ({found}); expected one "
                "protocol, the same echoes in every series (their items batch together)"
            )
        self._echoes = [list(e) for e in echoes]
        # Every echo's files: the run's record of its data (a resume notices any of them changing).
        self.data_files = sorted(
            {*self.data_files, *(f for e in echoes for volume in e for f in volume.files)}
        )
        self._echo_times = [
            torch.tensor(getattr(e[0], "echo_times_ms", ()), dtype=torch.float64) for e in echoes
        ]

    def extra_volumes(self, case_index: int) -> tuple[Volume, ...]:
        """Every echo of the case's series: its items read each echo's slice, so the pre-flight check
        reads each echo completely and fingerprints its files with the case."""
        return tuple(self._echoes[case_index])

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = super().__getitem__(index)
        case = int(self._index[index, 0])
        slices = [echo.read(int(item["slice_index"])) for echo in self._echoes[case]]
        item["echoes"] = torch.from_numpy(np.stack(slices).astype(np.float32, copy=False))
        item["echo_times_ms"] = self._echo_times[case].clone()
        return item
