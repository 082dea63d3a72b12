"""The cases an interrupted predict finished, kept for the next predict to take, not predict again.

:func:`~inpaintssl.inference.predict.predict` writes every case into a hidden staging folder
beside ``output`` and moves them into ``output`` only once every case is done
(:mod:`~inpaintssl.inference.writing`), so a predict over a cohort that is killed, preempted or
stopped with Ctrl-C at case 900 of 1,000 writes nothing into ``output``. To keep those 900 cases,
each finished case leaves a record in the staging folder's ``.predict-resume`` folder once its
files are written (:func:`record_case`): which prediction made it (:func:`prediction_identity`),
its input's files as they were checked (path, size, modification time), the files it wrote, and
what :class:`~inpaintssl.inference.results.CasePrediction` reported of it.

The next predict into the same ``output`` with the same prediction takes that staging folder over
(:func:`~inpaintssl.inference.writing.staging_folder`) and predicts only the cases without a record
that still matches (:func:`kept_cases`, :func:`take_finished`): a case whose input was replaced
or touched since is predicted again, and anything else in the folder (the files of a case killed
while they were written) is removed before the folder is used. The inputs of the cases taken are
opened but not read in full again: the check they passed (:mod:`~inpaintssl.inference.preparation`)
was of the same files. The same prediction means the same network weights
(every tensor of the state dict, hashed), the same preprocessing, options and library version, and
the same device kind: any difference and the kept folder is removed as before, unused. The inputs
may differ: a case is taken by its name and its input's files, so a predict rerun without a scan
that failed, or with scans added, takes every finished case it still has. Records are removed
before the files are moved into ``output``.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> staging = Path(tempfile.mkdtemp())
    >>> finished = CasePrediction("a", Path("/scans/a.nii.gz"), Path("/preds/a_seg.nii.gz"), None, (4, 4, 2),
    ...                           {"wm": 1.5})
    >>> _ = (staging / "a_seg.nii.gz").write_bytes(b"its label map")
    >>> record_case(staging, "id-1", finished, fingerprints=[["/scans/a.nii.gz", 10, 5]])
    >>> holds_records(staging, "id-1"), holds_records(staging, "id-2")
    (True, False)
    >>> kept = kept_cases(staging, "id-1", output=Path("/preds"))
    >>> kept["a"].prediction == finished, kept["a"].files
    (True, ('a_seg.nii.gz',))
    >>> take_finished(staging, kept, {"a": [["/scans/a.nii.gz", 10, 6]]})
    {}
    >>> sorted(p.name for p in staging.iterdir())  # the input changed: its case goes, to be predicted again
    ['.predict-resume']
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from inpaintssl._version import __version__
from inpaintssl.atomic import atomic_write_text, fsync_dir
from inpaintssl.data.preflight import Fingerprints
from inpaintssl.inference.results import CasePrediction

__all__ = [
    "RESUME_FOLDER",
    "KeptCase",
    "discard_records",
    "holds_records",
    "kept_cases",
    "prediction_identity",
    "record_case",
    "take_finished",
]

log = logging.getLogger(__name__)

RESUME_FOLDER = ".predict-resume"
"""The folder in a staging folder that holds the finished cases' records (never moved into ``output``)."""

_RECORD_FORMAT = 1
_PATH_FIELDS = ("segmentation", "probabilities", "t2_map")
"""The :class:`CasePrediction` fields that name files in ``output``; a record keeps their names."""
_TUPLE_FIELDS = ("shape", "spacing_mm", "resampled_to_mm")


