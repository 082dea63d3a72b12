"""The code docs/plugins.rst gives for each kind of component works when pasted into a plugin package.

A plugin author copies these blocks as they stand: the sampler, backbone, loss, transfer strategy
and dataset, and the contract test classes. Here they are taken from the page itself (so the test
follows any edit to it), put into one package with one entry point per kind, pip-installed
(``pip install --target``) into a folder of its own and exercised in a fresh subprocess that has
that folder on its path, as ``tests/test_plugin_example.py`` does for the example plugin: the
shared environment is never changed.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from plugin_install import ROOT, Installed, pip_install

pytestmark = pytest.mark.slow

PAGE = ROOT / "docs" / "plugins.rst"
PACKAGE = "my_package"  # the module the page's entry-point example names
DISTRIBUTION = "inpaintssl-docs-plugin-check"

# What each block defines, the registry kind it goes to and the name the page uses for it.
COMPONENTS = (
    ("class GridSampler", "samplers", "grid", "GridSampler"),
    ("def wide_unet", "backbones", "wide_unet", "wide_unet"),
    ("class TverskyLoss", "losses", "tversky", "TverskyLoss"),
    ("class DecoderOnly", "transfer_strategies", "decoder_only", "DecoderOnly"),
    ("class NpySlices", "datasets", "npy_slices", "NpySlices"),
)
CONTRACT_TESTS = (
    "class TestWideUNet(BackboneContract)",
    "class TestNpySlices(DatasetContract)",
    "class TestTversky(LossContract)",
    "class TestDecoderOnly(TransferStrategyContract)",
)


def python_blocks(page: Path) -> list[str]:
    """The ``.. code-block:: python`` blocks of an reST page, dedented."""
    blocks = re.findall(r"^\.\. code-block:: python\n\n((?:(?:   .*)?\n)+)", page.read_text(), flags=re.M)
    return [textwrap.dedent(block) for block in blocks]


def the_block(blocks: list[str], defining: str) -> str:
    found = [block for block in blocks if defining in block]
    assert len(found) == 1, f"{PAGE.name}: {len(found)} python blocks define {defining!r}; expected 1"
    return found[0]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("docs_plugin")
    source, site = root / "source", root / "site"
    blocks = python_blocks(PAGE)
    package = source / "src" / PACKAGE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("\n\n".join(the_block(blocks, d) for d, *_ in COMPONENTS))
    groups: dict[str, list[str]] = {}
    for _, kind, name, attribute in COMPONENTS:
        groups.setdefault(kind, []).append(f'{name} = "{PACKAGE}:{attribute}"')
    entry_points = "\n".join(
        f'[project.entry-points."inpaintssl.{kind}"]\n' + "\n".join(lines) + "\n"
        for kind, lines in groups.items()
    )
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{DISTRIBUTION}"\nversion = "0.1.0"\n\n{entry_points}\n'
        '[tool.setuptools.packages.find]\nwhere = ["src"]\n'
    )
    tests = [the_block(blocks, header) for header in CONTRACT_TESTS]
    # The sampler's contract class is given inline in the text, not as a block.
    inline = re.search(r"``(class TestGrid\(SamplerContract\):)\s+(sampler = \"grid\")``", PAGE.read_text())
    assert inline, f"{PAGE.name}: the inline SamplerContract example is gone"
    header, body = inline.groups()
    tests.append(f"from inpaintssl.testing import SamplerContract\n\n{header}\n    {body}\n")
    (source / "tests").mkdir()
    (source / "tests" / "test_docs_contracts.py").write_text("\n\n".join(tests))
    return pip_install(source, site)


def test_every_component_is_listed_as_a_plugin_that_loads(installed: Installed) -> None:
    result = installed.run("-m", "inpaintssl", "plugins")
    assert result.returncode == 0, result.stderr
    for _, _, name, attribute in COMPONENTS:
        (line,) = [line for line in result.stdout.splitlines() if line.split()[:1] == [name]]
        assert f"plugin from {DISTRIBUTION} 0.1.0  [{PACKAGE}:{attribute}]" in line, line
        assert not re.search(r"BROKEN|UNAVAILABLE|SHADOWED", line), line


def test_the_pages_contract_classes_pass(installed: Installed) -> None:
    # The wide backbone (64 to 1024 filters) gets the checks that do not repeat its forward pass
    # many times; the transfer check also runs the page's decoder_only strategy on it, and the
    # strategy's contract transfers with it.
    select = (
        "TestGrid or TestNpySlices or TestTversky or TestDecoderOnly"
        " or (TestWideUNet and (registered or output_shape or transfer or parts))"
    )
    tests = installed.source / "tests"
    result = installed.run(
        "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", select, str(tests), cwd=tests
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    counts = dict((word, int(n)) for n, word in re.findall(r"(\d+) (passed|failed|error)", result.stdout))
    # Two loss classes of 13 checks (the CUDA one skips here) and the strategy's 6.
    assert counts.get("passed", 0) >= 9 + 4 + 4 + 2 * 12 + 6, result.stdout[-2000:]


def test_the_pages_loss_passes_the_loss_checks_of_a_checkout(installed: Installed) -> None:
    # The page sends loss authors to this file of inpaintssl's own suite.
    result = installed.run(
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/losses/test_losses_registered.py",
        "-k",
        "tversky",
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", result.stdout), result.stdout[-2000:]


def test_the_pages_loss_and_strategy_are_used_as_it_says(installed: Installed) -> None:
    script = textwrap.dedent(
        """
        import json, torch
        from inpaintssl.registry import LOSSES, TRANSFER_STRATEGIES
        loss = LOSSES.build("tversky", alpha=0.3, beta=0.7)
        logits = torch.zeros(2, 1, 4, 4)
        target = torch.zeros(2, 1, 4, 4)
        target[:, :, :2] = 1
        strategy = TRANSFER_STRATEGIES.build("decoder_only")
        print(json.dumps({"loss": float(loss(logits, target)), "parts": list(strategy.parts)}))
        """
    )
    result = installed.run("-c", script)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # sigmoid(0) = 1/2 everywhere, half the pixels foreground: tp = fp = fn = 8 per class, so the
    # index is 8 / (8 + 0.3 * 8 + 0.7 * 8) = 1/2 and the loss 1/2.
    assert report == {"loss": pytest.approx(0.5, abs=1e-6), "parts": ["decoder"]}
