"""How much of ``predict``'s NIfTI writing and reading its writer and reader threads hide.

``predict`` compresses each case's ``.nii.gz`` files on a background thread while it reads and
predicts the next case (:mod:`inpaintssl.inference.write_ahead`), and decompresses the next input
on another while it predicts the current one (:mod:`inpaintssl.inference.read_ahead`). Three arms
predict the same scans with the same trained run: the library as it is (``write_ahead``); the same
code with each write done at once in the predicting thread (``inline``: ``WriteAhead`` swapped
for an inline stand-in, how ``predict`` wrote before), which also times its writes; and the same
code with each input read in its own case's turn (``no_read_ahead``: ``ReadAhead`` swapped for a
stand-in that reads the input when its case asks for it, as ``read_ahead="off"`` does and as
``predict`` read before), which also times those reads. Every arm asks for ``read_ahead="on"``
(its default, ``auto``, reads ahead on a GPU only, as this benchmark found it no faster on the
CPU). Arms alternate, ``--repeats`` times each; the medians are compared, and
the label maps of the arms must be equal.

Usage::

    python benchmarks/bench_predict_writes.py [--quick] [--device cuda] [--out PATH]

Target: the writer thread hides at least half of the writing time, i.e. (inline - write-ahead) /
inline writing time >= 0.5 (a share above 1 is recorded as an unreliable measurement, not as
met). On a GPU the prediction is far quicker and the writing a larger share; this CPU figure is
the floor. The share of the reading time the reader thread hides, (no_read_ahead - write-ahead) /
its reading time, is reported beside it (no target: on two cores the prediction's own threads take
both).
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from provenance import at_least, emit, provenance
from tiny_run import tiny_run, written_label_maps

import inpaintssl as issl

TARGET_HIDDEN = 0.5  # share of the inline arm's writing time that the writer thread hides
predict_module = importlib.import_module("inpaintssl.inference.predict")


class _Inline:
    """``WriteAhead``'s interface, writing at once in the calling thread (predict before it)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def submit(self, write: Callable[..., Any], /, *args: Any) -> None:
        start = time.perf_counter()
        write(*args)
        self.seconds += time.perf_counter() - start

    def wait(self) -> None:
        pass

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class _ReadInTurn:
    """``ReadAhead``'s interface, reading each input when its case waits for it (predict before it)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def start(self, volume: Any) -> None:
        pass

    def wait(self, volume: Any) -> None:
        start = time.perf_counter()
        volume.preload()
        self.seconds += time.perf_counter() - start

    def __enter__(self) -> _ReadInTurn:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@contextmanager
def _swapped(name: str, stand_in: type[Any]) -> Iterator[list[Any]]:
    """``predict_module.<name>`` replaced by ``stand_in`` for the block; the instances it made."""
    made: list[Any] = []

    def make() -> Any:
        made.append(stand_in())
        return made[-1]

    real = getattr(predict_module, name)
    setattr(predict_module, name, make)
    try:
        yield made
    finally:
        setattr(predict_module, name, real)


def writing_verdict(hidden: float) -> dict[str, Any]:
    """``target_met`` for the share of the writing time hidden, with ``unreliable`` where it is no result.

    A share above 1, more than the whole writing time hidden, cannot be: the arms' spread (another
    load on the machine) was larger than the writing itself, so the share says nothing of the target
    (``target_met`` is ``None``). A share below 0 can be (the writer thread competing with the
    prediction for the cores), and fails the target.

    Example:
        >>> writing_verdict(0.6), writing_verdict(-0.2)
        ({'target_met': True}, {'target_met': False})
        >>> writing_verdict(11.7)["target_met"] is None
        True
    """
    why = _more_than_all_hidden(hidden, field="share_of_writing_hidden", work="writing")
    if why is not None:
        return {"target_met": None, "unreliable": why}
    return {"target_met": hidden >= TARGET_HIDDEN}


def reading_share(hidden: float) -> dict[str, Any]:
    """``share_of_reading_hidden`` for the record: ``None`` with the reason where it is no result.

    The same check as :func:`writing_verdict`'s: more than the whole reading time hidden cannot be,
    so such a share is the arms' noise (a loaded machine gave 384.2), not a measurement.

    Example:
        >>> reading_share(0.8)
        {'share_of_reading_hidden': 0.8}
        >>> reading_share(384.2)["share_of_reading_hidden"] is None
        True
    """
    why = _more_than_all_hidden(hidden, field="share_of_reading_hidden", work="reading")
    if why is not None:
        return {"share_of_reading_hidden": None, "share_of_reading_hidden_unreliable": why}
    return {"share_of_reading_hidden": hidden}


def _more_than_all_hidden(hidden: float, *, field: str, work: str) -> str | None:
    """Why a share of the ``work`` time hidden is no measurement (above 1, or NaN), or ``None``."""
    if hidden <= 1.0:
        return None
    return (
        f"unreliable measurement: {field} = {hidden:.3g} > 1 (more than the whole {work} time hidden): "
        f"the arms' spread was larger than the {work}; rerun on an idle machine"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Time both arms; return the JSON record."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="4 scans of 64x64x32 instead of 6 of 128x128x64")
    parser.add_argument("--repeats", type=at_least(1), default=3, help="predicts per arm (default: 3)")
    parser.add_argument("--out", type=Path, help="write the JSON record here")
    parser.add_argument(
        "--device", default="cpu", help="predict on this device (default: cpu; the run trains on the CPU)"
    )
    args = parser.parse_args(argv)
    count, shape = (4, (64, 64, 32)) if args.quick else (6, (128, 128, 64))
    warnings.simplefilter("ignore")  # a two-step run is not converged; that is not measured here
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        run = tiny_run(root / "run", size=shape[:2])
        scans = root / "scans"
        scans.mkdir()
        rng = np.random.default_rng(0)
        for i in range(count):
            image = rng.normal(0.0, 1.0, size=shape).astype(np.float32)
            nib.save(nib.Nifti1Image(image, np.eye(4)), scans / f"s{i}.nii.gz")
        seconds: dict[str, list[float]] = {"write_ahead": [], "inline": [], "no_read_ahead": []}
        stand_ins = {"inline": ("WriteAhead", _Inline), "no_read_ahead": ("ReadAhead", _ReadInTurn)}
        inline_seconds: dict[str, list[float]] = {"inline": [], "no_read_ahead": []}
        labels: dict[str, dict[str, np.ndarray]] = {}
        for repeat in range(args.repeats):
            for arm in seconds:
                out = root / f"{arm}{repeat}"
                with _swapped(*stand_ins[arm]) if arm in stand_ins else nullcontext([]) as made:
                    start = time.perf_counter()
                    issl.predict(
                        run,
                        scans,
                        output=out,
                        probabilities=True,
                        progress=False,
                        device=args.device,
                        read_ahead="on",  # auto would read ahead on a GPU only
                    )
                    seconds[arm].append(time.perf_counter() - start)
                if arm in inline_seconds:
                    inline_seconds[arm].append(sum(stand_in.seconds for stand_in in made))
                labels[arm] = written_label_maps(out)
    writing, reading = inline_seconds["inline"], inline_seconds["no_read_ahead"]
    same = all(
        labels[arm].keys() == labels["write_ahead"].keys()
        and all(np.array_equal(labels[arm][k], labels["write_ahead"][k]) for k in labels[arm])
        for arm in labels
    )
    if not same:
        raise AssertionError("the arms wrote different label maps")
    ahead, inline, in_turn, write, read = (
        statistics.median(v)
        for v in (seconds["write_ahead"], seconds["inline"], seconds["no_read_ahead"], writing, reading)
    )
    hidden = (inline - ahead) / write
    record: dict[str, Any] = {
        "benchmark": "predict_writes",
        **provenance(__file__, argv),
        "quick": args.quick,
        "device": args.device,
        "scans": count,
        "scan_shape": list(shape),
        "probabilities": True,
        "repeats": args.repeats,
        "seconds": seconds,
        "inline_writing_seconds": writing,
        "in_turn_reading_seconds": reading,
        "median_seconds": {
            "write_ahead": ahead,
            "inline": inline,
            "no_read_ahead": in_turn,
            "inline_writing": write,
            "in_turn_reading": read,
        },
        "speedup_write_ahead_vs_inline": inline / ahead,
        "speedup_write_ahead_vs_no_read_ahead": in_turn / ahead,
        "share_of_writing_hidden": hidden,
        **reading_share((in_turn - ahead) / read),
        "target": f"(inline - write-ahead) / inline writing time >= {TARGET_HIDDEN:g}",
        **writing_verdict(hidden),
    }
    return emit(record, args.out)


if __name__ == "__main__":
    main()
