"""The registry's "same name as a built-in" warning in the command line's form (audit item 4a).

The warning points at the code that asked for the name, outside the package; under the
``inpaintssl`` command that is Python's ``runpy``, so the formatter must know it by its category.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

from inpaintssl.registry import ShadowedPluginWarning
from inpaintssl.warning_format import command_warnings

SCRIPT = """
    from inpaintssl.registry import BACKBONES
    from inpaintssl.warning_format import command_warnings

    with command_warnings("pretrain"):
        BACKBONES.get("unet2d")
"""


def test_a_plugin_shadowing_a_builtin_is_reported_in_the_command_lines_form(tmp_path: Path) -> None:
    dist = tmp_path / "shadowing_dist-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: shadowing_dist\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[inpaintssl.backbones]\nunet2d = shadowing_module:Net\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT)], capture_output=True, text=True, env=env, check=True
    )
    assert done.stderr.splitlines() == [
        "inpaintssl pretrain: warning: registry 'backbones': plugin 'unet2d' from shadowing_dist 1.0 "
        "(shadowing_module:Net) has the same name as a built-in; the built-in is used"
    ]


def test_the_library_categories_keep_pythons_form_outside_a_command() -> None:
    assert issubclass(ShadowedPluginWarning, UserWarning)
    plain = warnings.formatwarning("clash", ShadowedPluginWarning, "/home/me/train.py", 3)
    assert plain.startswith("/home/me/train.py:3: ShadowedPluginWarning: clash")
    with command_warnings("finetune"):
        ours = warnings.formatwarning("clash", ShadowedPluginWarning, "/home/me/train.py", 3)
        other = warnings.formatwarning("clash", UserWarning, "/home/me/train.py", 3)
    assert ours == "inpaintssl finetune: warning: clash\n"
    assert other.startswith("/home/me/train.py:3: UserWarning: clash")
