"""Pre-flight data check: read every case a run uses, completely, before the first training step.

A truncated ``.nii.gz`` reads its header fine and fails only when a slice is decompressed, which
used to be hours into training with an ``EOFError`` naming no file. :func:`preflight` runs one
:class:`CaseCheck` per case (image volume, label volume and any other volume its items read: the
echoes of a ``dicom`` dataset with ``t2_echoes``,
:meth:`~inpaintssl.data.volumes.VolumeSliceDataset.extra_volumes`) before anything is written to
the run folder, and every problem is a :class:`~inpaintssl.data.base.DataError` naming the file:

- readable and complete: every slice of every such volume is read, so truncated gzip, HDF5,
  NIfTI or DICOM data fail here;
- real, finite values (no complex, NaN or +-Inf voxels) and no zero-size axis;
- an image that is not one value throughout (a blank volume: written without data, or a failed
  export or copy; a constant label volume, all background, is fine);
- image and label on one voxel grid, with the same voxel spacing and affine within
  ``tolerance_mm`` when both files carry geometry (NIfTI; DICOM spacing);
- label values allowed by the dataset's convention (integers mapping to a class, or 0/1 one-hot).

Datasets provide the checks: a dataset with a ``preflight_checks(volume_ids)`` method (the
:class:`Checkable` protocol: the built-in file-backed datasets) returns one check per case it
holds among ``volume_ids``; in-memory datasets (``synthetic``, ``mni152``) return none, so the
demo pays nothing. A dataset without the method (a plugin) is checked item by item: every item
the run uses is read once and must keep the item contract
(:func:`~inpaintssl.data.checks.check_item_tensors`: a dict, not a tuple, holding a finite
float32 ``(C, H, W)`` image with the dataset's channels and a float32 one-hot ``(K, H, W)`` label,
which every item of a labelled set carries: fine-tuning's and evaluation's, not pretraining's).
Views (subsets, concatenations, fit-to-size) are walked down to their sources, and only the
volumes the run's views select are checked. Image statistics computed by the check are kept by
the dataset, so the volume-normalisation pass of the first epoch is not repeated.

Cases are checked several at once, each on a thread of its own (``threads``; by default
:func:`default_check_threads`): decompressing a ``.nii.gz`` (zlib), reading files and NumPy's
reductions release Python's lock, so a dataset of compressed volumes is checked sooner the more
cores there are, up to the thread count (12 ``.nii.gz`` cases: 1.66x as fast on 2 cores,
``benchmarks/bench_preflight_threads.py``). Cases of HDF5 files or DICOM series are checked in
the calling thread (:attr:`~inpaintssl.data.readers.Volume.reads_on_threads`): h5py holds one lock
over every HDF5 call, decompression included, and pydicom parses each file in Python, so on
threads their reads only took turns and contended for the lock. Nothing else changes: the checks
are consumed in order, so the error raised is the first problem in case order (the cases after it
that were already running finish and are dropped; none later starts), warnings come in case order
from the calling thread (:func:`~inpaintssl.warning_format.held_warnings`), and the statistics
kept are each case's own, to the same bits. A check runs on a thread only where it says it may
(``CaseCheck.parallel``, set by the built-in datasets); a plugin's runs in the calling thread, as
do item-by-item reads. In-flight cases hold their decompressed volumes at once, which a training
run keeps afterwards anyway.

A resumed run need not read everything again: each check that names its files
(``CaseCheck.files``) is returned in ``PreflightReport.passed`` with their fingerprints (size and
modification time, :func:`file_fingerprints`), and a later :func:`preflight` given that mapping
skips a case whose files still have the same fingerprints. The training stages keep it in the run
folder (``data_check.json``), so a run requeued after preemption starts training at once instead
of re-reading a whole dataset; a changed, replaced or vanished file is checked again. The report
also says which of the given sets each case check served (``PreflightReport.sets``), so a resume
can tell a rewritten training file from a validation or test file without parsing check names:
volume ids are unique only within a split, and a plugin may name its checks as it likes.

Example:
    >>> from inpaintssl.data.synthetic import SyntheticShapes
    >>> report = preflight({"train": SyntheticShapes(num_images=4, size=(16, 16))}, progress=False)
    >>> report.cases, report.items
    (0, 0)
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from inpaintssl.cores import usable_cores
from inpaintssl.data.base import DataError, SliceDataset
from inpaintssl.data.checks import check_item_tensors
from inpaintssl.data.readers import Volume
from inpaintssl.in_order import Task, run_in_order
from inpaintssl.progress import progress_bar

__all__ = [
    "GEOMETRY_TOLERANCE_MM",
    "MAX_CHECK_THREADS",
    "CaseCheck",
    "Checkable",
    "Fingerprints",
    "PreflightReport",
    "check_same_geometry",
    "check_threads_to_use",
    "default_check_threads",
    "file_fingerprints",
    "preflight",
]

Fingerprints = list[list[str | int]]
"""``[[path, size_bytes, mtime_ns], ...]`` of a case's files, JSON-ready."""

