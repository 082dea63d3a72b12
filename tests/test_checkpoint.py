"""Checkpoints: atomic folder swap, integrity check, safe loading (never unpickles code)."""

from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path
from typing import Any

import pytest
import torch

from checkpoint_helpers import flip_exponent_bits
from inpaintssl.atomic import atomic_write_text
from inpaintssl.checkpoint import (
    CheckpointError,
    CheckpointMeta,
    load_checkpoint,
    read_checkpoint_dir,
    resolve_checkpoint,
    save_checkpoint,
)

META = CheckpointMeta(
    kind="finetune", backbone="unet2d", in_channels=1, out_channels=3, class_names=["a", "b", "c"]
)


def test_round_trip_with_extra_groups(tmp_path: Path) -> None:
    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3)}
    folder = tmp_path / "run" / "checkpoints" / "best"
    save_checkpoint(
        folder, state, META, tensors={"optimizer": {"0.exp_avg": torch.ones(2)}}, documents={"s": {"x": 1}}
    )
    loaded, meta = load_checkpoint(tmp_path / "run")
    assert meta is not None and meta.class_names == ["a", "b", "c"]
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    tensors, docs = read_checkpoint_dir(folder)
    assert torch.equal(tensors["optimizer"]["0.exp_avg"], torch.ones(2)) and docs["s"] == {"x": 1}


def test_views_of_one_buffer_save(tmp_path: Path) -> None:
    base = torch.arange(8.0)
    save_checkpoint(tmp_path / "c", {"a": base[:4], "b": base[4:]}, META)
    loaded, _ = load_checkpoint(tmp_path / "c")
    assert loaded["b"].tolist() == [4.0, 5.0, 6.0, 7.0]


def test_overwrite_keeps_only_the_new_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "last"
    save_checkpoint(folder, {"w": torch.zeros(1)}, META)
    save_checkpoint(folder, {"w": torch.ones(1)}, META)
    assert load_checkpoint(folder)[0]["w"].item() == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_half_swapped_folder_recovers_from_old(tmp_path: Path) -> None:
    folder = tmp_path / "last"
    save_checkpoint(folder, {"w": torch.full((1,), 7.0)}, META)
    # Simulate a kill between the two renames: only the .old twin exists.
    os.replace(folder, folder.with_name("last.old"))
    assert load_checkpoint(folder)[0]["w"].item() == 7.0


