"""Checkpoints that never execute code: safetensors weights plus pydantic-validated JSON metadata.

A checkpoint is a folder::

    model.safetensors        the network's state_dict
    meta.json                :class:`CheckpointMeta` (architecture, classes, activation, epoch, ...)
    <extra>.safetensors      optional tensor groups (optimizer state, RNG states)
    <extra>.json             optional JSON documents (trainer state)
    COMPLETE.json            sha256 of every file above, written last

The folder is first written under a temporary name and then swapped in with renames, so a run
killed at any instant leaves either the previous complete checkpoint or the new one (a
half-swapped folder is recovered from its ``.old`` twin). A checkpoint's ``model.safetensors``
given on its own is read as its folder, so its checksums are verified too. Foreign ``.pt``/``.pth``
files are read with ``torch.load(weights_only=True)`` only, which refuses pickled code.

Example:
    >>> import tempfile, pathlib, torch
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "best"
    >>> meta = CheckpointMeta(kind="pretrain", backbone="unet2d", in_channels=1, out_channels=1)
    >>> save_checkpoint(d, {"w": torch.ones(2)}, meta)
    >>> state, loaded = load_checkpoint(d)
    >>> loaded.kind, state["w"].tolist()
    ('pretrain', [1.0, 1.0])
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tempfile
import zipfile
from collections.abc import Collection, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from safetensors.torch import save as safetensors_bytes

from inpaintssl._version import __version__
from inpaintssl.atomic import (
    atomic_write_bytes,
    atomic_write_text,
    fsync_dir,
    give_plain_permissions,
    io_error_of,
    temporary_prefix,
    write_error,
)
from inpaintssl.layout import RunFolder

__all__ = [
    "COMPLETE_MARKER",
    "CheckpointError",
    "CheckpointMeta",
    "checkpoint_exists",
    "contiguous_cpu",
    "load_checkpoint",
    "load_resolved_checkpoint",
    "load_state_dict",
    "promote_checkpoint",
    "read_checkpoint_meta",
    "read_checkpoint_dir",
    "remove_checkpoint",
    "remove_partial_writes",
    "remove_stale_twins",
    "resolve_checkpoint",
    "save_checkpoint",
    "save_safetensors",
]

FORMAT_VERSION = 1
COMPLETE_MARKER = "COMPLETE.json"
"""The file :func:`save_checkpoint` writes last into every checkpoint folder: the sha256 of every
other file in it. A folder without it is an interrupted write; one holding it is a checkpoint."""
_FOREIGN_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


class CheckpointError(ValueError):
    """A checkpoint is missing, incomplete, corrupt, unsafe or incompatible; the message names the file."""


class CheckpointMeta(BaseModel):
    """What a checkpoint's weights are, validated on load.

    Attributes:
        kind: ``pretrain`` (inpainting) or ``finetune`` (segmentation).
        backbone: Registered backbone name.
        backbone_params: Keyword arguments that rebuild the backbone (besides channel counts).
        in_channels: Network input channels.
        out_channels: Network output channels.
        class_names: Segmentation classes (empty for pretraining).
        activation: ``sigmoid`` (one channel per class) or ``softmax`` (background first) or
            ``none`` for inpainting.
        epoch: Epoch whose weights these are (0-based).
        val_loss: Validation loss of these weights.
        pretext: Pretext task settings for pretraining checkpoints.
    """

    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    kind: Literal["pretrain", "finetune"]
    backbone: str
    backbone_params: dict[str, Any] = Field(default_factory=dict)
    in_channels: int = Field(gt=0)
    out_channels: int = Field(gt=0)
    class_names: list[str] = Field(default_factory=list)
    activation: Literal["sigmoid", "softmax", "none"] = "none"
    epoch: int = -1
    val_loss: float | None = None
    pretext: dict[str, Any] = Field(default_factory=dict)
    inpaintssl_version: str = __version__
    created: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def contiguous_cpu(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies: safetensors refuses shared or non-contiguous storage, and
    cloning lets views of one buffer save cleanly."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def _save_file(
    tensors: dict[str, torch.Tensor], path: Path, *, metadata: dict[str, str] | None = None
) -> None:
    """``safetensors``' ``save_file``, its failed writes raised as the ``OSError`` they are.

    ``safetensors`` reports a full disk as its own ``SafetensorError`` (``I/O error: No space left
    on device (os error 28)``), which no caller would read as a failed write.
    """
    try:
        save_file(tensors, str(path), metadata=metadata)
    except SafetensorError as exc:
        error = io_error_of(exc)
        if error is None:
            raise
        raise error from exc


def save_safetensors(
    path: str | Path, tensors: Mapping[str, torch.Tensor], *, metadata: Mapping[str, str] | None = None
) -> None:
    """Write ``tensors`` (any device, views allowed) as one ``.safetensors`` file, atomically.

    Serialised in memory and written through :func:`~inpaintssl.atomic.atomic_write_bytes`'s one
    temporary, not with ``save_file``, which writes through a ``.tmpXXXXXX`` of its own beside the
    output: a writer killed mid-write leaves only a temporary named for ``path``, which
    :func:`~inpaintssl.atomic.remove_stale_temporaries` recognises.

    Raises:
        OSError: Writing failed (e.g. disk full); the message names ``path``, which is left as it was.
    """
    header = None if metadata is None else dict(metadata)
    atomic_write_bytes(path, safetensors_bytes(contiguous_cpu(tensors), metadata=header))


def save_checkpoint(
    folder: str | Path,
    state_dict: Mapping[str, torch.Tensor],
    meta: CheckpointMeta,
    *,
    tensors: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    documents: Mapping[str, Any] | None = None,
) -> None:
    """Write a complete checkpoint folder atomically (see the module docstring).

    Args:
        folder: Destination folder, e.g. ``run/checkpoints/last``.
        state_dict: Model weights.
        meta: Validated metadata.
        tensors: Extra tensor groups, each saved as ``<name>.safetensors``.
        documents: Extra JSON-serialisable documents, each saved as ``<name>.json``.

    Raises:
        OSError: Writing failed (e.g. disk full); the previous checkpoint is left intact.
    """
    folder = Path(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=temporary_prefix(folder), suffix=".tmp", dir=folder.parent))
    except OSError as exc:
        raise write_error(f"checkpoint {folder}", exc) from exc
    try:
        files: dict[str, str] = {}
        _save_file(contiguous_cpu(state_dict), tmp / "model.safetensors")
        (tmp / "meta.json").write_text(meta.model_dump_json(indent=2), encoding="utf-8")
        for name, group in (tensors or {}).items():
            _save_file(contiguous_cpu(group), tmp / f"{name}.safetensors")
        for name, doc in (documents or {}).items():
            (tmp / f"{name}.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
        for path in sorted(tmp.iterdir()):
            with open(path, "rb+") as handle:
                os.fsync(handle.fileno())
            files[path.name] = _sha256(path)
        atomic_write_text(tmp / COMPLETE_MARKER, json.dumps({"files": files}, indent=1))
        give_plain_permissions(tmp)
        _swap_in(tmp, folder)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(f"checkpoint {folder}", exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(complete: Path, folder: Path) -> None:
    """Rename the complete checkpoint ``complete`` to ``folder``, parking ``folder`` as its twin meanwhile."""
    old = _old_twin(folder)
    if folder.exists() and old.exists() and not _is_complete(folder):
        # A damaged folder beside its twin (a half-swap, then a torn write): the twin is the
        # only complete copy, the one a resume recovered from, so the folder goes, not the twin.
        shutil.rmtree(folder)
    elif folder.exists():
        # A twin beside a complete folder is stale: the folder is the newer checkpoint.
        if old.exists():
            shutil.rmtree(old)
        os.replace(folder, old)
    # Without a folder, a twin is the only checkpoint (a half-swap a resume recovered from):
    # it goes only once the new one is in place, so some checkpoint exists at every instant.
    os.replace(complete, folder)
    fsync_dir(folder.parent)
    if old.exists():
        shutil.rmtree(old)


def promote_checkpoint(source: str | Path, folder: str | Path) -> bool:
    """Move the checkpoint ``source`` (itself or its ``.old`` twin, whichever is complete) to ``folder``.

    The replaced ``folder`` is parked as its twin until the move is done, as in
    :func:`save_checkpoint`, so a process killed at any instant leaves a complete checkpoint at
    ``folder`` (or its twin) and, until the move, at ``source``; a second call finishes the move.
    What is left of ``source`` (a damaged copy, its twin) is removed.

    Args:
        source: The checkpoint to move, e.g. ``run/checkpoints/best.pending``.
        folder: Where it goes, e.g. ``run/checkpoints/best``.

    Returns:
        Whether a complete checkpoint was moved (``False``: ``source`` held none; it is removed).

    Raises:
        OSError: A rename failed; the message names ``folder``.

    Example:
        >>> import pathlib, tempfile
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> meta = CheckpointMeta(kind="pretrain", backbone="unet2d", in_channels=1, out_channels=1)
        >>> save_checkpoint(root / "best.pending", {"w": torch.zeros(1)}, meta)
        >>> save_checkpoint(root / "best", {"w": torch.ones(1)}, meta)
        >>> promote_checkpoint(root / "best.pending", root / "best")
        True
        >>> load_checkpoint(root / "best")[0]["w"].tolist(), sorted(p.name for p in root.iterdir())
        ([0.0], ['best'])
    """
    source, folder = Path(source), Path(folder)
    try:
        complete: Path | None = _verified_folder(source)
    except CheckpointError:
        complete = None
    try:
        if complete is not None:
            _swap_in(complete, folder)
    except OSError as exc:
        raise write_error(f"checkpoint {folder}", exc) from exc
    kept = remove_checkpoint(source)
    if kept:
        raise write_error(f"checkpoint {folder}", kept[0][1]) from kept[0][1]
    return complete is not None


def remove_checkpoint(folder: str | Path) -> list[tuple[Path, OSError]]:
    """Remove the checkpoint ``folder`` and its ``.old`` twin, whichever exist; say what stayed.

    Both are tried, whatever the first gives.

    Returns:
        Each folder that could not be removed, with the error that kept it (none: both are gone).

    Example:
        >>> import pathlib, tempfile
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> (root / "best.pending").mkdir(); (root / "best.pending.old").mkdir()
        >>> remove_checkpoint(root / "best.pending"), sorted(root.iterdir())
        ([], [])
    """
    kept: list[tuple[Path, OSError]] = []
    for path in (Path(folder), _old_twin(Path(folder))):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
        except OSError as exc:
            kept.append((path, exc))
    return kept


def remove_partial_writes(folder: str | Path, *, names: Collection[str]) -> list[Path]:
    """Remove what a killed writer of ``names`` left in ``folder``: ``.<name>.<random>.tmp`` entries.

    :func:`save_checkpoint` and :func:`~inpaintssl.atomic.atomic_write_text` write under such
    names and rename into place; a ``SIGKILL`` in between leaves them behind, a whole checkpoint
    each. Only the temporaries of ``names`` are touched, so a user's own files are safe even in a
    run folder that is a shared directory. Call it only while holding the folder's run lock:
    another live writer's temporary would go too.

    Returns:
        What was removed.

    Example:
        >>> import pathlib, tempfile
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> (root / ".last.k2x9.tmp").mkdir()
        >>> _ = (root / ".notes.txt.a81.tmp").write_text("a user's")
        >>> [p.name for p in remove_partial_writes(root, names=["best", "last"])]
        ['.last.k2x9.tmp']
        >>> sorted(p.name for p in root.iterdir())
        ['.notes.txt.a81.tmp']
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    prefixes = tuple(f".{name}." for name in names)
    removed = sorted(p for p in folder.iterdir() if p.name.startswith(prefixes) and p.name.endswith(".tmp"))
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return removed