GEOMETRY_TOLERANCE_MM = 1e-3
"""How far image and label spacing/affine entries may differ (mm): float32 header rounding of a
100 mm origin is ~1e-5 mm, while a label resampled to another grid differs by >= 0.01 mm."""


@dataclass(frozen=True)
class CaseCheck:
    """One case's check: ``run()`` raises :class:`DataError` naming the file on any problem.

    Attributes:
        what: The case, e.g. ``"nifti case 'case7' (/data/case7.nii.gz)"`` (progress and errors).
        run: Reads the case completely and checks it.
        files: Every file ``run`` reads. A check that names them can be skipped by a later
            :func:`preflight` while they are unchanged; one that names none is always run.
        parallel: ``run`` may run on a thread beside other cases' checks: it reads only its own
            case's files and changes only its own case's state (what the built-in datasets'
            checks do). ``False``: it runs in the thread that called :func:`preflight`.
    """

    what: str
    run: Callable[[], None]
    files: tuple[str, ...] = ()
    parallel: bool = False


@runtime_checkable
class Checkable(Protocol):
    """A dataset that knows how to check its own cases completely."""

    def preflight_checks(self, volume_ids: Collection[str]) -> list[CaseCheck]:
        """One check per case whose volume id is in ``volume_ids`` (none for in-memory data)."""
        ...


@dataclass(frozen=True)
class PreflightReport:
    """What :func:`preflight` checked.

    Attributes:
        cases: Case checks run (file-backed cases).
        items: Items read one by one (datasets without their own checks).
        seconds: Wall time of the whole check.
        skipped: Case checks skipped because their files were unchanged since they last passed.
        passed: Each passed or skipped check that names its files: ``what`` -> the files'
            fingerprints as they were checked (the ``passed`` argument of a later call).
        sets: Each case check run or skipped: ``what`` -> the names of the given sets it served,
            sorted (``("train",)``; ``("train", "val")`` when views of one dataset put the case in
            both). Items read one by one have no entry.
    """

    cases: int
    items: int
    seconds: float
    skipped: int = 0
    passed: Mapping[str, Fingerprints] = field(default_factory=dict)
    sets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def file_fingerprints(files: Collection[str]) -> Fingerprints | None:
    """Path, size and modification time (ns) of each file; ``None`` if one cannot be stat'ed.

    Rewriting a file in place, replacing it or touching it changes its fingerprint, so a check
    keyed on it runs again; reading the file does not.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.nii"
        >>> _ = path.write_bytes(b"1234")
        >>> [(name == str(path), size) for name, size, _ in file_fingerprints([str(path)])]
        [(True, 4)]
        >>> file_fingerprints([str(path) + ".missing"]) is None
        True
    """
    prints: Fingerprints = []
    for name in files:
        try:
            stat = os.stat(name)
        except OSError:
            return None
        prints.append([str(name), int(stat.st_size), int(stat.st_mtime_ns)])
    return prints


