"""The run-folder layout is named in one module: every other module goes through RunFolder."""

from __future__ import annotations

import ast
from pathlib import Path

import inpaintssl
from inpaintssl.checkpoint import CheckpointMeta, resolve_checkpoint, save_checkpoint
from inpaintssl.layout import RunFolder
from inpaintssl.training.results import PretrainResult

PACKAGE = Path(inpaintssl.__file__).parent
LAYOUT_MODULE = PACKAGE / "layout.py"


def _docstring_nodes(tree: ast.AST) -> set[int]:
    """ids of the string constants that are module, class or function docstrings."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def layout_literals(source: str) -> list[tuple[int, str]]:
    """``(line, name)`` of every string constant (outside docstrings) that is a run-folder name."""
    tree = ast.parse(source)
    docstrings = _docstring_nodes(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in RunFolder.NAMES
        and id(node) not in docstrings
    ]


def test_the_scanner_finds_a_spelled_name_and_ignores_docstrings() -> None:
    source = (
        '"""Writes config.yaml."""\n\n'
        'def f(run):\n    """Reads metrics.csv."""\n    return run / "splits.json"\n'
    )
    assert layout_literals(source) == [(5, "splits.json")]
    assert layout_literals('path = run / f"{x}" / "checkpoints" / "best"\n') == [(1, "checkpoints")]


def test_no_module_outside_the_layout_spells_a_run_folder_name() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == LAYOUT_MODULE:
            continue
        for line, name in layout_literals(path.read_text(encoding="utf-8")):
            offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {name!r}")
    assert not offenders, "use inpaintssl.layout.RunFolder instead of spelling:\n" + "\n".join(offenders)


def test_the_layout_lists_every_name_it_defines_once() -> None:
    constants = {
        key: value for key, value in vars(RunFolder).items() if key.isupper() and isinstance(value, str)
    }
    assert sorted(constants.values()) == sorted(RunFolder.NAMES)
    assert len(set(RunFolder.NAMES)) == len(RunFolder.NAMES)


def test_paths_sit_where_the_documented_layout_puts_them(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    assert run.config == tmp_path / "config.yaml"
    assert run.manifest == tmp_path / "manifest.json"
    assert run.splits == tmp_path / "splits.json"
    assert run.metrics_csv == tmp_path / "metrics.csv"
    assert run.learning_curve == tmp_path / "learning_curve.png"
    assert run.best == tmp_path / "checkpoints" / "best" == run.checkpoint("best")
    assert run.last == tmp_path / "checkpoints" / "last" == run.checkpoint("last")
    assert run.tensorboard == tmp_path / "tensorboard"
    assert run.reconstructions == tmp_path / "reconstructions"
    assert run.val_inpainting == tmp_path / "val_inpainting.csv"
    assert run.test_metrics == tmp_path / "test_metrics.csv"
    assert run.eval_csv("val") == tmp_path / "eval_val.csv"
    assert run.lock == tmp_path / RunFolder.LOCK == tmp_path / ".inpaintssl.lock"
    assert RunFolder(str(tmp_path)).root == tmp_path  # type: ignore[arg-type]


def test_of_checkpoint_finds_the_run_only_for_a_checkpoint_inside_one(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    meta = CheckpointMeta(kind="pretrain", backbone="unet2d", in_channels=1, out_channels=1)
    save_checkpoint(run.best, {}, meta)
    assert RunFolder.of_checkpoint(run.best) == run
    assert RunFolder.of_checkpoint(run.best / "model.safetensors") == run
    assert RunFolder.of_checkpoint(tmp_path / "elsewhere" / "best") is None


def test_of_checkpoint_follows_a_link_to_a_checkpoint(tmp_path: Path) -> None:
    # A "current model" link: predict and evaluate read the run's preprocessing through it.
    run = RunFolder(tmp_path / "runs" / "ft")
    run.best.mkdir(parents=True)
    (tmp_path / "current").symlink_to(run.best, target_is_directory=True)
    found = RunFolder.of_checkpoint(tmp_path / "current")
    assert found is not None and found.root.resolve() == run.root.resolve()
    assert RunFolder.of_checkpoint(tmp_path / "runs") is None


def test_readers_and_writers_agree_on_the_layout(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    save_checkpoint(
        run.last, {}, CheckpointMeta(kind="pretrain", backbone="unet2d", in_channels=1, out_channels=1)
    )
    assert resolve_checkpoint(run.root, which="last") == run.last
    result = PretrainResult(
        run_dir=run.root, best_val_loss=1.0, best_epoch=0, epochs_run=1, stopped_early=False, history=[]
    )
    assert result.checkpoint == run.best and result.run_folder == run


def test_the_layout_module_imports_nothing_from_the_package() -> None:
    # checkpoint.py and data/ sit below training and import the layout: it must stay a leaf.
    tree = ast.parse(LAYOUT_MODULE.read_text(encoding="utf-8"))
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)] + [
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    ]
    assert not [name for name in imported if name.split(".")[0] == "inpaintssl"]