def remove_stale_twins(folder: str | Path, *, names: Collection[str]) -> list[Path]:
    """Remove each ``<name>.old`` in ``folder`` whose ``<name>`` beside it is a complete checkpoint.

    :func:`save_checkpoint` parks the previous checkpoint as the ``.old`` twin while it swaps the
    new one in, and removes it last: a run killed after the swap leaves it behind, a whole extra
    checkpoint that a finished run never writes again to clear. Beside a complete ``<name>`` it is
    stale (the folder is newer); beside a missing or damaged one it is the checkpoint a resume
    recovers, and stays. Call it only while holding the folder's run lock.

    Returns:
        What was removed.

    Example:
        >>> import pathlib, tempfile
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> meta = CheckpointMeta(kind="pretrain", backbone="unet2d", in_channels=1, out_channels=1)
        >>> for name in ("last", "last.old", "best.old"):
        ...     save_checkpoint(root / name, {"w": torch.ones(1)}, meta)
        >>> [p.name for p in remove_stale_twins(root, names=["best", "last"])]
        ['last.old']
        >>> sorted(p.name for p in root.iterdir())
        ['best.old', 'last']
    """
    folder = Path(folder)
    removed: list[Path] = []
    for name in sorted(names):
        checkpoint, old = folder / name, _old_twin(folder / name)
        if not old.is_dir() or old.is_symlink() or not checkpoint.is_dir():
            continue
        if _is_complete(checkpoint):
            shutil.rmtree(old)
            removed.append(old)
    return removed


