"""What every benchmark record says about itself: when it ran, the command that reruns it, the machine.

Each ``bench_*.py`` adds :func:`provenance` to its JSON record: ``date`` (UTC, ISO 8601), ``cwd``
(the folder it ran in, relative to the repository where it lies inside it), ``command`` (the script
and its arguments, to rerun it from the repository's root: with a ``cd`` to ``cwd`` first where that
is elsewhere, since relative paths among the arguments are relative to it), ``invoked_by`` (the
process's own command line, when the script's ``main(argv)`` was called by another script such as
``run_all.py``) and ``host`` (processor model, core and thread counts, GPU and driver, versions).
:func:`write_record` writes a record atomically, so a run stopped halfway never leaves half a file.
:func:`at_least` is the ``type`` of the scripts' counting options (``--repeats``, ``--epochs``), so
that a count too small to measure anything is refused before any work, naming the option.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from inpaintssl.atomic import atomic_write_text

REPO = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``), or the platform's machine name."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        return str(__import__(module).__version__)
    except Exception:  # noqa: BLE001 - absent or broken: the record says so
        return None


def _gpu_driver() -> str | None:
    if not torch.cuda.is_available() or shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


def host() -> dict[str, Any]:
    """The machine and software a record was measured on."""
    cuda = torch.cuda.is_available()
    return {
        "node": platform.node(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "gpu_driver": _gpu_driver(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "numba": _version("numba"),
        "monai": _version("monai"),
    }


def working_directory(cwd: str | Path | None = None) -> str:
    """``cwd`` (default: this process's) relative to the repository, or absolute where outside it.

    Example:
        >>> working_directory(REPO / "benchmarks"), working_directory(REPO)
        ('benchmarks', '.')
    """
    path = Path(cwd if cwd is not None else Path.cwd()).resolve()
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def command(script: str | Path, argv: Sequence[str] | None, *, cwd: str | Path | None = None) -> str:
    """The command that reruns ``script`` with ``argv`` (``None``: this process's own arguments).

    It is run from the repository's root. A relative path among the arguments is relative to the
    folder the script ran in (``cwd``, default this process's), so where that is not the root the
    command first changes to it and names the script from there.

    Example:
        >>> script = REPO / "benchmarks" / "bench_training.py"
        >>> command(script, ["--quick", "--out", "a b.json"], cwd=REPO)
        "python benchmarks/bench_training.py --quick --out 'a b.json'"
        >>> command(script, ["--out", "results/a.json"], cwd=REPO / "benchmarks")
        'cd benchmarks && python bench_training.py --out results/a.json'
    """
    args = sys.argv[1:] if argv is None else list(argv)
    folder = Path(cwd if cwd is not None else Path.cwd()).resolve()
    path = Path(script).resolve()
    where = working_directory(folder)
    # Inside the repository both paths stay relative, so the command reruns in another clone too.
    inside = not Path(where).is_absolute()
    shown = os.path.relpath(path, folder) if inside and path.is_relative_to(REPO) else str(path)
    run = shlex.join(["python", shown, *args])
    return run if where == "." else f"cd {shlex.quote(where)} && {run}"


def provenance(script: str | Path, argv: Sequence[str] | None) -> dict[str, Any]:
    """``date``, ``cwd``, ``command``, ``invoked_by`` (only when called from another script) and ``host``."""
    found: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cwd": working_directory(),
        "command": command(script, argv),
    }
    if argv is not None:
        found["invoked_by"] = shlex.join(["python", *sys.argv])
    found["host"] = host()
    return found


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer of at least ``minimum``, or an error naming both.

    argparse puts the option's name before the message: ``argument --repeats: expected an integer
    >= 1, got '0'``.

    Example:
        >>> at_least(2)("3")
        3
        >>> at_least(1)("0")
        Traceback (most recent call last):
        argparse.ArgumentTypeError: expected an integer >= 1, got '0'
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def write_record(path: str | Path, record: dict[str, Any], *, indent: int = 2) -> None:
    """Write ``record`` as JSON to ``path``, atomically (parents created)."""
    atomic_write_text(Path(path), json.dumps(record, indent=indent, default=str) + "\n")


def emit(record: dict[str, Any], out: str | Path | None) -> dict[str, Any]:
    """Print ``record`` as JSON, write it to ``out`` when one is given, and return it.

    The end of a benchmark's ``main``: its caller (``run_all.py``) takes the returned record.
    """
    if out:
        write_record(out, record)
    print(json.dumps(record, indent=2, default=str))
    return record
