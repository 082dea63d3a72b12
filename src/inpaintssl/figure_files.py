"""Figure files with the same bytes for the same figure: no time of writing inside, replaced atomically.

Every figure the library writes goes through :func:`write_figure`: the paper's result figures
(Figures 3-7, sec. 3, and A1, App. B; :mod:`inpaintssl.analysis.figures`), a run's learning curves
(App. A.1) and reconstruction panels (sec. 2.4; :mod:`inpaintssl.training.diagnostics`), and the
corruption figure (Figure 1, sec. 2.4; :mod:`inpaintssl.corruption.figure`). A study's report drawn
twice, or on two machines with the same library versions, then differs only where its numbers do,
and a file compared or hashed across runs changes only when the figure does.

matplotlib would otherwise stamp PDF, SVG and PostScript files with the time of writing and give
SVG elements ids salted with a random UUID. :func:`render_figure` leaves the dates out, salts the
SVG ids with a constant, and refuses the two formats it cannot make reproducible (``svgz``, whose
gzip header holds the time, and ``pgf``, which runs LaTeX). PNG and the other raster formats carry
no date; the ``Software`` entry naming matplotlib's version stays, since a different version may
draw different pixels anyway.

The figure is drawn in memory first and then written with :func:`inpaintssl.atomic.atomic_write_bytes`:
a figure that fails to draw (a bad label, an unknown format) leaves no file, and a killed writer
leaves the previous file whole.

Example:
    >>> import tempfile, pathlib
    >>> from matplotlib.figure import Figure
    >>> figure = Figure(figsize=(2, 2))
    >>> _ = figure.add_subplot().plot([0.0, 1.0, 0.5])
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> first = write_figure(figure, folder / "a.pdf").read_bytes()
    >>> first == write_figure(figure, folder / "b.pdf").read_bytes()
    True
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from inpaintssl.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["figure_format", "render_figure", "write_figure"]

_UNDATED: Mapping[str, Mapping[str, None]] = MappingProxyType(
    {"pdf": MappingProxyType({"CreationDate": None}), "svg": MappingProxyType({"Date": None})}
)
"""Per format, the metadata matplotlib fills with the time of writing, set to ``None`` (left out)."""

_PS_DATE = re.compile(rb"^%%CreationDate:[^\n]*\n", re.MULTILINE)
"""PostScript's date comment: matplotlib takes no metadata to drop it, so it is cut from the output."""

_REFUSED: Mapping[str, str] = MappingProxyType(
    {
        "svgz": "its gzip header holds the time of writing; write 'svg' and compress it yourself",
        "pgf": "it is LaTeX code that needs a TeX installation to draw; write 'pdf' or 'svg'",
    }
)

_SVG_SALT = "inpaintssl"
"""Salt of the SVG element ids (``svg.hashsalt``); any constant gives the same ids for the same figure."""


def figure_format(path: str | Path, format: str | None = None) -> str:
    """The image format a figure written to ``path`` gets: ``format``, else the suffix, lowercased.

    Args:
        path: The file to write.
        format: A format name such as ``"png"``; ``None`` takes it from ``path``'s suffix.

    Returns:
        The format name, lowercase and without a dot.

    Raises:
        ValueError: ``format`` is ``None`` and ``path`` has no suffix.

    Example:
        >>> figure_format("out/curve.PNG"), figure_format("out/panel.tmp", "pdf")
        ('png', 'pdf')
    """
    if format is not None:
        return format.lower().lstrip(".")
    suffix = Path(path).suffix
    if not suffix:
        raise ValueError(f"path {str(path)!r} has no suffix to pick the image format from (e.g. '.png')")
    return suffix[1:].lower()


def render_figure(figure: Figure, format: str, *, dpi: float | None = None) -> bytes:
    """``figure`` drawn as ``format``, with no time of writing in the bytes.

    Args:
        figure: A matplotlib figure (any canvas; ``savefig`` picks the backend for ``format``).
        format: An image format matplotlib writes (``png``, ``pdf``, ``svg``, ``eps``, ``jpg``, ...).
        dpi: Resolution of raster output; ``None`` uses the figure's own ``dpi``, not the user's
            ``savefig.dpi`` setting, so the same figure gives the same pixels on any machine.

    Returns:
        The file's content.

    Raises:
        ValueError: ``format`` is unknown to matplotlib, or one whose bytes cannot be made
            reproducible (``svgz``, ``pgf``; the message says what to write instead).

    Example:
        >>> from matplotlib.figure import Figure
        >>> figure = Figure(figsize=(1, 1))
        >>> b"Date" in render_figure(figure, "svg"), render_figure(figure, "png")[:4]
        (False, b'\\x89PNG')
    """
    # A suffix as Path gives it (".png") names the same format as "png".
    format = format.lower().removeprefix(".")
    if format in _REFUSED:
        raise ValueError(f"cannot write a figure as {format!r} reproducibly: {_REFUSED[format]}")
    buffer = io.BytesIO()
    metadata = _UNDATED.get(format)
    # Some backends (pgf, PostScript) take no metadata argument at all: pass it only where it is used.
    options: dict[str, Any] = {} if metadata is None else {"metadata": dict(metadata)}
    resolution: float | str = "figure" if dpi is None else dpi
    if format == "svg":
        # The salt is a global rc setting: set it only for this call and put the user's value back.
        from matplotlib import rc_context

        with rc_context({"svg.hashsalt": _SVG_SALT}):
            figure.savefig(buffer, format=format, dpi=resolution, **options)
    else:
        figure.savefig(buffer, format=format, dpi=resolution, **options)
    data = buffer.getvalue()
    if format in {"ps", "eps"}:
        data = _PS_DATE.sub(b"", data, count=1)
    return data


def write_figure(
    figure: Figure, path: str | Path, *, format: str | None = None, dpi: float | None = None
) -> Path:
    """Write ``figure`` to ``path``: reproducible bytes (:func:`render_figure`), replaced atomically.

    Args:
        figure: A matplotlib figure.
        path: The file to write; missing parent folders are created.
        format: Image format; ``None`` (default) takes it from ``path``'s suffix.
        dpi: Resolution of raster output; ``None`` uses the figure's own.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: No format (``format`` is ``None`` and ``path`` has no suffix), or one that
            cannot be written (see :func:`render_figure`); no file or folder is created.
        OSError: Writing failed (e.g. ``ENOSPC``); an earlier file at ``path`` is left as it was.

    Example:
        >>> import tempfile, pathlib
        >>> from matplotlib.figure import Figure
        >>> out = write_figure(Figure(figsize=(1, 1)), pathlib.Path(tempfile.mkdtemp()) / "f" / "x.png")
        >>> out.name, out.read_bytes()[:4]
        ('x.png', b'\\x89PNG')
    """
    path = Path(path)
    data = render_figure(figure, figure_format(path, format), dpi=dpi)
    atomic_write_bytes(path, data)
    return path
