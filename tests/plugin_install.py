"""Install a plugin package into a folder of its own and run Python processes that see it.

``pip install --target`` puts the package in a fresh folder, and each subprocess gets that folder
first on its ``PYTHONPATH``: entry points are read from installed metadata as a user's process
reads them, while the shared environment is never changed, so parallel test workers cannot
uninstall a plugin under each other. Used by ``test_plugin_example.py`` (the shipped example
plugin) and ``test_plugin_docs_code.py`` (the code docs/plugins.rst gives).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(
    *args: str, cwd: Path = ROOT, timeout: float = 600, site: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python *args`` in a fresh process, with ``site`` first on its path."""
    env = dict(os.environ)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class Installed:
    """A plugin package's sources and the folder it is installed into."""

    source: Path
    site: Path

    def run(self, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
        """Run ``python *args`` in a process that sees the installed package."""
        return run(*args, cwd=cwd, site=self.site)


def pip_install(source: Path, site: Path) -> Installed:
    """Install the package at ``source`` into ``site`` offline, without its dependencies."""
    # Offline: build with the setuptools already installed; otherwise pip must fetch it.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    args = ("install", "--no-deps", "--no-index", *isolation, "--target", str(site), str(source))
    result = run("-m", "pip", *args, "--disable-pip-version-check", "--no-input")
    assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return Installed(source, site)
