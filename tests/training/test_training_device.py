"""Device resolution, autocast choice and the channels_last setting, against the documented rules."""

from __future__ import annotations

import pytest
import torch

from inpaintssl.config import PretrainConfig
from inpaintssl.training.device import autocast_dtype, resolve_device, use_channels_last

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


@pytest.mark.parametrize(
    ("device", "setting", "expected"),
    [(CPU, "auto", True), (CUDA, "auto", False), (CPU, False, False), (CUDA, True, True)],
)
def test_channels_last_auto_is_on_for_cpu_only(
    device: torch.device, setting: bool | str, expected: bool
) -> None:
    assert use_channels_last(device, setting) is expected


def test_channels_last_rejects_unknown_words() -> None:
    with pytest.raises(ValueError, match="channels_last='always'"):
        use_channels_last(CPU, "always")


def test_config_accepts_auto_and_booleans_and_names_the_field() -> None:
    assert PretrainConfig().run.channels_last == "auto"
    assert PretrainConfig.model_validate({"run": {"channels_last": False}}).run.channels_last is False
    with pytest.raises(ValueError, match="channels_last"):
        PretrainConfig.model_validate({"run": {"channels_last": "sometimes"}})


def test_autocast_is_off_on_cpu_whatever_is_asked() -> None:
    assert all(autocast_dtype(CPU, amp) is None for amp in ("auto", "bf16", "fp16", "off"))
    assert autocast_dtype(CUDA, "off") is None
    assert autocast_dtype(CUDA, "fp16") is torch.float16 and autocast_dtype(CUDA, "bf16") is torch.bfloat16


@pytest.mark.parametrize("amp", ["fp8", "of", "BF16", ""])
@pytest.mark.parametrize("device", [CPU, CUDA], ids=["cpu", "cuda"])
def test_an_unknown_amp_is_refused_on_every_device(device: torch.device, amp: str) -> None:
    # A misspelt "off" fell through to fp16 on a card, and passed on the CPU, unnoticed.
    with pytest.raises(ValueError, match=rf"amp={amp!r}.*expected 'auto', 'bf16', 'fp16' or 'off'"):
        autocast_dtype(device, amp)


def test_cpu_resolves_and_missing_cuda_is_a_clear_error() -> None:
    assert resolve_device("cpu") == CPU and resolve_device(CPU) is CPU
    if not torch.cuda.is_available():
        assert resolve_device("auto") == CPU
        with pytest.raises(ValueError, match=r"^device='cuda' but CUDA is not available"):
            resolve_device("cuda")
        # A training config's setting is named by its place in the config.
        with pytest.raises(ValueError, match=r"^run\.device='cuda' but CUDA is not available"):
            resolve_device("cuda", field="run.device")
    else:
        assert resolve_device("auto").type == "cuda" and resolve_device("cuda").index is not None


@pytest.mark.parametrize("device", ["cuda:2", torch.device("cuda", 3)])
def test_a_card_the_machine_lacks_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, device: object) -> None:
    # A two-card machine, as torch.cuda reports it (the check reads nothing else of CUDA).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(torch.device("cuda")) == torch.device("cuda", 0)
    with pytest.raises(ValueError, match=r"resolves to cuda:[23], but this machine has 2 CUDA device\(s\) "):
        resolve_device(device)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "example"),
    [("cuda:01", "cuda:1"), ("cuda:00", "cuda:0"), ("cuda:128", "cuda:0"), ("cuda:255", "cuda:0")],
)
def test_a_card_index_torch_cannot_take_as_written_is_refused_naming_the_setting(
    name: str, example: str
) -> None:
    # torch.device refuses 'cuda:01' with a bare RuntimeError, and wraps 'cuda:255' to its index
    # -1 ("the current card") and 'cuda:128' to -128: the name passed, and failed (or moved) later.
    for index in ("0", "127"):
        assert torch.device(f"cuda:{index}").index == int(index)  # what torch takes as written
    assert torch.device("cuda:255").index is None and torch.device("cuda:128").index == -128
    with pytest.raises(ValueError, match=rf"^device={name!r} .*from 0 to 127 .*e\.g\. {example!r}$"):
        resolve_device(name)
    for config_name in ("cuda:1", "cuda:127"):
        assert PretrainConfig.model_validate({"run": {"device": config_name}}).run.device == config_name
    with pytest.raises(ValueError, match=rf"run\.device\n.*device={name!r} is not a valid option"):
        PretrainConfig.model_validate({"run": {"device": name}})


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "gpu0", ""])
def test_a_name_that_is_no_device_is_a_clear_error(name: str) -> None:
    with pytest.raises(
        ValueError,
        match=rf"^device={name!r} is not a valid option: expected 'auto', 'cpu', 'cuda' or 'cuda:N'",
    ):
        resolve_device(name)


