"""SKM-TEA knee MRI, DICOM track (paper sec. 2.1.1; DESIGN.md section 3).

Layout read (``root`` is the dataset folder)::

    image_files/MTR_005.h5          echo1, echo2 (X, Y, Z); seg (X, Y, Z, 6) one-hot; optional stats/
    annotations/v1.0.0/{train,val,test}.json    COCO-like: images[].file_name, scan_id, voxel_spacing
    all_metadata.csv                 MTR_ID, RepetitionTime, EchoTime1, FlipAngle,
                                     SpoilerGradientArea, SpoilerGradientTime

Items are sagittal slices (the last axis, LR), rows SI and columns AP as stored. The input image is
the root-sum-of-squares ``sqrt(echo1**2 + echo2**2)`` of the two echoes, computed per slice, then
z-scored with the mean and std of the whole RSS volume (sec. 2.2, per volume). Those statistics
come from the file's ``stats/rss/{mean,std}`` (written by the dataset's authors over the same
RSS volume) when present, else from one pass over the volume in slabs on first use; either way
they are cached per volume in the dataset object (``stats="auto"``; force one source with
``"file"`` or ``"compute"``). Each file is opened once per worker process and read one slice at a
time; nothing loads a whole volume per item.

The six stored classes merge into the paper's four: patellar cartilage [0], femoral cartilage
[1], tibial cartilage [2 + 3] and meniscus [4 + 5]. Extras: ``echo1`` and ``echo2`` ``(1, X, Y)``
as stored (for T2 maps) and, for the annotated splits, ``scan_params`` from ``all_metadata.csv``
named as :func:`inpaintssl.metrics.qdess_t2`'s keywords (``tr_ms`` <- RepetitionTime, ``te_ms``
<- EchoTime1, ``flip_angle_deg`` <- FlipAngle, ``gl_area`` <- SpoilerGradientArea, ``tg_us`` <-
SpoilerGradientTime). Spacing is the annotation's ``voxel_spacing`` ``(X, Y, Z)`` mm.

``split="unlabelled"`` takes the ``image_files/*.h5`` that no annotation split lists (of the
annotation files present: a train-only folder has the train file alone; one at least is needed), or
the files given by ``files``, relative to ``image_files``, for pretraining supersets (sec. 2.6).

Example:
    >>> SKMTEA_CLASSES
    ('patellar_cartilage', 'femoral_cartilage', 'tibial_cartilage', 'meniscus')
"""

from __future__ import annotations

import functools
import glob
import json
import math
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from inpaintssl.data.base import DataError, SliceDataset
from inpaintssl.data.checks import check_finite, check_rank, check_real, check_spacing, existing_path
from inpaintssl.data.labels import merge_onehot
from inpaintssl.data.loading import H5Files, open_h5
from inpaintssl.data.preflight import CaseCheck
from inpaintssl.data.preprocess import RunningStats, Stats, root_sum_of_squares, zscore
from inpaintssl.data.readers import READ_ERRORS, H5Volume, h5_dataset_shape
from inpaintssl.data.scan_parameter_table import SCAN_PARAM_COLUMNS, read_scan_parameter_table
from inpaintssl.listing import first_and_more
from inpaintssl.metrics.qdess import qdess_t2
from inpaintssl.options import check_option
from inpaintssl.registry import DATASETS
from inpaintssl.warning_format import warn_each_time

__all__ = [
    "SCAN_PARAM_COLUMNS",
    "SKMTEADataset",
    "SKMTEA_CLASSES",
    "SKMTEA_CLASS_GROUPS",
    "QdessRssVolume",
    "QDESS_ECHO_KEYS",
    "echo_slices",
    "holds_qdess_echoes",
]

SKMTEA_CLASSES = ("patellar_cartilage", "femoral_cartilage", "tibial_cartilage", "meniscus")
SKMTEA_CLASS_GROUPS = ((0,), (1,), (2, 3), (4, 5))
"""Stored ``seg`` channels merged into each of :data:`SKMTEA_CLASSES`."""
QDESS_ECHO_KEYS = ("echo1", "echo2")
"""The datasets of a scan's file that hold its two qDESS echoes, ``(X, Y, Z)`` each."""


