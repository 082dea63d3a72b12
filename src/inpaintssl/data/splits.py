"""Label-limited subsets, pretraining supersets and the split record (paper sec. 2.1, 2.6).

**Nested, seeded subsets.** Volumes are ranked by a keyed hash, ``blake2b(seed, volume_id)``,
and a subset of fraction ``f`` of ``N`` volumes is the first ``round(f * N)`` of that ranking
(Python's ``round``, half to even). Taking prefixes of one ranking makes every smaller subset a
subset of every larger one, for any fractions; hashing (rather than a NumPy permutation) makes
the ranking independent of library versions and of the order the files were listed in, and adding
volumes never reshuffles the ones already ranked. The rounding reproduces the paper's counts
(86 MRI volumes -> 43, 22, 9 for 50/25/10 %; 709 CT slices -> 354, 177, 71, 35) except MRI 5 %,
where the paper used 5 volumes and ``round(4.3)`` gives 4. A fraction that selects no volume is an
error, never an empty training set.

**Pretraining supersets** (sec. 2.6) are the training volumes plus a nested prefix of the ranked
unlabelled volumes; ``p`` percent adds ``round((p / 100 - 1) * N_train)`` of them (MRI: 150 % of
86 = 86 + 43 volumes).

**The split record** (:class:`SplitRecord`) lists the exact volumes and items of every subset a
run used, plus the whole nested chain of label-limited subsets, as JSON in the run folder; a later
run given it as ``data.splits_file`` reuses those subsets exactly.

Example:
    >>> ids = [f"scan{i:02d}" for i in range(20)]
    >>> subsets = label_limited_subsets(ids, seed=0)
    >>> [len(subsets[f]) for f in DEFAULT_LABEL_FRACTIONS]
    [20, 10, 5, 2, 1]
    >>> set(subsets[0.1]) <= set(subsets[0.25]) <= set(subsets[0.5])
    True
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inpaintssl.atomic import atomic_write_text
from inpaintssl.data.base import DataError

__all__ = [
    "DEFAULT_LABEL_FRACTIONS",
    "DEFAULT_PRETRAIN_PERCENTS",
    "SplitRecord",
    "SubsetRecord",
    "fraction_key",
    "label_limited_subsets",
    "pretraining_supersets",
    "rank_volumes",
    "select_fraction",
    "subset_size",
    "superset_fraction",
]

DEFAULT_LABEL_FRACTIONS = (1.0, 0.5, 0.25, 0.1, 0.05)
"""The paper's labelled-data extents (sec. 2.1)."""
DEFAULT_PRETRAIN_PERCENTS = (100.0, 150.0, 200.0)
"""The MRI pretraining-set sizes of sec. 2.6, in percent of the training set."""


def rank_volumes(volume_ids: Iterable[str], *, seed: int) -> list[str]:
    """Unique ``volume_ids`` in the seeded order that every subset takes a prefix of.

    Example:
        >>> rank_volumes(["b", "a", "c", "a"], seed=1) == rank_volumes(["c", "b", "a"], seed=1)
        True
    """

    def key(volume_id: str) -> bytes:
        digest = hashlib.blake2b(volume_id.encode("utf-8"), digest_size=16, key=str(int(seed)).encode())
        return digest.digest()

    return sorted(set(volume_ids), key=lambda v: (key(v), v))


def subset_size(count: int, fraction: float, *, what: str = "label_fraction") -> int:
    """``round(fraction * count)`` (half to even), the number of volumes a fraction selects.

    Args:
        count: Number of volumes to select from.
        fraction: Share to keep, in (0, 1].
        what: The setting ``fraction`` comes from, for the error message (``data.label_fraction``
            in a run's config).

    Raises:
        DataError: ``fraction`` outside (0, 1] or NaN; the message names ``what``.

    Example:
        >>> subset_size(86, 0.25)
        22
        >>> subset_size(86, 25)
        Traceback (most recent call last):
        ...
        inpaintssl.data.base.DataError: label_fraction=25: expected a share of the volumes in (0, 1], \
e.g. 0.25 for 25 %; found 25
    """
    if not 0.0 < fraction <= 1.0:
        raise DataError(
            f"{what}={fraction:g}: expected a share of the volumes in (0, 1], e.g. 0.25 for 25 %; "
            f"found {fraction!r}"
        )
    return min(count, round(fraction * count))


def select_fraction(
    volume_ids: Iterable[str],
    *,
    fraction: float,
    seed: int,
    what: str = "label_fraction",
    of_what: str = "training volumes",
) -> tuple[str, ...]:
    """The nested, seeded ``fraction`` of ``volume_ids`` (sorted for readability).

    Args:
        volume_ids: Candidate volumes (duplicates ignored).
        fraction: Share to keep, in (0, 1].
        seed: Subset seed.
        what: Name of the parameter for the error message.
        of_what: What ``volume_ids`` are, for the error message.

    Raises:
        DataError: No volumes, a fraction outside (0, 1], or one that selects no volume
            (``"label_fraction=0.01 of 12 training volumes selects 0 volumes"``); the message
            names ``what``.
    """
    ranked = rank_volumes(volume_ids, seed=seed)
    n = subset_size(len(ranked), fraction, what=what)
    if n == 0:
        raise DataError(
            f"{what}={fraction:g} of {len(ranked)} {of_what} selects 0 volumes; "
            f"expected a fraction above {0.5 / max(len(ranked), 1):.3g} so that at least one is used"
        )
    return tuple(sorted(ranked[:n]))


