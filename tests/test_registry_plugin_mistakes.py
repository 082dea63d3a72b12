"""Mistakes a plugin author or installer makes, through the real entry-point mechanism.

Each plugin is a throwaway ``*.dist-info`` folder with its module beside it, put on ``sys.path``
(as ``tests/test_registry.py`` does), so the registry reads real installed metadata while the
shared environment is never changed.
"""

from __future__ import annotations

import importlib
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from inpaintssl.registry import BACKBONES, DATASETS, REGISTRIES, SAMPLERS, PluginLoadError, Registry

DISTRIBUTION = "issl-mistakes-plugin"
MODULE = "issl_mistakes_plugin"
SCRIPT = "issl_mistakes_script"
"""A training script turned plugin module: it parses its command line as it is imported."""
INTERRUPTED = "issl_mistakes_interrupted"
"""A plugin module whose import the user interrupts (Ctrl-C while it loads)."""

SOURCE = """
    import numpy as np

    class GridSampler:
        def sample(self, *, shape, patch_size, coverage=0.25, rng, pairs=False):
            return np.zeros((1, 2), dtype=np.int64)

    class NoSample:
        '''A sampler whose author forgot (or misspelt) the method.'''

        def sampel(self, **request):
            return None

    GRID = GridSampler()  # an instance where the entry point needs the class

    def needs_root(*, split, labelled=True, root):
        raise AssertionError("never built: root is missing")

    def no_labelled(*, split, root=None):
        raise AssertionError("never built: it does not take labelled")
"""

ENTRY_POINTS = f"""
    [inpaintssl.samplers]
    mistakes_grid = {MODULE}:GridSampler
    mistakes_no_sample = {MODULE}:NoSample
    mistakes_instance = {MODULE}:GRID

    [inpaintssl.datasets]
    mistakes_needs_root = {MODULE}:needs_root
    mistakes_no_labelled = {MODULE}:no_labelled

    [inpaintssl.backbones]
    mistakes_script_unet = {SCRIPT}:make
"""

SCRIPT_SOURCE = """
    import argparse

    parser = argparse.ArgumentParser(prog="train.py")
    parser.add_argument("--width", type=int, default=32)
    # As parse_args() does with a command line it does not know (a script run with --epochs 3).
    args = parser.parse_args(["--epochs", "3"])

    def make(*, in_channels, out_channels, seed=None):
        raise AssertionError("never built: the module exits as it is imported")
"""

NAMES = (
    ("samplers", "mistakes_grid"),
    ("samplers", "mistakes_no_sample"),
    ("samplers", "mistakes_instance"),
    ("datasets", "mistakes_needs_root"),
    ("datasets", "mistakes_no_labelled"),
    ("backbones", "mistakes_script_unet"),
    ("backbones", "mistakes_interrupted"),
)


def _write_metadata(folder: Path, *, version: str) -> Path:
    """One ``.dist-info`` of the test distribution in ``folder``, as pip writes it."""
    dist = folder / f"{DISTRIBUTION.replace('-', '_')}-{version}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\nVersion: {version}\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(ENTRY_POINTS))
    return dist


