"""A run keeps to the plugin code it was trained with; a plugin's own decorator does not make it a built-in.

Each test installs small plugin distributions into folders of its own, put first on ``sys.path``
(entry points are read from installed metadata, as a user's process reads them), and removes
them afterwards. "Another process" is simulated by dropping the registry's and Python's memory of
a plugin: its cached factory and its imported module.
"""

from __future__ import annotations

import importlib
import json
import shutil
import sys
import textwrap
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import inpaintssl as issl
from inpaintssl.checkpoint import CheckpointError
from inpaintssl.config import ConfigError
from inpaintssl.registry import BACKBONES, Origin, ShadowedPluginWarning, origin_change
from inpaintssl.training.components import build_backbone

NAME = "origin_test_unet"
"""The backbone name every distribution here provides."""

UNET_PLUGIN = """
    from inpaintssl.models import UNet2d

    def make(*, in_channels, out_channels, seed=None):
        return UNet2d(in_channels=in_channels, out_channels=out_channels, depth=2, base_width=4, seed=seed)
"""

DATA = {"dataset": "synthetic", "params": {"num_images": 8, "num_val": 2, "num_test": 2, "size": [16, 16]}}


class Site:
    """Plugin distributions installed into folders first on ``sys.path``; :meth:`clear` removes them all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.folders: list[Path] = []
        self.modules: set[str] = set()

    def install(self, dist: str, version: str, entry_points: str, modules: dict[str, str]) -> Path:
        """Install ``dist`` ``version``: ``entry_points.txt`` and ``modules`` (module name -> code)."""
        folder = self.root / f"{dist}-{version}"
        info = folder / f"{dist}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
        for module, code in modules.items():
            (folder / f"{module}.py").write_text(textwrap.dedent(code))
        self.modules.update(modules)
        self.folders.append(folder)
        sys.path.insert(0, str(folder))
        importlib.invalidate_caches()
        return folder

    def uninstall(self, folder: Path) -> None:
        """Take ``folder`` off the path, and forget what was loaded from it (a new process)."""
        sys.path.remove(str(folder))
        self.folders.remove(folder)
        importlib.invalidate_caches()
        self.forget()

    def forget(self) -> None:
        for module in self.modules:
            sys.modules.pop(module, None)
        BACKBONES.unregister(NAME)

    def clear(self) -> None:
        for folder in list(self.folders):
            self.uninstall(folder)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    installed = Site(tmp_path / "site")
    try:
        yield installed
    finally:
        installed.clear()


def _unet_plugin(site: Site, dist: str, version: str, *, module: str) -> Path:
    return site.install(
        dist, version, f"[inpaintssl.backbones]\n{NAME} = {module}:make\n", {module: UNET_PLUGIN}
    )


def _pretrain(run: Path, *, max_epochs: int, resume: bool = False) -> None:
    issl.pretrain(
        {
            "data": DATA,
            "model": {"backbone": NAME},
            "pretext": {"patch_size": 4, "bank_size": 2},
            "optim": {
                "max_epochs": max_epochs,
                "steps_per_epoch": 1,
                "batch_size": 2,
                "schedule": "step_decay",
            },
            "run": {"output_dir": str(run), "device": "cpu", "quiet": True, "resume": resume},
        }
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pretraining run of one epoch, its backbone the plugin of origin_a 1.0.0 (since uninstalled)."""
    root = tmp_path_factory.mktemp("trained")
    installed = Site(root / "site")
    try:
        _unet_plugin(installed, "origin_a", "1.0.0", module="origin_a_nets")
        _pretrain(root / "run", max_epochs=1)
    finally:
        installed.clear()
    return root / "run"


def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


RECORDED = "plugin origin_a_nets:make from distribution origin_a 1.0.0"


def test_the_run_records_the_plugin_that_built_its_backbone(trained: Path) -> None:
    manifest = json.loads((trained / "manifest.json").read_text())
    assert manifest["components"]["backbones"] == {NAME: RECORDED}


def test_loading_refuses_a_backbone_name_another_distribution_provides_now(trained: Path, site: Site) -> None:
    # Same parameter names and shapes: load_state_dict took the weights, and predict used otherpkg's code.
    _unet_plugin(site, "origin_b", "1.0.0", module="origin_b_nets")
    with pytest.raises(CheckpointError) as refused:
        issl.load_model(trained)
    message = str(refused.value)
    assert f"backbone {NAME!r} is not the code the run was trained with" in message, message
    assert RECORDED in message
    assert "plugin origin_b_nets:make from distribution origin_b 1.0.0" in message
    assert "pip install 'origin_a==1.0.0' and pip uninstall origin_b" in message


def test_loading_warns_about_another_version_of_the_recorded_plugin(trained: Path, site: Site) -> None:
    _unet_plugin(site, "origin_a", "1.1.0", module="origin_a_nets")
    with pytest.warns(UserWarning) as caught:
        model = issl.load_model(trained)
    said = [str(w.message) for w in caught if f"backbone {NAME!r} was {RECORDED}" in str(w.message)]
    assert len(said) == 1, [str(w.message) for w in caught]
    assert "is plugin origin_a_nets:make from distribution origin_a 1.1.0 here" in said[0]
    assert "pip install 'origin_a==1.0.0'" in said[0]
    assert model.inference_meta.backbone == NAME