def check_same_geometry(image: Volume, label: Volume, *, tolerance_mm: float = GEOMETRY_TOLERANCE_MM) -> None:
    """Raise unless a label volume lies on its image's grid in space, not only in shape.

    Voxel-to-world matrices are compared when both carry one (:attr:`Volume.world_affine`: a NIfTI
    affine, or the patient geometry of a DICOM series), as read (after :meth:`Volume.reorient`, when
    the dataset reads in an ``orientation``); equal, they are one grid, voxel steps included. Spacing
    (NIfTI ``pixdim``, DICOM ``PixelSpacing`` and slice spacing) is compared when both files carry
    one and the matrices differ or one is missing: a label on a DICOM series' own affine pairs with
    it even where the series' slice spacing, its step along the slice normal, is not that affine's
    slice step (a gantry-tilted or unevenly spaced series). A label on the same grid in space but
    stored in another voxel order (a DICOM series' label converted by a tool that stores columns
    first, as dcm2niix does) is refused too: paired as stored, each slice's label would lie
    transposed or mirrored on its image; read in one ``orientation``, both have one voxel order and
    pair. Formats without geometry (NumPy, HDF5, PNG) are not compared: their spacing is whatever
    the dataset's parameters say.

    Raises:
        DataError: Spacing or affine differ by more than ``tolerance_mm``; the message names both
            files and both values.

    Example:
        >>> import numpy as np, tempfile, pathlib, nibabel as nib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> nib.save(nib.Nifti1Image(np.zeros((4, 4, 2), np.float32), np.eye(4)), root / "i.nii")
        >>> nib.save(nib.Nifti1Image(np.zeros((4, 4, 2), np.uint8), np.diag([2, 1, 1, 1])), root / "l.nii")
        >>> from inpaintssl.data.readers import NiftiVolume
        >>> try:
        ...     check_same_geometry(NiftiVolume(root / "i.nii"), NiftiVolume(root / "l.nii"))
        ... except DataError as exc:
        ...     print("voxel spacing (2, 1, 1) mm but image" in str(exc))
        True
    """
    where = f"label {label.path} has"
    # World matrices, not only NIfTI affines: a DICOM series states its geometry per slice, and a
    # label NIfTI beside it was compared with nothing, so one in another voxel order passed.
    image_affine, label_affine = image.world_affine, label.world_affine
    if (
        image_affine is not None
        and label_affine is not None
        and np.allclose(image_affine, label_affine, rtol=0.0, atol=tolerance_mm)
    ):
        # One voxel-to-world matrix is one grid, its voxel steps included: the spacings are not
        # compared, since they may measure the slice step differently. A DICOM series' spacing is
        # its step along the slice normal, while its affine (and a NIfTI label written on it, whose
        # pixdim is its columns' lengths) steps from the first slice to the last: longer for a
        # gantry-tilted series, the mean step for an unevenly spaced one.
        return
    both_spaced = image.has_geometry and label.has_geometry
    if both_spaced and not np.allclose(image.spacing, label.spacing, rtol=0.0, atol=tolerance_mm):
        raise DataError(
            f"{where} voxel spacing {_mm(label.spacing)} mm but image {image.path} has "
            f"{_mm(image.spacing)} mm; expected the same spacing within {tolerance_mm:g} mm "
            "(was the label resampled?)"
        )
    if image_affine is None or label_affine is None:
        return
    worst = float(np.abs(image_affine - label_affine).max())
    codes = (image.orientation, label.orientation)
    hint = "different origin or orientation?"
    if None not in codes and codes[0] != codes[1]:
        hint = (
            f"the image's voxel axes run {codes[0]} and the label's {codes[1]}: if both lie on one "
            "grid in space, give the dataset an orientation (e.g. data.params.orientation: "
            f"{codes[0]}) so both are read in one voxel order"
        )
    raise DataError(
        f"{where} affine {_rows(label_affine)} but image {image.path} has {_rows(image_affine)} "
        f"(largest difference {worst:.4g} mm); expected the same voxel-to-world mapping within "
        f"{tolerance_mm:g} mm ({hint})"
    )


def _mm(values: Collection[float]) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"


def _rows(affine: np.ndarray) -> str:
    return "[" + "; ".join(" ".join(f"{float(v):.4g}" for v in row) for row in np.asarray(affine)[:3]) + "]"


def _sources(dataset: SliceDataset, wanted: set[str] | None) -> Iterator[tuple[SliceDataset, set[str]]]:
    """The datasets under a view, each with the volume ids the view selects from it."""
    ids = set(getattr(dataset, "volume_ids", ()))
    here = ids if wanted is None else wanted & ids
    parts = getattr(dataset, "parts", None)
    parent = getattr(dataset, "parent", None)
    if isinstance(parts, list) and all(isinstance(p, SliceDataset) for p in parts):
        for part in parts:
            yield from _sources(part, here & set(getattr(part, "volume_ids", ())))
    elif isinstance(parent, SliceDataset):
        yield from _sources(parent, here)
    else:
        yield dataset, here


def _set_groups(by_set: Mapping[str, set[str]]) -> list[tuple[tuple[str, ...], set[str]]]:
    """One source's volume ids grouped by the sets that select them (sorted names, ids).

    One group per distinct combination of sets, so a source asked for its checks once per group
    is asked a few times at most, however many volumes it holds. A source whose sets select no
    volume id (in-memory data) forms one group of all its sets, so it is still asked once.

    Example:
        >>> _set_groups({"train": {"a", "b"}, "val": {"b", "c"}})
        [(('train',), {'a'}), (('train', 'val'), {'b'}), (('val',), {'c'})]
    """
    order = list(by_set)
    groups: dict[frozenset[str], set[str]] = {}
    for volume in set().union(*by_set.values()):
        names = frozenset(name for name, ids in by_set.items() if volume in ids)
        groups.setdefault(names, set()).add(volume)
    if not groups:
        return [(tuple(sorted(by_set)), set())]
    # In the order the sets were given, so checks run in the same order from one start to the next.
    ranked = sorted(groups.items(), key=lambda group: sorted(order.index(name) for name in group[0]))
    return [(tuple(sorted(names)), ids) for names, ids in ranked]


