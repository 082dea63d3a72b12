"""What :func:`~inpaintssl.inference.predict.predict` reports and raises: per case, per call, on failure.

Example:
    >>> from pathlib import Path
    >>> case = CasePrediction("s1", Path("s1.nii.gz"), Path("out/s1_seg.nii.gz"), None, (4, 4, 2),
    ...                       {"wm": 1.5}, cut_edge_voxels=2, cut_edge_share=0.125)
    >>> case.anatomy_cut_by_crop
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inpaintssl.data.base import DataError

__all__ = ["CUT_EDGE_WARN_SHARE", "CasePrediction", "PredictionError", "PredictionReport", "SkippedInput"]

CUT_EDGE_WARN_SHARE = 0.05
"""Share of the cut edges' voxels that are labelled from which :func:`predict` warns that the
crop to ``data.image_size`` probably cut anatomy off. Measured on the demo's runs (``inpaintssl
demo``, 112x96 crops of the 2 mm template): the supervised all-labels model given the 1 mm
template (a scan at another resolution, whose brain fills the whole crop) labels 11 % of the cut
edges; on the 2 mm template it was trained on, 0 %; the 5 %-label SSL model's stray labels there
cover 4 %."""


class PredictionError(DataError):
    """An input or model that :func:`predict` cannot use; the message names the file and why."""


@dataclass(frozen=True)
class CasePrediction:
    """What :func:`predict` wrote for one input.

    Attributes:
        case: The case name (the input's file or folder name without suffixes).
        source: The input file (or DICOM folder).
        segmentation: ``<output>/<case>_seg.nii.gz`` (``.mha``, ``.nrrd``: ``output_format``).
        probabilities: ``<output>/<case>_prob.nii.gz`` (likewise), or ``None`` when not asked for.
        shape: The label map's shape: the input's spatial grid.
        volumes_ml: Volume of each class in mL.
        cut_edge_voxels: Labelled voxels on the edges where ``crop_or_pad`` cut the input's
            slices down to the model's ``image_size`` (the outermost rows/columns the model saw).
        cut_edge_share: ``cut_edge_voxels`` over all voxels on those edges (0 where nothing was
            cut). Anatomy that reaches the cut usually goes on beyond it, unseen and labelled
            background; ``predict`` warns from :data:`CUT_EDGE_WARN_SHARE` on.
        spacing_mm: The input's own in-plane voxel spacing ``(row_mm, col_mm)``, after any resize
            to ``data.image_size``; where the slices were resampled, ``resampled_to_mm`` is what
            the model saw.
        spacing_fits_training: Whether ``spacing_mm`` lies within the run's recorded training
            range (:mod:`inpaintssl.data.spacing`); ``None`` when the run recorded none.
        resampled_to_mm: The in-plane spacing the input's slices were resampled to before the
            model saw them (``resample="outside"``), or ``None`` where they were not.
        orientation: The input's axis codes as stored (:mod:`inpaintssl.data.orientation`);
            ``None`` for inputs without patient geometry (NumPy, HDF5).
        reoriented_to: The axis codes the input was read in for the model (the training
            volumes'), or ``None`` when it was used as stored.
        t2_map: ``<output>/<case>_t2.nii.gz`` (``.mha``, ``.nrrd`` with those formats), the T2
            map in ms fitted to the input's echoes (``predict(t2=True)``), else ``None``.
        mean_t2_ms: Each class's mean T2 in ms over its predicted voxels with a T2 (NaN for a
            class with none), with ``t2=True``; else ``None``.
    """

    case: str
    source: Path
    segmentation: Path
    probabilities: Path | None
    shape: tuple[int, ...]
    volumes_ml: dict[str, float]
    cut_edge_voxels: int = 0
    cut_edge_share: float = 0.0
    spacing_mm: tuple[float, float] | None = None
    spacing_fits_training: bool | None = None
    orientation: str | None = None
    reoriented_to: str | None = None
    resampled_to_mm: tuple[float, float] | None = None
    t2_map: Path | None = None
    mean_t2_ms: dict[str, float] | None = None

    @property
    def anatomy_cut_by_crop(self) -> bool:
        """Whether enough of the cut edges are labelled for :func:`predict` to have warned."""
        return self.cut_edge_share >= CUT_EDGE_WARN_SHARE


@dataclass(frozen=True)
class SkippedInput:
    """An input :func:`predict` left out (``skip_bad_inputs=True``) instead of stopping.

    Attributes:
        case: Its case name.
        source: The input file (or DICOM folder).
        reason: The :class:`PredictionError` it failed with, which names the file and why.
    """

    case: str
    source: Path
    reason: str


@dataclass(frozen=True)
class PredictionReport:
    """Everything one :func:`predict` call wrote.

    Attributes:
        output: The output folder.
        volumes_csv: ``<output>/volumes.csv``: a row per case predicted, and the rows earlier
            predicts into ``output`` wrote of other cases (:mod:`~inpaintssl.inference.volume_table`).
        class_names: The run's classes (label ``k + 1`` is ``class_names[k]``).
        cases: One entry per input predicted (every input, unless some were skipped), in input
            order.
        resumed: The cases taken as an interrupted predict into ``output`` had finished them, not
            predicted again (``predict(resume=True)``, :mod:`~inpaintssl.inference.resume`), in
            input order.
        skipped: The inputs left out because they failed a check (``skip_bad_inputs=True``), in
            input order, each with its error.
        skipped_csv: ``<output>/skipped.csv`` (``case``, ``file``, ``reason``), written by every
            predict with ``skip_bad_inputs=True``, with no rows when none was skipped; else
            ``None``. It also lists the inputs earlier predicts into ``output`` left out and none
            has predicted since (:func:`~inpaintssl.inference.skipping.merged_skipped_table`).
    """

    output: Path
    volumes_csv: Path
    class_names: tuple[str, ...]
    cases: tuple[CasePrediction, ...]
    resumed: tuple[str, ...] = ()
    skipped: tuple[SkippedInput, ...] = ()
    skipped_csv: Path | None = None

    def __len__(self) -> int:
        return len(self.cases)