def test_loading_the_recorded_plugin_says_nothing(trained: Path, site: Site) -> None:
    _unet_plugin(site, "origin_a", "1.0.0", module="origin_a_nets")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        issl.load_model(trained)


def test_resuming_refuses_a_backbone_name_another_distribution_provides_now(
    trained: Path, site: Site, tmp_path: Path
) -> None:
    run = _copy(trained, tmp_path)
    before = (run / "manifest.json").read_text()
    _unet_plugin(site, "origin_b", "1.0.0", module="origin_b_nets")
    with pytest.raises(ConfigError) as refused:
        _pretrain(run, max_epochs=1, resume=True)
    message = str(refused.value)
    assert f"cannot resume {run}: other code provides these components" in message, message
    assert f"backbones {NAME!r} (recorded {RECORDED}, now plugin origin_b_nets:make" in message
    assert "pip install 'origin_a==1.0.0' and pip uninstall origin_b" in message
    assert (run / "manifest.json").read_text() == before


@pytest.mark.filterwarnings("ignore::inpaintssl.training.context.FinishedRunWarning")
def test_resuming_under_another_version_warns_and_records_it(
    trained: Path, site: Site, tmp_path: Path
) -> None:
    # The run finished: resumed, it loads its best weights again, after recording the resume.
    run = _copy(trained, tmp_path)
    _unet_plugin(site, "origin_a", "1.1.0", module="origin_a_nets")
    upgraded = "plugin origin_a_nets:make from distribution origin_a 1.1.0"
    with pytest.warns(UserWarning, match=rf"backbones '{NAME}' \(recorded {RECORDED}, now {upgraded}\)"):
        _pretrain(run, max_epochs=1, resume=True)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["components"]["backbones"] == {NAME: RECORDED}  # what started the run
    (entry,) = manifest["resumes"]
    assert entry["resumed_from_epoch"] == 1
    assert entry["environment"][f"components.backbones.{NAME}"] == {"recorded": RECORDED, "now": upgraded}


# -- an entry point that names extras ----------------------------------------------------------------
RECORDED_WITH_EXTRAS = "plugin origin_a_nets:make [fancy] from distribution origin_a 1.0.0"
"""What a run recorded of ``origin_a_nets:make [fancy]`` before the record left the extras out."""