@pytest.mark.parametrize("beside_the_twin", ["nothing", "a damaged folder"])
def test_saving_after_a_recovered_half_swap_never_leaves_no_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, beside_the_twin: str
) -> None:
    # After a half-swap last.old is the one complete checkpoint (alone, or beside a last torn by a
    # later write); the resumed run's next save must keep it until the new folder is in place: a
    # second kill at any point in that save leaves a loadable checkpoint.
    folder = tmp_path / "last"
    save_checkpoint(folder, {"w": torch.full((1,), 7.0)}, META)
    os.replace(folder, folder.with_name("last.old"))
    if beside_the_twin == "a damaged folder":
        save_checkpoint(tmp_path / "elsewhere", {"w": torch.full((1,), 9.0)}, META)
        os.replace(tmp_path / "elsewhere", folder)
        (folder / "model.safetensors").write_bytes(b"torn")
    assert load_checkpoint(folder)[0]["w"].item() == 7.0
    seen: list[float] = []
    real_replace, real_rmtree = os.replace, __import__("shutil").rmtree

    def check_then(real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            seen.append(load_checkpoint(folder)[0]["w"].item())  # a kill here: what is left?
            return real(*args, **kwargs)

        return call

    monkeypatch.setattr(os, "replace", check_then(real_replace))
    monkeypatch.setattr("inpaintssl.checkpoint.shutil.rmtree", check_then(real_rmtree))
    save_checkpoint(folder, {"w": torch.full((1,), 8.0)}, META)
    monkeypatch.undo()
    assert seen and set(seen) <= {7.0, 8.0}
    assert load_checkpoint(folder)[0]["w"].item() == 8.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_tampered_or_incomplete_checkpoints_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "best"
    save_checkpoint(folder, {"w": torch.zeros(4)}, META)
    with open(folder / "model.safetensors", "r+b") as handle:
        handle.seek(-4, os.SEEK_END)
        handle.write(b"\x01\x02\x03\x04")
    with pytest.raises(CheckpointError, match="changed or missing"):
        load_checkpoint(folder)
    (folder / "COMPLETE.json").unlink()
    with pytest.raises(CheckpointError, match="interrupted write"):
        load_checkpoint(folder)


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch PWNED_MARKER",))


# torch's weights_only unpickler notes that a plain pickle.dump (protocol 4) is not torch.save's
# protocol 2 before it refuses the payload; the refusal is what this test checks, the notice is torch's.
@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4 in the checkpoint:UserWarning")
def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as handle:
        pickle.dump({"w": _Payload()}, handle)
    torch_style = tmp_path / "evil2.pth"
    torch.save({"w": torch.zeros(1), "x": _Payload()}, torch_style)
    for path in (evil, torch_style):
        with pytest.raises(CheckpointError, match="refused"):
            load_checkpoint(path)
    assert not (tmp_path / "PWNED_MARKER").exists()


@pytest.mark.parametrize("name", ["foreign.pth", "FOREIGN.PTH", "foreign.Ckpt", "foreign.BIN"])
def test_plain_torch_state_dict_loads_with_weights_only(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    torch.save({"state_dict": {"w": torch.ones(2)}}, path)
    state, meta = load_checkpoint(path)
    assert meta is None and state["w"].tolist() == [1.0, 1.0]


def test_invalid_metadata_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "best"
    save_checkpoint(folder, {"w": torch.zeros(1)}, META)
    meta_path = folder / "meta.json"
    bad = json.loads(meta_path.read_text())
    bad["in_channels"] = -3
    meta_path.write_text(json.dumps(bad))
    # Re-seal so only the metadata validation can fail.
    import hashlib

    files = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.iterdir()
        if p.name != "COMPLETE.json"
    }
    atomic_write_text(folder / "COMPLETE.json", json.dumps({"files": files}))
    with pytest.raises(CheckpointError, match=r"meta\.json"):
        load_checkpoint(folder)


@pytest.mark.parametrize("name", ["weights.txt", "nothing-here"])
def test_unusable_paths_say_what_was_expected(tmp_path: Path, name: str) -> None:
    target = tmp_path / name
    if name.endswith(".txt"):
        target.write_text("hello")
    with pytest.raises(CheckpointError, match="expected"):
        resolve_checkpoint(target)


def test_disk_full_on_write_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "last"
    save_checkpoint(folder, {"w": torch.zeros(1)}, META)
    import errno

    import inpaintssl.checkpoint as ckpt

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "save_file", full_disk)
    with pytest.raises(OSError, match="could not write checkpoint"):
        save_checkpoint(folder, {"w": torch.ones(1)}, META)
    assert load_checkpoint(folder)[0]["w"].item() == 0.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_a_checkpoint_has_the_permissions_a_plain_write_would_give(tmp_path: Path, umask: int) -> None:
    # mkdtemp's folder and safetensors' files are owner-only; on a shared file system a colleague
    # could not read the weights. The folder and every file follow the umask instead.
    folder = tmp_path / "best"
    previous = os.umask(umask)
    try:
        save_checkpoint(folder, {"w": torch.ones(2)}, META, tensors={"optimizer": {"m": torch.zeros(1)}})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert set(modes) == {"model.safetensors", "optimizer.safetensors", "meta.json", "COMPLETE.json"}
    assert set(modes.values()) == {0o666 & ~umask}


