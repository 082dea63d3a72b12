"""Reading back where a component came from, and telling other code from another version of it."""

from __future__ import annotations

import pytest

from inpaintssl.registry import Origin, Registry, origin_change, restore_hint

A_1 = "plugin nets_a.models:Net from distribution nets-a 1.0.0"


def test_an_origin_is_read_back_as_the_registry_words_it() -> None:
    plugin = Origin.parse(A_1)
    assert plugin == Origin(False, "nets_a.models:Net", "nets-a", "1.0.0")
    assert plugin.requirement == "nets-a==1.0.0"
    unknown = Origin.parse("plugin nets_a:Net from distribution <unknown distribution>")
    assert unknown == Origin(False, "nets_a:Net")
    assert unknown.requirement is None
    assert Origin.parse("built-in inpaintssl.models.unet:UNet2d") == Origin(
        True, "inpaintssl.models.unet:UNet2d"
    )
    assert Origin.parse("nets_a:Net") is None  # a plugin cached after its entry point went


@pytest.mark.parametrize(
    ("now", "change"),
    [
        (A_1, "same"),
        ("plugin nets_a.models:Net from distribution nets-a 1.1.0", "version"),
        ("plugin nets_a.models:Net from distribution Nets_A 1.1.0", "version"),  # one name to pip
        ("plugin nets_a.v2:Net from distribution nets-a 2.0.0", "version"),  # its entry point moved
        ("plugin nets_b.models:Net from distribution nets-b 1.0.0", "other"),
        ("plugin nets_a.models:Net from distribution nets-b 1.0.0", "other"),  # a fork of the same module
        ("built-in inpaintssl.models.unet:UNet2d", "other"),
        ("plugin nets_a.models:Net from distribution <unknown distribution>", "version"),
        ("plugin nets_b:Net from distribution <unknown distribution>", "other"),
        ("nets_a.models:Net", "unknown"),
    ],
)
def test_origin_change_from_a_recorded_plugin(now: str, change: str) -> None:
    assert origin_change(A_1, now) == change


@pytest.mark.parametrize(
    ("recorded", "now", "change"),
    [
        # A class moved inside inpaintssl between its versions: the manifest's packages say which.
        ("built-in inpaintssl.models.unet:UNet2d", "built-in inpaintssl.models.nets:UNet2d", "same"),
        ("built-in inpaintssl.models.unet:UNet2d", "built-in __main__:UNet2d", "other"),
        (
            "built-in inpaintssl.models.unet:UNet2d",
            "plugin nets_a:UNet2d from distribution nets-a 1.0",
            "other",
        ),
        # Recorded as built-in by a version that took a plugin's own decorator for one: the same code.
        ("built-in nets_a:make", "plugin nets_a:make from distribution nets-a 1.0", "version"),
    ],
)
def test_origin_change_from_a_recorded_built_in(recorded: str, now: str, change: str) -> None:
    assert origin_change(recorded, now) == change


def test_restore_hint_says_what_brings_the_recorded_code_back() -> None:
    b_plugin = "plugin nets_b:Net from distribution nets-b 3.0"
    assert restore_hint(A_1, b_plugin) == "pip install 'nets-a==1.0.0' and pip uninstall nets-b"
    # A built-in wins over any plugin: only the inpaintssl version brings either back.
    assert restore_hint(A_1, "built-in inpaintssl.models:Net").startswith(
        "pip install 'nets-a==1.0.0' under the inpaintssl version the manifest.json records under packages"
    )
    assert restore_hint("built-in inpaintssl.models:Net", b_plugin).startswith(
        "install the inpaintssl version the manifest.json records under packages, whose built-in it was"
    )


def test_check_from_checks_what_build_from_would_without_building() -> None:
    built: list[int] = []
    gadgets: Registry[object] = Registry("gadgets")

    @gadgets.register("pair")
    def make_pair(*, left: int, right: int = 0) -> object:
        built.append(left)
        return (left, right)

    gadgets.check_from("pair", {"right": 2}, field="gadget.params", set_by_caller={"left": 1})
    with pytest.raises(TypeError, match=r"^gadget\.params: gadgets 'pair': invalid parameters \['rigth'\]"):
        gadgets.check_from("pair", {"rigth": 2}, field="gadget.params", set_by_caller={"left": 1})
    with pytest.raises(TypeError, match=r"^gadget\.params\.left=2: gadgets 'pair' gets left from the run"):
        gadgets.check_from("pair", {"left": 2}, field="gadget.params", set_by_caller={"left": 1})
    with pytest.raises(KeyError, match="unknown gadgets name 'triple'"):
        gadgets.check_from("triple", {}, field="gadget.params", set_by_caller={})
    assert built == []