def _is_complete(folder: Path) -> bool:
    """Whether ``folder`` itself (not its twin) is a complete, intact checkpoint."""
    try:
        return _verified_folder(folder) == folder
    except CheckpointError:
        return False


def _old_twin(folder: Path) -> Path:
    """Where :func:`save_checkpoint` parks the previous checkpoint while it swaps the new one in."""
    return folder.with_name(folder.name + ".old")


def checkpoint_exists(folder: str | Path) -> bool:
    """Whether a checkpoint was (at least partly) written at ``folder``, itself or its ``.old`` twin.

    A run killed between the two renames of :func:`save_checkpoint` leaves only the twin, which
    still counts: :func:`resolve_checkpoint` recovers it. Nothing is verified here.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp()) / "last"
        >>> checkpoint_exists(folder)
        False
        >>> folder.with_name("last.old").mkdir()
        >>> checkpoint_exists(folder)
        True
    """
    folder = Path(folder)
    return folder.exists() or _old_twin(folder).exists()


_SEALED_FILES = ("model.safetensors", "meta.json")
"""The files every :func:`save_checkpoint` writes, so every ``COMPLETE.json`` lists them."""


def _marker_problem(files: Any) -> str | None:
    """What is wrong with a ``COMPLETE.json``'s ``files`` entry, or ``None`` when it is well formed.

    A marker that lists nothing (or not the files every checkpoint holds) would verify a folder
    without checking anything in it: it is as damaged as a torn one, and the twin is recovered.
    """
    if not isinstance(files, dict):
        return f'expected "files" to map file names to SHA-256 hex digests, found {type(files).__name__}'
    odd = sorted(str(name) for name, digest in files.items() if not isinstance(digest, str))
    if odd:
        return f'expected "files" to map file names to SHA-256 hex digests, found others for {", ".join(odd)}'
    missing = [name for name in _SEALED_FILES if name not in files]
    if missing:
        return f'"files" does not list {", ".join(missing)}, which every checkpoint holds'
    return None