def _safetensors_full_disk(*args: object, **kwargs: object) -> None:
    """What ``safetensors.torch.save_file`` raises on a full disk: its own type, not an OSError."""
    from safetensors import SafetensorError

    raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_safetensors_own_disk_full_error_names_the_checkpoint_and_keeps_the_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real full disk came out as "SafetensorError: Error while serializing: I/O error: ...": not
    # an OSError, so the command line printed a traceback and exited 1, naming no checkpoint.
    import errno

    import inpaintssl.checkpoint as ckpt

    folder = tmp_path / "checkpoints" / "last"
    save_checkpoint(folder, {"w": torch.zeros(1)}, META)
    before = _tree(tmp_path)
    monkeypatch.setattr(ckpt, "save_file", _safetensors_full_disk)
    with pytest.raises(OSError) as caught:
        save_checkpoint(folder, {"w": torch.ones(1)}, META)
    assert caught.value.errno == errno.ENOSPC
    assert str(caught.value) == f"[Errno 28] could not write checkpoint {folder}: No space left on device"
    assert _tree(tmp_path) == before  # the previous checkpoint, and no temporary beside it
    assert load_checkpoint(folder)[0]["w"].item() == 0.0


def test_save_safetensors_on_a_full_disk_names_the_file_and_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from inpaintssl.checkpoint import save_safetensors

    target = tmp_path / "export" / "model.safetensors"
    save_safetensors(target, {"w": torch.zeros(2)})
    before = _tree(tmp_path)
    real_write = Path.write_bytes

    def half_then_full(self: Path, data: bytes) -> int:
        real_write(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", half_then_full)
    with pytest.raises(OSError, match=rf"^\[Errno 28\] could not write {target}: No space left on device$"):
        save_safetensors(target, {"w": torch.ones(2)})
    assert _tree(tmp_path) == before


def test_a_safetensors_error_that_is_no_write_failure_is_raised_as_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors import SafetensorError

    import inpaintssl.checkpoint as ckpt

    def refuse(*args: object, **kwargs: object) -> None:
        raise SafetensorError("Error while serializing: tensor 'w' is not contiguous")

    monkeypatch.setattr(ckpt, "save_file", refuse)
    with pytest.raises(SafetensorError, match="not contiguous"):
        save_checkpoint(tmp_path / "best", {"w": torch.ones(1)}, META)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("beside", ["complete", "missing", "incomplete", "changed"])
def test_a_stale_twin_goes_only_beside_a_complete_checkpoint(tmp_path: Path, beside: str) -> None:
    from inpaintssl.checkpoint import remove_stale_twins

    folder, twin = tmp_path / "last", tmp_path / "last.old"
    if beside != "missing":
        save_checkpoint(folder, {"w": torch.ones(1)}, META)
    save_checkpoint(twin, {"w": torch.zeros(1)}, META)
    if beside == "incomplete":
        (folder / "COMPLETE.json").unlink()
    elif beside == "changed":
        (folder / "meta.json").write_text("{}")
    (tmp_path / "notes.old").mkdir()  # not a checkpoint's twin: never touched

    removed = remove_stale_twins(tmp_path, names=["best", "last"])

    if beside == "complete":
        assert removed == [twin] and not twin.exists()
        assert load_checkpoint(folder)[0]["w"].item() == 1.0
    else:
        # The twin is the one complete checkpoint: a resume recovers it.
        assert removed == [] and twin.is_dir()
        assert load_checkpoint(folder)[0]["w"].item() == 0.0
    assert (tmp_path / "notes.old").is_dir()


@pytest.mark.parametrize(
    "marker",
    [
        b'{"files": ["model.safetensors", "meta.json"]}',  # a list: before, an AttributeError traceback
        b'{"files": null}',
        b"\xff\xfe\x00garbage",  # not UTF-8: before, a UnicodeDecodeError naming no file
        b'{"files": {}}',  # lists nothing: before, it verified as complete, checking nothing
        b'{"files": {"meta.json": 7}}',
    ],
)
def test_a_malformed_complete_marker_recovers_the_twin(tmp_path: Path, marker: bytes) -> None:
    # The folder of a half-swap whose marker is damaged: the .old twin is the checkpoint to use,
    # as with a torn marker.
    folder = tmp_path / "last"
    save_checkpoint(folder.with_name("last.old"), {"w": torch.full((1,), 7.0)}, META)
    save_checkpoint(tmp_path / "elsewhere", {"w": torch.full((1,), 8.0)}, META)
    os.replace(tmp_path / "elsewhere", folder)
    (folder / "COMPLETE.json").write_bytes(marker)
    assert resolve_checkpoint(folder) == folder.with_name("last.old")
    assert load_checkpoint(folder)[0]["w"].item() == 7.0
    os.replace(folder.with_name("last.old"), tmp_path / "elsewhere")
    with pytest.raises(CheckpointError, match=r"last/COMPLETE\.json is unreadable"):
        load_checkpoint(folder)


def _reseal(folder: Path) -> None:
    """Write ``folder``'s ``COMPLETE.json`` again for its files as they are now (a hand edit re-sealed)."""
    import hashlib

    files = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.iterdir()
        if p.name != "COMPLETE.json"
    }
    atomic_write_text(folder / "COMPLETE.json", json.dumps({"files": files}))