@pytest.mark.parametrize("name", ["meta", "mps", "xla", "hpu", "cpu:3", "CPU"])
def test_a_torch_device_type_other_than_cpu_or_cuda_is_refused_as_the_config_refuses_it(name: str) -> None:
    # Any type torch knows passed: evaluate(model, device="meta") moved the caller's network onto
    # "meta", which holds no values, and load_model gave back a network without weights. A run's
    # config refuses them; the arguments say so in its words.
    with pytest.raises(ValueError) as refused:
        resolve_device(name)
    with pytest.raises(ValueError) as config:
        PretrainConfig.model_validate({"run": {"device": name}})
    assert str(refused.value) in str(config.value)
    assert str(refused.value).startswith(f"device={name!r} is not a valid option: ")


@pytest.mark.parametrize("kind", ["meta", "mps", "xla"])
def test_a_torch_device_object_must_be_a_cpu_or_cuda_one(kind: str) -> None:
    with pytest.raises(
        ValueError,
        match=rf"^device=device\(type='{kind}'\) is not a valid option: expected a torch.device of type "
        rf"'cpu' or 'cuda' \(or one of 'auto', 'cpu', 'cuda' or 'cuda:N'\); found type '{kind}'$",
    ):
        resolve_device(torch.device(kind))
    assert resolve_device(torch.device("cpu", 0)) == torch.device("cpu", 0)


@pytest.mark.parametrize("value", [None, 0, b"cpu"])
def test_a_device_that_is_no_name_is_refused_naming_the_argument(value: object) -> None:
    # torch.device(0) is the first card: an int slipped through as cuda:0.
    with pytest.raises(
        ValueError, match=rf"^device must be a string, one of 'auto', .*; found {type(value).__name__}"
    ):
        resolve_device(value)  # type: ignore[arg-type]


# (the card's compute capability, what "auto" must pick). is_bf16_supported() answers True on Volta
# and Turing too by default (bf16 emulated, without bf16 tensor cores); Ampere on has the hardware.
@pytest.mark.parametrize(
    ("capability", "expected"),
    [((7, 0), torch.float16), ((7, 5), torch.float16), ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)],
)
def test_amp_auto_is_bf16_only_on_cards_with_bf16_hardware(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], expected: torch.dtype
) -> None:
    # torch.cuda as such a card reports it; nothing here runs on a GPU.
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(
        torch.cuda,
        "is_bf16_supported",
        lambda including_emulation=True: including_emulation or capability >= (8, 0),
    )
    assert autocast_dtype(CUDA, "auto") is expected
    assert autocast_dtype(CUDA, "bf16") is torch.bfloat16  # asked for by name: the user's call


def test_amp_auto_asks_the_run_s_own_card(monkeypatch: pytest.MonkeyPatch) -> None:
    # A machine with a T4 as card 0 and an A100 as card 1; the process's current card is 0.
    capabilities = {0: (7, 5), 1: (8, 0)}
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(
        torch.cuda,
        "get_device_capability",
        lambda device=None: capabilities[0 if device is None else torch.device(device).index],
    )
    monkeypatch.setattr(
        torch.cuda, "is_bf16_supported", lambda including_emulation=False: capabilities[0] >= (8, 0)
    )
    assert autocast_dtype(torch.device("cuda", 1), "auto") is torch.bfloat16
    assert autocast_dtype(torch.device("cuda", 0), "auto") is torch.float16


@pytest.mark.parametrize("setting", ["auto", "cuda", torch.device("cuda")])
def test_a_local_rank_beyond_the_cards_is_refused_naming_the_launch(
    monkeypatch: pytest.MonkeyPatch, setting: str | torch.device
) -> None:
    # Four torchrun processes on a two-card node: ranks 0 and 1 get their cards, rank 3 has none
    # (it used to be handed cuda:3, which failed later as "invalid device ordinal").
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [resolve_device(setting, local_rank=rank) for rank in (None, 0, 1)] == [
        torch.device("cuda", 0),
        torch.device("cuda", 0),
        torch.device("cuda", 1),
    ]
    with pytest.raises(
        ValueError,
        match=r"^run\.device='(auto|cuda)' gives this process \(torchrun's LOCAL_RANK=3\) cuda:3, but this "
        r"machine has 2 CUDA device\(s\) \(cuda:0 to cuda:1\); start at most 2 processes per node "
        r"\(torchrun --nproc-per-node=2\)$",
    ):
        resolve_device(setting, local_rank=3, field="run.device")