MAX_CHECK_THREADS = 8
"""The most threads :func:`default_check_threads` gives: beyond it a shared file system, not the
cores, sets the pace, and each thread holds a decompressed volume."""


def default_check_threads() -> int:
    """The threads :func:`preflight` uses unless told: the process's cores, :data:`MAX_CHECK_THREADS` at most.

    The cores are those the process may run on (its CPU affinity: a Slurm task's share of a node),
    not the machine's, and no more than PyTorch's thread count (a study's local worker processes
    each get their share of the cores as that count).

    Example:
        >>> 1 <= default_check_threads() <= MAX_CHECK_THREADS
        True
    """
    return max(1, min(MAX_CHECK_THREADS, usable_cores(), torch.get_num_threads()))


def check_threads_to_use(threads: int | None, *, argument: str = "threads") -> int:
    """The threads a check given ``threads`` uses: ``None`` is :func:`default_check_threads`.

    Raises:
        ValueError: ``threads`` below 1; the message names ``argument``.

    Example:
        >>> check_threads_to_use(3)
        3
        >>> check_threads_to_use(0, argument="check_threads")
        Traceback (most recent call last):
        ...
        ValueError: check_threads=0; expected 1 or more threads checking cases, or None (automatic)
    """
    if threads is None:
        return default_check_threads()
    if threads < 1:
        raise ValueError(
            f"{argument}={threads}; expected 1 or more threads checking cases, or None (automatic)"
        )
    return threads


@contextlib.contextmanager
def _read_errors_named(what: Callable[[], str]) -> Iterator[None]:
    """An error other than :class:`DataError` raised inside, as a :class:`DataError` naming ``what()``.

    A plugin's reader or check errs in its own words (NumPy's ValueError of a cut ``.npy``, the
    EOFError of a cut gzip file), naming neither the item, the case nor the set.
    """
    try:
        yield
    except DataError:
        raise  # names the file and what is wrong already
    except Exception as exc:
        raise DataError(f"{what()} cannot be read: {type(exc).__name__}: {exc}") from exc


def _run_check(check: CaseCheck) -> None:
    """Run a case's check; an error other than :class:`DataError` is one naming the case."""
    with _read_errors_named(lambda: check.what):
        check.run()


def _item_name(dataset: SliceDataset, index: int, name: str) -> str:
    """Item ``index`` of the set ``name`` as messages name it, with its volume where the source lists one."""
    ids = getattr(dataset, "volume_ids", None)
    ids = () if ids is None else ids
    volume = f" (volume {str(ids[index])!r})" if index < len(ids) else ""
    return f"{name} item {index}{volume}"


def _check_item(dataset: SliceDataset, index: int, *, name: str, classes: tuple[str, ...]) -> None:
    """Read item ``index`` and check it keeps the item contract.

    Args:
        dataset: The source the item is read from.
        index: The item.
        name: The set, as messages name it.
        classes: The class names of a labelled set the item is in (empty when none is): it must
            then carry a label, which the item contract alone does not require.
    """
    with _read_errors_named(lambda: _item_name(dataset, index, name)):
        item = dataset[index]
    if not isinstance(item, Mapping):
        # A (image, label) pair, as torchvision's datasets return: .get() failed on it naming nothing.
        raise DataError(
            f"{name} item {index} is a {type(item).__name__}; expected a dict with a float32 (C, H, W) "
            "'image' tensor, 'volume_id', 'slice_index' and 'spacing' (and a one-hot 'label' where "
            "the dataset has class_names)"
        )
    where = f"{name} item {index} (volume {item.get('volume_id')!r}, slice {item.get('slice_index')})"
    check_item_tensors(item, where=where, in_channels=dataset.in_channels, num_classes=dataset.num_classes)
    if classes and item.get("label") is None:
        # Collated with labelled items, it failed in torch's default_collate with KeyError('label').
        expected = (len(classes), *item["image"].shape[1:])
        raise DataError(
            f"{where}: has no label; expected a float32 one-hot tensor of shape {expected} under "
            f"'label' (one 0/1 channel per class of {list(classes)}) in every item of a labelled set"
        )


