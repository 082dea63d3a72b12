"""Optional dependencies: import one where it is needed, or fail naming the extra that installs it.

nibabel, pydicom, nilearn, MONAI, smp, ONNX, Ray and submitit come with ``inpaintssl``'s pip
extras, not with the package itself. Each is imported through :func:`import_optional` (or located
with :func:`find_optional`) at the moment a feature needs it, so ``import inpaintssl`` works
without any of them, and a missing one always reads the same way: what needed it, which package
is missing, and the ``pip install`` command that brings it. This module imports nothing from
inpaintssl, so every package, leaf packages included, may use it.

Example:
    >>> import_optional("math", extra="demo", purpose="the example").floor(2.5)
    2
    >>> import_optional("no_such_package", extra="demo", purpose="the example")
    Traceback (most recent call last):
    ...
    ImportError: the example needs the optional package 'no_such_package': pip install "inpaintssl[demo]"
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

__all__ = ["find_optional", "import_optional", "install_command", "missing_message"]


def install_command(extra: str) -> str:
    """The command that installs ``inpaintssl`` with ``extra``.

    Double quotes, so it pastes unchanged into POSIX shells, PowerShell and Windows ``cmd``
    (which passes single quotes on to pip).

    Example:
        >>> install_command("onnx")
        'pip install "inpaintssl[onnx]"'
    """
    return f'pip install "inpaintssl[{extra}]"'


def missing_message(module: str, *, extra: str, purpose: str, cause: ImportError | None = None) -> str:
    """What an error about the optional package of ``module`` says.

    Args:
        module: The module asked for (its top-level package is the one named).
        extra: The ``inpaintssl`` extra that installs it.
        purpose: What needs it, as the start of a sentence (``"reading DICOM"``).
        cause: The failed import. Shown unless it says only that the package itself is absent:
            an installed package whose own imports fail (smp without timm, a broken build) is
            not fixed by the same command alone.

    Example:
        >>> print(missing_message("pydicom", extra="dicom", purpose="reading DICOM"))
        reading DICOM needs the optional package 'pydicom': pip install "inpaintssl[dicom]"
    """
    package = module.partition(".")[0]
    absent = cause is None or (isinstance(cause, ModuleNotFoundError) and cause.name == package)
    detail = "" if absent else f" ({type(cause).__name__}: {cause})"
    return f"{purpose} needs the optional package {package!r}{detail}: {install_command(extra)}"


def import_optional(
    module: str,
    *,
    extra: str,
    purpose: str,
    error: Callable[[str], Exception] = ImportError,
) -> ModuleType:
    """Import an optional dependency, or raise ``error`` naming the extra that installs it.

    Args:
        module: The module to import (dotted names allowed, e.g. ``"monai.networks.nets"``).
        extra: The ``inpaintssl`` extra that installs it.
        purpose: What needs it, as the start of a sentence (``"reading DICOM"``).
        error: The exception type raised, built from the message (a command-line feature raises
            :class:`~inpaintssl.config.ConfigError`, which the CLI reports without a traceback).

    Returns:
        The imported module.

    Raises:
        ImportError: (or ``error``) The import failed; the message is :func:`missing_message`'s.

    Example:
        >>> import_optional("json", extra="demo", purpose="the example").dumps([1])
        '[1]'
        >>> import_optional("no_such", extra="ray", purpose="--executor ray", error=RuntimeError)
        Traceback (most recent call last):
        ...
        RuntimeError: --executor ray needs the optional package 'no_such': pip install "inpaintssl[ray]"
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise error(missing_message(module, extra=extra, purpose=purpose, cause=exc)) from exc


def find_optional(
    package: str,
    *,
    extra: str,
    purpose: str,
    error: Callable[[str], Exception] = ImportError,
) -> Path:
    """The folder of an installed optional package, found without importing it.

    For data files shipped inside another package's wheel, where importing the package (and all
    it imports) would be wasted time.

    Args:
        package: A top-level package name.
        extra: The ``inpaintssl`` extra that installs it.
        purpose: What needs it, as the start of a sentence.
        error: The exception type raised, built from the message.

    Raises:
        ImportError: (or ``error``) The package is not installed.

    Example:
        >>> find_optional("json", extra="demo", purpose="the example").name
        'json'
    """
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise error(missing_message(package, extra=extra, purpose=purpose))
    return Path(spec.origin).parent