def test_a_checkpoints_weights_file_damaged_since_sealed_is_refused(tmp_path: Path) -> None:
    # Given directly, a checkpoint's model.safetensors was loaded as a bare file: damage that kept
    # its header valid went unnoticed, though the folder (and load_model on the file) refused it.
    from safetensors.torch import load_file

    from inpaintssl.checkpoint import load_state_dict

    folder = tmp_path / "run" / "checkpoints" / "best"
    save_checkpoint(folder, {"w": torch.ones(4)}, META)
    weights = folder / "model.safetensors"
    intact, intact_meta = load_checkpoint(weights)
    assert intact["w"].tolist() == [1.0] * 4
    flip_exponent_bits(weights)
    assert load_file(str(weights))["w"].tolist() == [0.25] * 4  # still a readable safetensors file
    for load in (load_checkpoint, load_state_dict):
        with pytest.raises(
            CheckpointError, match=rf"{folder}: files changed or missing since written: model"
        ):
            load(weights)
    # The same bytes as a bare file (no COMPLETE.json beside it) are foreign weights, taken as given.
    (tmp_path / "bare").mkdir()
    bare = tmp_path / "bare" / "model.safetensors"
    bare.write_bytes(weights.read_bytes())
    state, meta = load_checkpoint(bare)
    assert state["w"].tolist() == [0.25] * 4 and meta is None
    # Intact, the file loaded as its folder does, metadata and all.
    assert intact_meta is not None and intact_meta.class_names == ["a", "b", "c"]


def test_a_damaged_weights_file_beside_an_intact_twin_loads_the_twin_as_the_folder_does(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "last"
    save_checkpoint(folder.with_name("last.old"), {"w": torch.full((1,), 7.0)}, META)
    save_checkpoint(tmp_path / "elsewhere", {"w": torch.full((1,), 8.0)}, META)
    os.replace(tmp_path / "elsewhere", folder)
    flip_exponent_bits(folder / "model.safetensors")
    assert load_checkpoint(folder)[0]["w"].item() == 7.0
    assert load_checkpoint(folder / "model.safetensors")[0]["w"].item() == 7.0


def test_meta_json_that_is_not_utf8_is_a_checkpoint_error_naming_it(tmp_path: Path) -> None:
    from inpaintssl.checkpoint import read_checkpoint_meta

    folder = tmp_path / "best"
    save_checkpoint(folder, {"w": torch.zeros(1)}, META)
    meta_path = folder / "meta.json"
    # The same JSON re-saved as UTF-16 (with its byte order mark 0xff 0xfe), as a Windows editor may.
    meta_path.write_bytes(meta_path.read_text(encoding="utf-8").encode("utf-16"))
    expected = rf"^{meta_path}: invalid checkpoint metadata: expected UTF-8 JSON .*0xff at offset 0"
    with pytest.raises(CheckpointError, match=expected):
        read_checkpoint_meta(meta_path)
    _reseal(folder)  # so only the encoding can fail
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(folder)


def test_a_document_that_is_not_utf8_is_a_checkpoint_error_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "last"
    save_checkpoint(folder, {"w": torch.zeros(1)}, META, documents={"trainer": {"epoch": 3}})
    document = folder / "trainer.json"
    document.write_bytes(b'{"epoch": 3, "note": "caf\xe9"}')  # Latin-1 bytes, not UTF-8
    _reseal(folder)
    with pytest.raises(CheckpointError, match=rf"^{document}: expected UTF-8 JSON .*0xe9 at offset 25"):
        read_checkpoint_dir(folder)
    document.write_text('{"epoch": 3,', encoding="utf-8")  # torn JSON keeps its own wording
    _reseal(folder)
    with pytest.raises(CheckpointError, match=rf"^{document}: invalid JSON"):
        read_checkpoint_dir(folder)


def _torch_file_cut_short(tmp_path: Path, how: str) -> Path:
    state = {"w": torch.ones(64)}
    path = tmp_path / f"{how}.pt"
    if how == "empty":
        path.write_bytes(b"")
        return path
    torch.save(state, path, _use_new_zipfile_serialization=how.startswith("zip"))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2] if how.endswith("half") else raw[:-10])
    return path