def _forget() -> None:
    for kind, name in NAMES:
        REGISTRIES[kind].unregister(name)
    for module in (MODULE, SCRIPT, INTERRUPTED):
        sys.modules.pop(module, None)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on ``sys.path`` holding the plugin's module (its metadata is up to each test)."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / f"{MODULE}.py").write_text(textwrap.dedent(SOURCE))
    (folder / f"{SCRIPT}.py").write_text(textwrap.dedent(SCRIPT_SOURCE))
    (folder / f"{INTERRUPTED}.py").write_text("raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(folder))
    _forget()
    yield folder
    _forget()
    importlib.invalidate_caches()


def test_one_copy_of_the_metadata_loads_and_is_recorded_with_its_version(site: Path) -> None:
    # The control for the refusal below: the same plugin, installed once, works.
    _write_metadata(site, version="0.2.0")
    importlib.invalidate_caches()
    assert SAMPLERS.get("mistakes_grid").__name__ == "GridSampler"
    assert SAMPLERS.origin("mistakes_grid") == (
        f"plugin {MODULE}:GridSampler from distribution {DISTRIBUTION} 0.2.0"
    )


def test_two_copies_of_one_distribution_in_one_folder_are_refused_naming_both(site: Path) -> None:
    # A failed upgrade leaves the old .dist-info beside the new one: which one Python reads first
    # (entry points, and the version a run records) is the file system's listing order.
    _write_metadata(site, version="0.2.0")
    _write_metadata(site, version="0.1.0")
    importlib.invalidate_caches()
    with pytest.raises(PluginLoadError) as info:
        SAMPLERS.get("mistakes_grid")
    message = str(info.value)
    assert message.startswith("registry 'samplers': plugin 'mistakes_grid'"), message
    assert f"distribution {DISTRIBUTION} has 2 copies of its metadata in {site}" in message
    for version in ("0.1.0", "0.2.0"):
        assert f"{version} ({DISTRIBUTION.replace('-', '_')}-{version}.dist-info)" in message
    assert "expected one: delete the stale .dist-info folder there" in message
    assert MODULE not in sys.modules  # refused before the plugin's code ran
    # The listing marks it, with the same reason, instead of calling it ok.
    (row,) = [e for e in SAMPLERS.entries(check=True) if e.name == "mistakes_grid"]
    assert (row.status, row.reason) == ("broken", info.value.reason)


def test_a_folder_listed_twice_on_the_path_is_one_copy(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_metadata(site, version="0.2.0")
    monkeypatch.syspath_prepend(str(site))  # now on sys.path twice, as PYTHONPATH=site-packages does
    importlib.invalidate_caches()
    assert SAMPLERS.origin("mistakes_grid").endswith(f"{DISTRIBUTION} 0.2.0")


def test_copies_in_two_folders_use_the_first_on_the_path_as_the_import_does(
    site: Path, tmp_path: Path
) -> None:
    # A user-site copy beside the environment's: sys.path decides, for the code and the metadata
    # alike, so nothing is ambiguous and the version recorded is the one imported.
    _write_metadata(site, version="0.2.0")
    later = tmp_path / "later"
    _write_metadata(later, version="0.1.0")
    sys.path.insert(sys.path.index(str(site)) + 1, str(later))  # site (the fixture's) first
    try:
        importlib.invalidate_caches()
        assert SAMPLERS.origin("mistakes_grid").endswith(f"{DISTRIBUTION} 0.2.0")
    finally:
        sys.path.remove(str(later))


def test_a_sampler_class_without_sample_is_refused_naming_what_it_lacks(site: Path) -> None:
    _write_metadata(site, version="1.0")
    importlib.invalidate_caches()
    expected = (
        f"samplers 'mistakes_no_sample' (plugin {MODULE}:NoSample from distribution {DISTRIBUTION} 1.0) "
        f"built a {MODULE}:NoSample, without sample; expected a inpaintssl.corruption.samplers:Sampler"
    )
    with pytest.raises(TypeError, match=f"^{re.escape(expected)}"):
        SAMPLERS.build("mistakes_no_sample")
    (row,) = [e for e in SAMPLERS.entries(check=True) if e.name == "mistakes_no_sample"]
    assert row.status == "broken"
    assert row.reason == (
        "is a class that is not a inpaintssl.corruption.samplers:Sampler, without sample: "
        "build() would refuse it"
    )


def test_a_wrong_type_of_a_component_that_is_not_a_protocol_says_only_what_it_is() -> None:
    # nn.Module is a base class, not a list of members: nothing to say it lacks.
    registry: Registry[object] = Registry("mistakes_modules", component="torch.nn:Module")
    registry.register("listed")(lambda: [1, 2])
    with pytest.raises(TypeError) as info:
        registry.build("listed")
    assert "built a builtins:list; expected a torch.nn.modules.module:Module" in str(info.value)


def test_a_plugins_missing_parameter_names_its_entry_point_and_distribution(site: Path) -> None:
    _write_metadata(site, version="1.0")
    importlib.invalidate_caches()
    with pytest.raises(TypeError) as info:
        DATASETS.build_from(
            "mistakes_needs_root", {}, field="data.params", set_by_caller={"split": "train", "labelled": True}
        )
    assert str(info.value) == (
        "data.params: datasets 'mistakes_needs_root': missing parameters ['root'] (it accepts root): "
        "missing a required argument: 'root' "
        f"[plugin {MODULE}:needs_root from distribution {DISTRIBUTION} 1.0]"
    )


def test_a_builtins_parameter_misfit_names_no_distribution() -> None:
    with pytest.raises(TypeError) as info:
        SAMPLERS.build("poisson_disc", candidatez=3)
    assert str(info.value).endswith("got an unexpected keyword argument 'candidatez'")


def test_a_plugin_that_does_not_take_a_run_argument_is_blamed_not_the_config_field(site: Path) -> None:
    # The docs' dataset factory is called as factory(split=..., labelled=..., **data.params); one
    # without labelled is the plugin's mistake, which no value in data.params can fix.
    _write_metadata(site, version="1.0")
    importlib.invalidate_caches()
    with pytest.raises(TypeError) as info:
        DATASETS.build_from(
            "mistakes_no_labelled",
            {"root": "/data"},
            field="data.params",
            set_by_caller={"split": "train", "labelled": True},
        )
    assert str(info.value) == (
        f"datasets 'mistakes_no_labelled' (plugin {MODULE}:no_labelled from distribution {DISTRIBUTION} 1.0) "
        "does not accept labelled, which the run passes itself (labelled=True); expected a factory that "
        "takes split, labelled beside the parameters of data.params, "
        "found the signature (*, split, root=None)"
    )


def test_an_entry_point_at_an_instance_says_what_it_should_point_at(site: Path) -> None:
    _write_metadata(site, version="1.0")
    importlib.invalidate_caches()
    with pytest.raises(PluginLoadError) as info:
        SAMPLERS.get("mistakes_instance")
    assert str(info.value) == (
        f"registry 'samplers': plugin 'mistakes_instance' ({MODULE}:GRID) "
        f"from distribution {DISTRIBUTION} 1.0 is not callable (got GridSampler); expected a class or "
        "factory function, which the registry calls with the component's parameters"
    )


def test_a_plugin_module_that_exits_as_it_is_imported_is_a_plugin_load_error(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # argparse's exit (SystemExit, not an Exception) escaped the registry: `inpaintssl plugins`
    # printed the plugin's usage and ended with status 2, listing nothing.
    _write_metadata(site, version="1.0")
    importlib.invalidate_caches()
    with pytest.raises(PluginLoadError) as info:
        BACKBONES.build("mistakes_script_unet", in_channels=1, out_channels=1, seed=0)
    message = str(info.value)
    assert message.startswith(
        f"registry 'backbones': plugin 'mistakes_script_unet' ({SCRIPT}:make) from distribution "
        f"{DISTRIBUTION} 1.0 failed to load: SystemExit: 2"
    ), message
    assert "parse_args()" in message
    assert isinstance(info.value.__cause__, SystemExit) and info.value.__cause__.code == 2
    (row,) = [e for e in BACKBONES.entries(check=True) if e.name == "mistakes_script_unet"]
    assert row.status == "broken" and (row.reason or "").startswith("fails to import: SystemExit: 2")

    from inpaintssl.cli import main

    capsys.readouterr()
    assert main(["plugins"]) == 1  # the listing goes on, and fails on the broken plugin
    lines = capsys.readouterr().out.splitlines()
    (listed,) = [line for line in lines if line.split()[:1] == ["mistakes_script_unet"]]
    assert "BROKEN: fails to import: SystemExit: 2" in listed, listed
    assert any(line.split()[:1] == ["unet2d"] for line in lines)  # the rest is listed too


def test_interrupting_a_plugins_import_still_stops_the_process(site: Path) -> None:
    # A distribution of its own: listing the others must not import it (and stop the test run).
    dist = site / "issl_mistakes_interrupted-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: issl-mistakes-interrupted\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[inpaintssl.backbones]\nmistakes_interrupted = {INTERRUPTED}:make\n"
    )
    importlib.invalidate_caches()
    with pytest.raises(KeyboardInterrupt):
        BACKBONES.get("mistakes_interrupted")
