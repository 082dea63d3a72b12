"""The public statistics names of DESIGN.md sec. 1 stay importable, and every docstring example runs."""

from __future__ import annotations

import doctest
import importlib

import pytest

import inpaintssl.stats

MODULES = [
    "inpaintssl.stats",
    "inpaintssl.stats.labels_needed",
    "inpaintssl.stats.power_law",
    "inpaintssl.stats.ranking",
    "inpaintssl.stats.ties",
    "inpaintssl.stats.wilcoxon",
]


def test_contract_names_are_exported() -> None:
    assert set(inpaintssl.stats.__all__) >= {"wilcoxon_greater", "fit_power_law"}
    fit = inpaintssl.stats.fit_power_law([1.0, 2.0, 3.0, 4.0], [1.0, 4.0, 9.0, 16.0])
    for attribute in ("a", "k", "c", "rse"):
        assert isinstance(getattr(fit, attribute), float)


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_run(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{module_name} has no >>> example"
    assert result.failed == 0