_SPLITS = ("train", "val", "test")
_DEFAULT_SPACING = (0.3125, 0.3125, 0.8)
_STAT_SLAB = 32  # rows of X read at a time when computing volume statistics

StatsSource = Literal["auto", "file", "compute"]


@dataclass(frozen=True)
class _Scan:
    scan_id: str
    path: Path
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    file_stats: Stats | None
    scan_params: dict[str, float] | None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"annotation file {path} is not valid JSON: {exc}") from exc


def _annotated_scans(root: Path, version: str, split: str) -> list[dict[str, Any]]:
    path = existing_path(root / "annotations" / version / f"{split}.json", what="SKM-TEA annotation file")
    images = _read_json(path).get("images")
    if not isinstance(images, list):
        raise DataError(f"annotation file {path} has no 'images' list")
    for i, entry in enumerate(images):
        missing = [k for k in ("file_name", "scan_id") if k not in entry]
        if missing:
            raise DataError(f"annotation file {path}: images[{i}] lacks {missing}")
    # A scan listed twice would count twice: twice the weight in training, two test cases in the
    # paired statistics, which take the cases as independent.
    for key in ("file_name", "scan_id"):
        first: dict[str, int] = {}
        for i, entry in enumerate(images):
            value = str(entry[key])
            if value in first:
                raise DataError(
                    f"annotation file {path}: images[{first[value]}] and images[{i}] have the same {key} "
                    f"{value!r}; expected each scan listed once"
                )
            first[value] = i
    return images


def _matched_files(image_dir: Path, files: Sequence[str] | str) -> list[Path]:
    """The files under ``image_dir`` that ``files`` (names or globs) match, in the patterns' order.

    Raises:
        DataError: A pattern that matches no file.
    """
    paths: list[Path] = []
    for pattern in [files] if isinstance(files, str) else list(files):
        # The folder's own [ * ? match themselves; the pattern's are the wildcards.
        matched = sorted(image_dir / p for p in glob.glob(pattern, root_dir=image_dir))
        if not matched:
            raise DataError(f"skmtea: files pattern {str(image_dir / pattern)!r} matches no files")
        paths.extend(matched)
    return paths


def _listed_scans(root: Path, version: str) -> list[dict[str, Any]]:
    """Every scan that the train, val and test annotation files list, read from those present.

    A folder with only some of them (a custom train-only set) has no others to list. None at all
    is refused: an ``annotation_version`` that names no folder (a typo) would otherwise take every
    scan for unannotated, the test scans included.

    Raises:
        DataError: None of the three files exists, or one is not a valid annotation file.
    """
    folder = root / "annotations" / version
    present = [split for split in _SPLITS if (folder / f"{split}.json").is_file()]
    if not present:
        raise DataError(
            f"skmtea: no annotation file in {folder}; expected at least one of "
            f"{', '.join(f'{split}.json' for split in _SPLITS)} (they say which scans are annotated, and "
            "split 'unlabelled' takes the others); to pretrain on a folder without annotations, name its "
            "scans with 'files'"
        )
    return [entry for split in present for entry in _annotated_scans(root, version, split)]


def _held_out_scans(
    root: Path, version: str, file_names: Sequence[str], *, splits: Sequence[str] = ("val", "test")
) -> list[str]:
    """The scan ids of ``file_names`` that the annotation files of ``splits`` list, sorted (a
    split without its file, as in a folder of unannotated scans alone, lists none)."""
    named = set(file_names)
    return sorted(
        str(entry["scan_id"])
        for split in splits
        if (root / "annotations" / version / f"{split}.json").is_file()
        for entry in _annotated_scans(root, version, split)
        if entry["file_name"] in named
    )


