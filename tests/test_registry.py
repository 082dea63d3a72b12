"""Registry behaviour through the real entry-point mechanism (a throwaway *.dist-info on sys.path)."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

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

    def make_other() -> object:
        return object()

    with pytest.raises(ValueError, match=r"already registered .*make_one; cannot register .*make_other"):
        registry.register("one")(make_other)


def test_registering_before_the_builtins_loaded_refuses_a_taken_name_and_keeps_the_others() -> None:
    """A fresh process: replacing a built-in (unregister, then register) and registering a taken name.

    Before the built-ins were loaded, ``unregister`` removed nothing and ``register`` checked an
    empty table: the duplicate was accepted, and the built-in's own registration then failed the
    package import, leaving only the user's name. The expected names are this process's, where
    nothing was replaced.
    """
    from inpaintssl.registry import LOSSES

    code = textwrap.dedent(
        """
        import json
        from inpaintssl.registry import LOSSES, SAMPLERS
        LOSSES.unregister("dice")

        @LOSSES.register("dice")
        class MyDice:
            def __init__(self, **kwargs):
                pass

        try:
            @SAMPLERS.register("random")
            class MySampler:
                pass
            duplicate = "accepted"
        except ValueError as exc:
            duplicate = str(exc)
        print(json.dumps({
            "losses": LOSSES.names(),
            "dice": LOSSES.get("dice").__module__,
            "samplers": SAMPLERS.names(),
            "random": SAMPLERS.get("random").__module__,
            "duplicate": duplicate,
        }))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["losses"] == LOSSES.names()
    assert found["dice"] == "__main__"
    assert found["samplers"] == SAMPLERS.names()
    assert found["random"] == "inpaintssl.corruption.samplers"
    assert "name 'random' is already registered" in found["duplicate"]


def test_a_failed_import_of_the_builtins_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package import that fails leaves the built-ins unloaded, not marked loaded with half of them."""
    (tmp_path / "issl_lazy_holder.py").write_text(
        "from inpaintssl.registry import Registry\n"
        "WIDGETS = Registry('widgets_lazy', package='issl_lazy_builtins')\n"
    )
    package = tmp_path / "issl_lazy_builtins"
    package.mkdir()
    broken = tmp_path / "broken"
    broken.write_text("")
    (package / "__init__.py").write_text(
        "import os\nfrom . import one\n"
        f"if os.path.exists({str(broken)!r}):\n    raise RuntimeError('not yet')\n"
        "from . import two\n"
    )
    for name in ("one", "two"):
        (package / f"{name}.py").write_text(
            f"from issl_lazy_holder import WIDGETS\n\n@WIDGETS.register({name!r})\nclass Widget:\n    pass\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in (
        "issl_lazy_holder",
        "issl_lazy_builtins",
        "issl_lazy_builtins.one",
        "issl_lazy_builtins.two",
    ):
        monkeypatch.delitem(sys.modules, name, raising=False)
    widgets = importlib.import_module("issl_lazy_holder").WIDGETS
    with pytest.raises(RuntimeError, match="not yet"):
        widgets.names()
    broken.unlink()
    assert widgets.names() == ["one", "two"]
    with pytest.raises(ValueError, match="name 'two' is already registered"):
        widgets.register("two")(type("Other", (), {}))


def test_a_notebook_cell_run_again_replaces_its_definition(monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook cell that defines and registers a class, run twice, registers the newer class."""
    registry: Registry[object] = Registry("widgets_rerun")
    namespace: dict[str, Any] = {"registry": registry, "__name__": "__main__"}
    cell = "@registry.register('mine')\nclass Mine:\n    pass\n"
    monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)  # an interactive session
    exec(cell, namespace)
    first = registry.get("mine")
    exec(cell, namespace)
    assert registry.get("mine") is namespace["Mine"] is not first
    registry.register("mine")(namespace["Mine"])  # the same object again: nothing changes
    assert registry.get("mine") is namespace["Mine"]