def prediction_identity(
    state_dict: Mapping[str, torch.Tensor],
    *,
    preprocessing: object,
    options: Mapping[str, object],
) -> str:
    """A digest of everything that makes a predict's files what they are, but the inputs.

    Two predicts with the same digest write the same files for an unchanged input: the same
    weights (each tensor's name, dtype, shape and bytes), preprocessing (its ``repr``), options
    (JSON, keys sorted; non-JSON values by ``str``), and library and PyTorch versions. The inputs
    are matched case by case (:func:`take_finished`).

    Example:
        >>> weights = {"w": torch.ones(2)}
        >>> a = prediction_identity(weights, preprocessing=None, options={"batch_size": 16})
        >>> a == prediction_identity({"w": torch.ones(2)}, preprocessing=None, options={"batch_size": 16})
        True
        >>> a == prediction_identity({"w": torch.zeros(2)}, preprocessing=None, options={"batch_size": 16})
        False
    """
    digest = hashlib.sha256()
    header = {
        "inpaintssl": __version__,
        "torch": torch.__version__,
        "preprocessing": repr(preprocessing),
        "options": options,
    }
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    for name, tensor in state_dict.items():
        value = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"\n{name} {value.dtype} {tuple(tensor.shape)}\n".encode())
        # Viewed as bytes, every dtype hashes alike (NumPy has no bfloat16).
        digest.update(value.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _record_path(staging: Path, case: str) -> Path:
    # Case names are unique within a predict and name files already, so they name records too.
    return staging / RESUME_FOLDER / f"{case}.json"


def record_case(
    staging: Path,
    identity: str,
    case: CasePrediction,
    *,
    fingerprints: Fingerprints,
    check_warnings: Sequence[tuple[str, str]] = (),
) -> None:
    """Record that ``case``'s files in ``staging`` are complete; call it once they are written.

    The record is written atomically (and synced) after the files, so a record on disk means
    every file it names is whole. ``check_warnings`` (``(message, category name)``) are what the
    input's full check warned, given again when a resumed predict takes the case.
    """
    fields = dataclasses.asdict(case)
    for name in _PATH_FIELDS:
        fields[name] = None if fields[name] is None else Path(fields[name]).name
    fields["source"] = str(case.source)
    record = {
        "format": _RECORD_FORMAT,
        "identity": identity,
        "fingerprints": fingerprints,
        "check_warnings": [list(pair) for pair in check_warnings],
        "prediction": fields,
    }
    target = _record_path(staging, case.case)
    target.parent.mkdir(exist_ok=True)
    atomic_write_text(target, json.dumps(record, indent=1))


def _records(staging: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The readable records in ``staging``; a damaged one (half a file on a crashed disk) counts as none."""
    found = []
    folder = staging / RESUME_FOLDER
    try:
        paths = sorted(folder.glob("*.json"))
    except OSError:
        return []
    for path in paths:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(record, dict) and record.get("format") == _RECORD_FORMAT:
            found.append((path, record))
    return found


def holds_records(staging: Path, identity: str | None = None) -> bool:
    """Whether ``staging`` holds a finished case's record (of that ``identity``, when given)."""
    return any(identity is None or record.get("identity") == identity for _, record in _records(staging))


def _prediction(fields: dict[str, Any], output: Path) -> CasePrediction:
    values = dict(fields)
    for name in _PATH_FIELDS:
        values[name] = None if values[name] is None else output / values[name]
    for name in _TUPLE_FIELDS:
        values[name] = None if values[name] is None else tuple(values[name])
    values["source"] = Path(values["source"])
    return CasePrediction(**values)


@dataclasses.dataclass(frozen=True)
class KeptCase:
    """A finished case an interrupted predict recorded, its files in the staging folder.

    Attributes:
        fingerprints: Its input's files as they were when it was checked and predicted.
        prediction: What :func:`~inpaintssl.inference.predict.predict` reported of it.
        files: The names of its files in the staging folder.
        check_warnings: What its input's full check warned, ``(message, category name)``; none
            in a record written before they were recorded.
    """

    fingerprints: Fingerprints
    prediction: CasePrediction
    files: tuple[str, ...]
    check_warnings: tuple[tuple[str, str], ...] = ()


def kept_cases(staging: Path, identity: str, *, output: Path) -> dict[str, KeptCase]:
    """The cases ``staging`` holds finished by a predict of this ``identity``, all their files in place.

    Returns:
        Each case's record, by case name, its file paths in ``output``.
    """
    kept: dict[str, KeptCase] = {}
    for path, record in _records(staging):
        fields = record.get("prediction")
        if record.get("identity") != identity or not isinstance(fields, dict):
            continue
        case = fields.get("case")
        named = [fields.get(name) for name in _PATH_FIELDS if fields.get(name) is not None]
        files = tuple(name for name in named if isinstance(name, str) and Path(name).name == name)
        if (
            not isinstance(case, str)
            or path != _record_path(staging, case)
            or len(files) != len(named)
            or not all((staging / name).is_file() for name in files)
        ):
            continue
        try:
            said = tuple(
                (str(message), str(category)) for message, category in record.get("check_warnings", [])
            )
            kept[case] = KeptCase(record["fingerprints"], _prediction(fields, output), files, said)
        except (TypeError, KeyError, ValueError):
            continue  # a record of another layout: the case is predicted again
    return kept


def take_finished(
    staging: Path, kept: Mapping[str, KeptCase], fingerprints: Mapping[str, Fingerprints]
) -> dict[str, CasePrediction]:
    """Take the ``kept`` cases whose inputs are unchanged; remove everything else from ``staging``.

    A case is taken when this predict has a case of that name whose input's files have the
    fingerprints (paths, sizes, modification times) they had when it was predicted
    (``fingerprints``: each case's, as checked now). The files of every other case, temporaries
    left by a killed write, and records not taken are removed, so that the folder holds only what
    this predict will move into ``output``.

    Returns:
        Each case taken's report, by case name.
    """
    taken = {
        case: entry.prediction
        for case, entry in kept.items()
        if case in fingerprints and entry.fingerprints == fingerprints[case]
    }
    _remove_all_but(staging, {name for case in taken for name in kept[case].files} | {RESUME_FOLDER})
    if (staging / RESUME_FOLDER).is_dir():
        _remove_all_but(staging / RESUME_FOLDER, {_record_path(staging, case).name for case in taken})
    if taken:
        log.info("taking %d finished case(s) from %s, left by an interrupted predict", len(taken), staging)
    return taken


def _remove_all_but(folder: Path, keep: set[str]) -> None:
    for entry in folder.iterdir():
        if entry.name in keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def discard_records(staging: Path) -> None:
    """Remove the records from ``staging`` before its files are moved into ``output``."""
    shutil.rmtree(staging / RESUME_FOLDER, ignore_errors=True)
    fsync_dir(staging)
