"""Bad-input cases of issue 16 (reliability, second round): checks.

Cases register themselves into :data:`corpus.CASES` through :func:`corpus._case`; corpus.py
imports this module at its end, so every name it defines above is available here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from corpus import Call, _case, _config, _pretrain_config, _tiny_unet
from safetensors.torch import save_file

import inpaintssl as issl
from inpaintssl.checkpoint import CheckpointError, CheckpointMeta, save_checkpoint
from inpaintssl.config import ConfigError
from inpaintssl.registry import SAMPLERS

_FIRST_KERNEL = "encoder.levels.0.0.0.weight"

# -- configuration sanity: patches against the image size ---------------------------------------


@_case(
    "config-patch-as-large-as-image",
    "config",
    ConfigError,
    r"pretext\.patch_size=16 with pretext\.coverage=0\.25 \(task 'context_prediction', sampler 'random'\)",
    r"does not fit data\.image_size=\(16, 16\)",
    r"one patch alone covers 100%; expected patch_size <= 8",
)
def _patch_as_large_as_image(folder: Path) -> Call:
    """Context prediction with 16x16 patches on 16x16 images: it would corrupt all of every image."""
    pretext = {"task": "context_prediction", "patch_size": 16}
    return lambda: issl.pretrain(_pretrain_config(folder, data={"image_size": [16, 16]}, pretext=pretext))


@_case(
    "config-patch-larger-than-image-size",
    "config",
    ConfigError,
    r"pretext\.patch_size=20 .* does not fit data\.image_size=\(16, 16\)",
    r"patch_size=20 is larger than the image; expected patch_size <= min\(H, W\) = 16",
)
def _patch_larger_than_image_size(folder: Path) -> Call:
    """``pretext.patch_size=20`` with ``data.image_size=[16, 16]``, caught when the config is read."""
    return lambda: issl.pretrain(
        _pretrain_config(folder, data={"image_size": [16, 16]}, pretext={"patch_size": 20})
    )


@_case(
    "config-poisson-coverage-unreachable",
    "config",
    ConfigError,
    r"sampler 'poisson_disc'\) does not fit data\.image_size=\(16, 16\)",
    r"coverage unreachable: it needs 16 non-overlapping patches",
    r"at most 10 fit",
)
def _poisson_coverage_unreachable(folder: Path) -> Call:
    """Poisson-disc patches (never overlapping) asked to cover 90% of 16x16 images with 4x4 patches."""
    pretext = {"sampler": "poisson_disc", "coverage": 0.9}
    return lambda: issl.pretrain(_pretrain_config(folder, data={"image_size": [16, 16]}, pretext=pretext))


@_case(
    "config-swap-pairs-do-not-fit",
    "config",
    ConfigError,
    r"task 'context_restoration'",
    r"two non-overlapping 12x12 patches do not fit; pairs need 2 \* patch_size <= max\(H, W\)",
)
def _swap_pairs_do_not_fit(folder: Path) -> Call:
    """Context restoration swaps pairs of 12x12 patches, but two of them do not fit side by side in 16x16."""
    pretext = {"task": "context_restoration", "patch_size": 12, "coverage": 0.9}
    return lambda: issl.pretrain(_pretrain_config(folder, data={"image_size": [16, 16]}, pretext=pretext))


@_case(
    "config-patch-as-large-as-slices",
    "config",
    ValueError,
    r"cannot cover 25% of a 16x16 image with 16x16 patches",
    r"one patch alone covers 100%",
)
def _patch_as_large_as_slices(folder: Path) -> Call:
    """Context prediction with 16x16 patches on a dataset of 16x16 slices, ``data.image_size`` unset."""
    pretext = {"task": "context_prediction", "patch_size": 16}
    return lambda: issl.pretrain(_pretrain_config(folder, pretext=pretext))


# -- configuration sanity: misspelt option values -----------------------------------------------


@_case(
    "config-misspelt-schedule",
    "config",
    ConfigError,
    r"optim\.schedule: .*schedule='cosine' is not a valid option",
    r"expected 'warmup_cosine' or 'step_decay'; did you mean 'warmup_cosine'\?",
)
def _misspelt_schedule(folder: Path) -> Call:
    """A learning-rate schedule name cut short (``optim.schedule=cosine``)."""
    return lambda: issl.pretrain(_pretrain_config(folder, optim={"schedule": "cosine"}))


@_case(
    "config-misspelt-recipe",
    "config",
    ConfigError,
    r"optim\.recipe: .*recipe='papers' is not a valid option",
    r"did you mean 'paper'\?",
)
def _misspelt_recipe(folder: Path) -> Call:
    """A training recipe name with a typo (``optim.recipe=papers``)."""
    return lambda: issl.pretrain(_pretrain_config(folder, optim={"recipe": "papers"}))


@_case(
    "config-misspelt-amp",
    "config",
    ConfigError,
    r"run\.amp: .*amp='bf61' is not a valid option",
    r"did you mean 'bf16'\?",
)
def _misspelt_amp(folder: Path) -> Call:
    """A mixed-precision mode with swapped digits (``run.amp=bf61``)."""
    return lambda: issl.pretrain(_pretrain_config(folder, run={"amp": "bf61"}))


@_case(
    "config-misspelt-device",
    "config",
    ConfigError,
    r"run\.device: .*device='cdua' is not a valid option",
    r"did you mean 'cuda'\?",
)
def _misspelt_device(folder: Path) -> Call:
    """A device name with swapped letters (``run.device=cdua``)."""
    return lambda: issl.pretrain(_pretrain_config(folder, run={"device": "cdua"}))


@_case(
    "config-misspelt-in-channels",
    "config",
    ConfigError,
    r"transfer\.in_channels: .*in_channels='avg' is not a valid option",
    r"expected 'error', 'repeat' or 'average'; did you mean 'average'\?",
)
def _misspelt_in_channels(folder: Path) -> Call:
    """An input-channel adaptation mode abbreviated (``transfer.in_channels=avg``)."""
    return lambda: issl.finetune(_config(folder, transfer={"in_channels": "avg"}))


# -- weights that are not usable numbers -------------------------------------------------------


def _spoiled_checkpoint(folder: Path, spoil: str) -> Path:
    """A real pretraining checkpoint, written by the library, whose first kernel is spoiled."""
    state = {k: v.clone() for k, v in _tiny_unet().state_dict().items()}
    if spoil == "nan":
        state[_FIRST_KERNEL].view(-1)[:2] = float("nan")
    elif spoil == "inf":
        state[_FIRST_KERNEL].view(-1)[0] = float("inf")
    meta = CheckpointMeta(
        kind="pretrain",
        backbone="unet2d",
        backbone_params={"depth": 2, "base_width": 4},
        in_channels=1,
        out_channels=1,
    )
    save_checkpoint(folder, state, meta)
    return folder


@_case(
    "checkpoint-nan-pretrained-weights",
    "checkpoint",
    CheckpointError,
    r"pretrained weights .*pre/checkpoints/best: 1 tensor\(s\) of the transferred parts \(encoder\)",
    r"encoder\.levels\.0\.0\.0\.weight has 2 non-finite value\(s\) of 36 \(2 NaN, 0 Inf\)",
)
def _nan_pretrained(folder: Path) -> Call:
    """Fine-tuning from a pretraining checkpoint whose first encoder kernel holds NaN."""
    pretrained = _spoiled_checkpoint(folder / "pre" / "checkpoints" / "best", "nan")
    return lambda: issl.finetune(_config(folder, transfer={"pretrained": str(pretrained)}))


@_case(
    "checkpoint-inf-pretrained-weights",
    "checkpoint",
    CheckpointError,
    r"pretrained weights .*best: 1 tensor\(s\)",
    r"encoder\.levels\.0\.0\.0\.weight has 1 non-finite value\(s\) of 36 \(0 NaN, 1 Inf\)",
)
def _inf_pretrained(folder: Path) -> Call:
    """A pretraining checkpoint whose first encoder kernel holds +Inf, transferred with the API."""
    pretrained = _spoiled_checkpoint(folder / "best", "inf")
    return lambda: issl.transfer(pretrained, _tiny_unet(out_channels=2), weights="encoder_decoder")


@_case(
    "checkpoint-integer-pretrained-weights",
    "checkpoint",
    CheckpointError,
    r"pretrained weights .*quantised\.safetensors",
    r"encoder\.levels\.0\.0\.0\.weight has dtype torch\.int8, expected a floating-point dtype",
)
def _integer_pretrained(folder: Path) -> Call:
    """A ``.safetensors`` file whose encoder kernels were saved as int8 (quantised export)."""
    state = _tiny_unet().state_dict()
    spoiled = {
        k: (v * 100).to(torch.int8) if k.startswith("encoder.") and v.ndim == 4 else v
        for k, v in state.items()
    }
    path = folder / "quantised.safetensors"
    save_file({k: v.contiguous() for k, v in spoiled.items()}, str(path))
    return lambda: issl.transfer(path, _tiny_unet(out_channels=2))


# -- plugins: a bug inside a factory is not a parameter problem -------------------------------


class _BuggySampler:
    """A plugin sampler whose constructor has a bug of its own (adds a str to an int)."""

    def __init__(self, *, spacing: int = 2) -> None:
        self.spacing = spacing + "px"  # type: ignore[operator]


@contextlib.contextmanager
def _registered(name: str, factory: type) -> Iterator[None]:
    SAMPLERS.register(name)(factory)
    try:
        yield
    finally:
        SAMPLERS.unregister(name)


@_case(
    "runtime-plugin-factory-type-error",
    "runtime",
    TypeError,
    r"^unsupported operand type\(s\) for \+: 'int' and 'str'$",
)
def _plugin_factory_type_error(folder: Path) -> Call:
    """A sampler plugin whose constructor raises ``TypeError`` from a bug inside it."""

    def call() -> object:
        with _registered("buggy_case_sampler", _BuggySampler):
            return issl.pretrain(_pretrain_config(folder, pretext={"sampler": "buggy_case_sampler"}))

    return call


@_case(
    "config-plugin-wrong-params",
    "config",
    TypeError,
    r"samplers 'poisson_disc': invalid parameters \['candidatez'\] \(it accepts candidates, attempts; "
    r"did you mean 'candidatez' -> 'candidates'\?\)",
    r"got an unexpected keyword argument 'candidatez'",
)
def _plugin_wrong_params(folder: Path) -> Call:
    """A misspelt sampler parameter (``pretext.params.sampler_params={candidatez: 5}``)."""
    pretext = {"sampler": "poisson_disc", "params": {"sampler_params": {"candidatez": 5}}}
    return lambda: issl.pretrain(_pretrain_config(folder, pretext=pretext))