def label_limited_subsets(
    volume_ids: Iterable[str], *, fractions: Sequence[float] = DEFAULT_LABEL_FRACTIONS, seed: int
) -> dict[float, tuple[str, ...]]:
    """Nested label-limited subsets of the training volumes, one per fraction.

    Raises:
        DataError: A fraction that selects no volume.
    """
    ranked = rank_volumes(volume_ids, seed=seed)
    return {float(f): select_fraction(ranked, fraction=f, seed=seed) for f in fractions}


def pretraining_supersets(
    train_ids: Iterable[str],
    unlabelled_ids: Iterable[str],
    *,
    percents: Sequence[float] = DEFAULT_PRETRAIN_PERCENTS,
    seed: int,
) -> dict[float, tuple[str, ...]]:
    """Training volumes plus nested shares of unlabelled volumes, per percentage (sec. 2.6).

    The shares are of the unlabelled volumes that are not training volumes: a pool that holds the
    whole archive, training volumes among it, still adds ``percent - 100`` % distinct volumes.

    Example:
        >>> sets = pretraining_supersets(["t1", "t2"], ["u1", "u2", "u3"], percents=(100, 200), seed=0)
        >>> len(sets[100.0]), len(sets[200.0]), set(sets[100.0]) <= set(sets[200.0])
        (2, 4, True)

    Raises:
        DataError: A percentage that is no number of at least 100, or one needing more unlabelled
            volumes than exist.
    """
    train = sorted(set(train_ids))
    # Ranked one by one (rank_volumes): leaving the training volumes out reorders no other.
    ranked = rank_volumes(set(unlabelled_ids) - set(train), seed=seed)
    out: dict[float, tuple[str, ...]] = {}
    for percent in percents:
        if not math.isfinite(float(percent)):
            raise DataError(f"pretraining superset of {percent}%: expected a finite percentage >= 100")
        extra = round((float(percent) / 100.0 - 1.0) * len(train))
        if percent < 100 or extra > len(ranked):
            raise DataError(
                f"pretraining superset of {percent:g}% needs {extra} unlabelled volumes beside "
                f"{len(train)} training volumes; {len(ranked)} are available (expected 100% <= "
                f"percent <= {100.0 * (1 + len(ranked) / max(len(train), 1)):.4g}%)"
            )
        out[float(percent)] = (*train, *sorted(ranked[:extra]))
    return out


def superset_fraction(percent: float, *, train_volumes: int, unlabelled_volumes: int) -> float:
    """The ``SourceConfig.fraction`` of an unlabelled source that yields a ``percent`` superset.

    Example:
        >>> superset_fraction(150, train_volumes=86, unlabelled_volumes=86)
        0.5
    """
    extra = round((percent / 100.0 - 1.0) * train_volumes)
    if not 0 < extra <= unlabelled_volumes:
        raise DataError(
            f"a {percent:g}% superset of {train_volumes} training volumes needs {extra} unlabelled "
            f"volumes; expected between 1 and {unlabelled_volumes}"
        )
    return extra / unlabelled_volumes


def fraction_key(fraction: float) -> str:
    """The JSON key of a fraction: ``0.25 -> "0.25"``, ``1.0 -> "1"``."""
    return f"{float(fraction):g}"


class SubsetRecord(BaseModel):
    """One subset a run used: its source, split, share, volumes and exact items."""

    model_config = ConfigDict(extra="forbid")

    dataset: str
    split: str
    fraction: float = 1.0
    volume_ids: list[str]
    items: list[tuple[str, int]] = Field(description="(volume_id, slice_index) of every item, in order")


class SplitRecord(BaseModel):
    """Every subset of one run, saved as ``splits.json`` and reusable via ``data.splits_file``.

    Attributes:
        stage: ``pretrain`` or ``finetune``.
        dataset: The main dataset's registered name.
        subset_seed: Seed of the subset ranking.
        label_fraction: The fine-tuning share used (1.0 for pretraining).
        label_subsets: Nested label-limited training volumes per fraction key
            (:func:`fraction_key`), for the default fractions and the one used.
        subsets: What the run used: ``train``, ``val``, ``test`` and ``unlabelled/<i>`` for each
            extra pretraining source (by position in ``data.unlabelled``).

    Example:
        >>> rec = SplitRecord(stage="finetune", dataset="toy", subset_seed=0, label_fraction=1.0,
        ...                   label_subsets={"1": ["a"]}, subsets={})
        >>> SplitRecord.model_validate_json(rec.model_dump_json()) == rec
        True
    """

    model_config = ConfigDict(extra="forbid")

    format_version: Literal[1] = 1
    stage: Literal["pretrain", "finetune"]
    dataset: str
    subset_seed: int
    label_fraction: float
    label_subsets: dict[str, list[str]]
    subsets: dict[str, SubsetRecord]

    def label_subset(self, fraction: float, *, source: str = "splits file") -> list[str]:
        """Training volumes of the label-limited subset ``fraction``.

        Raises:
            DataError: The record has no subset for that fraction.
        """
        key = fraction_key(fraction)
        if key not in self.label_subsets:
            raise DataError(
                f"{source} has no label-limited subset for label_fraction={key}; it has "
                f"{sorted(self.label_subsets, key=float, reverse=True)}"
            )
        return list(self.label_subsets[key])

    def save(self, path: str | Path) -> None:
        """Write the record as indented JSON, atomically."""
        atomic_write_text(path, self.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> SplitRecord:
        """Read a record written by :meth:`save`.

        Raises:
            DataError: The file is missing or is not a valid split record; the message names it.
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(f"splits file {path} does not exist")
        try:
            return cls.model_validate_json(path.read_text(encoding="utf-8"))
        except ValidationError as exc:
            raise DataError(f"splits file {path} is not a valid split record: {exc}") from exc