@pytest.mark.parametrize("how", ["zip half", "zip less 10 bytes", "legacy half", "empty"])
def test_a_truncated_torch_file_is_called_damaged_not_unsafe(tmp_path: Path, how: str) -> None:
    # Every torch.load failure was reported as "it may carry pickled code", sending the user after
    # a security problem for an interrupted download.
    path = _torch_file_cut_short(tmp_path, how)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: cannot be read as a torch file (truncated or damaged?): ")
    assert "pickled code" not in message


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4 in the checkpoint:UserWarning")
def test_a_pickled_payload_keeps_the_pickled_code_wording(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "x": _Payload()}, evil)
    with pytest.raises(
        CheckpointError, match=rf"^{evil}: refused to load: .*may carry pickled code.*UnpicklingError"
    ):
        load_checkpoint(evil)
    assert not (tmp_path / "PWNED_MARKER").exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit's own deprecation notices
def test_a_torchscript_archive_is_named_with_what_to_pass_instead(tmp_path: Path) -> None:
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    archive = tmp_path / "model.pt"
    torch.jit.save(scripted, str(archive))
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(archive)
    message = str(caught.value)
    assert message.startswith(f"{archive}: a TorchScript archive")
    assert "export_model(format='safetensors')" in message and "run folder" in message
    assert "pickled code" not in message and "weights_only" not in message


def test_a_checkpoint_folder_given_as_the_working_folder_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "." has no name: finding its .old twin failed in pathlib ("PosixPath('.') has an empty name").
    folder = tmp_path / "run" / "checkpoints" / "best"
    save_checkpoint(folder, {"w": torch.full((2,), 3.0)}, META)
    monkeypatch.chdir(folder)
    assert resolve_checkpoint(".") == folder
    assert load_checkpoint(".")[0]["w"].tolist() == [3.0, 3.0]
    with pytest.raises(CheckpointError, match=r"^the checkpoint path is empty; expected a run folder"):
        load_checkpoint("")


def test_a_home_relative_path_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # load_model, predict and a config's transfer.pretrained expand "~"; load_checkpoint took it literally.
    from inpaintssl.checkpoint import load_state_dict

    monkeypatch.setenv("HOME", str(tmp_path))
    save_checkpoint(tmp_path / "pre" / "checkpoints" / "best", {"w": torch.full((2,), 3.0)}, META)
    assert resolve_checkpoint("~/pre") == tmp_path / "pre" / "checkpoints" / "best"
    assert load_checkpoint("~/pre")[0]["w"].tolist() == [3.0, 3.0]
    assert load_state_dict(Path("~") / "pre" / "checkpoints" / "best" / "model.safetensors")[
        "w"
    ].tolist() == [
        3.0,
        3.0,
    ]
