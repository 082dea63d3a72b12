"""Segmentation and clinical metrics (paper sec. 2.5.2, 2.7): arrays or tensors in, NumPy out.

Example:
    >>> import numpy as np
    >>> from inpaintssl.metrics import dice_per_class, percent_error
    >>> dice_per_class(np.array([[1, 1, 0]]), np.array([[1, 0, 0]]))
    array([0.66666667])
    >>> float(percent_error(110.0, 100.0))
    10.0
"""

from inpaintssl.metrics.agreement import BlandAltman, bland_altman, icc
from inpaintssl.metrics.clinical import (
    MEASUREMENT_SCALES,
    MEASUREMENT_UNITS,
    ClinicalComparison,
    absolute_error,
    clinical_errors,
    cross_sectional_area,
    mean_hu,
    mean_t2,
    percent_error,
    tissue_volume,
)
from inpaintssl.metrics.mese import mese_t2
from inpaintssl.metrics.qdess import T1_DEFAULTS_MS, T1_OTHER_MS, qdess_signal_ratio, qdess_t2
from inpaintssl.metrics.segmentation import dice_per_class, dice_per_image

__all__ = [
    "MEASUREMENT_SCALES",
    "MEASUREMENT_UNITS",
    "T1_DEFAULTS_MS",
    "T1_OTHER_MS",
    "BlandAltman",
    "ClinicalComparison",
    "absolute_error",
    "bland_altman",
    "clinical_errors",
    "cross_sectional_area",
    "dice_per_class",
    "dice_per_image",
    "icc",
    "mean_hu",
    "mean_t2",
    "mese_t2",
    "percent_error",
    "qdess_signal_ratio",
    "qdess_t2",
    "tissue_volume",
]