def _check_disjoint_splits(
    root: Path, version: str, split: str, entries: Sequence[Mapping[str, Any]]
) -> None:
    """Refuse a scan of ``split`` that another of the train/val/test annotation files lists too.

    Both the file name and the scan id identify a scan: an entry renamed in one file is still
    the same volume. Only the two other files' ``images`` are read, once, when a split is built.
    """
    folder = root / "annotations" / version
    names = {str(e["file_name"]): e for e in entries}
    ids = {str(e["scan_id"]): e for e in entries}
    for other in _SPLITS:
        path = folder / f"{other}.json"
        # A folder with only some of the split files (a custom train-only set) has nothing to overlap.
        if other == split or not path.is_file():
            continue
        try:
            theirs = _annotated_scans(root, version, other)
        except DataError:
            continue  # that file's own problem, reported when its split is built
        shared = [
            names.get(str(e["file_name"])) or ids[str(e["scan_id"])]
            for e in theirs
            if str(e["file_name"]) in names or str(e["scan_id"]) in ids
        ]
        if shared:
            scans = list(dict.fromkeys(f"{e['scan_id']!r} ({e['file_name']})" for e in shared))
            listed = ", ".join(scans[1:6]) + (", ..." if len(scans) > 6 else "")
            more = f" (and {len(scans) - 1} more: {listed})" if len(scans) > 1 else ""
            mine = folder / f"{split}.json"
            raise DataError(
                f"skmtea: scan {scans[0]}{more} is listed in both annotation files {mine} "
                f"and {path}; expected each scan in exactly one of train, val and test, since a scan in "
                "two of them leaks into model selection or the test scores"
            )


def _read_scan_params(csv_path: Path, scan_ids: Sequence[str]) -> dict[str, dict[str, float]]:
    table = read_scan_parameter_table(csv_path, what="metadata file", case_columns=("MTR_ID",))
    missing = [col for key, col in SCAN_PARAM_COLUMNS.items() if key not in table.columns]
    if missing:
        raise DataError(f"metadata file {csv_path} lacks column(s) {missing}; expected every scan parameter")
    out: dict[str, dict[str, float]] = {}
    for scan_id in scan_ids:
        if scan_id not in table:
            raise DataError(f"metadata file {csv_path} has no row with MTR_ID {scan_id!r}")
        out[scan_id] = table.parameters_of(scan_id)
        blank = [col for key, col in SCAN_PARAM_COLUMNS.items() if key not in out[scan_id]]
        if blank:
            raise DataError(
                f"metadata file {csv_path}, MTR_ID {scan_id!r}: column {blank[0]} holds ''; expected a "
                "number (the scan parameter for its T2 map)"
            )
        try:
            # The T2 model's own checks (ranges, unit slips such as TR in seconds), here where the
            # file and scan can be named, not at the clinical numbers after every run has trained.
            scan = out[scan_id]
            qdess_t2(
                np.ones(1, dtype=np.float32),
                np.ones(1, dtype=np.float32),
                tr_ms=scan["tr_ms"],
                te_ms=scan["te_ms"],
                flip_angle_deg=scan["flip_angle_deg"],
                gl_area=scan["gl_area"],
                tg_us=scan["tg_us"],
            )
        except ValueError as exc:
            raise DataError(
                f"metadata file {csv_path}, MTR_ID {scan_id!r}: its scan parameters do not fit the qDESS "
                f"T2 model: {exc}"
            ) from exc
    return out


def _file_stats(handle: Any, path: Path) -> Stats | None:
    group = handle.get("stats/rss")
    if group is None:
        return None
    values: dict[str, float] = {}
    for key in ("mean", "std"):
        if key in group.attrs:
            values[key] = float(group.attrs[key])
        elif key in group:
            values[key] = float(np.asarray(group[key][()]))
        else:
            return None
    # A std of 0 would leave the image only centred (zscore does not divide by 0), and NaN would
    # make every slice NaN: either way the scan would not be normalised as the others are.
    if not (math.isfinite(values["mean"]) and math.isfinite(values["std"]) and values["std"] > 0):
        raise DataError(
            f"HDF5 file {path}: stats/rss holds mean {values['mean']!r} and std {values['std']!r}; "
            "expected finite numbers with std > 0 (or no stats/rss group, and stats='auto' or "
            "'compute' computes them from the echoes)"
        )
    return Stats(mean=np.array([values["mean"]]), std=np.array([values["std"]]))


