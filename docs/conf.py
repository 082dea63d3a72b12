"""Sphinx configuration: autodoc of the public API and a gallery of runnable examples.

Build with warnings as errors (what ``make docs`` runs)::

    .venv/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

The gallery scripts in ``examples/gallery`` are executed during the build, on the CPU.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
# Gallery scripts plot with pyplot; build machines have no display.
os.environ.setdefault("MPLBACKEND", "Agg")
# The gallery trains tiny networks, for which one thread is as fast as several and, on a shared
# CI runner, far steadier (preempted OpenMP threads made steps 3-10x slower in our builds).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import inpaintssl  # after the path set-up above

project = "inpaintssl"
author = "inpaintssl developers"
copyright = "2026, inpaintssl developers"
release = inpaintssl.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx.ext.mathjax",
    "sphinx_gallery.gen_gallery",
]

# -- API reference ------------------------------------------------------------------------------
autosummary_generate = True
# Respect each module's __all__: the public names are the ones a module exports, even when they
# are defined in a private submodule.
autosummary_ignore_module_all = False
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
nitpicky = False
add_module_names = False
python_display_short_literal_types = True

# -- HTML ---------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"inpaintssl {release}"
templates_path: list[str] = []
exclude_patterns = [
    "_build",
    "Thumbs.db",
    ".DS_Store",
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "sg_execution_times.rst",
]

# -- gallery ------------------------------------------------------------------------------------


def _smp_importable() -> bool:
    # segmentation_models_pytorch needs torchvision, which does not import beside every torch
    # build (``make test-smp`` runs that example in a virtualenv of its own).
    try:
        import segmentation_models_pytorch  # noqa: F401
    except Exception:  # noqa: BLE001 - any failure (ImportError, torchvision's RuntimeError) means "no"
        return False
    return True


# Examples matching filename_pattern run during the build; the others are shown as code only.
sphinx_gallery_conf = {
    "examples_dirs": ["../examples/gallery"],
    "gallery_dirs": ["auto_examples"],
    "filename_pattern": r"/plot_" if _smp_importable() else r"/plot_(?!smp_backbone)",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "write_computation_times": False,
    "plot_gallery": "True",
    "run_stale_examples": False,
}
# Sphinx cannot pickle sphinx-gallery's config into its environment cache; it rebuilds instead.
suppress_warnings = ["config.cache"]


# pydantic models carry internal attributes (model_config, model_fields, ...) that are not API.
_PYDANTIC_INTERNALS = frozenset({"model_config", "model_fields", "model_computed_fields"})


def _skip_pydantic_internals(
    app: object, what: str, name: str, obj: object, skip: bool, options: object
) -> bool:
    return skip or name in _PYDANTIC_INTERNALS


def setup(app: object) -> None:
    """Register the hook that hides pydantic's internal model attributes from the API pages."""
    app.connect("autodoc-skip-member", _skip_pydantic_internals)  # type: ignore[attr-defined]
