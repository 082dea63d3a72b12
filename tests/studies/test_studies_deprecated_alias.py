"""``inpaintssl.experiments`` (the package before the split) keeps working, with a deprecation warning.

Code written against the first wave imports ``inpaintssl.experiments`` and its submodules; each
old name resolves to the object that now lives in :mod:`inpaintssl.studies` or
:mod:`inpaintssl.analysis`, and says where.
"""

from __future__ import annotations

import importlib

import pytest

import inpaintssl.analysis as analysis
import inpaintssl.studies as studies


@pytest.mark.parametrize("name", ["run_study", "expand_study", "load_spec", "StudySpec", "StudyStore"])
def test_old_top_level_names_resolve_to_the_studies_package(name: str) -> None:
    experiments = importlib.import_module("inpaintssl.experiments")
    with pytest.warns(
        DeprecationWarning, match=rf"inpaintssl\.experiments\.{name} is deprecated; use inpaintssl\.studies"
    ):
        value = getattr(experiments, name)
    assert value is getattr(studies, name)


def test_old_submodules_and_renamed_classes_still_import() -> None:
    with pytest.warns(DeprecationWarning, match=r"inpaintssl\.experiments\.runner is deprecated"):
        runner = importlib.import_module("inpaintssl.experiments.runner")
    with pytest.warns(DeprecationWarning, match=r"use inpaintssl\.studies\.runner\.run_study"):
        assert runner.run_study is studies.run_study
    experiments = importlib.import_module("inpaintssl.experiments")
    with pytest.warns(
        DeprecationWarning, match=r"ResultsTable is deprecated; use inpaintssl\.analysis\.Table"
    ):
        assert experiments.ResultsTable is analysis.Table


def test_unknown_names_are_attribute_errors() -> None:
    experiments = importlib.import_module("inpaintssl.experiments")
    with pytest.raises(AttributeError, match="no_such_name"):
        experiments.no_such_name  # noqa: B018
