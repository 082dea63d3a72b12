"""Typed run configuration (pydantic v2) with YAML/JSON loading and dotted overrides.

Defaults are the paper's settings (Dominic et al. 2023, sec. 2.3-2.5 and Appendix A.1): batch size
9, early stopping on validation loss (pretraining min-delta 50 / patience 4, segmentation
min-delta 1e-3 / patience 10), context restoration with 32x32 Poisson-disc patches covering 1/4 of
the image, a depth-5 width-32 U-Net. The training recipe is the exception: by default
``optim.recipe = "budget"`` (Adam(0.9, 0.999), peak 1e-2 with warm-up and cosine decay over the
run's budget, Dice + cross-entropy), which converges within short budgets; ``optim.recipe =
"paper"`` is Appendix A.1 exactly (Adam(0.99, 0.995), 1e-3 decayed by 0.9 every two epochs, Dice).
See :data:`RECIPES`.

Every model forbids unknown fields, so a typo fails with the field's dotted path.

Example:
    >>> from inpaintssl.config import PretrainConfig, apply_overrides
    >>> cfg = apply_overrides(PretrainConfig(), ["optim.lr=1e-4", "pretext.patch_size=16"])
    >>> cfg.optim.lr, cfg.pretext.patch_size
    (0.0001, 16)
"""

from __future__ import annotations

import functools
import json
import os
import re
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from inpaintssl.defaults import DEFAULT_BANK_SIZE, DEFAULT_COVERAGE, DEFAULT_PATCH_SIZE, DEFAULT_SAMPLER
from inpaintssl.options import check_option, format_choices

__all__ = [
    "RECIPES",
    "ConfigError",
    "DataConfig",
    "EarlyStoppingConfig",
    "EvaluateConfig",
    "FinetuneConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "PretextConfig",
    "PretrainConfig",
    "RecipeDefaults",
    "RunConfig",
    "SourceConfig",
    "TransferConfig",
    "apply_overrides",
    "update_fields",
    "config_to_yaml",
    "format_validation_error",
    "load_config",
    "read_config_file",
    "read_config_text",
    "recipe_filled",
]

ModelT = TypeVar("ModelT", bound=BaseModel)

_MAX_BATCH = 100_000
"""The largest batch size a config accepts."""


class ConfigError(ValueError):
    """A configuration could not be read or failed validation; the message names each field path."""


@functools.cache
def _option_choices(model: type[BaseModel], name: str) -> tuple[str, ...] | None:
    """The names a string-choice field accepts, or ``None`` for any other kind of field.

    Only fields whose every member is a string ``Literal`` (``None`` aside) count: a field such
    as ``Literal["auto"] | bool`` also takes ``"true"``, which is pydantic's to parse.
    """
    field = model.model_fields.get(name)
    if field is None:
        return None
    members = [field.annotation]
    choices: list[str] = []
    while members:
        member = members.pop(0)
        origin = typing.get_origin(member)
        if origin is typing.Union or origin is types.UnionType:
            members.extend(typing.get_args(member))
        elif origin is Literal and all(isinstance(arg, str) for arg in typing.get_args(member)):
            choices.extend(typing.get_args(member))
        elif member is not type(None):
            return None
    return tuple(choices) or None


def _check_device(value: str, *, field: str) -> str:
    if value.startswith("cuda:") and value[5:].isdigit():
        return value
    choices = ("auto", "cpu", "cuda", "cuda:N")
    if value == "cuda:N":  # the message's placeholder for a GPU index, not a device
        raise ValueError(
            f"{field}={value!r} is not a valid option: expected {format_choices(choices)} with N a GPU "
            "index, e.g. 'cuda:0'"
        )
    return check_option(value, choices, field=field)


Device = Annotated[str, AfterValidator(functools.partial(_check_device, field="device"))]
"""``auto``, ``cpu``, ``cuda`` or ``cuda:N``, checked with a "did you mean"."""


class _Strict(BaseModel):
    # allow_inf_nan=False: an infinite or NaN rate, fraction or tolerance is a typo; caught here,
    # not as a non-finite loss at the first step.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _known_option(cls, value: Any, info: ValidationInfo) -> Any:
        # Runs before pydantic's own Literal check, whose message has no "did you mean".
        choices = _option_choices(cls, info.field_name) if info.field_name else None
        if choices is not None and value is False and "off" in choices:
            # YAML 1.1 reads a bare `off` (and `no`, `false`) as the boolean false.
            return "off"
        if choices is not None and value is True:
            # A bare `on` (or `yes`, `true`) arrives as the boolean true, which names no choice.
            raise ValueError(
                f"{info.field_name}=true is not a valid option: expected {format_choices(choices)} "
                "(YAML reads a bare on, yes or true as the boolean true; write one of these names)"
            )
        if choices is not None and isinstance(value, str):
            return check_option(value, choices, field=info.field_name or "option")
        if isinstance(value, bool) and info.field_name and _is_number_field(cls, info.field_name):
            # bool is an int in Python: `batch_size: true` (or `max_epochs: yes # TODO`) would be 1.
            raise ValueError(
                f"{info.field_name}={str(value).lower()} is a boolean; expected a number (YAML reads a "
                "bare yes, no, on, off, true or false as a boolean)"
            )
        return value


