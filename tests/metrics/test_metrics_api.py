"""The public metric names of DESIGN.md sec. 1 stay importable, and every docstring example runs."""

from __future__ import annotations

import doctest
import importlib
import inspect

import pytest

import inpaintssl.metrics

CONTRACT = {
    "dice_per_class",
    "qdess_t2",
    "tissue_volume",
    "cross_sectional_area",
    "mean_hu",
    "mean_t2",
    "percent_error",
}
MODULES = [
    "inpaintssl.metrics",
    "inpaintssl.metrics.agreement",
    "inpaintssl.metrics.clinical",
    "inpaintssl.metrics.qdess",
    "inpaintssl.metrics.segmentation",
]


def test_contract_names_are_exported() -> None:
    assert set(inpaintssl.metrics.__all__) >= CONTRACT
    for name in inpaintssl.metrics.__all__:
        assert callable(getattr(inpaintssl.metrics, name)) or name in {
            "T1_DEFAULTS_MS",
            "T1_OTHER_MS",
            "MEASUREMENT_SCALES",
            "MEASUREMENT_UNITS",
        }


def test_qdess_t2_signature_is_pinned() -> None:
    params = inspect.signature(inpaintssl.metrics.qdess_t2).parameters
    positional = [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == ["echo1", "echo2"]
    keyword_only = {n: p.default for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
    for name in ("tr_ms", "te_ms", "flip_angle_deg", "gl_area", "tg_us"):
        assert keyword_only[name] is inspect.Parameter.empty
    assert keyword_only["t1_ms"] == 1200.0
    assert keyword_only["diffusivity"] == 1.25e-9


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_run(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{module_name} has no >>> example"
    assert result.failed == 0