def _verified_folder(folder: Path) -> Path:
    """Return ``folder`` or its ``.old`` twin, whichever is complete and intact."""
    problems: list[str] = []
    for candidate in (folder, _old_twin(folder)):
        marker = candidate / COMPLETE_MARKER
        if not marker.is_file():
            if candidate.exists():
                problems.append(f"{candidate} has no {COMPLETE_MARKER} (interrupted write)")
            continue
        try:
            files = json.loads(marker.read_text(encoding="utf-8"))["files"]
        except (ValueError, KeyError, TypeError) as exc:  # ValueError: torn JSON, and bytes not UTF-8
            problems.append(f"{marker} is unreadable: {exc}")
            continue
        malformed = _marker_problem(files)
        if malformed is not None:
            problems.append(f"{marker} is unreadable: {malformed}")
            continue
        bad = [n for n, h in files.items() if not (candidate / n).is_file() or _sha256(candidate / n) != h]
        if bad:
            problems.append(f"{candidate}: files changed or missing since written: {', '.join(bad)}")
            continue
        return candidate
    if not problems:
        raise CheckpointError(f"checkpoint folder {folder} does not exist")
    raise CheckpointError("no complete checkpoint: " + "; ".join(problems))


def resolve_checkpoint(path: str | Path, *, which: Literal["best", "last"] = "best") -> Path:
    """Find the weights a path refers to.

    Accepts a run folder (uses ``checkpoints/<which>``), a checkpoint folder, a
    ``.safetensors`` file, or a foreign ``.pt``/``.pth``/``.bin``/``.ckpt`` file (suffixes in any
    letter case). A leading ``~`` is expanded. A checkpoint's ``model.safetensors`` (a
    ``COMPLETE.json`` beside it) resolves to its verified folder, as the folder itself does.

    Raises:
        CheckpointError: Nothing usable at ``path``, or a checkpoint whose files no longer match its
            ``COMPLETE.json``; the message says what was looked for.
    """
    # load_model, predict, export and a config's transfer.pretrained expand "~"; so does this.
    if not str(path):
        raise CheckpointError(
            "the checkpoint path is empty; expected a run folder, a checkpoint folder or a file"
        )
    # Absolute: "." (working inside a checkpoint folder) has no name to find its .old twin by.
    path = Path(path).expanduser().absolute()
    if path.is_file():
        if path.name == "model.safetensors" and (path.parent / COMPLETE_MARKER).is_file():
            # The weights of a sealed checkpoint: taken as they are, a file damaged since it was
            # written would load unnoticed, while the same folder (and load_model on this file) is
            # refused. Verifying the folder also recovers its .old twin, as for the folder.
            return _verified_folder(path.parent)
        # Suffixes in any letter case: an export copied through Windows may come back as .PTH.
        if path.suffix.lower() == ".safetensors" or path.suffix.lower() in _FOREIGN_SUFFIXES:
            return path
        # An ONNX export holds a graph for other runtimes, not weights this library loads again.
        onnx = (
            "; an ONNX export runs in onnxruntime or another ONNX runtime, not here: give its run "
            "folder, or export it with --format safetensors"
            if path.suffix.lower() == ".onnx"
            else ""
        )
        raise CheckpointError(
            f"{path}: expected a .safetensors file (or a .pt/.pth/.bin/.ckpt tensor file), "
            f"found a '{path.suffix or 'suffix-less'}' file{onnx}"
        )
    run_ckpt = RunFolder(path).checkpoint(which)
    if checkpoint_exists(run_ckpt):
        return _verified_folder(run_ckpt)
    if (path / "model.safetensors").exists() or (path / COMPLETE_MARKER).exists():
        return _verified_folder(path)
    if _old_twin(path).exists():
        return _verified_folder(path)
    if not path.exists():
        raise CheckpointError(
            f"{path} does not exist (expected a .safetensors file, a checkpoint folder or a run folder)"
        )
    raise CheckpointError(
        f"{path}: not a checkpoint (expected a .safetensors file, a checkpoint folder with "
        f"model.safetensors, or a run folder with checkpoints/{which})"
    )