def _with_recorded_origin(run: Path, origin: str) -> Path:
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["components"]["backbones"][NAME] = origin
    (run / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return run


def test_an_entry_point_with_extras_is_recorded_as_the_code_it_names(site: Site) -> None:
    # The extras (optional requirements) are no part of the code's name: with them, the record
    # read back as nothing, and a run compared as "unknown" with any other code under its name.
    site.install(
        "origin_x",
        "1.0.0",
        f"[inpaintssl.backbones]\n{NAME} = origin_x_nets:make [fancy]\n",
        {"origin_x_nets": UNET_PLUGIN},
    )
    recorded = BACKBONES.origin(NAME)
    assert recorded == "plugin origin_x_nets:make from distribution origin_x 1.0.0"
    assert Origin.parse(recorded) == Origin(False, "origin_x_nets:make", "origin_x", "1.0.0")
    (row,) = [entry for entry in BACKBONES.entries(check=True) if entry.name == NAME]
    assert (row.target, row.status) == ("origin_x_nets:make", "ok")


@pytest.mark.parametrize(
    ("now", "change"),
    [
        ("plugin origin_a_nets:make from distribution origin_a 1.0.0", "same"),  # recorded without extras
        ("plugin origin_a_nets:make from distribution origin_a 1.1.0", "version"),
        ("plugin origin_b_nets:make from distribution origin_b 1.0.0", "other"),
    ],
)
def test_a_record_with_extras_is_compared_as_the_code_it_names(now: str, change: str) -> None:
    assert Origin.parse(RECORDED_WITH_EXTRAS) == Origin(False, "origin_a_nets:make", "origin_a", "1.0.0")
    assert origin_change(RECORDED_WITH_EXTRAS, now) == change


def test_loading_a_run_recorded_with_extras_refuses_another_distributions_backbone(
    trained: Path, site: Site, tmp_path: Path
) -> None:
    run = _with_recorded_origin(_copy(trained, tmp_path), RECORDED_WITH_EXTRAS)
    _unet_plugin(site, "origin_b", "1.0.0", module="origin_b_nets")
    with pytest.raises(CheckpointError) as refused:
        issl.load_model(run)
    message = str(refused.value)
    assert f"backbone {NAME!r} is not the code the run was trained with" in message, message
    assert "pip install 'origin_a==1.0.0' and pip uninstall origin_b" in message


def test_loading_a_run_recorded_with_extras_under_its_own_plugin_says_nothing(
    trained: Path, site: Site, tmp_path: Path
) -> None:
    run = _with_recorded_origin(_copy(trained, tmp_path), RECORDED_WITH_EXTRAS)
    site.install(
        "origin_a",
        "1.0.0",
        f"[inpaintssl.backbones]\n{NAME} = origin_a_nets:make [fancy]\n",
        {"origin_a_nets": UNET_PLUGIN},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        issl.load_model(run)


# -- a plugin that also registers itself with the decorator ----------------------------------------
DECORATED = """
    from inpaintssl.models import UNet2d
    from inpaintssl.registry import BACKBONES

    @BACKBONES.register("origin_test_unet")  # works in a notebook without installing, too
    def make(*, in_channels, out_channels, seed=None):
        return UNet2d(in_channels=in_channels, out_channels=out_channels, depth=2, base_width=4, seed=seed)
"""


def test_a_plugin_registered_by_its_own_decorator_too_is_that_plugin(site: Site) -> None:
    site.install(
        "origin_deco",
        "0.3.0",
        f"[inpaintssl.backbones]\n{NAME} = origin_deco_nets:make\n",
        {"origin_deco_nets": DECORATED},
    )
    expected = "plugin origin_deco_nets:make from distribution origin_deco 0.3.0"
    with warnings.catch_warnings():
        warnings.simplefilter("error", ShadowedPluginWarning)  # not shadowed by itself
        first, again = BACKBONES.get(NAME), BACKBONES.get(NAME)
        assert first is again and first.__module__ == "origin_deco_nets"
        assert BACKBONES.origin(NAME) == expected
    (row,) = [entry for entry in BACKBONES.entries(check=True) if entry.name == NAME]
    assert (row.source, row.target, row.distribution, row.status, row.shadowed) == (
        "plugin",
        "origin_deco_nets:make",
        "origin_deco 0.3.0",
        "ok",
        (),
    )


def test_another_provider_of_a_decorated_plugins_name_is_shadowed_by_that_plugin(site: Site) -> None:
    site.install(
        "origin_deco",
        "0.3.0",
        f"[inpaintssl.backbones]\n{NAME} = origin_deco_nets:make\n",
        {"origin_deco_nets": DECORATED},
    )
    BACKBONES.get(NAME)  # imports the module, whose decorator registers the name
    _unet_plugin(site, "origin_b", "1.0.0", module="origin_b_nets")
    with pytest.warns(ShadowedPluginWarning) as caught:
        BACKBONES.get(NAME)
    (said,) = [str(w.message) for w in caught]
    assert "plugin 'origin_test_unet' from origin_b 1.0.0 (origin_b_nets:make)" in said, said
    assert "same name as the plugin origin_deco_nets:make from origin_deco 0.3.0" in said, said
    assert BACKBONES.origin(NAME) == "plugin origin_deco_nets:make from distribution origin_deco 0.3.0"


# -- the parts every run checks ----------------------------------------------------------------------
PARTLESS = """
    import torch
    from torch import nn

    class NoParts(nn.Module):
        size_multiple = 1

        def __init__(self, *, in_channels, out_channels, seed=None):
            super().__init__()
            self.body = nn.Conv2d(in_channels, out_channels, 3, padding=1)

        def forward(self, x):
            return self.body(x)

    class Stem(nn.Module):
        size_multiple = 1

        def __init__(self, *, in_channels, out_channels, seed=None):
            super().__init__()
            self.stem = nn.Conv2d(in_channels, 4, 3, padding=1)
            self.encoder = nn.Conv2d(4, 4, 3, padding=1)
            self.decoder = nn.Conv2d(4, 4, 3, padding=1)
            self.head = nn.Conv2d(4, out_channels, 1)

        def forward(self, x):
            return self.head(self.decoder(self.encoder(self.stem(x))))
"""


NO_PARTS = (
    "submodule(s) missing: encoder, decoder, head; 2 parameter(s) lie outside them: body.weight, body.bias"
)


@pytest.mark.parametrize(
    ("target", "problem"),
    [("NoParts", NO_PARTS), ("Stem", "2 parameter(s) lie outside them: stem.weight, stem.bias")],
)
def test_a_plugin_backbone_without_the_parts_is_refused_before_pretraining(
    site: Site, tmp_path: Path, target: str, problem: str
) -> None:
    # Before, NoParts pretrained to the end and failed only at fine-tuning; Stem fine-tuned from a
    # pretrained encoder and decoder, its pretrained stem silently left behind.
    site.install(
        "origin_parts",
        "2.0.0",
        f"[inpaintssl.backbones]\n{NAME} = origin_parts_nets:{target}\n",
        {"origin_parts_nets": PARTLESS},
    )
    with pytest.raises(TypeError) as refused:
        build_backbone(NAME, {}, in_channels=1, out_channels=1, seed=0)
    message = str(refused.value)
    assert (
        f"backbone {NAME!r} (plugin origin_parts_nets:{target} from distribution origin_parts 2.0.0)"
        in message
    )
    assert problem in message, message
    with pytest.raises(TypeError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        _pretrain(tmp_path / "run", max_epochs=1)
    assert not (tmp_path / "run" / "checkpoints").exists()
