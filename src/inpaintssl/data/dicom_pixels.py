"""Compressed DICOM pixel data: whether a file is compressed, and what to install where nothing decodes it.

Clinical archives often export series compressed: JPEG Lossless, JPEG-LS, JPEG 2000, RLE
(DICOM PS3.5 A.4). pydicom decodes RLE and Deflate itself,
JPEG 2000 and baseline JPEG through Pillow where it is installed, and the others only through a
plugin. The ``dicom-compressed`` extra installs GDCM (PyPI's ``python-gdcm``, BSD-licensed; the
package named ``gdcm`` there is an unrelated one), which decodes every JPEG, JPEG-LS and JPEG 2000
transfer syntax. High-Throughput JPEG 2000 (HTJ2K), which GDCM does not decode, needs the
``dicom-htj2k`` extra: pydicom 3 with pylibjpeg and pylibjpeg-openjpeg.

A file that no installed decoder reads is refused by the readers with :func:`missing_decoder`'s
words: the file, its transfer syntax and what to install. A decoder's own failure on damaged data
keeps the decoder's words.

Example:
    >>> from pydicom.uid import JPEG2000Lossless
    >>> "dicom-compressed" in what_decodes(JPEG2000Lossless)
    True
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "COMPRESSED_EXTRA",
    "HTJ2K_EXTRA",
    "is_compressed",
    "missing_decoder",
    "transfer_syntax",
    "what_decodes",
]

COMPRESSED_EXTRA = "dicom-compressed"
"""The extra that installs a decoder of every JPEG, JPEG-LS and JPEG 2000 transfer syntax (GDCM)."""
HTJ2K_EXTRA = "dicom-htj2k"
"""The extra that installs a decoder of the High-Throughput JPEG 2000 syntaxes (pylibjpeg-openjpeg)."""

_GDCM_DECODES = frozenset(
    {
        "1.2.840.10008.1.2.4.50",  # JPEG Baseline (8-bit)
        "1.2.840.10008.1.2.4.51",  # JPEG Extended (12-bit)
        "1.2.840.10008.1.2.4.57",  # JPEG Lossless
        "1.2.840.10008.1.2.4.70",  # JPEG Lossless, first-order prediction (SV1)
        "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
        "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 (lossless only)
        "1.2.840.10008.1.2.4.91",  # JPEG 2000
        "1.2.840.10008.1.2.4.92",  # JPEG 2000 Part 2 multi-component (lossless only)
        "1.2.840.10008.1.2.4.93",  # JPEG 2000 Part 2 multi-component
    }
)
_HTJ2K = frozenset({"1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"})


def transfer_syntax(ds: Any) -> Any | None:
    """The file's ``TransferSyntaxUID`` (a pydicom ``UID``), or ``None`` where its file meta states none."""
    meta = getattr(ds, "file_meta", None)
    return None if meta is None else getattr(meta, "TransferSyntaxUID", None)


def is_compressed(ds: Any) -> bool:
    """Whether ``ds``'s pixel data is stored compressed (encapsulated: JPEG, JPEG-LS, JPEG 2000, RLE, ...)."""
    syntax = transfer_syntax(ds)
    return syntax is not None and bool(getattr(syntax, "is_compressed", False))


def what_decodes(syntax: str) -> str:
    """What to install so that pydicom decodes pixel data of transfer syntax ``syntax``.

    Example:
        >>> what_decodes("1.2.840.10008.1.2.4.201")
        'pip install "inpaintssl[dicom-htj2k]" (pylibjpeg and pylibjpeg-openjpeg, with pydicom >= 3)'
    """
    if str(syntax) in _GDCM_DECODES:
        return f'pip install "inpaintssl[{COMPRESSED_EXTRA}]" (GDCM, PyPI\'s python-gdcm)'
    if str(syntax) in _HTJ2K:
        return (
            f'pip install "inpaintssl[{HTJ2K_EXTRA}]" (pylibjpeg and pylibjpeg-openjpeg, with pydicom >= 3)'
        )
    return "no decoder pydicom knows reads it; convert the series to an uncompressed transfer syntax"


def missing_decoder(ds: Any) -> str | None:
    """Why no installed decoder reads ``ds``'s pixel data, and what to do; ``None`` where one does.

    Asked after a decode failed, to tell a missing plugin from damaged data: pydicom 3's decoders
    (``pydicom.pixels.get_decoder``) or pydicom 2's pixel data handlers say whether a plugin for
    the transfer syntax is installed and usable.
    """
    syntax = transfer_syntax(ds)
    if syntax is None or _decodable(syntax):
        return None
    return (
        f"its pixel data is compressed as {getattr(syntax, 'name', '') or 'an unknown transfer syntax'} "
        f"(TransferSyntaxUID {syntax}), and no installed decoder reads it: {what_decodes(syntax)} "
        "(or convert the series uncompressed first: gdcmconv --raw, or DCMTK's dcmdjpeg)"
    )


def _decodable(syntax: Any) -> bool:
    try:
        from pydicom.pixels.decoders.base import get_decoder
    except ImportError:  # pydicom 2: its pixel data handlers
        import pydicom

        return any(
            handler.supports_transfer_syntax(syntax) and handler.is_available()
            for handler in pydicom.config.pixel_data_handlers
        )
    try:
        return bool(get_decoder(syntax).is_available)
    except NotImplementedError:  # pydicom knows no decoder of this syntax at all
        return False