def _is_torchscript_archive(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.jit.save``, ``export_model``'s ``.pt``).

    Read as a zip listing only, as ``inference.loading.is_torchscript_export`` reads it (which this
    layer cannot import): a TorchScript archive holds ``<name>/constants.pkl`` and its program under
    ``<name>/code/``, which no ``torch.save`` archive holds.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    inner = [name.split("/", 1)[1] for name in names if "/" in name]
    return any(name == "constants.pkl" or name.startswith("code/") for name in inner)


def _load_foreign(path: Path) -> dict[str, torch.Tensor]:
    if _is_torchscript_archive(path):
        # torch.load refuses it too, but only with its own weights_only advice, naming neither
        # the file nor what to pass instead.
        raise CheckpointError(
            f"{path}: a TorchScript archive (such as an export_model(format='torchscript') export), which "
            "runs without inpaintssl (torch.jit.load) but is not read back here, as loading it would run "
            "its stored program; pass the run folder it came from or an export_model(format='safetensors') "
            "file"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # What torch's weights_only unpickler raises for anything but plain tensors and containers.
        raise CheckpointError(
            f"{path}: refused to load: it is not a plain tensor checkpoint loadable with "
            f"weights_only=True (it may carry pickled code): {type(exc).__name__}: {exc}"
        ) from exc
    except Exception as exc:
        # A zip archive without its central directory (RuntimeError), a legacy pickle cut short
        # (EOFError), a read failure (OSError): a damaged file, not a refused one.
        raise CheckpointError(
            f"{path}: cannot be read as a torch file (truncated or damaged?): {type(exc).__name__}: {exc}"
        ) from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a mapping of parameter names to tensors")
    return {str(k): v for k, v in obj.items()}


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file: {exc}") from exc


def read_checkpoint_dir(folder: str | Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any]]:
    """Read every tensor group and JSON document of a verified checkpoint folder.

    Returns:
        ``(tensors, documents)`` keyed by file stem (``tensors["model"]`` is the state_dict).
    """
    folder = _verified_folder(Path(folder))
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    documents: dict[str, Any] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix == ".safetensors":
            tensors[path.stem] = _load_safetensors(path)
        elif path.suffix == ".json" and path.name != COMPLETE_MARKER:
            try:
                documents[path.stem] = json.loads(path.read_text(encoding="utf-8"))
            except UnicodeDecodeError as exc:
                raise CheckpointError(f"{path}: {_not_utf8(exc)}") from exc
            except json.JSONDecodeError as exc:
                raise CheckpointError(f"{path}: invalid JSON: {exc}") from exc
    return tensors, documents


def _not_utf8(exc: UnicodeDecodeError) -> str:
    """What is wrong with a JSON file of a checkpoint whose bytes are not UTF-8 (e.g. re-saved as UTF-16)."""
    return (
        f"expected UTF-8 JSON (as save_checkpoint writes it), found a byte that is not UTF-8 "
        f"(0x{exc.object[exc.start]:02x} at offset {exc.start}; re-saved in another encoding, such as "
        "UTF-16?)"
    )


def read_checkpoint_meta(meta_path: Path) -> CheckpointMeta:
    """A checkpoint's ``meta.json``, validated.

    Raises:
        CheckpointError: The file cannot be read, is not UTF-8, or is not valid metadata (each
            problem named).
    """
    try:
        return CheckpointMeta.model_validate_json(meta_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CheckpointError(f"{meta_path}: invalid checkpoint metadata: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{meta_path}: invalid checkpoint metadata: {_not_utf8(exc)}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']} (found {e.get('input')!r})"
            for e in exc.errors()
        )
        raise CheckpointError(f"{meta_path}: invalid checkpoint metadata: {problems}") from exc


def load_checkpoint(
    path: str | Path, *, which: Literal["best", "last"] = "best"
) -> tuple[dict[str, torch.Tensor], CheckpointMeta | None]:
    """Load weights (and metadata when present) without unpickling anything.

    ``path`` is any path :func:`resolve_checkpoint` accepts; a checkpoint's ``model.safetensors``
    loads as its folder does (checksums verified, ``meta.json`` read).

    Returns:
        ``(state_dict, meta)``; ``meta`` is ``None`` for bare weight files.

    Raises:
        CheckpointError: Missing, incomplete, corrupt or unsafe checkpoint.
    """
    return load_resolved_checkpoint(resolve_checkpoint(path, which=which))


def load_resolved_checkpoint(target: Path) -> tuple[dict[str, torch.Tensor], CheckpointMeta | None]:
    """:func:`load_checkpoint` of what :func:`resolve_checkpoint` returned (its checksums already
    verified, so they are not computed again)."""
    if target.is_file():
        if target.suffix.lower() in _FOREIGN_SUFFIXES:
            return _load_foreign(target), None
        return _load_safetensors(target), None
    weights = target / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{target}: missing model.safetensors")
    meta_path = target / "meta.json"
    meta = read_checkpoint_meta(meta_path) if meta_path.is_file() else None
    return _load_safetensors(weights), meta


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Only the weights of :func:`load_checkpoint`."""
    return load_checkpoint(path)[0]