def _is_number_field(model: type[BaseModel], name: str) -> bool:
    """Whether the field ``name`` takes an int or float and no bool."""
    field = model.model_fields.get(name)
    if field is None:
        return False
    annotation = field.annotation
    options = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else (annotation,)
    )
    return bool(set(options) & {int, float}) and bool not in options


def user_path(value: Any, *, field: str) -> Any:
    """A path field's value with ``~`` and ``$VAR`` expanded; an empty one is refused.

    Raises:
        ValueError: The path is empty (it would mean the working directory) or names an
            environment variable that is not set.
    """
    if value is None or not isinstance(value, (str, Path)):
        return value
    text = str(value)
    if not text.strip():
        raise ValueError(f"{field}: the path is empty; expected a folder or file path (write . for here)")
    expanded = os.path.expandvars(os.path.expanduser(text))
    unset = sorted(set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", expanded)))
    if unset:
        raise ValueError(
            f"{field}={text!r} names the environment variable(s) {', '.join('$' + u for u in unset)}, "
            "which are not set in this process"
        )
    return expanded  # a str: the field's own validation makes it a Path (in JSON mode too)


class SourceConfig(_Strict):
    """One data source: a registered dataset name and its parameters.

    Attributes:
        dataset: Name in :data:`inpaintssl.registry.DATASETS` (``mni152``, ``skmtea``, ``ct``,
            ``nifti``, ``numpy``, ``hdf5`` or a plugin).
        params: Keyword arguments for the dataset factory (paths, slice axis, windows, ...).
        fraction: Share of this source's volumes used (seeded, nested), in (0, 1].
    """

    dataset: str = "mni152"
    params: dict[str, Any] = Field(default_factory=dict)
    fraction: float = Field(default=1.0, gt=0.0, le=1.0)


class DataConfig(_Strict):
    """Training data (sec. 2.1, 2.2, 2.6).

    Attributes:
        dataset: Registered dataset name of the labelled (fine-tuning) or main (pretraining) source.
        params: Keyword arguments for the dataset factory.
        image_size: ``(H, W)`` every slice is cropped/padded or resized to; ``None`` keeps the
            dataset's own size (it must then be divisible by ``2**(depth-1)``).
        resize_mode: ``crop_or_pad`` (centre) or ``resize`` (bilinear images, nearest labels).
        label_fraction: Share of training volumes with labels used for fine-tuning (sec. 2.1:
            1.0, 0.5, 0.25, 0.1, 0.05); subsets are nested and seeded by ``subset_seed``.
        subset_seed: Seed of the label-limited subset draw.
        splits_file: A split JSON written by an earlier run; when given, its subsets are reused.
        unlabelled: Extra unlabelled sources added to the pretraining set (sec. 2.6).
        num_workers: DataLoader worker processes.
        val_max_images: Cap on validation slices (evenly spaced), ``None`` for all.
    """

    dataset: str = "mni152"
    params: dict[str, Any] = Field(default_factory=dict)
    image_size: tuple[int, int] | None = None
    resize_mode: Literal["crop_or_pad", "resize"] = "crop_or_pad"
    label_fraction: float = Field(default=1.0, gt=0.0, le=1.0)
    subset_seed: int = Field(default=0, ge=0, lt=2**32)
    splits_file: Path | None = None
    unlabelled: list[SourceConfig] = Field(default_factory=list)
    num_workers: int = Field(default=0, ge=0)
    val_max_images: int | None = Field(default=None, gt=0)

    @field_validator("image_size")
    @classmethod
    def _positive_size(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and (value[0] <= 0 or value[1] <= 0):
            raise ValueError(f"image_size must be two positive integers, got {value}")
        return value


class ModelConfig(_Strict):
    """Backbone (sec. 2.3, Appendix A.1).

    Attributes:
        backbone: Name in :data:`inpaintssl.registry.BACKBONES`.
        params: Extra keyword arguments (``depth``, ``base_width``, ``groups``, ...); the input
            and output channel counts are filled in from the data.
    """

    backbone: str = "unet2d"
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("params")
    @classmethod
    def _channels_come_from_the_data(cls, value: dict[str, Any]) -> dict[str, Any]:
        given = sorted({"in_channels", "out_channels"} & set(value))
        if given:
            raise ValueError(
                f"{', '.join(given)}: filled in from the data (its image channels, its classes, or "
                "the image channels again for pretraining); leave them out of model.params"
            )
        return value


TWO_RUN_SCHEDULES: tuple[str, ...] = ("immediate_twice", "freeze_then_unfreeze")
"""``transfer.schedule`` values with a second run at ``transfer.second_lr`` (the paper's ``??S`` models)."""


class PretextConfig(_Strict):
    """Inpainting pretext task (sec. 2.4, 2.5.2).

    Attributes:
        task: ``context_prediction`` or ``context_restoration`` (or a plugin).
        patch_size: Square patch side K in pixels.
        sampler: ``poisson_disc`` or ``random`` (or a plugin).
        coverage: Share of the image area corrupted (the paper fixes 1/4).
        bank_size: Masks precomputed per run before 0/90/180/270 degree rotation.
        params: Extra keyword arguments for the task factory.
    """

    task: str = "context_restoration"
    patch_size: int = Field(default=DEFAULT_PATCH_SIZE, gt=0)
    sampler: str = DEFAULT_SAMPLER
    coverage: float = Field(default=DEFAULT_COVERAGE, gt=0.0, lt=1.0)
    bank_size: int = Field(default=DEFAULT_BANK_SIZE, gt=0)
    params: dict[str, Any] = Field(default_factory=dict)


Recipe = Literal["budget", "paper"]
CompileMode = Literal["off", "default", "reduce-overhead", "max-autotune"]
Schedule = Literal["warmup_cosine", "step_decay"]


@dataclass(frozen=True)
class RecipeDefaults:
    """What a training recipe sets when the config leaves a field at ``None``.

    Attributes:
        lr: Initial (``step_decay``) or peak (``warmup_cosine``) learning rate.
        betas: Adam's ``(beta1, beta2)``.
        schedule: ``warmup_cosine`` (over the whole run) or ``step_decay`` (per epoch).
        loss: Segmentation loss name (fine-tuning).
        loss_params: Its parameters.
    """

    lr: float
    betas: tuple[float, float]
    schedule: Schedule
    loss: str
    loss_params: Mapping[str, Any]


RECIPES: Mapping[str, RecipeDefaults] = types.MappingProxyType(
    {
        # Chosen on validation data of the demo (docs/training.rst, benchmarks/recipe_search.py):
        # the best pretraining L2 and fine-tuning Dice of the candidates within 200 steps.
        "budget": RecipeDefaults(
            lr=1e-2, betas=(0.9, 0.999), schedule="warmup_cosine", loss="dice_ce", loss_params={}
        ),
        # Appendix A.1, exactly: Adam(0.99, 0.995), 1e-3 decayed x0.9 every 2 epochs, Dice with sigmoid heads.
        "paper": RecipeDefaults(
            lr=1e-3, betas=(0.99, 0.995), schedule="step_decay", loss="dice", loss_params={}
        ),
    }
)
"""The named training recipes: ``budget`` (the default) and ``paper`` (Appendix A.1)."""


class OptimConfig(_Strict):
    """Optimiser and learning-rate schedule.

    ``recipe`` fills every field left at ``None`` (:data:`RECIPES`):

    - ``budget`` (default): Adam(0.9, 0.999) at a peak rate of ``lr``, a linear warm-up over the
      first ``warmup_fraction`` of the run, then a half cosine down to ``min_lr`` at the last
      step. The schedule is defined over the run's whole budget (``max_epochs`` x steps per
      epoch), so a short run still ends on a small learning rate and converges.
    - ``paper``: Appendix A.1 exactly: Adam(0.99, 0.995), 1e-3, and the rate at epoch ``e``
      (0-based) is ``max(lr * lr_decay ** floor((1 + e) / lr_decay_every), min_lr)``; made for
      about a hundred epochs over thousands of slices.

    A field given explicitly (``optim.lr=1e-4``) wins over the recipe.

    Attributes:
        recipe: ``budget`` or ``paper``.
        lr: Initial/peak learning rate (``None``: the recipe's).
        betas: Adam's betas (``None``: the recipe's).
        schedule: ``warmup_cosine`` or ``step_decay`` (``None``: the recipe's).
        warmup_fraction: Share of the run's steps spent warming up (``warmup_cosine``).
        lr_decay: Factor per decay step (``step_decay``).
        lr_decay_every: Epochs per decay step (``step_decay``).
        min_lr: Floor of ``step_decay``, end point of ``warmup_cosine``.
        steps_per_epoch: ``None`` (the paper): an epoch is one pass over the training data.
            A number fixes the optimisation steps per epoch: shorter data is passed over again
            (re-shuffled), longer data is cut, so tiny label fractions still train properly.
        grad_clip: Clip the global gradient norm to this value (``None``: no clipping).

    Example:
        >>> OptimConfig().effective_schedule, OptimConfig(recipe="paper").effective_betas
        ('warmup_cosine', (0.99, 0.995))
    """

    recipe: Recipe = "budget"
    lr: float | None = Field(default=None, gt=0.0)
    betas: tuple[float, float] | None = None
    eps: float = Field(default=1e-8, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    schedule: Schedule | None = None
    warmup_fraction: float = Field(default=0.05, ge=0.0, lt=1.0)
    lr_decay: float = Field(default=0.9, gt=0.0, le=1.0)
    lr_decay_every: int = Field(default=2, gt=0)
    min_lr: float = Field(default=1e-8, ge=0.0)
    # Upper bounds far above any real run, so that a slip (1e30 epochs) fails here, naming the field.
    batch_size: int = Field(default=9, gt=0, le=_MAX_BATCH)
    max_epochs: int = Field(default=100, gt=0, le=100_000)
    steps_per_epoch: int | None = Field(default=None, gt=0, le=10_000_000)
    grad_clip: float | None = Field(default=None, gt=0.0)

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, value: tuple[float, float] | None) -> tuple[float, float] | None:
        if value is not None and not all(0.0 <= b < 1.0 for b in value):
            raise ValueError(f"betas must lie in [0, 1), got {value}")
        return value

    @model_validator(mode="after")
    def _min_lr_below_lr(self) -> OptimConfig:
        if self.min_lr > self.effective_lr:
            raise ValueError(
                f"optim.min_lr ({self.min_lr:g}) must not exceed the learning rate ({self.effective_lr:g})"
            )
        return self

    @property
    def defaults(self) -> RecipeDefaults:
        """The recipe's values for the fields left at ``None``."""
        return RECIPES[self.recipe]

    @property
    def effective_lr(self) -> float:
        """``lr``, or the recipe's."""
        return self.defaults.lr if self.lr is None else self.lr

    @property
    def effective_betas(self) -> tuple[float, float]:
        """``betas``, or the recipe's."""
        return self.defaults.betas if self.betas is None else self.betas

    @property
    def effective_schedule(self) -> Schedule:
        """``schedule``, or the recipe's."""
        return self.defaults.schedule if self.schedule is None else self.schedule


class EarlyStoppingConfig(_Strict):
    """Stop when validation loss has not improved by more than ``min_delta`` for ``patience`` epochs.

    Attributes:
        min_delta: Minimum decrease of the validation loss that counts as an improvement.
            ``None`` (pretraining's default): 50 per 512x512 slice (sec. 2.5.2), scaled to the
            slices' area, since the L2 loss is summed over pixels; the run records the number.
        patience: Epochs without improvement before the run stops.
        convergence_tolerance: A run that did not stop early counts as converged when the last
            fifth of its epochs made at most this share of its validation-loss improvement
            (see :func:`inpaintssl.training.convergence.assess_convergence`).
    """

    min_delta: float | None = Field(default=1e-3, ge=0.0)
    patience: int = Field(default=10, gt=0)
    convergence_tolerance: float = Field(default=0.05, gt=0.0, lt=1.0)


class LossConfig(_Strict):
    """Segmentation loss: a name in :data:`inpaintssl.registry.LOSSES` and its parameters.

    ``name=None`` takes the optimisation recipe's loss and parameters (``optim.recipe``; see
    :data:`RECIPES`); parameters given with ``name=None`` are added to the recipe's.
    """

    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class TransferConfig(_Strict):
    """How pretrained weights enter fine-tuning (sec. 2.5.1, Appendix B).

    Attributes:
        pretrained: A pretraining run folder, its checkpoint folder or a ``.safetensors`` file;
            ``None`` trains from scratch (the fully supervised baseline).
        weights: Transfer strategy name: ``encoder`` or ``encoder_decoder``.
        schedule: ``immediate`` (fine-tune everything at ``optim.lr``, the paper's F?F),
            ``immediate_twice`` (then train everything again at ``second_lr``, F?S), ``frozen``
            (train only the fresh parts, FF?F) or ``freeze_then_unfreeze`` (train only the fresh
            parts to convergence, then unfreeze all and train again at ``second_lr``, FF?S).
        second_lr: Initial learning rate of the second run (defaults to ``optim.lr / 10``).
        in_channels: What to do when pretrained and fine-tuned input channels differ:
            ``error``, ``repeat`` (tile the first-layer kernels, scaled) or ``average``.
    """

    pretrained: Path | None = None
    weights: str = "encoder"
    schedule: Literal["immediate", "immediate_twice", "frozen", "freeze_then_unfreeze"] = "immediate"
    second_lr: float | None = Field(default=None, gt=0.0)
    in_channels: Literal["error", "repeat", "average"] = "error"

    @field_validator("pretrained", mode="before")
    @classmethod
    def _home(cls, value: Any) -> Any:
        return user_path(value, field="pretrained")


class RunConfig(_Strict):
    """Where and how a run executes.

    Attributes:
        output_dir: Run folder (config, manifest, metrics CSV, checkpoints).
        seed: Seed of weights, data order, corruption and workers, in ``[0, 2**32)`` (what every
            random generator involved takes, DataLoader workers' ``seed * 1000 + worker`` included).
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``.
        amp: Mixed precision on CUDA: ``auto`` (bf16 where supported, else fp16), ``bf16``,
            ``fp16`` or ``off``. Ignored on CPU.
        channels_last: Memory format: ``auto`` (``channels_last`` on the CPU, where oneDNN's
            forward convolutions gain from it; contiguous on CUDA, where GroupNorm has no
            channels-last kernel and copies every activation), ``true`` or ``false``.
        deterministic: Seed everything and use deterministic algorithms (bit-identical CPU runs).
        reuse_host_memory: On the CPU, make glibc keep freed large blocks for reuse instead of
            unmapping them, so a step does not page-fault its activations back in (1.25-1.33x
            faster steps on the project machine, at 19-29% more peak memory: off by default).
            Process-wide; Linux/glibc only. See :mod:`inpaintssl.training.host_memory`.
        cpu_weight_gradient: How channels_last CPU training computes the U-Net's 3x3 weight
            gradients: ``auto`` (per layer, whichever measured faster for its shape),
            ``blocked_gemm`` (blocked im2col GEMMs everywhere, 2x faster than oneDNN's NHWC
            kernel at 256x256 on the project's AVX2 processor) or ``onednn`` (PyTorch's own
            everywhere). See :mod:`inpaintssl.models.cpu_convolution`. Under ``compile`` the
            compiler generates the backward pass itself and this setting does not apply.
        compile: ``torch.compile`` the network for the training steps: ``off`` (the default;
            eager PyTorch, bit-identical CPU runs), ``default``, ``reduce-overhead`` (also
            replays each step as a CUDA graph, which saves the launch cost of the many small
            kernels of a narrow U-Net) or ``max-autotune`` (also searches kernel configurations;
            slow to compile). The compiler fuses each GroupNorm with its ReLU and the weight
            standardisation into the surrounding kernels in either memory format, so on CUDA
            it is what makes ``channels_last`` pay. Results agree with eager training to
            floating-point rounding, not bit for bit; compiling costs tens of seconds to minutes
            at the first step and after a change of batch shape. Validation stays eager. See
            :mod:`inpaintssl.training.step` and ``benchmarks/README.md``.
        cudnn_benchmark: On CUDA, let cuDNN time its convolution algorithms for every new input
            shape and keep the fastest (``torch.backends.cudnn.benchmark``): faster steps when
            every batch has one shape, but the algorithms, and so the last bits of the results,
            may differ from run to run. Cannot be combined with ``deterministic``. No effect on
            the CPU.
        resume: Continue from the run folder's last checkpoint.
        quiet: No progress bars; log lines only.
        checkpoint_every: Save the ``last`` checkpoint every this many epochs.
    """

    output_dir: Path = Path("runs/run")
    seed: int = Field(default=0, ge=0, lt=2**32)
    device: Device = "auto"
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: Literal["auto"] | bool = "auto"
    deterministic: bool = False
    reuse_host_memory: bool = False
    cpu_weight_gradient: Literal["auto", "blocked_gemm", "onednn"] = "auto"
    compile: CompileMode = "off"
    cudnn_benchmark: bool = False
    resume: bool = False
    quiet: bool = False
    checkpoint_every: int = Field(default=1, gt=0)

    @field_validator("output_dir", mode="before")
    @classmethod
    def _home(cls, value: Any) -> Any:
        # "~" and "$SCRATCH" reach a config from YAML and job scripts unexpanded; "" would be here.
        return user_path(value, field="output_dir")

    @model_validator(mode="after")
    def _reproducible_or_autotuned(self) -> RunConfig:
        if self.deterministic and self.cudnn_benchmark:
            raise ValueError(
                "run.deterministic=true and run.cudnn_benchmark=true contradict each other: cuDNN's "
                "autotuning picks algorithms by timing, so results may differ from run to run; "
                "set one of them to false"
            )
        return self


def _pretrain_stopping() -> EarlyStoppingConfig:
    # min_delta None: 50 per 512x512 slice, scaled to the run's slice area when it starts.
    return EarlyStoppingConfig(min_delta=None, patience=4)


def _corruption_problem(pretext: PretextConfig, image_size: tuple[int, int]) -> str | None:
    """Why ``pretext`` cannot corrupt ``image_size`` images, or ``None`` when it can (or is unknown).

    The same checks the sampler makes at the first batch, made at validation time: patch larger
    than the image, one patch covering more than the coverage, pairs that do not fit, and (for
    ``poisson_disc``) more non-overlapping patches than any packing holds.
    """
    # Imported here: the samplers pull in NumPy and Numba, which reading a config does not need.
    from inpaintssl.corruption.samplers import check_request
    from inpaintssl.registry import PRETEXT_TASKS, SAMPLERS

    try:
        pairs = bool(getattr(PRETEXT_TASKS.get(pretext.task), "pairs", False))
        sampler: object = SAMPLERS.build(pretext.sampler, **dict(pretext.params.get("sampler_params") or {}))
    except Exception:  # noqa: BLE001 - an unknown or broken name is reported when the run builds it
        return None
    try:
        check_request(
            sampler=sampler,
            shape=image_size,
            patch_size=pretext.patch_size,
            coverage=pretext.coverage,
            pairs=pairs,
        )
    except ValueError as exc:
        return (
            f"pretext.patch_size={pretext.patch_size} with pretext.coverage={pretext.coverage} "
            f"(task {pretext.task!r}, sampler {pretext.sampler!r}) does not fit "
            f"data.image_size={tuple(image_size)}: {exc}"
        )
    return None


class _StageConfig(_Strict):
    """The sections both training stages open with: the data and the network."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)


class PretrainConfig(_StageConfig):
    """Everything :func:`inpaintssl.pretrain` needs (sec. 2.3-2.5).

    When ``data.image_size`` is set, the pretext task's patches are checked against it here, so
    a request the sampler cannot meet fails when the config is read, not at the first batch.

    Example:
        >>> PretrainConfig.model_validate(
        ...     {"data": {"image_size": [64, 64]}, "pretext": {"patch_size": 64}}
        ... )  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        pydantic_core._pydantic_core.ValidationError: 1 validation error for PretrainConfig
          Value error, pretext.patch_size=64 with pretext.coverage=0.25 ... one patch alone covers 100%...
    """

    pretext: PretextConfig = Field(default_factory=PretextConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=_pretrain_stopping)
    run: RunConfig = Field(default_factory=RunConfig)

    @model_validator(mode="after")
    def _patches_fit_the_image(self) -> PretrainConfig:
        size = self.data.image_size
        problem = None if size is None else _corruption_problem(self.pretext, size)
        if problem is not None:
            raise ValueError(problem)
        return self


class FinetuneConfig(_StageConfig):
    """Everything :func:`inpaintssl.finetune` needs (sec. 2.5.1, Appendix B)."""

    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    transfer: TransferConfig = Field(default_factory=TransferConfig)
    run: RunConfig = Field(default_factory=RunConfig)

    @model_validator(mode="after")
    def _min_delta_is_a_number(self) -> FinetuneConfig:
        if self.early_stopping.min_delta is None:
            raise ValueError(
                "early_stopping.min_delta: null (scaled to the slice area) applies to pretraining's "
                "summed L2 loss; fine-tuning's losses are per-pixel means: give a number (default 1e-3)"
            )
        return self

    @property
    def loss_name(self) -> str:
        """``loss.name``, or the recipe's loss."""
        return self.optim.defaults.loss if self.loss.name is None else self.loss.name

    @property
    def loss_params(self) -> dict[str, Any]:
        """``loss.params``, over the recipe's parameters when the recipe's loss is used."""
        base = dict(self.optim.defaults.loss_params) if self.loss.name is None else {}
        return {**base, **self.loss.params}

    @model_validator(mode="after")
    def _second_lr_needs_schedule(self) -> FinetuneConfig:
        if self.transfer.schedule in ("frozen", "freeze_then_unfreeze") and self.transfer.pretrained is None:
            raise ValueError(
                f"transfer.schedule {self.transfer.schedule!r} needs transfer.pretrained "
                "(there is nothing to freeze when training from scratch)"
            )
        return self


class EvaluateConfig(_Strict):
    """Everything :func:`inpaintssl.evaluate` needs when driven from a file or the CLI.

    Attributes:
        checkpoint: A run folder, checkpoint folder or ``.safetensors`` file.
        data: The data to evaluate (the ``test`` split of ``data.dataset``).
        split: Which split to evaluate.
        output: CSV path for the per-image table (defaults to ``<run>/eval_<split>.csv``).
        device: As in :class:`RunConfig`.
    """

    checkpoint: Path
    data: DataConfig = Field(default_factory=DataConfig)
    split: Literal["train", "val", "test"] = "test"
    output: Path | None = None
    device: Device = "auto"
    batch_size: int = Field(default=9, gt=0, le=_MAX_BATCH)


def format_validation_error(
    exc: ValidationError,
    *,
    header: str,
    root: str,
    unknown: str = "unknown field",
    quiet: Collection[str] = ("extra_forbidden", "missing"),
) -> str:
    """One line per error under ``header``: the field's dotted path, what is wrong and the value found.

    Shared by run configs and study specs, so both read alike: pydantic's "Value error, " prefix is
    dropped, and an error with no location (a check across sections) is named ``root``.

    Args:
        exc: pydantic's error.
        header: The first line, e.g. ``"invalid configuration in pre.yaml:"``.
        root: The name for an error with no field path.
        unknown: What an unknown field is called.
        quiet: Error types whose value is not repeated (the message names it, or there is none).

    Example:
        >>> from pydantic import BaseModel
        >>> class Optim(BaseModel):
        ...     lr: float
        >>> try:
        ...     Optim.model_validate({"lr": "fast"})
        ... except ValidationError as exc:
        ...     print(format_validation_error(exc, header="invalid optim:", root="optim"))
        invalid optim:
          lr: Input should be a valid number, unable to parse string as a number (found 'fast')
    """
    lines = [header]
    for err in exc.errors():
        # A check across sections has no single field: it names its fields itself.
        path = ".".join(str(p) for p in err["loc"]) or root
        detail = unknown if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        # A model-level error (empty location) would echo the whole input: say only what is wrong.
        silent = err["type"] in quiet or not err["loc"]
        found = "" if silent else f" (found {err.get('input')!r})"
        lines.append(f"  {path}: {detail}{found}")
    return "\n".join(lines)


def _format_validation_error(exc: ValidationError, *, source: str) -> str:
    return format_validation_error(
        exc,
        header=f"invalid configuration in {source}:",
        root="config",
        unknown="unknown field (check the spelling; see `inpaintssl config schema`)",
    )


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like 'section.field=value'")
    key, raw = item.split("=", 1)
    path = key.strip().split(".")
    if not all(path):
        # optim..lr or .optim.lr: a slip the user should see, not a path silently mended.
        raise ConfigError(
            f"override {item!r}: an empty name in the field path; expected e.g. 'optim.lr=0.01'"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from exc
    return path, value


def _set_path(data: dict[str, Any], path: list[str], value: Any, *, item: str) -> None:
    node = data
    for part in path[:-1]:
        # Only a missing key starts a new section: a field present as null (optim.lr left to the
        # recipe) is a value, and descending into it is the same mistake as into a number.
        if part not in node:
            node[part] = {}
        child = node[part]
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part!r} is not a section (found {child!r})")
        node = child
    node[path[-1]] = value


def _revalidated(cls: type[ModelT], data: dict[str, Any], *, source: str) -> ModelT:
    """``cls`` validated from ``data`` (an updated dump); a failure names ``source`` and the field."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source=source)) from exc


def _check_override_list(overrides: Sequence[str]) -> None:
    # A string is a sequence too: "optim.lr=1" would be read one letter at a time.
    if isinstance(overrides, (str, bytes)):
        raise ConfigError(
            f"overrides: expected a list of 'section.field=value' strings, found the string {overrides!r}; "
            f"write [{overrides!r}]"
        )


def apply_overrides(config: ModelT, overrides: Sequence[str]) -> ModelT:
    """Return a copy of ``config`` with dotted ``key=value`` overrides applied and re-validated.

    Values are parsed as YAML (``1e-4`` -> float, ``[64, 64]`` -> list, ``null`` -> None).

    Raises:
        ConfigError: Malformed override or a value that fails validation; names the field path.
    """
    _check_override_list(overrides)
    data = config.model_dump(mode="json")
    for item in overrides:
        path, value = _parse_override(item)
        _set_path(data, path, value, item=item)
    return _revalidated(type(config), data, source="overrides")


def update_fields(config: ModelT, updates: Mapping[str, Any]) -> ModelT:
    """Return a copy of ``config`` with typed values set at dotted field paths, re-validated.

    The typed twin of :func:`apply_overrides` for code (the study grid, the runner): values are
    Python objects (numbers, paths, lists, other config models), never YAML text, so nothing is
    formatted and parsed back (``1e-05`` stays a float, a path stays a path).

    Raises:
        ConfigError: A path that descends into a non-section, or a value that fails validation;
            names the field path.

    Example:
        >>> config = update_fields(PretrainConfig(), {"optim.lr": 1e-5, "run.output_dir": Path("runs/a")})
        >>> config.optim.lr, config.run.output_dir
        (1e-05, PosixPath('runs/a'))
    """
    data = config.model_dump(mode="python")
    for dotted, value in updates.items():
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="python")
        _set_path(data, dotted.split("."), value, item=f"{dotted}={value!r}")
    return _revalidated(type(config), data, source="field updates")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error.

    Plain YAML keeps the last value silently, so a config with ``lr`` twice trains at whichever
    came second and nobody notices.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} at line {line} (first given at line {seen[key]})"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"duplicate key(s) {', '.join(map(repr, duplicates))} in one JSON object")
    return dict(pairs)


def read_config_text(text: str, *, source: str, json_format: bool = False) -> Any:
    """Parse YAML (or JSON) config text; a key repeated within one mapping is an error.

    Raises:
        ConfigError: Invalid syntax or a duplicate key; the message names ``source``, the key
            and (YAML) both lines.

    Example:
        >>> read_config_text("optim: {lr: 0.1}", source="example")
        {'optim': {'lr': 0.1}}
        >>> read_config_text("{lr: 0.1, lr: 0.2}", source="example")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        inpaintssl.config.ConfigError: example is not valid YAML: duplicate key 'lr' at line 1 ...
    """
    try:
        if json_format:
            # Windows editors start UTF-8 files with a byte-order mark; YAML skips it, so JSON does too.
            return json.loads(text.removeprefix("\ufeff"), object_pairs_hook=_unique_pairs)
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
    except (json.JSONDecodeError, ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if json_format else "YAML"
        detail = str(exc)
        if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
            mark = exc.problem_mark
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            detail = exc.problem if "line" in exc.problem else f"{exc.problem}{where}"
        raise ConfigError(f"{source} is not valid {kind}: {detail}") from exc


def recipe_filled(config: BaseModel) -> dict[str, Any]:
    """The values ``optim.recipe`` gives the fields a training config leaves at ``None``.

    ``config.yaml`` keeps those fields ``null`` (the recipe decides, and a resume must compare
    like with like); this says what they were: the run's manifest records it, and ``inpaintssl
    config show`` prints it under the config.

    Example:
        >>> recipe_filled(FinetuneConfig())["optim.lr"], recipe_filled(FinetuneConfig())["loss.name"]
        (0.01, 'dice_ce')
        >>> recipe_filled(FinetuneConfig.model_validate({"optim": {"lr": 0.5}})).get("optim.lr") is None
        True
    """
    optim = getattr(config, "optim", None)
    if not isinstance(optim, OptimConfig):
        return {}
    filled: dict[str, Any] = {}
    if optim.lr is None:
        filled["optim.lr"] = optim.effective_lr
    if optim.betas is None:
        filled["optim.betas"] = list(optim.effective_betas)
    if optim.schedule is None:
        filled["optim.schedule"] = optim.effective_schedule
    if isinstance(config, FinetuneConfig) and config.loss.name is None:
        filled["loss.name"] = config.loss_name
        if config.loss_params:
            filled["loss.params"] = config.loss_params
    return filled


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML (or ``.json``) config file, not validated against a schema.

    Raises:
        ConfigError: The file is missing, a folder, not UTF-8 text, not valid YAML/JSON (with
            duplicate keys refused), or not a mapping; the message names the file.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "c.yaml"
        >>> _ = path.write_text("optim: {lr: 0.1}")
        >>> read_config_file(path)
        {'optim': {'lr': 0.1}}
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder; expected a YAML or JSON file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text ({exc}); expected a YAML or JSON file"
        ) from exc
    data = read_config_text(text, source=f"config file {path}", json_format=path.suffix.lower() == ".json")
    if data is None:
        # Empty (or comments only): a truncated copy more often than a wish for every default.
        raise ConfigError(
            f"config file {path} is empty; expected a mapping of sections (data:, optim:, ...), "
            "or {} for every default"
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path}: expected a mapping at the top level, found {type(data).__name__}"
        )
    return data


def load_config(
    source: ModelT | Mapping[str, Any] | str | Path,
    cls: type[ModelT],
    *,
    overrides: Sequence[str] = (),
) -> ModelT:
    """Build a validated ``cls`` from a model, a mapping, or a YAML/JSON file, then apply overrides.

    Args:
        source: An instance of ``cls``, a plain mapping, or a path to ``.yaml``/``.yml``/``.json``.
        cls: The config model, e.g. :class:`PretrainConfig`.
        overrides: Dotted ``key=value`` strings applied last.

    Raises:
        ConfigError: Unreadable file or invalid content; the message names each field path.

    Example:
        >>> cfg = load_config({"optim": {"lr": 0.01}}, PretrainConfig)
        >>> cfg.optim.lr
        0.01
    """
    if isinstance(source, cls):
        config = source
    elif isinstance(source, BaseModel):
        raise ConfigError(f"expected a {cls.__name__}, got a {type(source).__name__}")
    else:
        if isinstance(source, (str, Path)):
            where = str(source)
            data = read_config_file(source)
        elif isinstance(source, Mapping):
            where = f"{cls.__name__} mapping"
            data = dict(source)
        else:
            raise ConfigError(
                f"config must be a {cls.__name__}, a mapping or a path, got {type(source).__name__}"
            )
        try:
            config = cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_format_validation_error(exc, source=where)) from exc
    return apply_overrides(config, overrides) if overrides else config


def config_to_yaml(config: BaseModel) -> str:
    """Serialise a config to YAML that :func:`load_config` reads back to an equal model."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
