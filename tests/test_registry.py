"""Registry behaviour through the real entry-point mechanism (a throwaway *.dist-info on sys.path)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from inpaintssl.registry import REGISTRIES, SAMPLERS, PluginLoadError, Registry

BUILTINS = {
    "pretext_tasks": {"context_prediction", "context_restoration"},
    "samplers": {"random", "poisson_disc"},
    "backbones": {"unet2d"},
    "losses": {"l2", "dice"},
    "transfer_strategies": {"encoder", "encoder_decoder"},
}


def _write_distribution(root: Path, *, name: str, entry_points: str, modules: dict[str, str]) -> None:
    dist = root / f"{name}-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A distribution providing a working sampler, a broken sampler, and a clash with a built-in."""
    _write_distribution(
        tmp_path,
        name="issl-test-plugins",
        entry_points="""
            [inpaintssl.samplers]
            grid_test = issl_good_plugin:GridSampler
            broken_test = issl_broken_plugin:Sampler
            random = issl_good_plugin:GridSampler
        """,
        modules={
            "issl_good_plugin": """
                import numpy as np

                class GridSampler:
                    def __init__(self, step=2):
                        self.step = step

                    def sample(self, *, shape, patch_size, coverage, rng):
                        rows = np.arange(0, shape[0] - patch_size + 1, self.step * patch_size)
                        cols = np.arange(0, shape[1] - patch_size + 1, self.step * patch_size)
                        return np.array([(r, c) for r in rows for c in cols], dtype=np.int64)
            """,
            "issl_broken_plugin": """
                raise RuntimeError("plugin exploded on import")
            """,
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    for name in ("grid_test", "broken_test"):
        SAMPLERS.unregister(name)
    sys.modules.pop("issl_good_plugin", None)


@pytest.mark.parametrize("kind", sorted(BUILTINS))
def test_builtin_names_are_registered(kind: str) -> None:
    assert BUILTINS[kind] <= set(REGISTRIES[kind].names())


def test_names_are_sorted_and_include_datasets() -> None:
    for registry in REGISTRIES.values():
        names = registry.names()
        assert names == sorted(names)
    assert {"mni152", "skmtea", "ct", "nifti"} <= set(REGISTRIES["datasets"].names())


def test_working_plugin_is_discovered_lazily_and_builds(plugin_dist: Path) -> None:
    assert "grid_test" in SAMPLERS.names()
    # Listing names must not import the plugin module.
    assert "issl_good_plugin" not in sys.modules
    sampler = SAMPLERS.build("grid_test", step=1)
    assert "issl_good_plugin" in sys.modules
    import numpy as np

    corners = sampler.sample(shape=(8, 8), patch_size=4, coverage=0.25, rng=np.random.default_rng(0))
    assert corners.tolist() == [[0, 0], [0, 4], [4, 0], [4, 4]]


def test_broken_plugin_names_plugin_distribution_and_cause(plugin_dist: Path) -> None:
    with pytest.raises(PluginLoadError) as info:
        SAMPLERS.get("broken_test")
    message = str(info.value)
    assert "broken_test" in message
    assert "issl-test-plugins" in message
    assert "plugin exploded on import" in message
    assert isinstance(info.value.__cause__, RuntimeError)
    # The other names keep working.
    assert SAMPLERS.get("poisson_disc") is not None


def test_builtin_wins_over_plugin_with_a_warning(plugin_dist: Path) -> None:
    builtin = SAMPLERS.get("poisson_disc")
    with pytest.warns(UserWarning, match="same name as a built-in"):
        factory = SAMPLERS.get("random")
    assert factory.__module__.startswith("inpaintssl.")
    assert factory is not builtin


def test_import_inpaintssl_survives_a_broken_plugin(plugin_dist: Path) -> None:
    code = (
        "import inpaintssl, sys; from inpaintssl.registry import SAMPLERS; "
        "names = SAMPLERS.names(); assert 'broken_test' in names, names; print('ok')"
    )
    env_path = f"{plugin_dist}"
    out = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {env_path!r}); {code}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def test_unknown_name_lists_close_matches() -> None:
    with pytest.raises(KeyError) as info:
        SAMPLERS.get("poisson_disk")
    message = str(info.value)
    assert "poisson_disc" in message and "Did you mean" in message


def test_duplicate_registration_raises() -> None:
    registry: Registry[object] = Registry("widgets_test")

    @registry.register("one")
    def make_one() -> object:
        return object()

    with pytest.raises(ValueError, match="already registered"):
        registry.register("one")(make_one)


def test_build_reports_bad_parameters_with_the_component_name() -> None:
    registry: Registry[object] = Registry("widgets_test2")

    @registry.register("sized")
    def make_sized(*, size: int) -> object:
        return size

    assert registry.build("sized", size=3) == 3
    with pytest.raises(TypeError, match="widgets_test2 'sized'"):
        registry.build("sized", colour="red")


@pytest.mark.parametrize("bad", ["", "has space", "slash/name"])
def test_invalid_names_are_refused(bad: str) -> None:
    registry: Registry[object] = Registry("widgets_test3")
    with pytest.raises(ValueError, match="name must be"):
        registry.register(bad)


def test_entries_report_sources(plugin_dist: Path) -> None:
    entries = {e.name: e for e in SAMPLERS.entries()}
    assert entries["poisson_disc"].source == "builtin"
    assert entries["grid_test"].source == "plugin"
    assert entries["grid_test"].distribution is not None
    assert entries["grid_test"].distribution.startswith("issl-test-plugins")
