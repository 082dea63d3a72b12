"""The contracts every patch sampler and pretext task keeps (sec. 2.4, 2.5.2); see :mod:`inpaintssl.testing`.

A sampler's corners are what the mask banks index without bounds checks, and a task's output is
what pretraining restores from: a sampler that misses the coverage, or a task that corrupts its
input in place, trains a network silently on the wrong problem. These checks hold a plugin to
what the built-ins do, without needing the repository's own test suite.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import torch
from numpy.typing import NDArray

from inpaintssl.corruption.base import PretextTask
from inpaintssl.corruption.masks import MaskBank, patch_union
from inpaintssl.corruption.samplers import Sampler, check_sampler_signature, target_pixels
from inpaintssl.registry import PRETEXT_TASKS, SAMPLERS
from inpaintssl.testing._checks import Contract, check, combining, usable

__all__ = ["PretextTaskContract", "SamplerContract"]

Request = tuple[tuple[int, int], int, float]
"""``(shape, patch_size, coverage)`` of one sampling request."""


@contextmanager
def _raises(kinds: type[Exception] | tuple[type[Exception], ...], what: str) -> Iterator[list[str]]:
    """Expect the block to raise one of ``kinds``; the list it yields then holds the message."""
    told: list[str] = []
    try:
        yield told
    except kinds as exc:
        told.append(str(exc))
        return
    names = kinds.__name__ if isinstance(kinds, type) else " or ".join(k.__name__ for k in kinds)
    raise AssertionError(f"{what}: expected a {names}, nothing was raised")


class SamplerContract(Contract):
    """Checks one registered patch sampler; subclass it as ``Test<Something>`` and set the attributes.

    The contract of :class:`~inpaintssl.corruption.Sampler` (DESIGN.md section 1): ``sample``
    takes the keyword call the banks make and returns ``(N, 2)`` int64 corners of ``K x K``
    patches inside the image whose union covers at least ``coverage`` of it; with ``pairs`` the
    count is even and each pair does not overlap itself; the same ``rng`` seed gives the same
    corners and other seeds others; randomness comes from a :class:`numpy.random.Generator`
    only; impossible requests raise :class:`ValueError`; and mask banks build from it for both
    pretext tasks (context restoration's swaps moving at least the coverage).

    Attributes:
        sampler: Registered name to check.
        params: Keyword arguments for ``SAMPLERS.build`` (``pretext.params.sampler_params``).
        requests: ``(shape, patch_size, coverage)`` requests the checks make, square and not.
        seeds: ``rng`` seeds each request is drawn with.

    Example:
        >>> class TestRandom(SamplerContract):
        ...     sampler = "random"
        >>> TestRandom().test_corners_are_in_bounds_and_reach_the_coverage()
        >>> "test_rng_must_be_a_numpy_generator" in SamplerContract.check_names()
        True
    """

    sampler: ClassVar[str] = "poisson_disc"
    params: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    requests: ClassVar[tuple[Request, ...]] = (
        ((64, 64), 8, 0.25),
        ((40, 96), 4, 0.25),
        ((33, 57), 5, 0.1),
        ((128, 96), 16, 0.3),
    )
    seeds: ClassVar[tuple[int, ...]] = (0, 1, 2)

    # -- helpers --------------------------------------------------------------------------------
    def build(self) -> Sampler:
        """Build the sampler with :attr:`params`."""
        return SAMPLERS.build(self.sampler, **self.params)

    def _cases(self) -> Iterator[tuple[Request, int, bool]]:
        for request in self.requests:
            for seed in self.seeds:
                for pairs in (False, True):
                    yield request, seed, pairs

    def check_corners(
        self, *, shape: tuple[int, int], patch_size: int, coverage: float, seed: int, pairs: bool
    ) -> NDArray[np.int64]:
        """Draw one request and check the corners against the contract; return them.

        Raises:
            AssertionError: Naming the sampler, the request and what is wrong.
        """
        where = f"{self.sampler}: sample(shape={shape}, patch_size={patch_size}, coverage={coverage}, "
        where += f"pairs={pairs}) with seed {seed}"
        corners = self.build().sample(
            shape=shape,
            patch_size=patch_size,
            coverage=coverage,
            rng=np.random.default_rng(seed),
            pairs=pairs,
        )
        check(
            isinstance(corners, np.ndarray) and corners.dtype == np.int64,
            f"{where} returned {type(corners).__name__} of {getattr(corners, 'dtype', '?')}; expected int64",
        )
        check(
            corners.ndim == 2 and corners.shape[1] == 2 and len(corners) > 0,
            f"{where} returned shape {corners.shape}; expected (N, 2) with N > 0",
        )
        inside = (corners >= 0).all() and (corners[:, 0] <= shape[0] - patch_size).all()
        check(
            bool(inside and (corners[:, 1] <= shape[1] - patch_size).all()),
            f"{where}: a patch leaves the image",
        )
        covered = int(patch_union(corners, shape=shape, patch_size=patch_size).sum())
        needed = target_pixels(shape=shape, coverage=coverage)
        check(covered >= needed, f"{where}: the patches cover {covered} pixels; expected at least {needed}")
        if pairs:
            check(len(corners) % 2 == 0, f"{where}: {len(corners)} corners; expected pairs (an even count)")
            apart = (np.abs(corners[0::2] - corners[1::2]) >= patch_size).any(axis=1)
            check(bool(apart.all()), f"{where}: the patches of pair {int(np.argmin(apart))} overlap")
        return corners

    # -- checks ---------------------------------------------------------------------------------
    def test_registered(self) -> None:
        """The name builds a :class:`~inpaintssl.corruption.Sampler` that takes the banks' call."""
        sampler = self.build()
        check(isinstance(sampler, Sampler), f"{self.sampler}: built a {type(sampler).__name__}")
        check_sampler_signature(sampler)

    def test_corners_are_in_bounds_and_reach_the_coverage(self) -> None:
        """Every request, with and without pairs: see :meth:`check_corners`."""
        for (shape, patch_size, coverage), seed, pairs in self._cases():
            self.check_corners(shape=shape, patch_size=patch_size, coverage=coverage, seed=seed, pairs=pairs)

    def test_same_rng_seed_gives_same_corners(self) -> None:
        """Corners depend on the ``rng`` alone, not on the sampler's state or a global RNG."""
        sampler = self.build()
        for (shape, patch_size, coverage), seed, pairs in self._cases():
            request: dict[str, Any] = {
                "shape": shape,
                "patch_size": patch_size,
                "coverage": coverage,
                "pairs": pairs,
            }
            first = sampler.sample(**request, rng=np.random.default_rng(seed))
            np.random.seed(seed + 1)  # a sampler reading the global RNG would change here
            torch.manual_seed(seed + 1)
            check(
                np.array_equal(first, sampler.sample(**request, rng=np.random.default_rng(seed))),
                f"{self.sampler}: seed {seed} gave other corners the second time for {request}",
            )

    def test_different_seeds_give_different_corners(self) -> None:
        """Five seeds, five layouts: masks that do not vary teach one mask."""
        sampler = self.build()
        draws = {
            sampler.sample(
                shape=(128, 96), patch_size=8, coverage=0.25, rng=np.random.default_rng(s)
            ).tobytes()
            for s in range(5)
        }
        check(len(draws) == 5, f"{self.sampler}: 5 seeds gave {len(draws)} different layouts; expected 5")

    def test_patch_larger_than_image_raises_naming_patch_size(self) -> None:
        """A request no layout can meet is a :class:`ValueError` that names ``patch_size``."""
        for shape in ((64, 64), (40, 90)):
            with _raises(ValueError, f"{self.sampler}: patch_size=80 on a {shape} image") as told:
                self.build().sample(shape=shape, patch_size=80, rng=np.random.default_rng(0))
            check("patch_size" in told[0], f"{self.sampler}: the error {told[0]!r} does not name patch_size")

    def test_bad_coverage_raises(self) -> None:
        """A coverage outside ``(0, 1]`` (NaN included) is a :class:`ValueError`."""
        for coverage in (0.0, -0.1, 1.5, math.nan):
            with _raises(ValueError, f"{self.sampler}: coverage={coverage}"):
                self.build().sample(
                    shape=(64, 64), patch_size=8, coverage=coverage, rng=np.random.default_rng(0)
                )

    def test_pairs_that_cannot_fit_raise(self) -> None:
        """Two non-overlapping 16-pixel patches do not fit 20 x 30: a :class:`ValueError`."""
        with _raises(ValueError, f"{self.sampler}: a pair of 16x16 patches on a 20x30 image"):
            rng = np.random.default_rng(0)
            self.build().sample(shape=(20, 30), patch_size=16, coverage=1.0, rng=rng, pairs=True)

    def test_rng_must_be_a_numpy_generator(self) -> None:
        """A seed or a legacy ``RandomState`` would silently change what is drawn: a :class:`TypeError`."""
        rng: Any
        for rng in (0, np.random.RandomState(0)):
            with _raises(TypeError, f"{self.sampler}: rng={type(rng).__name__}"):
                self.build().sample(shape=(64, 64), patch_size=8, rng=rng)

    def test_banks_build_for_both_tasks(self) -> None:
        """Mask banks build from it, with and without pairs (the banks check the coverage moved)."""
        for pairs in (False, True):
            bank = MaskBank.build(
                sampler=self.build(), shape=(48, 64), patch_size=4, coverage=0.25, size=8, seed=1, pairs=pairs
            )
            check(len(bank) == 32, f"{self.sampler}: a bank of 8 base masks has {len(bank)} entries")


class PretextTaskContract(Contract):
    """Checks one registered pretext task; subclass it as ``Test<Something>`` and set the attributes.

    The contract of :class:`~inpaintssl.corruption.PretextTask` (sec. 2.4): the output keeps the
    input's shape, dtype and device and leaves the input alone; every channel of an image gets
    the same corruption, changing at least the coverage, with every usable sampler (the built-ins
    and the installed plugins that load: another package's broken plugin is left out); the
    corruption is seeded (by a generator, by the task's seed, or by per-image keys independent of
    the batch); it works under ``no_grad`` and with autograd, in half precision, on an empty
    batch; bad inputs and options are refused naming them; and on CUDA it changes the pixels it
    changes on the CPU.

    Attributes:
        task: Registered name to check.
        params: Keyword arguments for ``PRETEXT_TASKS.build`` (task options besides the shared ones).
        patch_size: Patch side the checks use (images are at least 32 pixels a side).

    Example:
        >>> class TestPrediction(PretextTaskContract):
        ...     task = "context_prediction"
        >>> TestPrediction().test_output_keeps_shape_dtype_device_and_leaves_input_alone()
        >>> "test_half_precision_matches_float32" in PretextTaskContract.check_names()
        True
    """

    task: ClassVar[str] = "context_prediction"
    params: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    patch_size: ClassVar[int] = 8

    # -- helpers --------------------------------------------------------------------------------
    def build(self, **options: Any) -> PretextTask:
        """Build the task with :attr:`params`, a small bank and ``options`` taking precedence.

        The task's name is looked up first, outside :func:`combining`, so a clash of the task under
        test with a built-in still warns; the sampler it builds (the default ``poisson_disc``, or one
        in ``options``) is another component, whose clash with another package's plugin must not
        fail the check under ``-W error``.
        """
        PRETEXT_TASKS.get(self.task)
        with combining():
            task = PRETEXT_TASKS.build(
                self.task, **{"patch_size": self.patch_size, "bank_size": 3, **self.params, **options}
            )
        check(isinstance(task, PretextTask), f"{self.task}: built a {type(task).__name__}, not a PretextTask")
        return task

    # -- checks ---------------------------------------------------------------------------------
    def test_output_keeps_shape_dtype_device_and_leaves_input_alone(self) -> None:
        """Shapes square and not, one to three channels; the input is compared bit for bit."""
        for shape in ((2, 1, 32, 32), (3, 3, 40, 64), (1, 2, 96, 160)):
            images = torch.randn(shape)
            before = images.clone()
            out = self.build().corrupt(images)
            check(
                out.shape == images.shape and out.dtype == images.dtype and out.device == images.device,
                f"{self.task}: output {out.dtype} {tuple(out.shape)} for input {images.dtype} {shape}",
            )
            check(torch.equal(images, before), f"{self.task}: corrupt() modified its input")

    def test_every_channel_gets_the_same_corruption_covering_the_coverage(self) -> None:
        """With every usable sampler; continuous random pixels always change when corrupted.

        Every built-in sampler, and every installed plugin sampler that loads and builds; another
        package's broken plugin is left out, and named in the failure messages.
        """
        samplers = usable(SAMPLERS)
        for sampler in samplers.names:
            images = torch.randn(4, 3, 48, 64, dtype=torch.float64)
            task = self.build(sampler=sampler, seed=5)  # build() ignores another package's name clash
            changed = task.corrupt(images) != images
            check(
                torch.equal(changed, changed[:, :1].expand_as(changed)),
                f"{self.task} with sampler {sampler!r}: the channels of an image are corrupted "
                f"differently{samplers.note()}",
            )
            least = float(changed[:, 0].double().mean(dim=(1, 2)).min())
            check(
                least >= task.coverage,
                f"{self.task} with sampler {sampler!r}: an image has {least:.3f} of its pixels changed; "
                f"expected at least coverage={task.coverage}{samplers.note()}",
            )

    def test_same_generator_seed_gives_same_output(self) -> None:
        """The generator alone decides, whatever was drawn before or by which instance."""
        images = torch.randn(6, 2, 32, 48)
        task = self.build()
        first = task.corrupt(images, torch.Generator().manual_seed(11))
        task.corrupt(images, torch.Generator().manual_seed(99))
        check(
            torch.equal(first, self.build().corrupt(images, torch.Generator().manual_seed(11))),
            f"{self.task}: another instance gave another output for the same generator seed",
        )
        check(
            torch.equal(first, task.corrupt(images, torch.Generator().manual_seed(11))),
            f"{self.task}: the same instance gave another output for the same generator seed",
        )
        check(
            not torch.equal(first, task.corrupt(images, torch.Generator().manual_seed(12))),
            f"{self.task}: generator seeds 11 and 12 gave the same output",
        )

    def test_internal_generator_is_seeded_and_advances(self) -> None:
        """Without a generator the task's own, seeded by ``seed``, advances call by call."""
        images = torch.randn(8, 1, 32, 32)
        task = self.build(seed=3)
        first = task.corrupt(images)
        check(
            torch.equal(first, self.build(seed=3).corrupt(images)), f"{self.task}: seed=3 is not reproducible"
        )
        check(not torch.equal(first, task.corrupt(images)), f"{self.task}: a second call repeated the first")
        check(not torch.equal(first, self.build(seed=4).corrupt(images)), f"{self.task}: seeds 3 and 4 agree")

    def test_fixed_corruption_is_reproducible_across_calls_and_instances(self) -> None:
        """``corrupt_fixed``: the key and the seed decide, never the training generator."""
        images = torch.randn(5, 2, 40, 40)
        task = self.build(seed=2)
        first = task.corrupt_fixed(images, key=7)
        task.corrupt(images)  # advancing the training generator must not matter
        check(
            torch.equal(first, task.corrupt_fixed(images, key=7)), f"{self.task}: key 7 changed between calls"
        )
        check(
            torch.equal(first, self.build(seed=2).corrupt_fixed(images, key=7)),
            f"{self.task}: key 7 differs between two instances of seed 2",
        )
        check(not torch.equal(first, task.corrupt_fixed(images, key=8)), f"{self.task}: keys 7 and 8 agree")
        check(
            not torch.equal(first, self.build(seed=3).corrupt_fixed(images, key=7)),
            f"{self.task}: seeds 2 and 3 agree for key 7",
        )

    def test_per_image_keys_do_not_depend_on_the_batch(self) -> None:
        """An image's corruption follows its own key, whichever batch (or rank) it lands in."""
        images = torch.randn(4, 1, 32, 32)
        task = self.build()
        whole = task.corrupt_fixed(images, key=[10, 11, 12, 13])
        check(
            torch.equal(whole[2:], task.corrupt_fixed(images[2:], key=[12, 13])),
            f"{self.task}: images 2 and 3 are corrupted differently in a smaller batch",
        )
        for key in (torch.tensor([10, 11, 12, 13]), np.array([10, 11, 12, 13], dtype=np.uint64)):
            check(
                torch.equal(whole, task.corrupt_fixed(images, key=key)),
                f"{self.task}: keys given as {type(key).__name__} differ from a list",
            )
        for bad in ([1, 2, -3, 4], [1.0, 2.0, 3.0, 4.0], [1, 2], -1):
            with _raises(ValueError, f"{self.task}: key={bad!r}"):
                task.corrupt_fixed(images, key=bad)  # type: ignore[arg-type]

    def test_works_under_no_grad_and_with_autograd(self) -> None:
        """Validation runs without gradients; a differentiable input keeps its graph."""
        images = torch.randn(2, 1, 32, 32, requires_grad=True)
        task = self.build()
        with torch.no_grad():
            check(not task.corrupt(images).requires_grad, f"{self.task}: output requires grad under no_grad")
        task.corrupt(images).sum().backward()  # type: ignore[no-untyped-call]
        check(images.grad is not None, f"{self.task}: no gradient reached the input")

    def test_half_precision_matches_float32(self) -> None:
        """float16 and bfloat16 stay so and agree with float32; autocast does not change the dtype."""
        for dtype in (torch.float16, torch.bfloat16):
            images = torch.randn(3, 2, 32, 32).to(dtype)
            task = self.build()
            out = task.corrupt_fixed(images, key=1)
            check(out.dtype == dtype, f"{self.task}: {dtype} input gave {out.dtype} output")
            reference = task.corrupt_fixed(images.float(), key=1)
            check(
                torch.allclose(out.float(), reference, atol=1e-2, rtol=1e-2),
                f"{self.task}: the {dtype} output differs from the float32 one",
            )
            with torch.autocast("cpu", dtype=torch.bfloat16):
                kept = task.corrupt_fixed(images.float(), key=1).dtype
            check(kept == torch.float32, f"{self.task}: float32 input gave {kept} under autocast")

    def test_empty_batch(self) -> None:
        """A batch of no images is one of no images (the last batch of a sharded loader may be)."""
        out = self.build().corrupt(torch.empty(0, 1, 32, 32))
        check(out.shape == (0, 1, 32, 32), f"{self.task}: an empty batch gave shape {tuple(out.shape)}")

    def test_bad_inputs_raise_clear_errors(self) -> None:
        """Integer images, a missing batch axis, a NumPy generator, a patch larger than the image.

        The last needs an image smaller than the patch: at ``patch_size`` 1 there is none, so that
        check alone is skipped.
        """
        task = self.build()
        with _raises(TypeError, f"{self.task}: int64 images"):
            task.corrupt(torch.zeros(1, 1, 32, 32, dtype=torch.int64))
        with _raises(ValueError, f"{self.task}: a (32, 32) tensor"):
            task.corrupt(torch.zeros(32, 32))
        generator: Any = np.random.default_rng(0)
        with _raises(TypeError, f"{self.task}: a NumPy generator"):
            task.corrupt(torch.zeros(1, 1, 32, 32), generator)
        if self.patch_size < 2:
            return
        # One row short of the patch: a positive size, so the task has only the patch to refuse
        # (at patch_size 2 a height of patch_size - 2 was an empty image, refused for its shape).
        short = self.patch_size - 1
        with _raises(
            ValueError, f"{self.task}: a {short}x32 image with patch_size={self.patch_size}"
        ) as told:
            task.corrupt(torch.zeros(1, 1, short, 32))
        check("patch_size" in told[0], f"{self.task}: the error {told[0]!r} does not name patch_size")

    def test_bad_options_raise_naming_them(self) -> None:
        """``patch_size``, ``coverage``, ``bank_size`` and ``seed`` out of range, named."""
        for option, value in (("patch_size", 0), ("coverage", 1.5), ("bank_size", 0), ("seed", -1)):
            with _raises(ValueError, f"{self.task}: {option}={value}") as told:
                self.build(**{option: value})
            check(f"{option}={value}" in told[0], f"{self.task}: the error {told[0]!r} does not name it")

    def test_cuda_matches_cpu(self) -> None:
        """On CUDA (skipped without one): the same bank entries, so the same pixels change.

        Tasks that only move pixels (``pairs``) are bit-exact; a computed fill (a per-channel
        mean) may differ in the last bit, since the GPU sums in another order. A generator on the
        GPU is reproducible too, and bfloat16 on the GPU agrees with float32 on the CPU.
        """
        if not torch.cuda.is_available():
            import pytest  # only here: importing this module must not need pytest

            pytest.skip("needs CUDA")
        images, cuda = torch.randn(5, 3, 64, 96), torch.device("cuda")
        task = self.build()
        cpu_out = task.corrupt(images, torch.Generator().manual_seed(4))
        cuda_out = task.corrupt(images.to(cuda), torch.Generator().manual_seed(4))
        check(cuda_out.device.type == "cuda", f"{self.task}: the output left the GPU")
        check(
            torch.equal(cpu_out != images, cuda_out.cpu() != images),
            f"{self.task}: CUDA changed other pixels",
        )
        fixed_cpu = task.corrupt_fixed(images, key=3)
        fixed_cuda = task.corrupt_fixed(images.to(cuda), key=3).cpu()
        if task.pairs:
            check(
                torch.equal(cpu_out, cuda_out.cpu()) and torch.equal(fixed_cpu, fixed_cuda),
                f"{self.task}: moving pixels on CUDA is not bit-exact",
            )
        check(
            torch.allclose(cuda_out.cpu(), cpu_out, rtol=1e-6, atol=1e-6)
            and torch.allclose(fixed_cuda, fixed_cpu, rtol=1e-6, atol=1e-6),
            f"{self.task}: CUDA and CPU outputs differ",
        )
        on_device = task.corrupt(images.to(cuda), torch.Generator(device=cuda).manual_seed(4))
        again = task.corrupt(images.to(cuda), torch.Generator(device=cuda).manual_seed(4))
        check(torch.equal(on_device, again), f"{self.task}: a seeded CUDA generator is not reproducible")
        half = task.corrupt_fixed(images.to(cuda, torch.bfloat16), key=3)
        check(half.dtype == torch.bfloat16, f"{self.task}: bfloat16 on CUDA gave {half.dtype}")
        check(
            torch.allclose(half.float().cpu(), fixed_cpu, atol=1e-2, rtol=1e-2),
            f"{self.task}: bfloat16 on CUDA differs from float32 on the CPU",
        )
