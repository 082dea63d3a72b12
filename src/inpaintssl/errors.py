"""The error a layer raises about data, defined below every package so any layer can catch it.

:class:`DataError` is raised by the data readers and datasets (:mod:`inpaintssl.data`, which
re-exports it) and caught by the CLI, which must not import the data package (nor, for a
``--help``, PyTorch) to tell a user's bad file from a bug. The other user-facing errors live in
their own helper modules: :class:`inpaintssl.config.ConfigError`,
:class:`inpaintssl.checkpoint.CheckpointError` and :class:`inpaintssl.registry.PluginLoadError`.

Example:
    >>> from inpaintssl.errors import DataError
    >>> issubclass(DataError, ValueError)
    True
"""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """Malformed input data; the message names the file (or array), the field, and what was found."""

    __module__ = "inpaintssl.data.base"  # where users have always imported and caught it from
