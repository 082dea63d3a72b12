"""Which files make up each split of a file-based dataset (``ct``, ``nifti``, ``numpy``, ``hdf5``).

The ``cases`` parameter maps a split name to its entries::

    cases:
      train: {image: "train/img/*.nii.gz", label: "train/seg/*.nii.gz"}   # globs, paired by name
      val:
        - {image: val/case7.nii.gz, label: val/case7_seg.nii.gz}
        - {image: val/case9.nii.gz, label: val/case9_seg.nii.gz, id: case9}
      test: [test/a.nii.gz, test/b.nii.gz]      # plain paths or globs: images without labels
      unlabelled: "extra/**/*.nii.gz"

An entry is a path or glob (an image without a label) or a mapping with ``image``, optional
``label`` and optional ``id``; a split's value is one entry or a list of them. A bare entry or list
instead of a mapping is shorthand for ``{"unlabelled": ...}``, the form extra pretraining sources
use. Relative paths are taken from ``root``; a glob ending in ``/`` matches folders only (DICOM
series folders). An image glob and its label glob are paired by what their wildcards matched
(``img/case10.nii.gz`` with ``seg/case10_seg.nii.gz``; sorted lists would pair ``case1`` with
``case10_seg``, since ``_`` sorts after ``0``), also where the label's wildcard takes in a prefix
or suffix every label shares (``img/*.nii.gz`` with ``seg/*.nii.gz``: ``case10`` with
``case10_seg``), also with the file-type suffix set aside (``case1.nii`` beside ``case2.nii.gz``
with ``case1_seg.nii.gz``), and in sorted order only where the two globs' wildcards match unrelated
names. Where some names pair and others do not (a label missing and another case's in its place),
pairing the rest in sorted order would give cases other cases' labels: that is an error naming the
images without a label and the labels without an image. A glob that matches nothing, a missing
file and an image/label glob pair that match different counts are errors; so is a split with no
entries. Where the wildcards' matches are compared less what every name shares, that shared part
never ends within a number or a word: ``knee_101`` and ``knee_102`` are compared as ``101`` and
``102``, not as ``1`` and ``2``.

A case's ``volume_id`` is its ``id`` or the image's name without its file-type suffix
(:func:`case_stem`: ``.nii.gz`` counts as one; a DICOM series folder keeps its whole name). Where
that name is the same for several images of a split, as in one folder per patient with the same
file names in each (``case_00000/imaging.nii.gz``), each of them is named by its folders below the
split's common folder as well (``case_00000_imaging``: :func:`folder_qualified_stems`, the names
:func:`inpaintssl.inference.predict.predict` gives the same files). Ids must be unique within a
split; a clash that remains (an ``id`` given twice, ``scan.nii.gz`` beside ``scan.npy``) is
refused, and so is one image listed twice in a split (by two entries, or by two globs that both
match it, under any ids): it would count twice, in training and in the test statistics. One image
in two of ``train``, ``val`` and ``test`` is refused (it would leak into model
selection or the test scores), and so is one ``id`` given explicitly in two of them (one patient's
data in both); ``unlabelled``, for pretraining only, may repeat them.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for n in ("a", "b"):
    ...     (root / f"{n}.npy").touch()
    >>> [c.volume_id for c in resolve_cases({"train": "*.npy"}, "train", root=root, dataset="numpy")]
    ['a', 'b']
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inpaintssl.data.base import DataError
from inpaintssl.data.checks import existing_path
from inpaintssl.data.readers import VOLUME_SUFFIXES
from inpaintssl.listing import first_and_more
from inpaintssl.warning_format import warn_each_time

__all__ = ["CaseSpec", "available_splits", "case_stem", "folder_qualified_stems", "is_glob", "resolve_cases"]

_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class CaseSpec:
    """One case: its id, image path and optional label path."""

    volume_id: str
    image: Path
    label: Path | None


def _as_split_mapping(cases: Any) -> Mapping[str, Any]:
    if isinstance(cases, Mapping) and not ({"image", "label"} & set(cases)):
        return cases
    return {"unlabelled": cases}


def available_splits(cases: Any) -> list[str]:
    """Split names a ``cases`` value defines."""
    return sorted(_as_split_mapping(cases))


def is_glob(text: str, path: Path) -> bool:
    """Whether ``text`` (naming ``path``) is a glob pattern: it has ``*?[`` and ``path`` does not exist.

    An existing file is that file, even when its name has glob characters (``scan[1].nii.gz``).

    Example:
        >>> is_glob("train/*.nii.gz", Path("train/*.nii.gz")), is_glob("a.npy", Path("a.npy"))
        (True, False)
    """
    return bool(_GLOB_CHARS & set(text)) and not path.exists()


def _first_missing_folder(pattern: Path) -> Path | None:
    """The first folder of the glob's fixed leading part that does not exist, if one does not.

    Example:
        >>> _first_missing_folder(Path("/no-such-folder/train/*.nii.gz"))
        PosixPath('/no-such-folder')
        >>> _first_missing_folder(Path("/*/train/*.nii.gz")) is None
        True
    """
    folder = Path()
    for part in pattern.parts[:-1]:
        if _GLOB_CHARS & set(part):
            return None
        folder = folder / part
        if not folder.exists():
            return folder
    return None


def _expand(pattern: str | Path, *, root: Path | None, what: str) -> list[Path]:
    return _expand_glob(pattern, root=root, what=what)[0]


def _expand_glob(pattern: str | Path, *, root: Path | None, what: str) -> tuple[list[Path], str | None]:
    """The paths ``pattern`` names, sorted, and the glob query (``None`` for a plain path)."""
    raw = Path(str(pattern)).expanduser()
    full = raw if raw.is_absolute() or root is None else root / raw
    if is_glob(str(pattern), full):
        # The root is a folder, not a pattern: its own [ * ? (data in "scans[v2]") match themselves.
        relative = root is not None and not raw.is_absolute() and root != Path()
        # Not for root ".": the matches are Paths, which drop the "./" that the query would keep,
        # and the query must match them as written to pair images with labels by name.
        base = os.path.join(glob.escape(str(root)), str(raw)) if relative else str(full)
        # Path drops a trailing slash, which in a glob means "folders only" (series folders).
        query = base + (os.sep if str(pattern).endswith(("/", os.sep)) else "")
        matches = sorted(Path(p) for p in glob.glob(query, recursive=True))
        if not matches:
            missing = _first_missing_folder(full)
            # A misspelt root or folder is the usual cause, and the full pattern hides which part.
            where = f": folder {missing} does not exist" if missing is not None else ""
            raise DataError(f"{what} pattern {str(full)!r} matches no files{where}")
        return matches, query
    return [existing_path(full, what=what, directory_ok=True)], None


def _wildcard_matches(query: str, paths: Sequence[Path]) -> list[re.Match[str]] | None:
    """Each path matched against the glob ``query``, one regex group per wildcard (``None`` if
    the query cannot be read as a regex or a path does not match it)."""
    sep = re.escape(os.sep)
    parts: list[str] = []
    text, i = query.rstrip("/" + os.sep), 0
    while i < len(text):
        if text.startswith("**" + os.sep, i):
            parts.append(f"((?:.*{sep})?)")  # zero or more folders
            i += 3
        elif text.startswith("**", i):
            parts.append("(.*)")
            i += 2
        elif text[i] == "*":
            parts.append(f"([^{sep}]*)")
            i += 1
        elif text[i] == "?":
            parts.append(f"([^{sep}])")
            i += 1
        elif text[i] == "[" and text[i + 2 : i + 3] == "]" and text[i + 1] in "*?[":
            parts.append(re.escape(text[i + 1]))  # glob.escape's [*], [?], [[]: the character itself
            i += 3
        elif text[i] == "[" and "]" in text[i + 2 :]:
            end = text.index("]", i + 2)
            body = text[i + 1 : end]
            body = "^" + body[1:] if body.startswith("!") else body
            parts.append("([" + body.replace("\\", "\\\\") + "])")
            i = end + 1
        else:
            parts.append(re.escape(text[i]))
            i += 1
    try:
        pattern = re.compile("".join(parts))
    except re.error:
        return None
    found = [pattern.fullmatch(str(path)) for path in paths]
    return None if any(m is None for m in found) else [m for m in found if m is not None]


def _wildcard_parts(query: str, paths: Sequence[Path]) -> list[tuple[str, ...]] | None:
    """What the wildcards of the glob ``query`` matched in each path (``None`` if not every path
    can be told apart that way)."""
    found = _wildcard_matches(query, paths)
    if found is None:
        return None
    keys = [m.groups() for m in found]
    return keys if len(set(keys)) == len(keys) else None


def _wildcard_stems(query: str, paths: Sequence[Path]) -> list[tuple[str, ...]] | None:
    """What the wildcards of the glob ``query`` cover of each path without its file-type suffix
    (:func:`case_stem`): the text from the first wildcard's match to the end of the last one's, cut
    where the suffix starts, as one name (``None`` if not every path can be told apart that way).

    The suffix is part of what a wildcard matches (``img/*`` on ``case1.nii``), and a folder that
    mixes ``.nii`` and ``.nii.gz`` gives the same case different suffixes, so that no name pairs
    as matched; cut off, it is the case's id, as :func:`case_stem` gives it. One name per path,
    not one per wildcard: the two globs may have different numbers of wildcards
    (``img/*.nii*`` with ``seg/*_seg.nii.gz``).

    Example:
        >>> _wildcard_stems("img/*.nii*", [Path("img/case1.nii"), Path("img/case2.nii.gz")])
        [('case1',), ('case2',)]
    """
    found = _wildcard_matches(query, paths)
    if found is None or not found[0].re.groups:
        return None
    keys: list[tuple[str, ...]] = []
    for path, match in zip(paths, found):
        text = str(path)
        stem_end = len(text) - (len(path.name) - len(case_stem(path)))
        start = match.start(1)
        keys.append((text[start : max(start, min(match.end(match.re.groups), stem_end))],))
    return keys if len(set(keys)) == len(keys) else None


def _shared_length(texts: Sequence[str]) -> int:
    """How many leading characters all ``texts`` share (character by character, not by path part)."""
    shortest = min(len(text) for text in texts)
    for i in range(shortest):
        if any(text[i] != texts[0][i] for text in texts):
            return i
    return shortest


def _same_run(before: str, after: str) -> bool:
    """Whether two adjacent characters belong to one run of digits or one run of letters."""
    return (before.isdigit() and after.isdigit()) or (before.isalpha() and after.isalpha())


def _token_start(texts: Sequence[str], shared: int) -> int:
    """``shared`` (a length all ``texts`` share at their start) moved back to the start of a run
    of digits or letters that it would cut: ``knee_1`` of ``knee_101``, ``knee_102`` -> ``knee_``."""
    while shared > 0 and any(
        len(text) > shared and _same_run(text[shared - 1], text[shared]) for text in texts
    ):
        shared -= 1
    return shared


def _distinct_cores(keys: Sequence[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Each key with what all keys share removed: per wildcard, the common prefix, then the
    common suffix of what is left (``case1_seg``, ``case10_seg`` -> ``1``, ``10``), neither cutting
    a run of digits or of letters (``knee_101``, ``knee_102`` -> ``101``, ``102``, not ``1``, ``2``).

    A label named ``p + image + s`` for every image (``seg/*.nii.gz`` matching ``case1_seg``
    where ``img/*.nii.gz`` matched ``case1``) keeps its image's core: the prefix shared by
    ``p + image`` is ``p`` plus the images' shared prefix, and likewise for ``s``. Cut through a
    number, the shared parts could make unrelated names alike: ``knee_101_seg`` and
    ``knee_201_seg`` share ``01_seg``, leaving ``1`` and ``2``, which ``knee_101`` and ``knee_102``
    leave too once ``knee_10`` is cut off, and ``knee_102`` would get ``knee_201_seg``.

    Example:
        >>> _distinct_cores([("case1_seg",), ("case10_seg",), ("case2_seg",)])
        [('1',), ('10',), ('2',)]
        >>> _distinct_cores([("knee_101_seg",), ("knee_201_seg",)])
        [('101',), ('201',)]
    """
    if not keys:
        return []
    columns = []
    for parts in zip(*keys):
        start = _token_start(parts, _shared_length(parts))
        rests = [part[start:][::-1] for part in parts]  # reversed: the shared end is a shared start
        end = _token_start(rests, _shared_length(rests))
        columns.append([rest[end:][::-1] for rest in rests])
    return [tuple(column[i] for column in columns) for i in range(len(keys))]


def _pair_labels(
    images: list[Path], image_query: str | None, labels: list[Path], label_query: str | None, *, where: str
) -> list[Path]:
    """``labels`` in the order of ``images``: matched by what their globs' wildcards matched
    (``case10.npy`` with ``case10_seg.npy``) where both give the same set of values; else by
    those values less what every image's, or every label's, share, never cutting a number or a
    word (``img/*.nii.gz`` with ``seg/*.nii.gz``: ``case10`` with ``case10_seg``,
    :func:`_distinct_cores`) where those agree;
    either with numbers compared by value (``case_1`` with ``case_01``); then the same on the names
    without their file-type suffix (``case1.nii`` with ``case1_seg.nii.gz``, :func:`_case_namings`);
    else in sorted order, with a warning naming the first pairs. Sorted order is the last resort
    because the two sorted lists can differ (``case1_seg`` sorts after ``case10_seg``, ``case1``
    before ``case10``).

    Raises:
        DataError: Some names pair and others do not (``case17_seg`` missing, ``case31_seg`` in its
            place): in sorted order every case after the gap would get the next case's label. The
            message names the images without a label and the labels without an image.
    """
    if image_query is None or label_query is None:
        return labels
    for image_names, label_names in _case_namings(images, image_query, labels, label_query):
        if set(image_names) == set(label_names):
            position = {name: i for i, name in enumerate(label_names)}
            return [labels[position[name]] for name in image_names]
    unpaired = _unpaired_files(images, image_query, labels, label_query)
    if unpaired:
        raise DataError(
            f"{where}: the image and label globs match {len(images)} file(s) each, but not every image "
            f"pairs with a label by what their wildcards matched{unpaired}; expected each image's label "
            "named like the image, since pairing the rest in sorted order would give cases other cases' "
            "labels (add the missing labels and remove the strays, or name each pair as {image, label})"
        )
    if len(images) > 1:
        pairs = ", ".join(f"{image.name} with {label.name}" for image, label in zip(images[:3], labels[:3]))
        warn_each_time(
            f"{where}: the image and label globs match names that do not pair by what their wildcards "
            f"matched, so they are paired in sorted order ({pairs}{', ...' if len(images) > 3 else ''}); "
            "check that this pairs each image with its own label, or name each pair as {image, label}",
            UserWarning,
        )
    return labels


def _case_namings(
    images: list[Path], image_query: str, labels: list[Path], label_query: str
) -> Iterator[tuple[list[tuple[str, ...]], list[tuple[str, ...]]]]:
    """The names the two globs' wildcards give each image and each label, in the order pairing
    tries them: as matched, then less what every file of a side shares (:func:`_distinct_cores`);
    each as text, then with numbers compared by value (``01`` as ``1``); then all of these again on
    what the wildcards cover of each name without its file-type suffix (:func:`_wildcard_stems`:
    ``case1.nii`` and ``case2.nii.gz`` in one folder). Only namings under which no two files of
    one side share a name; none where the globs' wildcards do not line up.
    """
    image_keys = _wildcard_parts(image_query, images)
    label_keys = _wildcard_parts(label_query, labels)
    if image_keys is not None and label_keys is not None and len(image_keys[0]) == len(label_keys[0]):
        yield from _namings(image_keys, label_keys)
    # Last, so that every pairing the matches as they are make stays as it was.
    image_stems = _wildcard_stems(image_query, images)
    label_stems = _wildcard_stems(label_query, labels)
    if image_stems is not None and label_stems is not None:
        yield from _namings(image_stems, label_stems)


def _namings(
    image_keys: list[tuple[str, ...]], label_keys: list[tuple[str, ...]]
) -> Iterator[tuple[list[tuple[str, ...]], list[tuple[str, ...]]]]:
    """``image_keys`` and ``label_keys`` as they are, then as :func:`_distinct_cores`; each as text,
    then with numbers by value: those under which no two files of one side share a name."""
    for cores in (False, True):
        # The cores only once the names as matched paired nothing: computed on demand.
        image_cores = _distinct_cores(image_keys) if cores else image_keys
        label_cores = _distinct_cores(label_keys) if cores else label_keys
        for normalise in (_as_text, _numbers_by_value):
            image_names = [normalise(key) for key in image_cores]
            label_names = [normalise(key) for key in label_cores]
            if len(set(image_names)) == len(image_names) and len(set(label_names)) == len(label_names):
                yield image_names, label_names


def _as_text(key: tuple[str, ...]) -> tuple[str, ...]:
    return key


def _numbers_by_value(key: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(re.sub(r"\d+", lambda number: str(int(number.group())), part) for part in key)


def case_stem(path: Path) -> str:
    """The case name a scan's file or folder gives: its name without the file-type suffix.

    A suffix of a format the readers take is removed in any letter case (``.nii.gz`` as one);
    a folder (a DICOM series) keeps its whole name, since series folders are often named by
    their UID, whose dots are not suffixes (cutting at the last one would give two series of a
    study one name); any other file loses its last suffix. Case ids (:func:`resolve_cases`) and the
    names of :func:`inpaintssl.inference.predict.predict`'s outputs are both made with it.

    Example:
        >>> import tempfile
        >>> [case_stem(Path(n)) for n in ("sub-01.NII.GZ", "knee.v2.h5", "scan.hdf5", "ct.mha", "notes")]
        ['sub-01', 'knee.v2', 'scan', 'ct', 'notes']
        >>> series = Path(tempfile.mkdtemp()) / "1.2.840.113619.2.55.3"
        >>> series.mkdir()
        >>> case_stem(series)
        '1.2.840.113619.2.55.3'
    """
    name = path.name
    for suffix in VOLUME_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    if path.is_dir():
        return name
    return path.stem if path.suffix else name


def folder_qualified_stems(paths: Sequence[Path], *, ignore_case: bool = False) -> list[str]:
    """:func:`case_stem` of each path, with its folders below the paths' common folder in front where
    two stems clash (with ``ignore_case``, also where they differ in letter case only).

    A stem no other path has is kept as it is; stems that still clash (two files of one folder
    that differ in format only) are returned as they are, for the caller to tell apart or refuse.

    Example:
        >>> folder_qualified_stems([Path("/d/p01/ct.nii.gz"), Path("/d/p02/ct.nii.gz"), Path("/d/x.npy")])
        ['p01_ct', 'p02_ct', 'x']
    """
    names = [case_stem(p) for p in paths]
    keys = [name.casefold() for name in names] if ignore_case else names
    if len(set(keys)) == len(keys):
        return names
    resolved = [p.resolve() for p in paths]
    common = Path(os.path.commonpath([str(p.parent) for p in resolved]))
    return [
        name if keys.count(key) == 1 else "_".join([*path.relative_to(common).parts[:-1], name])
        for name, key, path in zip(names, keys, resolved)
    ]


def _entry_cases(entry: Any, *, root: Path | None, where: str) -> list[CaseSpec]:
    if isinstance(entry, (str, Path)):
        return [CaseSpec(case_stem(p), p, None) for p in _expand(entry, root=root, what=f"{where} image")]
    if not isinstance(entry, Mapping) or "image" not in entry:
        raise DataError(f"{where}: entry {entry!r} must be a path, a glob or a mapping with an 'image' key")
    extra = sorted(set(entry) - {"image", "label", "id"})
    if extra:
        raise DataError(
            f"{where}: entry {dict(entry)!r} has unknown key(s) {extra}; expected image, label, id"
        )
    images, image_query = _expand_glob(entry["image"], root=root, what=f"{where} image")
    labels: list[Path | None]
    if entry.get("label") is None:
        labels = [None] * len(images)
    else:
        found, label_query = _expand_glob(entry["label"], root=root, what=f"{where} label")
        if len(found) != len(images):
            raise DataError(
                f"{where}: image {entry['image']!r} matches {len(images)} file(s) but label "
                f"{entry['label']!r} matches {len(found)}; expected one label per image"
                f"{_unpaired_files(images, image_query, found, label_query)}"
            )
        labels = list(_pair_labels(images, image_query, found, label_query, where=where))
    if "id" in entry:
        if len(images) != 1:
            raise DataError(f"{where}: 'id' {entry['id']!r} given for a glob matching {len(images)} images")
        return [CaseSpec(str(entry["id"]), images[0], labels[0])]
    return [CaseSpec(case_stem(img), img, lab) for img, lab in zip(images, labels)]


def resolve_cases(cases: Any, split: str, *, root: str | Path | None, dataset: str) -> list[CaseSpec]:
    """The cases of ``split`` (see the module docstring for the format).

    Args:
        cases: The ``cases`` parameter.
        split: ``train``, ``val``, ``test``, ``unlabelled`` or any name ``cases`` defines.
        root: Folder that relative paths start from (``None``: the working directory).
        dataset: Dataset name for messages.

    Raises:
        DataError: Unknown or empty split, missing file, unmatched glob, mismatched image/label
            counts (naming the images without a label where the globs tell), image and label globs
            whose names pair only in part (naming the files without a partner), duplicate ids, one
            image twice in the split, or an image or explicit ``id`` in two of train, val and test.
    """
    splits = _as_split_mapping(cases)
    if split not in splits:
        raise DataError(f"{dataset}: split {split!r} is not defined in 'cases'; it defines {sorted(splits)}")
    base = Path(root).expanduser() if root is not None else None
    value = splits[split]
    entries: Sequence[Any] = value if isinstance(value, (list, tuple)) else [value]
    where = f"{dataset} cases[{split!r}]"
    found: list[CaseSpec] = []
    named: list[bool] = []  # whether the config gave the case its id
    origins: list[int] = []  # the index of the entry each case came from
    for position, entry in enumerate(entries):
        cases = _entry_cases(entry, root=base, where=where)
        found.extend(cases)
        named.extend([isinstance(entry, Mapping) and "id" in entry] * len(cases))
        origins.extend([position] * len(cases))
    if not found:
        raise DataError(f"{where} is empty; expected at least one image")
    unnamed = [i for i, given in enumerate(named) if not given]
    qualified = folder_qualified_stems([found[i].image for i in unnamed])
    for i, volume_id in zip(unnamed, qualified):
        found[i] = CaseSpec(volume_id, found[i].image, found[i].label)
    _check_images_once(found, origins, entries, where=where)
    seen: dict[str, Path] = {}
    for case in found:
        if case.volume_id in seen:
            raise DataError(
                f"{where}: id {case.volume_id!r} is used by both {seen[case.volume_id]} and {case.image}; "
                "give entries distinct file names or an explicit 'id'"
            )
        seen[case.volume_id] = case.image
    if split in _EVALUATED_SPLITS:
        _check_disjoint(found, splits, split=split, root=base, dataset=dataset)
        given = {case.volume_id: case.image for case, is_given in zip(found, named) if is_given}
        _check_ids_disjoint(given, splits, split=split, dataset=dataset)
    return found


def _entry_text(entry: Any) -> str:
    """An entry as a message names it: its image path or glob."""
    return repr(str(entry["image"]) if isinstance(entry, Mapping) and "image" in entry else str(entry))


def _check_images_once(
    found: Sequence[CaseSpec], origins: Sequence[int], entries: Sequence[Any], *, where: str
) -> None:
    """Refuse an image that two cases of one split read (two entries, or two globs, match it).

    It would count twice: twice the weight in training, two cases of the paired test statistics,
    which take the cases as independent. The resolved path is compared, so that ``a.npy``,
    ``./a.npy`` and a link to it are one image; an HDF5 or NPZ image is read from the dataset's one
    ``image_key`` in every file, so its path names it.
    """
    first: dict[Path, int] = {}
    for index, case in enumerate(found):
        key = case.image.resolve()
        if key not in first:
            first[key] = index
            continue
        before = found[first[key]]
        entry, other = origins[first[key]], origins[index]
        whence = (
            f"entry {entry} ({_entry_text(entries[entry])}) matches it twice"
            if entry == other
            else f"entries {entry} ({_entry_text(entries[entry])}) and {other} "
            f"({_entry_text(entries[other])}) both list it"
        )
        raise DataError(
            f"{where}: image {case.image} is read by two cases, {before.volume_id!r} and "
            f"{case.volume_id!r}: {whence}; expected each image once in a split, since a repeated image "
            "counts twice (twice the weight in training, two cases in the test statistics); remove one "
            "of them"
        )


def _unpaired_files(
    images: list[Path], image_query: str | None, labels: list[Path], label_query: str | None
) -> str:
    """Which images lack a label and which labels an image, where the two globs' files do not all
    pair, as a clause for the error message (``""`` where that cannot be told).

    The usual cause of different counts is an image glob that matches the label files too
    (``train/*.nii.gz`` beside ``train/*_seg.nii.gz``); else the files are told apart by what their
    wildcards matched, as :func:`_pair_labels` pairs them, under the naming that pairs the most
    files (at least one: names that pair none tell nothing).
    """
    label_paths = {label.resolve() for label in labels}
    both = [image for image in images if image.resolve() in label_paths]
    if both:
        return (
            f"; the image pattern also matches {len(both)} label file(s) ({_names(both)}): narrow it "
            "so that it matches the images alone (e.g. 'case*_img.nii.gz', or list the images)"
        )
    if image_query is None or label_query is None:
        return ""
    best: tuple[int, list[Path], list[Path]] | None = None
    for image_names, label_names in _case_namings(images, image_query, labels, label_query):
        paired = set(image_names) & set(label_names)
        # The first naming that pairs the most wins: where one pairs every file of the shorter
        # list, that is the one pairing would trust.
        if paired and (best is None or len(paired) > best[0]):
            lonely = [image for image, name in zip(images, image_names) if name not in paired]
            spare = [label for label, name in zip(labels, label_names) if name not in paired]
            best = (len(paired), lonely, spare)
    if best is None:
        return ""
    _, lonely, spare = best
    clauses = [f"{len(lonely)} image(s) have no label: {_names(lonely)}"] if lonely else []
    clauses += [f"{len(spare)} label(s) have no image: {_names(spare)}"] if spare else []
    return "".join(f"; {clause}" for clause in clauses)


def _names(paths: Sequence[Path]) -> str:
    return first_and_more([path.name for path in paths], limit=5)


_EVALUATED_SPLITS = ("train", "val", "test")
"""Splits that must not share an image: one scan in two of them leaks into model selection or test."""


def _check_disjoint(
    found: Sequence[CaseSpec], splits: Mapping[str, Any], *, split: str, root: Path | None, dataset: str
) -> None:
    """Refuse an image of ``split`` that another of train, val and test lists too."""
    mine = {case.image.resolve(): case.image for case in found}
    for other in _EVALUATED_SPLITS:
        if other == split or other not in splits:
            continue
        value = splits[other]
        entries: Sequence[Any] = value if isinstance(value, (list, tuple)) else [value]
        try:
            theirs = [
                c for e in entries for c in _entry_cases(e, root=root, where=f"{dataset} cases[{other!r}]")
            ]
        except DataError:
            continue  # that split's own problem, reported when it is built
        shared = [mine[c.image.resolve()] for c in theirs if c.image.resolve() in mine]
        if shared:
            more = f" ({len(shared) - 1} more)" if len(shared) > 1 else ""
            raise DataError(
                f"{dataset}: {shared[0]}{more} is in both cases[{split!r}] and cases[{other!r}]; expected "
                "each image in one of train, val and test, since a scan in two of them leaks into model "
                "selection or the test scores (list images for pretraining only under 'unlabelled')"
            )


def _check_ids_disjoint(
    given: Mapping[str, Path], splits: Mapping[str, Any], *, split: str, dataset: str
) -> None:
    """Refuse an ``id`` given to a case of ``split`` that another of train, val and test gives too.

    An explicit ``id`` names the patient or scan; the same one in two evaluated splits is one
    patient's data in both (another file of the same scan, or another scan of the patient), which
    the image check cannot see. Ids derived from file names are left alone: unrelated cases of two
    splits often share a file name (``train/case1.nii.gz``, ``test/case1.nii.gz``).
    """
    if not given:
        return
    for other in _EVALUATED_SPLITS:
        if other == split or other not in splits:
            continue
        value = splits[other]
        entries: Sequence[Any] = value if isinstance(value, (list, tuple)) else [value]
        for entry in entries:
            if not isinstance(entry, Mapping) or "id" not in entry or str(entry["id"]) not in given:
                continue
            volume_id = str(entry["id"])
            raise DataError(
                f"{dataset}: id {volume_id!r} is given in both cases[{split!r}] (image "
                f"{given[volume_id]}) and cases[{other!r}] (image {entry.get('image')!r}); expected each "
                "id in one of train, val and test, since one patient's data in two of them leaks into "
                "model selection or the test scores (give different cases different ids)"
            )
