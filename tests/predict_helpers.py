"""``predict`` as the inference tests call it: on the CPU, quietly, about a tiny run."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from inpaintssl.inference.predict import PredictionReport, predict


def predict_quietly(run: Path, inputs: Any, out: Path, **options: Any) -> PredictionReport:
    """``predict(run, inputs, output=out, **options)`` on the CPU, without its progress bar.

    The tiny runs' spacing and orientation warnings are not what the tests look at: ignored here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return predict(run, inputs, output=out, device="cpu", progress=False, **options)
