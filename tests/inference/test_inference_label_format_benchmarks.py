"""The label-map format benchmarks run, on small maps, over every format ``predict`` writes.

``benchmarks/bench_label_map_formats.py`` times the formats that hold a map by itself
(:data:`~inpaintssl.inference.writing.VOLUME_FORMATS`), ``benchmarks/bench_dicom_label_formats.py``
the two that reference a DICOM series; each reads back what it wrote and fails where that differs.
Between them they must cover :data:`~inpaintssl.inference.writing.OUTPUT_FORMATS`: a format added
to ``predict`` without a benchmark arm (or one that breaks an arm, as ``dicom_seg`` once broke the
first by reaching ``save_volume``) fails here.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

from inpaintssl.inference.writing import OUTPUT_FORMATS

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

pytest.importorskip("pydicom")


def _bench(monkeypatch: pytest.MonkeyPatch, name: str) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import their sibling provenance
    return importlib.import_module(name)


def test_the_benchmarks_cover_every_output_format_and_read_back_what_they_wrote(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("highdicom", reason="the dicom-seg extra writes the SEG arm")
    volumes = _bench(monkeypatch, "bench_label_map_formats").main(["--quick", "--repeats", "1"])
    dicom = _bench(monkeypatch, "bench_dicom_label_formats").main(["--quick", "--repeats", "1"])
    capsys.readouterr()  # the JSON records they print
    timed = {
        entry["source"].removeprefix("output_format=") for entry in volumes["entries"] + dicom["entries"]
    }
    assert timed == set(OUTPUT_FORMATS)
    rtstruct = next(e for e in dicom["entries"] if e["source"] == "output_format=rtstruct")
    assert rtstruct["write_ratio_vs_dicom_seg"] > 0 and isinstance(rtstruct["target_met"], bool)