@pytest.mark.parametrize(
    ("module", "interactive", "source"),
    [
        ("__main__", False, "class Mine:\n    pass\n"),  # a script defining the name twice
        ("some_module", True, "class Mine:\n    pass\n"),  # a module, even in a session
        ("__main__", True, "Mine = lambda: object()\n"),  # two lambdas share one qualname
    ],
)
def test_a_second_definition_outside_a_rerun_cell_is_refused(
    monkeypatch: pytest.MonkeyPatch, module: str, interactive: bool, source: str
) -> None:
    registry: Registry[object] = Registry("widgets_twice")
    if interactive:
        monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)
    else:
        monkeypatch.delattr(sys, "ps1", raising=False)
        monkeypatch.delitem(sys.modules, "IPython", raising=False)
    namespace: dict[str, Any] = {"registry": registry, "__name__": module}
    exec(source + "registry.register('mine')(Mine)\n", namespace)
    first = registry.get("mine")
    with pytest.raises(ValueError, match=r"name 'mine' is already registered"):
        exec(source + "registry.register('mine')(Mine)\n", namespace)
    assert registry.get("mine") is first


@pytest.mark.parametrize("interactive", [False, True])
def test_reloading_a_plugin_module_registers_its_definitions_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, interactive: bool
) -> None:
    # importlib.reload (or IPython's %autoreload) runs the module's registrations a second time;
    # the registry lives in another module, so it keeps the first registrations.
    import importlib

    (tmp_path / "issl_reload_holder.py").write_text(
        "from inpaintssl.registry import Registry\nWIDGETS = Registry('widgets_reload')\n"
    )
    plugin = tmp_path / "issl_reload_plugin.py"
    plugin.write_text(
        "from issl_reload_holder import WIDGETS\n\n"
        "@WIDGETS.register('mine')\nclass Mine:\n    pass\n\n"
        "@WIDGETS.register('made')\ndef make() -> object:\n    return object()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    if interactive:
        monkeypatch.setattr(sys, "ps1", ">>> ", raising=False)
    else:
        monkeypatch.delattr(sys, "ps1", raising=False)
        monkeypatch.delitem(sys.modules, "IPython", raising=False)
    for name in ("issl_reload_holder", "issl_reload_plugin"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    module = importlib.import_module("issl_reload_plugin")
    holder = importlib.import_module("issl_reload_holder")
    first = holder.WIDGETS.get("mine")
    module = importlib.reload(module)
    assert holder.WIDGETS.get("mine") is module.Mine is not first
    assert holder.WIDGETS.get("made") is module.make
    # An edited module (the definitions moved down a line): a session's reload takes it, a
    # script's is refused, as a second definition of the name in one file would be. Which name is
    # refused first depends on the Python: a function keeps where it started, while a class is
    # looked up in the file as it is now before 3.13 (so 'mine' passes there and 'made' is
    # refused) and keeps its __firstlineno__ from 3.13 on (so 'mine' is refused first).
    plugin.write_text("# edited\n" + plugin.read_text())
    importlib.invalidate_caches()
    if interactive:
        assert importlib.reload(module).make is holder.WIDGETS.get("made")
    else:
        refused = "mine" if sys.version_info >= (3, 13) else "made"
        with pytest.raises(ValueError, match=rf"name '{refused}' is already registered"):
            importlib.reload(module)


def test_two_classes_of_one_name_in_a_module_file_are_refused_under_one_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before Python 3.13 inspect finds a class by its name in the file: both definitions gave the
    # first one's line, looked like one definition run twice (a reload), and the second silently
    # replaced the first.
    import importlib

    (tmp_path / "issl_twice_holder.py").write_text(
        "from inpaintssl.registry import Registry\nWIDGETS = Registry('widgets_twice')\n"
    )
    (tmp_path / "issl_twice_plugin.py").write_text(
        "from issl_twice_holder import WIDGETS\n\n"
        "@WIDGETS.register('mine')\nclass Mine:\n    size = 1\n\n\n"
        "@WIDGETS.register('mine')\nclass Mine:  # noqa: F811\n    size = 2\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delattr(sys, "ps1", raising=False)
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    for name in ("issl_twice_holder", "issl_twice_plugin"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ValueError, match=r"name 'mine' is already registered to issl_twice_plugin:Mine"):
        importlib.import_module("issl_twice_plugin")
    assert importlib.import_module("issl_twice_holder").WIDGETS.get("mine").size == 1


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


# -- issue 16: shadowed and broken plugins, parameters vs bugs inside a factory -------------------


@pytest.fixture
def diagnosis_dists(plugin_dist: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Besides ``plugin_dist``: a plugin that is not callable and two plugins of one name."""
    # Underscored names: importlib.metadata tells distributions apart by the folder name up to
    # its first "-", so "issl-test-more" would collapse into "issl-test-plugins".
    more = plugin_dist / "more"
    more.mkdir()
    _write_distribution(
        more,
        name="issl_test_more",
        entry_points="""
            [inpaintssl.samplers]
            constant_test = issl_more_plugin:CONSTANT
            twin_test = issl_more_plugin:TwinSampler
        """,
        modules={
            "issl_more_plugin": """
                CONSTANT = 3

                class TwinSampler:
                    pass
            """
        },
    )
    _write_distribution(
        more,
        name="issl_test_twin",
        entry_points="""
            [inpaintssl.samplers]
            twin_test = issl_more_plugin:TwinSampler
        """,
        modules={},
    )
    monkeypatch.syspath_prepend(str(more))
    importlib.invalidate_caches()
    yield more
    for name in ("constant_test", "twin_test"):
        SAMPLERS.unregister(name)
    sys.modules.pop("issl_more_plugin", None)


def test_entries_without_check_import_nothing_and_show_shadowed(diagnosis_dists: Path) -> None:
    entries = {e.name: e for e in SAMPLERS.entries()}
    assert "issl_good_plugin" not in sys.modules and "issl_more_plugin" not in sys.modules
    assert entries["broken_test"].status == "unchecked"
    random = entries["random"]
    assert (random.source, random.status) == ("builtin", "ok")
    assert [(e.source, e.status, e.target) for e in random.shadowed] == [
        ("plugin", "shadowed", "issl_good_plugin:GridSampler")
    ]
    reason = random.shadowed[0].reason or ""
    assert "the built-in" in reason and "RandomSampler" in reason
    # Two distributions providing one name: refused as ambiguous, both named, neither imported.
    twin = entries["twin_test"]
    assert twin.status == "broken" and "provided by 2 installed distributions" in (twin.reason or "")
    assert len(twin.shadowed) == 1 and twin.shadowed[0].distribution != twin.distribution
    assert f"also provided by {twin.distribution}" in (twin.shadowed[0].reason or "")


def test_two_plugins_of_one_name_are_refused_naming_both(diagnosis_dists: Path) -> None:
    with pytest.raises(
        PluginLoadError, match=r"'twin_test' is provided by 2 installed distributions"
    ) as info:
        SAMPLERS.get("twin_test")
    assert "issl_test_more 1.0" in str(info.value) and "issl_test_twin 1.0" in str(info.value)
    assert "issl_more_plugin" not in sys.modules


def test_a_backbone_inpaintssl_ships_wins_over_a_plugin_of_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundled = REGISTRIES["backbones"].get("monai_basic_unet")
    with _one_module_plugin(
        tmp_path,
        monkeypatch,
        kind="backbones",
        module="issl_usurper",
        source="def net(**params):\n    raise AssertionError('never built')\n",
        names={"monai_basic_unet": "net"},
    ) as backbones:
        backbones.unregister("monai_basic_unet")  # the cached load, so that the name is resolved again
        with pytest.warns(UserWarning, match=r"'monai_basic_unet' from issl-usurper 1\.0") as seen:
            assert backbones.get("monai_basic_unet") is bundled
        # The warning points at the code that asked for the name, not inside the registry.
        assert [w.filename for w in seen] == [__file__]
        assert backbones.origin("monai_basic_unet").endswith("from distribution inpaintssl " + _version())
        listed = {e.name: e for e in backbones.entries()}["monai_basic_unet"]
        assert listed.target == "inpaintssl.models.external.monai_unet:MonaiBasicUNet"
        assert [e.distribution for e in listed.shadowed] == ["issl-usurper 1.0"]


def _version() -> str:
    from importlib.metadata import version

    return version("inpaintssl")


def test_entries_with_check_tell_broken_from_healthy(diagnosis_dists: Path) -> None:
    entries = {e.name: e for e in SAMPLERS.entries(check=True)}
    assert entries["grid_test"].status == "ok" and entries["grid_test"].reason is None
    broken = entries["broken_test"]
    assert broken.status == "broken"
    assert "RuntimeError: plugin exploded on import" in (broken.reason or "")
    constant = entries["constant_test"]
    assert constant.status == "broken" and "not callable (got int)" in (constant.reason or "")
    # A builtin never becomes broken, and shadowed plugins are never imported to be checked.
    assert entries["random"].status == "ok" and entries["random"].shadowed[0].status == "shadowed"


def test_plugins_command_lists_shadowed_and_broken(
    diagnosis_dists: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from inpaintssl.cli import main

    assert main(["plugins"]) == 1  # a broken plugin fails the listing (a CI gate for its package)
    lines = capsys.readouterr().out.splitlines()
    random_lines = [line for line in lines if line.split()[:1] == ["random"]]
    assert len(random_lines) == 2
    assert "built-in" in random_lines[0] and "SHADOWED" not in random_lines[0]
    assert "SHADOWED: shadowed by the built-in" in random_lines[1] and "issl-test-plugins" in random_lines[1]
    broken = next(line for line in lines if line.split()[:1] == ["broken_test"])
    assert "BROKEN: fails to import: RuntimeError: plugin exploded on import" in broken
    grid = next(line for line in lines if line.split()[:1] == ["grid_test"])
    assert "BROKEN" not in grid and "SHADOWED" not in grid

    assert main(["plugins", "--json"]) == 1
    rows = json.loads(capsys.readouterr().out)["samplers"]
    statuses = {(r["name"], r["source"]): r["status"] for r in rows}
    assert statuses[("random", "builtin")] == "ok"
    assert statuses[("random", "plugin")] == "shadowed"
    assert statuses[("broken_test", "plugin")] == "broken"
    assert statuses[("constant_test", "plugin")] == "broken"


def test_build_separates_wrong_parameters_from_a_bug_inside_the_factory() -> None:
    registry: Registry[object] = Registry("widgets_test4")
    bug = TypeError("unsupported operand type(s) for +: 'int' and 'str'")
    calls: list[int] = []

    @registry.register("buggy")
    def make_buggy(*, size: int) -> object:
        calls.append(size)
        raise bug

    with pytest.raises(TypeError) as info:
        registry.build("buggy", size=1)
    assert info.value is bug  # unchanged, not relabelled as "invalid parameters"
    assert calls == [1]
    assert any(frame.name == "make_buggy" for frame in info.traceback)

    with pytest.raises(TypeError, match=r"widgets_test4 'buggy': invalid parameters \['colour'\]") as wrong:
        registry.build("buggy", colour="red")
    assert "it accepts size" in str(wrong.value)
    # The binding's own words end the message; Python 3.12 reworded them ("missing a required
    # keyword-only argument"), so the expectation is the interpreter's, not a copy of 3.11's.
    with pytest.raises(TypeError) as unbound:
        inspect.signature(make_buggy).bind()
    assert "'size'" in str(unbound.value)
    with pytest.raises(TypeError, match=r"missing parameters \['size'\].*: " + re.escape(str(unbound.value))):
        registry.build("buggy")
    assert calls == [1]  # a signature that does not bind never runs the factory


def test_bad_parameters_name_only_the_culprits_with_a_guess() -> None:
    registry: Registry[object] = Registry("widgets_test5")

    @registry.register("net")
    def make_net(*, in_channels: int, depth: int = 5, base_width: int = 32) -> object:
        return (in_channels, depth, base_width)

    with pytest.raises(TypeError) as info:
        registry.build("net", in_channels=1, depth=4, widht=8)
    message = str(info.value)
    assert "invalid parameters ['widht']" in message and "did you mean 'widht' -> 'base_width'" in message
    assert "'depth'" not in message and "'in_channels'" not in message  # valid ones are not blamed
    with pytest.raises(TypeError) as info:
        registry.build("net", in_channels=1, value=8)
    assert "invalid parameters ['value']" in str(info.value) and "did you mean" not in str(info.value)
    with pytest.raises(TypeError, match=r"did you mean 'in_chanels' -> 'in_channels'\?"):
        registry.build("net", in_chanels=1)
    with pytest.raises(TypeError, match=r"missing parameters \['in_channels'\]"):
        registry.build("net", depth=4)


def _plain_factories() -> list[tuple[str, str]]:
    """Every registered (kind, name) whose factory takes no ``**kwargs``."""
    import inspect

    cases = []
    for kind, registry in REGISTRIES.items():
        for entry in registry.entries():
            if entry.source != "builtin":
                continue
            parameters = inspect.signature(registry.get(entry.name)).parameters.values()
            if all(p.kind is not p.VAR_KEYWORD for p in parameters):
                cases.append((kind, entry.name))
    return cases


@pytest.mark.parametrize(("kind", "name"), _plain_factories())
def test_every_builtin_reports_an_unknown_parameter_without_running(kind: str, name: str) -> None:
    with pytest.raises(TypeError, match=rf"{kind} '{name}': invalid parameters \['not_a_parameter_xyz'\]"):
        REGISTRIES[kind].build(name, not_a_parameter_xyz=1)


@pytest.mark.parametrize(("kind", "name"), _plain_factories())
def test_every_builtin_built_from_a_config_field_names_it_and_offers_only_what_the_user_sets(
    kind: str, name: str
) -> None:
    import inspect

    named = [p.name for p in inspect.signature(REGISTRIES[kind].get(name)).parameters.values()]
    caller = {named[0]: object()} if named else {}  # one parameter the run passes itself
    expected = rf"^config\.params: {kind} '{name}': invalid parameters \['not_a_parameter_xyz'\]"
    with pytest.raises(TypeError, match=expected) as info:
        REGISTRIES[kind].build_from(
            name, {"not_a_parameter_xyz": 1}, field="config.params", set_by_caller=caller
        )
    accepts = str(info.value).split("(it accepts ", 1)[1].split(")", 1)[0].split("; ")[0].split(", ")
    assert [a for a in accepts if a != "no parameters"] == [n for n in named if n not in caller]


def test_build_from_refuses_a_parameter_the_caller_sets_naming_the_field_and_the_value() -> None:
    registry: Registry[object] = Registry("widgets_test_from")

    @registry.register("net")
    def make_net(*, in_channels: int, depth: int = 5, base_width: int = 32) -> object:
        return (in_channels, depth, base_width)

    built = registry.build_from("net", {"depth": 3}, field="model.params", set_by_caller={"in_channels": 2})
    assert built == (2, 3, 32)
    with pytest.raises(
        TypeError,
        match=r"^model\.params\.in_channels=4: widgets_test_from 'net' gets in_channels from the run itself "
        r"\(in_channels=2\); expected only its other parameters in model\.params$",
    ):
        registry.build_from("net", {"in_channels": 4}, field="model.params", set_by_caller={"in_channels": 2})
    # A misspelling of the caller's own parameter: the guess says the user cannot set it.
    with pytest.raises(TypeError) as info:
        registry.build_from("net", {"in_chanels": 4}, field="model.params", set_by_caller={"in_channels": 2})
    assert (
        "(it accepts depth, base_width; did you mean 'in_chanels' -> 'in_channels', which the run sets"
        in str(info.value)
    )


@pytest.mark.parametrize(
    ("section", "params", "expected"),
    [
        (
            "data",
            {"num_imagse": 8},
            r"data\.params: datasets 'synthetic': invalid parameters \['num_imagse'\]",
        ),
        ("model", {"widht": 4}, r"model\.params: backbones 'unet2d': invalid parameters \['widht'\]"),
        ("pretext", {"covrage": 0.3}, r"pretext\.params: pretext_tasks 'context_restoration': invalid"),
    ],
)
def test_a_run_names_the_params_field_a_misspelt_parameter_came_from(
    section: str, params: dict[str, object], expected: str, tmp_path: Path
) -> None:
    import inpaintssl as issl

    config: dict[str, Any] = {
        "data": {
            "dataset": "synthetic",
            "params": {"num_images": 8, "num_val": 2, "num_test": 2, "size": [16, 16]},
        },
        "model": {"params": {"depth": 2, "base_width": 4}},
        "pretext": {"patch_size": 4, "bank_size": 2},
        "optim": {"max_epochs": 1},
        "run": {"output_dir": str(tmp_path / "run"), "device": "cpu", "quiet": True},
    }
    config[section] = {**config[section], "params": {**config[section].get("params", {}), **params}}
    with pytest.raises(TypeError, match=expected) as info:
        issl.pretrain(config)
    # What the run passes itself is not offered: the dataset's split, the network's channels.
    accepts = str(info.value).split("(it accepts ", 1)[1]
    assert not {"split", "labelled", "in_channels", "out_channels", "patch_size"} & set(
        accepts.split(";")[0].split(", ")
    )


def test_a_builtin_is_checked_for_a_shadowing_plugin_once_per_import_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import inpaintssl.registry as registry_module

    scans: list[object] = []
    real = registry_module.entry_points

    def counting(**kwargs: object) -> object:
        scans.append(kwargs.get("name"))
        return real(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(registry_module, "entry_points", counting)
    registry: Registry[object] = Registry("scan_count_test")
    registry.register("thing")(object)
    for _ in range(5):
        assert registry.get("thing") is object
    assert scans == ["thing"]
    monkeypatch.syspath_prepend(str(tmp_path))  # a new place plugins could come from
    assert registry.get("thing") is object
    assert scans == ["thing", "thing"]


@contextlib.contextmanager
def _one_module_plugin(
    root: Path, monkeypatch: pytest.MonkeyPatch, *, kind: str, module: str, source: str, names: dict[str, str]
) -> Iterator[Registry[Any]]:
    """A distribution of one module whose ``names`` (entry name -> attribute) join ``kind``'s registry."""
    lines = "\n".join(f"{name} = {module}:{attribute}" for name, attribute in names.items())
    _write_distribution(
        root,
        name=module.replace("_", "-"),
        entry_points=f"[inpaintssl.{kind}]\n{lines}\n",
        modules={module: source},
    )
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    registry = REGISTRIES[kind]
    try:
        yield registry
    finally:
        for name in names:
            registry.unregister(name)
        sys.modules.pop(module, None)


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_a_plugin_that_builds_the_wrong_type_is_refused_naming_it(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A class with none of the component's methods and no base class: what a plugin author gets
    # by pointing the entry point at the wrong object, or forgetting to subclass.
    source = "class NotAComponent:\n    def __init__(self, **options):\n        pass\n"
    names = {"wrong_type_test": "NotAComponent"}
    with (
        _one_module_plugin(
            tmp_path, monkeypatch, kind=kind, module="issl_wrong_type", source=source, names=names
        ) as registry,
        pytest.raises(TypeError) as info,
    ):
        registry.build("wrong_type_test")
    message = str(info.value)
    expected = registry.component_type()
    assert f"{kind} 'wrong_type_test'" in message
    assert "issl_wrong_type:NotAComponent from distribution issl-wrong-type" in message
    # A protocol (samplers') is met by members, so the message says which are missing.
    lacking = ", without sample" if kind == "samplers" else ""
    assert (
        f"built a issl_wrong_type:NotAComponent{lacking}; "
        f"expected a {expected.__module__}:{expected.__qualname__}" in message
    )


def test_entries_with_check_call_a_class_of_the_wrong_type_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = "import torch\nclass NotAModule:\n    pass\nclass AModule(torch.nn.Module):\n    pass\n"
    names = {"not_a_module_test": "NotAModule", "module_test": "AModule"}
    with _one_module_plugin(
        tmp_path, monkeypatch, kind="backbones", module="issl_wrong_class", source=source, names=names
    ) as registry:
        entries = {e.name: e for e in registry.entries(check=True)}
    wrong = entries["not_a_module_test"]
    assert wrong.status == "broken" and "not a torch.nn.modules.module:Module" in (wrong.reason or "")
    assert entries["module_test"].status == "ok"


@pytest.mark.parametrize(
    ("kind", "name", "params"),
    [
        ("samplers", "random", {}),
        ("samplers", "poisson_disc", {}),
        ("pretext_tasks", "context_prediction", {"patch_size": 4, "bank_size": 1, "sampler": "random"}),
        ("losses", "dice", {}),
        ("transfer_strategies", "encoder", {}),
        ("backbones", "unet2d", {"in_channels": 1, "out_channels": 1, "depth": 2, "base_width": 2}),
    ],
)
def test_builtins_build_their_registrys_component_type(
    kind: str, name: str, params: dict[str, object]
) -> None:
    registry = REGISTRIES[kind]
    assert isinstance(registry.build(name, **params), registry.component_type())


def test_entries_with_check_say_which_plugins_miss_a_package_they_require(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = textwrap.dedent(
        """
        class NeedsMissing:
            requires = {"issl_no_such_module_xyz": "issl-needs-more[extra]"}

            def sample(self, **request):
                raise AssertionError("never built here")

        class NeedsNumpy(NeedsMissing):
            requires = {"numpy": "numpy"}
        """
    )
    names = {"needs_missing_test": "NeedsMissing", "needs_numpy_test": "NeedsNumpy"}
    with _one_module_plugin(
        tmp_path, monkeypatch, kind="samplers", module="issl_needs_more", source=source, names=names
    ) as registry:
        entries = {e.name: e for e in registry.entries(check=True)}
    missing = entries["needs_missing_test"]
    assert missing.status == "unavailable"
    assert (
        missing.reason == "needs issl_no_such_module_xyz, not installed: pip install 'issl-needs-more[extra]'"
    )
    assert (entries["needs_numpy_test"].status, entries["needs_numpy_test"].reason) == ("ok", None)


def test_the_external_backbones_are_listed_unavailable_exactly_when_their_library_is_missing() -> None:
    from importlib.util import find_spec

    entries = {e.name: e for e in REGISTRIES["backbones"].entries(check=True)}
    for name, modules in (
        ("smp_unet", ("segmentation_models_pytorch", "timm")),
        ("monai_basic_unet", ("monai",)),
        ("monai_unet", ("monai",)),
    ):
        installed = all(find_spec(m) is not None for m in modules)
        assert entries[name].status == ("ok" if installed else "unavailable"), name


def test_a_plugin_samplers_bad_output_is_named_by_its_registered_name_and_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The message named the class alone; the run's config says pretext.sampler, pip the package.
    from inpaintssl.corruption.tasks import ContextRestoration

    _write_distribution(
        tmp_path,
        name="issl-float-sampler",
        entry_points="""
            [inpaintssl.samplers]
            float_corners_test = issl_float_sampler:FloatSampler
        """,
        modules={
            "issl_float_sampler": """
                import numpy as np

                class FloatSampler:
                    def sample(self, *, shape, patch_size, coverage, rng, pairs=False):
                        return np.zeros((4, 2), dtype=np.float64)
            """
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    try:
        task = ContextRestoration(patch_size=4, sampler="float_corners_test", bank_size=1)
        expected = (
            "sampler 'float_corners_test' (issl_float_sampler.FloatSampler, plugin from distribution "
            "issl-float-sampler 1.0) returned float64 corners"
        )
        with pytest.raises(ValueError, match=re.escape(expected)):
            task.corrupt(torch.zeros(1, 1, 16, 16))
    finally:
        SAMPLERS.unregister("float_corners_test")
        sys.modules.pop("issl_float_sampler", None)


def test_a_misspelt_sampler_parameter_is_said_of_sampler_params() -> None:
    from inpaintssl.corruption.tasks import ContextRestoration

    misspelt = r"^sampler_params: samplers 'random': invalid parameters \['max_draw'\]"
    with pytest.raises(TypeError, match=misspelt):
        ContextRestoration(patch_size=4, sampler="random", sampler_params={"max_draw": 3})
