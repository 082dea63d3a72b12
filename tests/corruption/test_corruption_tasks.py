"""Pretext tasks: the contract every registered task keeps, then each built-in's own invariants."""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from inpaintssl.config import PretextConfig
from inpaintssl.corruption import ContextPrediction, ContextRestoration, MaskBank, PretextTask
from inpaintssl.registry import PRETEXT_TASKS, SAMPLERS

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def build(name: str, **options: object) -> PretextTask:
    options = {"patch_size": 8, "bank_size": 3, **options}
    return PRETEXT_TASKS.build(name, **options)  # type: ignore[no-any-return]


def loop_union(corners: np.ndarray, shape: tuple[int, int], k: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for row, col in corners.tolist():
        mask[row : row + k, col : col + k] = True
    return mask


def loop_swap(image: np.ndarray, corners: np.ndarray, k: int) -> np.ndarray:
    """Swap the pairs of an (C, H, W) array one after another, the way a reader would write it."""
    out = image.copy()
    for (r1, c1), (r2, c2) in zip(corners[0::2].tolist(), corners[1::2].tolist()):
        held = out[:, r1 : r1 + k, c1 : c1 + k].copy()
        out[:, r1 : r1 + k, c1 : c1 + k] = out[:, r2 : r2 + k, c2 : c2 + k]
        out[:, r2 : r2 + k, c2 : c2 + k] = held
    return out


# -- the shared contract is in inpaintssl.testing (test_corruption_contracts.py); here, the words


def test_builtin_names_are_registered() -> None:
    assert {"context_prediction", "context_restoration"} <= set(PRETEXT_TASKS.names())


def test_bad_keys_and_inputs_are_refused_in_words_that_name_them() -> None:
    images = torch.randn(4, 1, 32, 32)
    task = build("context_prediction")
    with pytest.raises(ValueError, match="key values must be >= 0, got -3"):
        task.corrupt_fixed(images, key=[1, 2, -3, 4])
    with pytest.raises(ValueError, match="1-D sequence of ints, got float64"):
        task.corrupt_fixed(images, key=[1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="key has 2 entries but images has 4"):
        task.corrupt_fixed(images, key=[1, 2])
    with pytest.raises(ValueError, match="key=-1"):
        task.corrupt_fixed(images, key=-1)
    with pytest.raises(TypeError, match="floating-point"):
        task.corrupt(torch.zeros(1, 1, 32, 32, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\), got \(32, 32\)"):
        task.corrupt(torch.zeros(32, 32))
    with pytest.raises(TypeError, match=r"torch\.Generator"):
        task.corrupt(torch.zeros(1, 1, 32, 32), generator=np.random.default_rng(0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="patch_size=8 is larger than the image"):
        task.corrupt(torch.zeros(1, 1, 6, 32))


@pytest.mark.parametrize("name", PRETEXT_TASKS.names())
def test_unknown_sampler_and_option(name: str) -> None:
    with pytest.raises(KeyError, match="Did you mean 'poisson_disc'"):
        build(name, sampler="poisson_dsc")
    with pytest.raises(TypeError, match="unexpected keyword"):
        build(name, patch_sizes=8)


@pytest.mark.parametrize("name", PRETEXT_TASKS.names())
def test_builds_from_the_pretext_config(name: str) -> None:
    cfg = PretextConfig(
        task=name, patch_size=16, sampler="random", bank_size=2, params={"sampler_params": {}}
    )
    task = PRETEXT_TASKS.build(
        cfg.task,
        patch_size=cfg.patch_size,
        sampler=cfg.sampler,
        coverage=cfg.coverage,
        bank_size=cfg.bank_size,
        seed=0,
        **cfg.params,
    )
    assert task.corrupt(torch.randn(1, 1, 64, 64)).shape == (1, 1, 64, 64)


@pytest.mark.parametrize("name", PRETEXT_TASKS.names())
def test_bank_size_takes_any_integer_type_but_not_a_bool(name: str) -> None:
    # A NumPy integer (a sweep over np.arange) was refused as "must be a positive integer".
    task = build(name, bank_size=np.arange(1, 4)[-1])
    assert task.bank_size == 3 and type(task.bank_size) is int
    assert len(task.bank(shape=(32, 32))) == 3 * 4
    for bad in (True, 2.0, 0, -1, "3"):
        with pytest.raises(ValueError, match=rf"bank_size={bad!r} must be a positive integer"):
            build(name, bank_size=bad)


@pytest.mark.parametrize("name", PRETEXT_TASKS.names())
@pytest.mark.parametrize("shape", [(32.7, 40), 32, (32, 32, 1), (0, 40), ("32", 40)])
def test_bank_shape_must_be_two_positive_integers(name: str, shape: object) -> None:
    # (32.7, 40) built a 32x40 bank silently; 32 and (32, 32, 1) failed in an unpacking.
    with pytest.raises(ValueError, match=rf"shape={re.escape(repr(shape))} must be \(H, W\), two positive"):
        build(name).bank(shape=shape)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", PRETEXT_TASKS.names())
def test_bank_shape_takes_whole_numbers_of_any_type(name: str) -> None:
    task = build(name)
    assert task.bank(shape=(np.int64(32), 40.0)).shape == (32, 40)  # type: ignore[arg-type]
    assert task.bank(shape=(np.int64(32), 40.0)) is task.bank(shape=(32, 40))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", PRETEXT_TASKS.names())
def test_a_float32_coverage_builds_the_masks_of_its_decimal(name: str) -> None:
    # 7 % of 100 x 100 is 700 pixels, 7 patches of 10 x 10 (8 for pairs): np.float32(0.07) prints
    # as 0.07 but was stored widened, 0.07000000029802322, which asked for 701 pixels and 8 patches.
    task = build(name, patch_size=10, coverage=np.float32(0.07), bank_size=2, sampler="poisson_disc")
    assert task.coverage == 0.07 and type(task.coverage) is float
    expected = 8 if task.pairs else 7
    assert [len(corners) for corners in task.bank(shape=(100, 100)).corners] == [expected] * 8


def test_a_python_float_coverage_is_kept_exactly() -> None:
    # Run ids and reports show the task's coverage: a Python float must not be re-rounded.
    coverage = 0.1 + 0.2  # 0.30000000000000004
    assert ContextPrediction(coverage=coverage).coverage == coverage


@pytest.mark.parametrize("name", PRETEXT_TASKS.names())
@pytest.mark.parametrize(
    ("options", "told"),
    [
        ({"patch_size": 0}, r"patch_size=0 must be a positive integer"),
        ({"patch_size": 2.5}, r"patch_size=2\.5 must be a positive integer"),
        ({"patch_size": "8"}, r"patch_size='8' must be a positive integer"),
        ({"coverage": 0.0}, r"coverage=0\.0 must be a number in \(0, 1\]"),
        ({"coverage": float("nan")}, r"coverage=nan must be a number in \(0, 1\]"),
        ({"coverage": "0.25"}, r"coverage='0\.25' must be a number in \(0, 1\]"),
    ],
)
def test_patch_size_and_coverage_are_checked_when_the_task_is_built(
    name: str, options: dict[str, object], told: str
) -> None:
    with pytest.raises(ValueError, match=told):
        build(name, **options)


@pytest.mark.parametrize("name", PRETEXT_TASKS.names())
@pytest.mark.parametrize(
    ("options", "told"),
    [
        ({"patch_size": 2**21}, r"with 2097152x2097152 patches \(shape=\(64, 64\).*larger than the image"),
        (
            {"patch_size": 32, "coverage": 1e-10},
            r"of a 64x64 image with 32x32 patches.*one patch alone covers",
        ),
    ],
)
def test_a_patch_size_no_image_fits_is_refused_for_the_real_image(
    name: str, options: dict[str, object], told: str
) -> None:
    # Checked at construction against a made-up 1048576x1048576 image, which the message named.
    task = build(name, **options)
    with pytest.raises(ValueError, match=told) as refused:
        task.corrupt(torch.zeros(1, 1, 64, 64))
    assert "1048576" not in str(refused.value)


def test_pretext_task_is_abstract() -> None:
    with pytest.raises(TypeError, match="abstract"):
        PretextTask()  # type: ignore[abstract]


class _InPlace(PretextTask):
    def apply(self, images: torch.Tensor, *, bank: MaskBank, choice: torch.Tensor) -> torch.Tensor:
        return images.masked_fill_(bank.masks_for(choice)[:, None], 0.0)


class _TouchesInput(PretextTask):
    def apply(self, images: torch.Tensor, *, bank: MaskBank, choice: torch.Tensor) -> torch.Tensor:
        images.mul_(1.0)  # a no-op in value, so change something real:
        images[:, :, 0, 0] = 7.0
        return images.clone()


class _TwoChannels(PretextTask):
    def apply(self, images: torch.Tensor, *, bank: MaskBank, choice: torch.Tensor) -> torch.Tensor:
        return torch.cat([images, images], dim=1)


@pytest.mark.parametrize(
    ("task", "match"),
    [
        (_InPlace, r"_InPlace: apply returned its input \(corrupted in place\); expected a new tensor"),
        (_TouchesInput, r"_TouchesInput: apply modified its input images; expected a corrupted copy"),
        (
            _TwoChannels,
            r"_TwoChannels: apply returned a torch.float32 tensor of shape \(2, 2, 32, 32\) .*"
            r"batch of shape \(2, 1, 32, 32\) .*expected the same shape, dtype and device",
        ),
    ],
)
@pytest.mark.parametrize("method", ["corrupt", "corrupt_fixed"])
def test_a_task_breaking_the_apply_contract_is_named(
    task: type[PretextTask], match: str, method: str
) -> None:
    """A plugin task that corrupts in place would train the network to copy its input, silently."""
    built = task(patch_size=8, bank_size=2)
    images = torch.randn(2, 1, 32, 32)
    call = built.corrupt if method == "corrupt" else lambda x: built.corrupt_fixed(x, key=0)
    with pytest.raises(ValueError, match=match):
        call(images)


class _PositionalSampler:
    def sample(self, shape: tuple[int, int], patch_size: int) -> np.ndarray:
        return np.zeros((0, 2), dtype=np.int64)


@pytest.mark.parametrize("name", PRETEXT_TASKS.names())
def test_a_sampler_with_another_signature_is_refused_when_the_task_is_built(name: str) -> None:
    with pytest.raises(
        TypeError,
        match=r"sampler [\w.]*_PositionalSampler: sample\(shape.*patch_size.* cannot be called as "
        r"sample\(\*, shape, patch_size, coverage, rng, pairs\)",
    ):
        PRETEXT_TASKS.build(name, sampler=_PositionalSampler())  # type: ignore[arg-type]


# -- each built-in against an independent NumPy computation ----------------------------------

tasks_inputs = st.tuples(
    st.sampled_from([(32, 32), (48, 48), (40, 64), (96, 160)]),
    st.sampled_from([4, 8, 16]),
    st.sampled_from(SAMPLERS.names()),
    st.integers(0, 2**32 - 1),
)


@given(case=tasks_inputs)
def test_prediction_fills_exactly_the_union_with_the_channel_mean(case: tuple) -> None:
    (height, width), k, sampler, seed = case
    task = ContextPrediction(patch_size=k, sampler=sampler, bank_size=2, seed=seed % 1000)
    images = torch.randn(
        3, 2, height, width, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    bank = task.bank(shape=(height, width))
    choice = torch.tensor([0, 5, len(bank) - 1])
    out = task.apply(images, bank=bank, choice=choice).numpy()
    x = images.numpy()
    for i, entry in enumerate(choice.tolist()):
        mask = loop_union(bank.corners[entry], (height, width), k)
        assert mask.mean() >= 0.25
        expected = np.where(mask, x[i].mean(axis=(1, 2), keepdims=True), x[i])
        np.testing.assert_allclose(out[i], expected, rtol=0, atol=1e-12)


def test_prediction_zero_fill_is_the_authors_variant() -> None:
    task = ContextPrediction(patch_size=8, bank_size=2, fill="zero")
    images = torch.randn(2, 1, 32, 32) + 5.0
    out = task.corrupt(images)
    assert torch.equal(out[out != images], torch.zeros_like(out[out != images]))
    with pytest.raises(ValueError, match="fill='median'"):
        ContextPrediction(fill="median")  # type: ignore[arg-type]


@given(case=tasks_inputs)
def test_restoration_equals_a_python_loop_over_the_pairs(case: tuple) -> None:
    (height, width), k, sampler, seed = case
    task = ContextRestoration(patch_size=k, sampler=sampler, bank_size=2, seed=seed % 1000)
    images = torch.randn(
        3, 2, height, width, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    bank = task.bank(shape=(height, width))
    choice = torch.tensor([1, 4, len(bank) - 2])
    out = task.apply(images, bank=bank, choice=choice).numpy()
    for i, entry in enumerate(choice.tolist()):
        np.testing.assert_array_equal(out[i], loop_swap(images[i].numpy(), bank.corners[entry], k))


@given(
    shape=st.sampled_from([(32, 32), (40, 64), (96, 160)]),
    k=st.sampled_from([4, 8, 16]),
    sampler=st.sampled_from(SAMPLERS.names()),
    seed=st.integers(0, 2**16),
)
def test_restoration_is_one_permutation_shared_by_all_channels(
    shape: tuple[int, int], k: int, sampler: str, seed: int
) -> None:
    height, width = shape
    rng = np.random.default_rng(seed)
    # Distinct integer pixel values (exact in float32) reveal the permutation itself.
    base = np.stack([rng.permutation(height * width) for _ in range(4)]).astype(np.float32)
    images = torch.from_numpy(np.stack([base, base * 2 + 1, -base], axis=1).reshape(4, 3, height, width))
    out = ContextRestoration(patch_size=k, sampler=sampler, bank_size=2, seed=seed).corrupt(images)
    flat_in, flat_out = images.flatten(2), out.flatten(2)
    assert torch.equal(flat_out.sort(dim=2).values, flat_in.sort(dim=2).values)
    for n in range(4):
        # Channel 0 holds a permutation of 0..H*W-1, so each output value names its source pixel.
        position = np.empty(height * width, dtype=np.int64)
        position[base[n].astype(np.int64)] = np.arange(height * width)
        perm = torch.from_numpy(position[flat_out[n, 0].numpy().astype(np.int64)])
        assert torch.equal(flat_out[n], flat_in[n][:, perm])


@pytest.mark.parametrize("sampler", SAMPLERS.names())
def test_restoration_cpu_kernel_and_autograd_gather_agree(sampler: str) -> None:
    task = ContextRestoration(patch_size=4, sampler=sampler, bank_size=3)
    images = torch.randn(5, 2, 40, 56)
    in_place = task.corrupt_fixed(images, key=9)
    differentiable = task.corrupt_fixed(images.requires_grad_(), key=9)
    assert differentiable.requires_grad
    assert torch.equal(in_place, differentiable.detach())


def test_restoration_poisson_moves_exactly_the_patch_union() -> None:
    task = ContextRestoration(patch_size=8, sampler="poisson_disc", bank_size=2)
    bank: MaskBank = task.bank(shape=(64, 96))
    assert bank.permutations is not None
    moved = bank.permutations != torch.arange(64 * 96, dtype=torch.int32)
    assert torch.equal(moved, bank.masks.flatten(1))
    assert moved.double().mean(dim=1).min() >= 0.25


# -- devices ----------------------------------------------------------------------------------


@pytest.mark.gpu
@requires_cuda
def test_cuda_generator_with_cpu_images_is_rejected() -> None:
    with pytest.raises(ValueError, match="expected a CPU generator or one on the images' device"):
        build("context_restoration").corrupt(
            torch.randn(1, 1, 32, 32), torch.Generator(device="cuda").manual_seed(0)
        )


_BASE_OPTIONS = ("patch_size", "sampler", "coverage", "bank_size", "seed", "sampler_params")


@pytest.mark.parametrize("name", PRETEXT_TASKS.names())
def test_every_task_lists_the_shared_options_so_a_misspelt_one_is_named(name: str) -> None:
    parameters = inspect.signature(PRETEXT_TASKS.get(name)).parameters
    assert set(_BASE_OPTIONS) <= set(parameters)
    assert all(p.kind is not p.VAR_KEYWORD for p in parameters.values())
    with pytest.raises(TypeError, match=r"invalid parameters \['patch_sise'\].*patch_size"):
        PRETEXT_TASKS.build(name, patch_sise=8)


def test_a_subclass_passing_options_on_lists_its_own_and_every_base_option() -> None:
    class Dimmed(ContextPrediction):
        def __init__(self, *, factor: float = 0.5, **options: object) -> None:
            super().__init__(**options)  # type: ignore[arg-type]
            self.factor = factor

    names = list(inspect.signature(Dimmed).parameters)
    assert names == ["factor", "fill", *_BASE_OPTIONS]
    task = Dimmed(factor=0.25, fill="zero", patch_size=8, bank_size=2)
    assert (task.factor, task.fill, task.patch_size) == (0.25, "zero", 8)


def test_a_subclass_with_a_closed_signature_keeps_exactly_its_own() -> None:
    class Fixed(PretextTask):
        def __init__(self, *, strength: float = 1.0) -> None:
            super().__init__(patch_size=8, bank_size=2)
            self.strength = strength

        def apply(self, images: torch.Tensor, *, bank: MaskBank, choice: torch.Tensor) -> torch.Tensor:
            return images * self.strength

    assert list(inspect.signature(Fixed).parameters) == ["strength"]
