"""The ``pretext`` section: the inpainting task pretraining corrupts its images with.

Also the check, made when a pretraining config is validated, that its patches fit the image size.

Example:
    >>> PretextConfig().patch_size, PretextConfig().sampler
    (32, 'poisson_disc')
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, field_validator

from inpaintssl.config.base import Params, _Strict
from inpaintssl.defaults import DEFAULT_BANK_SIZE, DEFAULT_COVERAGE, DEFAULT_PATCH_SIZE, DEFAULT_SAMPLER

__all__ = ["PretextConfig"]


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
    params: Params = Field(default_factory=dict)

    @field_validator("coverage", mode="before")
    @classmethod
    def _numpy_float_as_printed(cls, value: Any) -> Any:
        # float(np.float32(0.07)) is 0.07000000029802322, which asks one patch more than 0.07 and
        # hashes to another run id: a NumPy float is read as the decimal it prints as, as the
        # pretext tasks read it.
        if isinstance(value, np.floating):
            return float(str(value))
        return value

    @field_validator("params")
    @classmethod
    def _not_the_sections_own_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        # The task factory gets these from the section's fields and run.seed: given here too,
        # Python's own refusal ("multiple values for keyword argument") named neither.
        for key in value:
            if key in cls.model_fields and key != "params":
                raise ValueError(
                    f"{key} is a field of pretext itself: set pretext.{key}, not pretext.params.{key}"
                )
            if key == "seed":
                raise ValueError("seed: the task is seeded from run.seed: set run.seed, not params.seed")
        return value


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