def _echo_shape(handle: Any, path: Path) -> tuple[int, ...]:
    """The ``(X, Y, Z)`` shape of an open scan's two echoes, checked: both there, 3-D, real, alike.

    Raises:
        DataError: Naming the file and the echo.
    """
    shapes = {key: h5_dataset_shape(handle, key, path=path) for key in QDESS_ECHO_KEYS}
    for key, shape in shapes.items():
        check_rank(shape, {3}, where=f"{path} key {key!r}", layout="(X, Y, Z)")
        # Complex echoes (the raw track, not the DICOM track) would lose their imaginary
        # part in the float32 cast with only numpy's warning: T2 and RSS from the real part.
        kind = np.dtype(handle[key].dtype).kind
        if kind not in "uif":
            raise DataError(
                f"HDF5 file {path}: {key!r} has dtype {handle[key].dtype}; expected real "
                "magnitude images (integer or float, as in the DICOM track)"
            )
    if shapes["echo1"] != shapes["echo2"]:
        raise DataError(f"{path}: echo1 {shapes['echo1']} and echo2 {shapes['echo2']} differ in shape")
    return shapes["echo1"]


def holds_qdess_echoes(path: str | Path) -> bool:
    """Whether an HDF5 file holds both qDESS echoes, ``echo1`` and ``echo2`` (an SKM-TEA scan), rather
    than an image alone.

    Raises:
        DataError: The file is missing, truncated or not HDF5.
    """
    with open_h5(path) as handle:
        return all(key in handle for key in QDESS_ECHO_KEYS)


def echo_slices(path: str | Path) -> tuple[tuple[int, ...], Iterator[tuple[np.ndarray, np.ndarray]]]:
    """The ``(X, Y, Z)`` shape of an SKM-TEA scan's echoes, checked, and ``(echo1, echo2)`` of each
    slice along its last axis in float32, read one slice at a time (for its T2 map).

    Raises:
        DataError: An echo is missing, not 3-D or complex, or the two differ in shape.
    """
    path = Path(path)
    with open_h5(path) as handle:
        shape = _echo_shape(handle, path)

    def slices() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        with open_h5(path) as handle:
            for k in range(shape[2]):
                yield (
                    np.asarray(handle["echo1"][..., k], dtype=np.float32),
                    np.asarray(handle["echo2"][..., k], dtype=np.float32),
                )

    return shape, slices()