def preflight(
    datasets: Mapping[str, SliceDataset | None],
    *,
    progress: bool = True,
    what: str = "data",
    passed: Mapping[str, Fingerprints] | None = None,
    threads: int | None = None,
) -> PreflightReport:
    """Check every case (or item) the given datasets use; see the module docstring.

    Args:
        datasets: The run's sets by name, e.g. ``{"train": ..., "val": ..., "test": None}``; the
            names are what ``PreflightReport.sets`` records.
        progress: Show a progress bar over cases (on a terminal).
        what: Names the data in messages about item-by-item checks (e.g. ``data.dataset='x'``).
        passed: ``PreflightReport.passed`` of an earlier check of the same data: its cases whose
            files have the same fingerprints now are not read again.
        threads: Cases checked at once, each on a thread (see the module docstring); ``1``: one
            after the other in this thread. ``None``: :func:`default_check_threads`.

    Returns:
        A :class:`PreflightReport`.

    Raises:
        DataError: The first problem found in case order, naming the file (or dataset item) and
            what is wrong.
        ValueError: ``threads`` below 1.
    """
    workers = check_threads_to_use(threads)
    start = time.perf_counter()
    # By source, the volume ids each set selects from it: views of one dataset may serve several sets.
    wanted: dict[int, tuple[SliceDataset, dict[str, set[str]]]] = {}
    for name, dataset in datasets.items():
        if dataset is None:
            continue
        for source, ids in _sources(dataset, None):
            wanted.setdefault(id(source), (source, {}))[1].setdefault(name, set()).update(ids)
    checks: list[CaseCheck] = []
    served: dict[str, set[str]] = {}
    items: list[tuple[SliceDataset, int, str, tuple[str, ...]]] = []
    for source, by_set in wanted.values():
        if isinstance(source, Checkable):
            asked: set[str] = set()
            for names, group in _set_groups(by_set):
                returned = source.preflight_checks(group)
                # A source that returns its cases whatever ids it is asked for would otherwise
                # have each of them run once per group.
                checks.extend(check for check in returned if check.what not in asked)
                asked.update(check.what for check in returned)
                for check in returned:
                    served.setdefault(check.what, set()).update(names)
        else:
            name, ids = next(iter(by_set)), set().union(*by_set.values())
            label = f"{what} {name} set"
            # The classes of the labelled sets (fine-tuning's, evaluation's) selecting each item:
            # those items must carry a label; pretraining's images-only views need none.
            labelled = [
                (tuple(getattr(datasets[n], "class_names", ())), chosen) for n, chosen in by_set.items()
            ]
            labelled = [(classes, chosen) for classes, chosen in labelled if classes]
            for i, v in enumerate(source.volume_ids):
                if v in ids:
                    items.append((source, i, label, next((c for c, chosen in labelled if v in chosen), ())))
            if len(source.volume_ids) == 0:  # a plugin's NumPy array of ids has no truth value
                every = labelled[0][0] if labelled else ()
                items.extend((source, i, label, every) for i in range(len(source)))
    earlier = passed or {}
    now: dict[str, Fingerprints] = {}
    to_run: list[CaseCheck] = []
    for check in checks:
        # Stat'ed before the read: a file rewritten while it is being checked no longer matches.
        prints = file_fingerprints(check.files) if check.files else None
        if prints is not None:
            now[check.what] = prints
        if prints is None or earlier.get(check.what) != prints:
            to_run.append(check)
    total = len(to_run) + len(items)
    # Fine-grained steps: a bar on a terminal, nothing in a log file (inpaintssl.progress).
    bar = progress_bar(total=total, desc="checking data", unit="case", disable=not progress)
    try:
        tasks = [Task(functools.partial(_run_check, check), parallel=check.parallel) for check in to_run]
        # The results first: zip then exhausts them, which shuts the threads down.
        for _, check in zip(run_in_order(tasks, threads=workers), to_run, strict=True):
            bar.set_postfix(case=check.what[-40:], refresh=False)
            bar.update()
        for source, index, label, classes_of_item in items:
            _check_item(source, index, name=label, classes=classes_of_item)
            bar.update()
    finally:
        bar.close()
    return PreflightReport(
        cases=len(to_run),
        items=len(items),
        seconds=time.perf_counter() - start,
        skipped=len(checks) - len(to_run),
        passed=now,
        sets={case: tuple(sorted(names)) for case, names in served.items()},
    )
