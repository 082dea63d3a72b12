"""predict's warnings about an input show on every call, at the caller's line.

Python's once-per-line memory hid the "1 mm is assumed" warning from the second identical call
on (a notebook cell run again), and a fixed ``stacklevel`` pointed into inference/predict.py.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

import inpaintssl as issl
from inpaintssl.inference.predict import predict


def test_the_assumed_spacing_warning_shows_on_every_call_at_the_callers_line(
    trained_run: issl.FinetuneResult, tmp_path: Path
) -> None:
    scan = tmp_path / "scan.npy"
    np.save(scan, np.random.default_rng(0).normal(size=(32, 32, 2)).astype(np.float32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's own action: once per line and message
        for n in range(3):
            predict(trained_run.run_dir, scan, output=tmp_path / f"out{n}", device="cpu", progress=False)
    told = [w for w in caught if "1 mm is assumed" in str(w.message)]
    assert [(w.filename, w.category) for w in told] == [(__file__, UserWarning)] * 3
    assert len({str(w.message) for w in told}) == 1  # the same words, shown three times