@DATASETS.register("skmtea")
class SKMTEADataset(SliceDataset):
    """Sagittal SKM-TEA slices: z-scored RSS image, 4-class one-hot label, echoes, scan params.

    Args:
        split: ``train``, ``val``, ``test`` (annotation files) or ``unlabelled``.
        labelled: Read ``seg`` (not allowed for ``unlabelled``).
        root: The SKM-TEA folder.
        annotation_version: Subfolder of ``annotations/``.
        metadata_csv: Scan-parameter CSV, relative to ``root``; ``None`` omits ``scan_params``.
        files: For ``unlabelled`` only: file names or globs under ``image_files/`` (default: every
            unannotated scan). Annotated scans they match are read too, with a warning for those
            of the val and test splits, which a study then reports as test anatomy seen in
            pretraining (:meth:`unlabelled_holds_test_anatomy`).
        stats: Where the per-volume RSS mean/std come from: ``auto``, ``file`` or ``compute``.
        echoes: Add ``echo1``/``echo2`` to each item.

    Raises:
        DataError: Missing folder/file/key, wrong ranks or shapes, an empty split, a scan listed
            in two of the train/val/test annotation files, a scan missing from the metadata CSV
            (or with a blank, non-numeric or conflicting parameter there), complex echoes, a ``seg``
            without exactly 6 channels, stored statistics that are not finite or have std 0, or
            ``stats="file"`` without stored statistics.

    Example:
        >>> SKMTEADataset.groups
        ((0,), (1,), (2, 3), (4, 5))
    """

    groups = SKMTEA_CLASS_GROUPS

    def __init__(
        self,
        *,
        split: str,
        labelled: bool = True,
        root: str | Path,
        annotation_version: str = "v1.0.0",
        metadata_csv: str | Path | None = "all_metadata.csv",
        files: Sequence[str] | str | None = None,
        stats: StatsSource = "auto",
        echoes: bool = True,
    ) -> None:
        self.root = existing_path(root, what="SKM-TEA root", directory_ok=True)
        check_option(stats, ("auto", "file", "compute"), field="skmtea: stats", error=DataError)
        if split == "unlabelled" and labelled:
            raise DataError("skmtea: split 'unlabelled' has no labels; build it with labelled=False")
        self.split = split
        self.class_names = SKMTEA_CLASSES if labelled else ()
        self.in_channels = 1
        self.echoes = echoes
        self._stats_source: StatsSource = stats
        entries = self._split_entries(annotation_version, files)
        if not entries:
            raise DataError(f"skmtea: split {split!r} under {self.root} is empty; expected at least one scan")
        params = None
        if metadata_csv is not None and split != "unlabelled":
            csv_path = existing_path(self.root / metadata_csv, what="SKM-TEA metadata file")
            params = _read_scan_params(csv_path, [e["scan_id"] for e in entries])
            self._metadata_file: str | None = str(csv_path)
        else:
            self._metadata_file = None
        self._scans = [self._open_scan(e, params) for e in entries]
        counts = [scan.shape[2] for scan in self._scans]
        self._index = np.array(
            [(v, z) for v, n in enumerate(counts) for z in range(n)], dtype=np.int64
        ).reshape(-1, 2)
        self.volume_ids = [self._scans[v].scan_id for v, _ in self._index]
        self.slice_indices = [int(z) for _, z in self._index]
        self.spacing = self._scans[0].spacing
        self.data_files = sorted(
            [str(s.path) for s in self._scans] + ([self._metadata_file] if self._metadata_file else [])
        )
        self._handles = H5Files()
        self._stats: dict[int, Stats] = {}

    # -- construction ---------------------------------------------------------------------
    def _split_entries(self, version: str, files: Sequence[str] | str | None) -> list[dict[str, Any]]:
        if self.split in _SPLITS:
            if files is not None:
                raise DataError(
                    "skmtea: 'files' selects unlabelled scans; the annotated splits come from JSON"
                )
            entries = _annotated_scans(self.root, version, self.split)
            _check_disjoint_splits(self.root, version, self.split, entries)
            return entries
        if self.split != "unlabelled":
            raise DataError(f"skmtea: unknown split {self.split!r}; expected train, val, test or unlabelled")
        image_dir = existing_path(self.root / "image_files", what="SKM-TEA image folder", directory_ok=True)
        if files is None:
            annotated = {e["file_name"] for e in _listed_scans(self.root, version)}
            paths = [p for p in sorted(image_dir.glob("*.h5")) if p.name not in annotated]
        else:
            paths = _matched_files(image_dir, files)
            held_out = _held_out_scans(self.root, version, [p.name for p in paths])
            if held_out:
                warn_each_time(
                    f"skmtea: files={files!r} match {len(held_out)} scan(s) of the val or test split "
                    f"({first_and_more(held_out, limit=5)}): pretraining on them shows the SSL arm "
                    "anatomy the comparison holds out; name the unannotated scans alone (the default, "
                    "files=None)",
                    UserWarning,
                )
        return [{"file_name": p.name, "scan_id": p.stem} for p in paths]

    @classmethod
    def unlabelled_holds_test_anatomy(cls, **params: Any) -> str | None:
        """What a pretraining source built with ``params`` holds of the test scans.

        The default ``unlabelled`` split holds the unannotated scans alone: nothing. With
        ``files`` naming annotated test scans, or ``split="test"``, it holds those scans
        themselves. Reads the annotation files; a folder that cannot be read declares nothing
        (building the dataset then says why).

        Example:
            >>> SKMTEADataset.unlabelled_holds_test_anatomy(root="/no/such/folder") is None
            True
        """
        if str(params.get("split", "unlabelled")) == "test":
            return "the SKM-TEA test scans themselves"
        files = params.get("files")
        if files is None or "root" not in params:
            return None
        version = str(params.get("annotation_version", "v1.0.0"))
        try:
            root = Path(params["root"]).expanduser()
            names = [p.name for p in _matched_files(root / "image_files", files)]
            tested = set(_held_out_scans(root, version, names, splits=("test",)))
        except (DataError, OSError):
            return None
        return (
            f"SKM-TEA test scans ({first_and_more(sorted(tested), limit=5)}), which files={files!r} match"
            if tested
            else None
        )

    def _open_scan(self, entry: dict[str, Any], params: dict[str, dict[str, float]] | None) -> _Scan:
        path = existing_path(self.root / "image_files" / entry["file_name"], what="SKM-TEA image file")
        with open_h5(path) as handle:
            shape = _echo_shape(handle, path)
            if self.labelled:
                seg = h5_dataset_shape(handle, "seg", path=path)
                check_rank(seg, {4}, where=f"{path} key 'seg'", layout="(X, Y, Z, 6)")
                # Exactly 6: a 7th channel is most likely background first, which would shift every class.
                if seg[:3] != shape or seg[3] != 6:
                    raise DataError(f"{path}: seg has shape {seg}; expected {(*shape, 6)} to match echo1")
            file_stats = _file_stats(handle, path) if self._stats_source != "compute" else None
        if self._stats_source == "file" and file_stats is None:
            raise DataError(f"{path} has no stats/rss mean and std; use stats='auto' or 'compute'")
        if self.split in _SPLITS and "voxel_spacing" not in entry:
            # Tissue volumes (mm^3) scale with it: say which scans are measured at an assumed one.
            warn_each_time(
                f"skmtea: annotation images[] entry of scan {entry['scan_id']!r} ({path.name}) has no "
                f"voxel_spacing; {_DEFAULT_SPACING} mm (SKM-TEA's) is assumed for its tissue volumes",
                UserWarning,
            )
        # A null, zero or text spacing in a hand-edited annotation file crashed in float() or put
        # every tissue volume of the scan at 0 mm^3; it is refused here, naming the scan.
        spacing = check_spacing(
            entry.get("voxel_spacing", _DEFAULT_SPACING),
            where=f"skmtea: annotation images[].voxel_spacing of scan {entry['scan_id']!r} ({path.name})",
            rank=3,
        )
        return _Scan(
            scan_id=str(entry["scan_id"]),
            path=path,
            shape=(shape[0], shape[1], shape[2]),
            spacing=(spacing[0], spacing[1], spacing[2]),
            file_stats=file_stats,
            scan_params=None if params is None else params[entry["scan_id"]],
        )

    # -- reading --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._index)

    def slice_shape(self, index: int) -> tuple[int, int]:
        """``(X, Y)`` of item ``index`` without reading it."""
        shape = self._scans[int(self._index[index, 0])].shape
        return shape[0], shape[1]

    def slice_spacing(self, index: int) -> tuple[float, float]:
        """``(X, Y)`` spacing of item ``index`` (the annotation's ``voxel_spacing``)."""
        spacing = self._scans[int(self._index[index, 0])].spacing
        return spacing[0], spacing[1]

    def volume_stats(self, volume: int) -> Stats:
        """Mean and std of the RSS volume ``volume`` (from the file or one pass), cached."""
        stats = self._stats.get(volume)
        if stats is None:
            scan = self._scans[volume]
            stats = scan.file_stats or self._compute_stats(scan)
            self._stats[volume] = stats
        return stats

    def _compute_stats(self, scan: _Scan) -> Stats:
        handle = self._handles.get(scan.path)
        acc = RunningStats(per_channel=False)
        for x0 in range(0, scan.shape[0], _STAT_SLAB):
            e1 = np.asarray(handle["echo1"][x0 : x0 + _STAT_SLAB], dtype=np.float64)
            e2 = np.asarray(handle["echo2"][x0 : x0 + _STAT_SLAB], dtype=np.float64)
            check_finite(e1, where=f"{scan.path} echo1 rows {x0}..")
            check_finite(e2, where=f"{scan.path} echo2 rows {x0}..")
            acc.update(np.sqrt(e1**2 + e2**2)[None])
        return acc.result(channels=1)

    def preflight_checks(self, volume_ids: Collection[str]) -> list[CaseCheck]:
        """One complete read of each scan in ``volume_ids`` (see :mod:`inpaintssl.data.preflight`)."""
        return [
            CaseCheck(
                f"skmtea scan {scan.scan_id!r} ({scan.path})",
                functools.partial(self._preflight, v),
                files=(str(scan.path),),
                # One scan's file each (H5Files locks its handles); _stats: one key per scan. Unlike
                # H5Volume's slice by slice, its few large slab reads leave NumPy's float64 work
                # to overlap, and threads were faster here.
                parallel=True,
            )
            for v, scan in enumerate(self._scans)
            if scan.scan_id in volume_ids
        ]

    def _preflight(self, volume: int) -> None:
        scan = self._scans[volume]
        handle = self._handles.get(scan.path)
        keys = (*QDESS_ECHO_KEYS, "seg") if self.labelled else QDESS_ECHO_KEYS
        # The check reads every echo anyway: the volume's statistics come with it, the same numbers
        # as _compute_stats (same slabs, same float64 sums), so the first epoch does not read it again.
        computing = scan.file_stats is None and volume not in self._stats
        acc = RunningStats(per_channel=False)
        # The range of the image the network sees (the echoes' root-sum-of-squares): one value
        # throughout is a blank export, trained on as a scan, as the other formats' check refuses.
        low, high = math.inf, -math.inf
        for x0 in range(0, scan.shape[0], _STAT_SLAB):
            echoes: list[np.ndarray] = []
            for key in keys:
                where = f"{scan.path} {key} rows {x0}..{min(x0 + _STAT_SLAB, scan.shape[0]) - 1}"
                try:
                    block = np.asarray(handle[key][x0 : x0 + _STAT_SLAB])
                except READ_ERRORS as exc:
                    raise DataError(
                        f"HDF5 file {where} cannot be read (truncated or corrupt?): {exc}"
                    ) from exc
                check_real(block, where=where)
                if key == "seg":
                    merge_onehot(block, self.groups, where=where, class_names=SKMTEA_CLASSES)
                else:
                    check_finite(block, where=where)
                    echoes.append(block)
            e1, e2 = (np.asarray(echo, dtype=np.float64) for echo in echoes)
            rss = np.sqrt(e1**2 + e2**2)
            if rss.size:
                low, high = min(low, float(rss.min())), max(high, float(rss.max()))
            if computing:
                acc.update(rss[None])
        if low == high:
            raise DataError(
                f"skmtea scan {scan.scan_id!r}: {scan.path} holds the value {low:g} in every voxel of "
                f"its echoes' root-sum-of-squares (a blank volume: written without data, or a failed "
                "export or copy?); expected an image whose intensities vary"
            )
        if computing:
            self._stats.setdefault(volume, acc.result(channels=1))

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"skmtea: index {index} out of range for {len(self)} slices")
        v, z = (int(i) for i in self._index[index])
        scan = self._scans[v]
        handle = self._handles.get(scan.path)
        e1 = np.asarray(handle["echo1"][:, :, z], dtype=np.float32)
        e2 = np.asarray(handle["echo2"][:, :, z], dtype=np.float32)
        check_finite(e1, where=f"{scan.path} echo1 slice {z}")
        check_finite(e2, where=f"{scan.path} echo2 slice {z}")
        rss = root_sum_of_squares((e1, e2))[None]
        item: dict[str, Any] = {
            "image": torch.from_numpy(zscore(rss, self.volume_stats(v))),
            "volume_id": scan.scan_id,
            "slice_index": z,
            "spacing": torch.tensor(scan.spacing, dtype=torch.float64),
        }
        if self.echoes:
            item["echo1"] = torch.from_numpy(e1[None])
            item["echo2"] = torch.from_numpy(e2[None])
        if scan.scan_params is not None:
            item["scan_params"] = dict(scan.scan_params)
        if self.labelled:
            seg = np.asarray(handle["seg"][:, :, z, :])
            label = merge_onehot(
                seg, self.groups, where=f"{scan.path} seg slice {z}", class_names=SKMTEA_CLASSES
            )
            item["label"] = torch.from_numpy(label)
        return item


