"""The library's warnings point at the user's line, and one about a call shows on every call.

A warning about one call's input or outcome goes through
:func:`~inpaintssl.warning_format.warn_each_time`: Python's once-per-line memory would hide it the
second time a notebook cell runs, and a fixed ``stacklevel`` points into the library as soon as a
call path gains a frame. The source scan keeps new ``warnings.warn(..., stacklevel=<int>)`` calls
out, bar the allow-listed ones.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import inpaintssl
from inpaintssl.warning_format import command_warnings, warn_each_time

SOURCE = Path(inpaintssl.__file__).parent

ALLOWED_FIXED_LEVELS = {
    ("models/cpu_convolution.py", "set_cpu_weight_gradient"): (
        "a DeprecationWarning of a public function the user calls directly, so stacklevel=2 is the "
        "caller's line; a deprecation is meant to show once per calling line, as Python does"
    ),
}
"""``(file under src/inpaintssl, enclosing function)`` -> why its integer ``stacklevel`` stays."""


def _fixed_level_warnings() -> set[tuple[str, str]]:
    """Each ``warnings.warn`` call with an integer literal ``stacklevel``, as (file, function)."""
    found: set[tuple[str, str]] = set()
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "warn"
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "warnings"
                    and any(
                        k.arg == "stacklevel"
                        and isinstance(k.value, ast.Constant)
                        and isinstance(k.value.value, int)
                        for k in node.keywords
                    )
                ):
                    found.add((path.relative_to(SOURCE).as_posix(), function.name))
    return found


def test_no_library_warning_has_a_fixed_stacklevel_but_the_allowed_ones() -> None:
    found = _fixed_level_warnings()
    assert found - set(ALLOWED_FIXED_LEVELS) == set(), "use warn_each_time (or caller_stacklevel())"
    # An entry whose call is gone would let a new one of the same function in unremarked.
    assert set(ALLOWED_FIXED_LEVELS) <= found


def _warn_careful() -> None:
    warn_each_time("careful", UserWarning)


def test_a_per_call_warning_prints_in_the_command_form_each_time() -> None:
    # It points at the caller (here this file, under the command line Python's runpy), outside
    # the package, with Python's own category: still the library's, so the command's form.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        for _ in range(2):
            _warn_careful()
    assert [w.filename for w in caught] == [__file__] * 2
    with command_warnings("predict"):
        shown = [warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught]
        # Python's own UserWarning raised here, not through warn_each_time, is no library warning.
        other = warnings.formatwarning(UserWarning("careful"), UserWarning, __file__, 1)
    assert shown == ["inpaintssl predict: warning: careful\n"] * 2
    assert other.startswith(f"{__file__}:1: UserWarning: careful")


def test_a_plugin_package_named_like_the_library_keeps_pythons_form() -> None:
    # A plugin installed beside the package as inpaintssl_<name> (the naming docs/plugins.rst
    # suggests) shares the package folder's path as a prefix: its warnings lost file and line.
    package = Path(inpaintssl.__file__).parent
    plugin = f"{package}_pixel_shuffle{os.sep}__init__.py"
    inside = str(package / "corruption" / "masks.py")
    with command_warnings("pretrain"):
        shown = warnings.formatwarning(UserWarning("odd shuffle"), UserWarning, plugin, 3)
        library = warnings.formatwarning(UserWarning("odd mask"), UserWarning, inside, 3)
    assert shown.startswith(f"{plugin}:3: UserWarning: odd shuffle")
    assert library == "inpaintssl pretrain: warning: odd mask\n"


SCRIPT = """
from inpaintssl.warning_format import warn_each_time

for _ in range(2):
    warn_each_time("checked twice", UserWarning)
print("done")
"""


@pytest.mark.parametrize("way", ["-m", "-c"])
def test_a_per_call_warning_from_python_m_or_c(tmp_path: Path, way: str) -> None:
    # Python asked the loader of __main__ for its source by the name __main__, and let its error
    # out: pkg.mod's loader (`python -m pkg.mod`) and the built-in one (`python -c`) refuse it,
    # and that ImportError ended the script.
    package = tmp_path / "userpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "script.py").write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, "-W", "default", way, "userpkg.script" if way == "-m" else SCRIPT],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "done\n"), done.stderr
    where = f"{package / 'script.py' if way == '-m' else '<string>'}:5: UserWarning: checked twice"
    assert [line for line in done.stderr.splitlines() if line.endswith(": checked twice")] == [where, where]


def test_the_experiments_deprecations_point_at_the_importing_line() -> None:
    # Python's default filters show a DeprecationWarning only where it points at __main__: one
    # pointing at the shim's own lines was never shown to a script.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import inpaintssl.experiments.runner as old

        from inpaintssl.experiments import run_study  # noqa: F401

        assert old.run_study is not None
    said = {(w.filename, str(w.message).split(" ")[0]) for w in caught if w.category is DeprecationWarning}
    assert said == {
        (__file__, "inpaintssl.experiments.run_study"),
        (__file__, "inpaintssl.experiments.runner.run_study"),
    } | ({(__file__, "inpaintssl.experiments.runner")} if len(said) == 3 else set())
