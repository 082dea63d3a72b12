"""NIfTI test helpers shared across test packages (pytest puts this folder on ``sys.path``)."""

from __future__ import annotations

from typing import Any

import nibabel as nib
from nibabel.orientations import axcodes2ornt, ornt_transform


def stored_as(image: Any, codes: str) -> Any:
    """``image`` (a nibabel image) stored in the axis order ``codes``, by nibabel's own reorientation.

    Every voxel keeps its world position: the result is the same scan, as another converter or
    protocol might have stored it. It is the independent reference for the library's own reorienting.
    """
    ornt = ornt_transform(axcodes2ornt(nib.aff2axcodes(image.affine)), axcodes2ornt(tuple(codes)))
    return image.as_reoriented(ornt)