class _RootSumOfSquares:
    """``sqrt(echo1**2 + echo2**2)`` of two HDF5 datasets, computed for what is indexed (float32)."""

    def __init__(self, echo1: Any, echo2: Any) -> None:
        self._echoes = (echo1, echo2)
        self.shape = tuple(int(n) for n in echo1.shape)

    def __getitem__(self, where: Any) -> np.ndarray:
        e1, e2 = (np.asarray(echo[where], dtype=np.float32) for echo in self._echoes)
        return root_sum_of_squares((e1, e2))


class QdessRssVolume(H5Volume):
    """The image an SKM-TEA run trains on, read from a scan's HDF5 file: the root-sum-of-squares
    ``sqrt(echo1**2 + echo2**2)`` of its two qDESS echoes, per slice, in float32 as
    :class:`SKMTEADataset` computes it (sec. 2.2).

    ``inpaintssl predict`` reads a SKM-TEA file with it for a run trained on ``skmtea``: given
    one echo, the network would see another image than it learned from, and segment it without
    a word. HDF5 carries no voxel size: give ``spacing`` (the annotation's ``voxel_spacing``).

    Args:
        path: The scan's ``.h5`` file, holding ``echo1`` and ``echo2`` ``(X, Y, Z)``.
        handles: Shared per-process handle cache.
        slice_axis: Axis sliced (SKM-TEA's sagittal slices: 2).
        spacing: Voxel spacing in mm.

    Raises:
        DataError: An echo is missing, not 3-D or complex, or the two differ in shape.

    Example:
        >>> import h5py, tempfile, pathlib
        >>> from inpaintssl.data.loading import H5Files
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "MTR_001.h5"
        >>> with h5py.File(path, "w") as f:
        ...     _ = f.create_dataset("echo1", data=np.full((2, 2, 3), 3, dtype=np.uint16))
        ...     _ = f.create_dataset("echo2", data=np.full((2, 2, 3), 4, dtype=np.uint16))
        >>> QdessRssVolume(path, handles=H5Files()).read(0).tolist()
        [[5.0, 5.0], [5.0, 5.0]]
    """

    def __init__(
        self,
        path: str | Path,
        *,
        handles: H5Files,
        slice_axis: int = 2,
        spacing: Sequence[float] = (1.0, 1.0, 1.0),
    ) -> None:
        path = existing_path(path, what="HDF5 file")
        with open_h5(path) as handle:
            _echo_shape(handle, path)
        super().__init__(path, key="echo1", handles=handles, slice_axis=slice_axis, spacing=spacing)

    @property
    def source(self) -> str:
        """The file and what is read from it (see :attr:`Volume.source`)."""
        return f"{self.path} (root-sum-of-squares of 'echo1' and 'echo2')"

    def _array(self) -> Any:
        handle = self._handles.get(self.path)
        return _RootSumOfSquares(handle["echo1"], handle["echo2"])
