"""Contract tests for backbones and datasets, reusable by plugin authors.

Every backbone in :data:`inpaintssl.registry.BACKBONES` must behave like the paper's U-Net where
the rest of inpaintssl relies on it (sec. 2.3, 2.5.1): it builds from ``in_channels``,
``out_channels`` and ``seed`` keywords, maps ``(N, C_in, H, W)`` to raw ``(N, C_out, H, W)``,
has ``encoder``, ``decoder`` and ``head`` parts holding every tensor (so transfer strategies can
name them), exposes ``size_multiple``, is deterministic under a seed without touching the global
RNG, passes gradients to every parameter, and gives the same result in ``channels_last`` layout
and under autocast.

Every dataset in :data:`inpaintssl.registry.DATASETS` keeps the item contract of
:class:`inpaintssl.data.SliceDataset` (:class:`DatasetContract`).

A plugin's test suite subclasses :class:`BackboneContract` or :class:`DatasetContract` under a
``Test*`` name; pytest then runs every check against the plugin. The module imports pytest only
inside the one check that needs to skip, so ``import inpaintssl.testing`` works without it.

Example:
    >>> class TestTinyUNet(BackboneContract):
    ...     backbone = "unet2d"
    ...     params = {"depth": 2, "base_width": 4}
    >>> TestTinyUNet().test_output_shape()
    >>> "test_seed_is_deterministic" in BackboneContract.check_names()
    True
"""

from __future__ import annotations

import copy
import math
import pickle
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import default_collate

from inpaintssl.data.base import DataError, SliceDataset
from inpaintssl.data.checks import check_item_tensors
from inpaintssl.data.orientation import check_axis_codes, training_orientations
from inpaintssl.data.views import (
    ConcatSlices,
    FitToSize,
    ImagesOnly,
    Subset,
    slice_orientation_of,
    slice_shape_of,
    slice_spacing_of,
)
from inpaintssl.registry import BACKBONES, DATASETS, TRANSFER_STRATEGIES
from inpaintssl.transfer_learning import transfer

__all__ = ["BackboneContract", "DatasetContract"]

PARTS = ("encoder", "decoder", "head")


def _check(condition: bool, message: str) -> None:
    # Explicit raise instead of `assert`: the checks must still run under `python -O`.
    if not condition:
        raise AssertionError(message)


class BackboneContract:
    """Checks one registered backbone; subclass it as ``Test<Something>`` and set the attributes.

    Attributes:
        backbone: Registered name to check.
        params: Extra keyword arguments for ``BACKBONES.build`` (besides channels and seed).
        in_channels: Input channels used by the checks.
        out_channels: Output channels used by the checks.
        batch_size: Batch size of the sample inputs.
        size_factors: Sample inputs are ``size_multiple * size_factors`` pixels (``H``, ``W``);
            unequal factors catch transposed axes.
        atol: Absolute tolerance of the float32 layout comparison.
        seed: Seed used to build models.
    """

    backbone: ClassVar[str] = "unet2d"
    params: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    in_channels: ClassVar[int] = 2
    out_channels: ClassVar[int] = 3
    batch_size: ClassVar[int] = 2
    size_factors: ClassVar[tuple[int, int]] = (2, 3)
    atol: ClassVar[float] = 1e-4
    seed: ClassVar[int] = 0

    # -- helpers --------------------------------------------------------------------------------
    @classmethod
    def check_names(cls) -> list[str]:
        """Names of all check methods, e.g. to parametrize over them."""
        return sorted(name for name in dir(cls) if name.startswith("test_"))

    def build(self, **overrides: Any) -> nn.Module:
        """Build the backbone with the class settings, ``overrides`` taking precedence."""
        kwargs: dict[str, Any] = {
            **self.params,
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "seed": self.seed,
            **overrides,
        }
        model = BACKBONES.build(self.backbone, **kwargs)
        _check(
            isinstance(model, nn.Module), f"{self.backbone}: built a {type(model).__name__}, not an nn.Module"
        )
        return model

    def size_multiple(self, model: nn.Module) -> int:
        """The model's ``size_multiple``, checked to be a positive int."""
        multiple = getattr(model, "size_multiple", None)
        _check(
            isinstance(multiple, int) and not isinstance(multiple, bool) and multiple >= 1,
            f"{self.backbone}: attribute size_multiple must be an int >= 1; found {multiple!r}",
        )
        return int(multiple)  # type: ignore[arg-type]

    def sample(self, model: nn.Module, *, in_channels: int | None = None, seed: int = 0) -> torch.Tensor:
        """A seeded random input ``(batch_size, C_in, H, W)`` of a size the model accepts."""
        multiple = self.size_multiple(model)
        height, width = (multiple * f for f in self.size_factors)
        generator = torch.Generator().manual_seed(seed)
        channels = self.in_channels if in_channels is None else in_channels
        return torch.randn(self.batch_size, channels, height, width, generator=generator)

    # -- checks ---------------------------------------------------------------------------------
    def test_registered(self) -> None:
        """The name is listed by the registry."""
        _check(self.backbone in BACKBONES.names(), f"{self.backbone!r} is not in {BACKBONES.names()}")

    def test_output_shape(self) -> None:
        """``(N, C_in, H, W)`` maps to raw float ``(N, C_out, H, W)`` on the input's device."""
        model = self.build()
        x = self.sample(model)
        out = model(x)
        expected = (x.shape[0], self.out_channels, *x.shape[2:])
        _check(
            tuple(out.shape) == expected,
            f"{self.backbone}: output shape {tuple(out.shape)}, expected {expected}",
        )
        _check(
            out.dtype == x.dtype and out.device == x.device, f"{self.backbone}: output dtype/device changed"
        )

    def test_in_and_out_channels(self) -> None:
        """Other channel counts (1 and 3 in, 1 out) build and run."""
        for c_in, c_out in ((1, 1), (3, 1)):
            model = self.build(in_channels=c_in, out_channels=c_out)
            out = model(self.sample(model, in_channels=c_in))
            _check(
                out.shape[1] == c_out,
                f"{self.backbone}: in_channels={c_in}, out_channels={c_out} gave {out.shape[1]} channels",
            )

    def test_rejects_indivisible_size(self) -> None:
        """A size that is not a multiple of ``size_multiple`` raises ``ValueError`` naming both."""
        model = self.build()
        multiple = self.size_multiple(model)
        if multiple == 1:
            return
        x = self.sample(model)[..., :-1, :]
        try:
            model(x)
        except ValueError as exc:
            message = str(exc)
            _check(
                str(x.shape[-2]) in message and str(multiple) in message,
                f"{self.backbone}: the error for height {x.shape[-2]} should name it and "
                f"size_multiple={multiple}; got {message!r}",
            )
            return
        raise AssertionError(
            f"{self.backbone}: input height {x.shape[-2]} (not a multiple of {multiple}) was accepted"
        )

    def test_parts_cover_every_parameter(self) -> None:
        """``encoder``, ``decoder`` and ``head`` exist, share no parameter, and hold all of them."""
        model = self.build()
        owner: dict[int, str] = {}
        for part in PARTS:
            module = getattr(model, part, None)
            _check(isinstance(module, nn.Module), f"{self.backbone}: missing submodule {part!r}")
            for param in module.parameters():  # type: ignore[union-attr]
                _check(
                    id(param) not in owner,
                    f"{self.backbone}: a parameter is shared by {owner.get(id(param))!r} and {part!r}",
                )
                owner[id(param)] = part
        outside = [name for name, p in model.named_parameters() if id(p) not in owner]
        _check(not outside, f"{self.backbone}: parameters outside encoder/decoder/head: {outside}")
        _check(
            len(owner) > 0
            and all(len(list(getattr(model, p).parameters())) > 0 for p in ("encoder", "head")),
            f"{self.backbone}: encoder and head must hold parameters",
        )

    def test_state_dict_keys_in_parts(self) -> None:
        """Every state-dict key (buffers included) starts with a part name, so transfer can sort it."""
        stray = [k for k in self.build().state_dict() if k.split(".", 1)[0] not in PARTS]
        _check(not stray, f"{self.backbone}: state-dict keys outside encoder/decoder/head: {stray}")

    def test_seed_is_deterministic(self) -> None:
        """The same seed gives bit-identical tensors; another seed gives different ones."""
        first, second = self.build(seed=7).state_dict(), self.build(seed=7).state_dict()
        unequal = [k for k in first if not torch.equal(first[k], second[k])]
        _check(not unequal, f"{self.backbone}: seed=7 twice gave different {unequal}")
        other = self.build(seed=8).state_dict()
        _check(
            any(not torch.equal(first[k], other[k]) for k in first),
            f"{self.backbone}: seeds 7 and 8 gave identical weights",
        )

    def test_seed_leaves_global_rng_untouched(self) -> None:
        """Building with a seed neither reads nor reseeds the global torch RNG."""
        before = torch.random.get_rng_state()
        self.build(seed=3)
        _check(
            torch.equal(before, torch.random.get_rng_state()),
            f"{self.backbone}: building the model changed the global torch RNG state",
        )

    def test_gradient_flows_to_every_parameter(self) -> None:
        """A loss on the output gives every parameter a finite, non-zero gradient."""
        model = self.build()
        x = self.sample(model)
        target = torch.randn(
            x.shape[0], self.out_channels, *x.shape[2:], generator=torch.Generator().manual_seed(1)
        )
        (model(x) - target).square().mean().backward()
        dead = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
        _check(not dead, f"{self.backbone}: no gradient reached {dead}")
        bad = [
            n for n, p in model.named_parameters() if p.grad is not None and not bool(p.grad.isfinite().all())
        ]
        _check(not bad, f"{self.backbone}: non-finite gradients in {bad}")

    def test_channels_last_matches_default(self) -> None:
        """``channels_last`` weights and inputs give the default layout's output."""
        reference_model, model = self.build(), self.build()
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = self.sample(model)
        with torch.no_grad():
            expected = reference_model(x)
            out = model(x.contiguous(memory_format=torch.channels_last))
        _check(
            torch.allclose(out, expected, atol=self.atol, rtol=1e-4),
            f"{self.backbone}: channels_last differs by {(out - expected).abs().max().item():.3g}",
        )

    def test_autocast_bfloat16(self) -> None:
        """A forward pass under CPU bfloat16 autocast is finite and close to float32 (inference mode)."""
        # Inference mode: batch statistics of a tiny batch (BatchNorm at the coarsest level sees a
        # few values) would turn bfloat16 rounding into large output changes in any precision.
        model = self.build().eval()
        x = self.sample(model)
        with torch.no_grad():
            expected = model(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x)
        _check(out.shape == expected.shape, f"{self.backbone}: autocast changed the output shape")
        error = (out.float() - expected).abs().mean()
        _check(
            bool(out.isfinite().all()) and bool(error <= 0.05 * expected.abs().mean() + 1e-3),
            f"{self.backbone}: bfloat16 autocast output is off by {error.item():.3g} on average",
        )

    def test_transfer_from_inpainting_model(self) -> None:
        """An inpainting model's weights transfer into a segmentation model with every strategy."""
        pretrained = self.build(out_channels=self.in_channels, seed=1)
        for name in TRANSFER_STRATEGIES.names():
            model = self.build(seed=2)
            report = transfer(pretrained, model, weights=name)
            source, target = pretrained.state_dict(), model.state_dict()
            differing = [k for k in report.copied if not torch.equal(source[k], target[k])]
            _check(
                bool(report.copied) and not differing,
                f"{self.backbone}: transfer {name!r} copied {len(report.copied)} tensors, "
                f"of which differ from the pretrained ones: {differing}",
            )

    def test_cuda_autocast(self) -> None:
        """On CUDA: channels_last forward and backward under float16 autocast are finite (skipped on CPU)."""
        if not torch.cuda.is_available():
            import pytest

            pytest.skip("needs CUDA")
        model = self.build().cuda().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = self.sample(model).cuda().contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.float16):
            out = model(x)
            loss = out.float().square().mean()
        loss.backward()
        _check(out.device.type == "cuda", f"{self.backbone}: output left the GPU")
        _check(bool(out.isfinite().all()), f"{self.backbone}: non-finite output under CUDA autocast")
        bad = [n for n, p in model.named_parameters() if p.grad is None or not bool(p.grad.isfinite().all())]
        _check(not bad, f"{self.backbone}: missing or non-finite gradients under CUDA autocast: {bad}")


class DatasetContract:
    """Checks one registered dataset; subclass it as ``Test<Something>`` and set the attributes.

    The item contract of :class:`inpaintssl.data.SliceDataset` (sec. 2.1, 2.2): ``float32``
    ``(C, H, W)`` finite images, one ``volume_id`` per item as listed in ``volume_ids``, an int
    ``slice_index``, a positive ``(3,)`` ``spacing`` in mm, exclusive one-hot ``float32`` labels
    of ``num_classes`` channels when labelled and none otherwise; what the dataset tells without
    reading an item (shape, spacing, orientation) is what the item holds; items collate with
    torch's default rules; the dataset survives pickling after use (as spawned ``DataLoader``
    workers receive it); and the cropping, resizing, subset and concatenation views report the
    shape and spacing their items hold.

    Each check takes a folder the dataset's files may be written into (pytest's ``tmp_path``).

    Attributes:
        dataset: Registered name to check.
        split: The split built.

    Example:
        >>> import tempfile
        >>> class TestTinySynthetic(DatasetContract):
        ...     dataset = "synthetic"
        ...     def params(self, root):
        ...         return {"num_images": 3, "size": [16, 16]}
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     TestTinySynthetic().test_labelled_items(Path(folder))
        >>> "test_survives_pickling_after_use" in DatasetContract.check_names()
        True
    """

    dataset: ClassVar[str] = "synthetic"
    split: ClassVar[str] = "train"

    # -- helpers --------------------------------------------------------------------------------
    @classmethod
    def check_names(cls) -> list[str]:
        """Names of all check methods, e.g. to parametrize over them."""
        return sorted(name for name in dir(cls) if name.startswith("test_"))

    def params(self, root: Path) -> dict[str, Any]:
        """``data.params`` for the dataset, after writing any files it reads into ``root``."""
        return {}

    def build(self, root: Path, *, labelled: bool = True) -> SliceDataset:
        """Build the dataset from :meth:`params`, checked to be a non-empty :class:`SliceDataset`."""
        dataset = DATASETS.build(self.dataset, split=self.split, labelled=labelled, **self.params(root))
        _check(
            isinstance(dataset, SliceDataset),
            f"{self.dataset}: built a {type(dataset).__name__}, not a SliceDataset",
        )
        _check(len(dataset) > 0, f"{self.dataset}: split {self.split!r} is empty")
        _check(
            len(dataset.volume_ids) == len(dataset),
            f"{self.dataset}: {len(dataset.volume_ids)} volume_ids for {len(dataset)} items",
        )
        return dataset

    def check_item(self, dataset: SliceDataset, index: int) -> dict[str, Any]:
        """Item ``index`` of ``dataset``, checked against the item contract."""
        where = f"{self.dataset}[{index}]"
        item = dataset[index]
        _check(
            ("label" in item) is dataset.labelled,
            f"{where}: a {'labelled' if dataset.labelled else 'unlabelled'} dataset's item "
            f"{'lacks' if dataset.labelled else 'has'} a label",
        )
        try:  # the same check a run makes on a plugin dataset's items before training
            check_item_tensors(
                item, where=where, in_channels=dataset.in_channels, num_classes=dataset.num_classes
            )
        except DataError as exc:
            raise AssertionError(str(exc)) from exc
        image = item["image"]
        _check(
            isinstance(item["volume_id"], str) and item["volume_id"] == dataset.volume_ids[index],
            f"{where}: volume_id {item['volume_id']!r} is not volume_ids[{index}] "
            f"({dataset.volume_ids[index]!r})",
        )
        _check(isinstance(item["slice_index"], int), f"{where}: slice_index must be an int")
        spacing = torch.as_tensor(item["spacing"], dtype=torch.float64)
        _check(
            spacing.shape == (3,) and bool((spacing > 0).all()),
            f"{where}: spacing must be 3 positive mm values; found {spacing.tolist()}",
        )
        _check(
            slice_shape_of(dataset, index) == tuple(image.shape[-2:]),
            f"{where}: slice_shape_of says {slice_shape_of(dataset, index)}, the image is "
            f"{tuple(image.shape[-2:])}",
        )
        told = slice_spacing_of(dataset, index)
        held = tuple(spacing[:2].tolist())
        _check(
            all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(told, held)),
            f"{where}: slice_spacing_of says {told}, the item holds {held}",
        )
        codes = slice_orientation_of(dataset, index)  # unknown (None) or three valid axis codes
        _check(
            codes is None or check_axis_codes(codes, where="slice_orientation") == codes,
            f"{where}: slice_orientation_of gave {codes!r}",
        )
        return item

    # -- checks ---------------------------------------------------------------------------------
    def _items(self, root: Path, *, labelled: bool) -> None:
        dataset = self.build(root, labelled=labelled)
        _check(
            dataset.labelled is labelled and (dataset.num_classes > 0) is labelled,
            f"{self.dataset}: built with labelled={labelled}, it has labelled={dataset.labelled} and "
            f"{dataset.num_classes} classes",
        )
        first, last = self.check_item(dataset, 0), self.check_item(dataset, len(dataset) - 1)
        if first["image"].shape == last["image"].shape:
            batch = default_collate([first, last])  # extras must collate with torch's default rules
            _check(batch["image"].shape[0] == 2, f"{self.dataset}: two items did not collate into two")

    def test_labelled_items(self, tmp_path: Path) -> None:
        self._items(tmp_path, labelled=True)

    def test_unlabelled_items(self, tmp_path: Path) -> None:
        self._items(tmp_path, labelled=False)

    def test_survives_pickling_after_use(self, tmp_path: Path) -> None:
        # Spawned DataLoader workers receive the dataset pickled, open handles and caches included:
        # it must pickle, and the state it pickles (__getstate__/__setstate__, which deepcopy runs
        # too) must rebuild the same items. Nothing is unpickled here: this module loads no pickles.
        dataset = self.build(tmp_path)
        before = dataset[len(dataset) - 1]
        try:
            pickle.dumps(dataset)
        except Exception as exc:  # whatever pickling raises (PicklingError, TypeError, ...), named
            raise AssertionError(
                f"{self.dataset}: the dataset does not pickle after use ({type(exc).__name__}: {exc}); "
                "DataLoader workers started with spawn receive it pickled"
            ) from exc
        after = copy.deepcopy(dataset)[len(dataset) - 1]
        for key in ("image", "label"):
            _check(
                torch.equal(after[key], before[key]),
                f"{self.dataset}: {key} of the last item differs after a copy of its pickled state",
            )

    def test_views_tell_shape_and_spacing_as_their_items_hold_them(self, tmp_path: Path) -> None:
        dataset = self.build(tmp_path)
        views = {
            "subset": Subset(dataset, list(range(len(dataset)))[::-1]),
            "images_only": ImagesOnly(dataset),
            "concat": ConcatSlices([dataset, dataset], names=["a", "b"]),
            "crop": FitToSize(dataset, (4, 12), mode="crop_or_pad"),
            # Resizing scales the spacing, so that physical sizes (areas, volumes) are kept.
            "resize": FitToSize(dataset, (12, 4), mode="resize"),
        }
        for kind, view in views.items():
            for index in (0, len(view) - 1):
                item = view[index]
                held = tuple(torch.as_tensor(item["spacing"], dtype=torch.float64)[:2].tolist())
                told = slice_spacing_of(view, index)
                _check(
                    slice_shape_of(view, index) == tuple(item["image"].shape[-2:]),
                    f"{self.dataset} {kind} view [{index}]: slice_shape_of disagrees with the item",
                )
                _check(
                    all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(told, held)),
                    f"{self.dataset} {kind} view [{index}]: slice_spacing_of says {told}, the item {held}",
                )
            # Views keep the orientation of the volume a slice comes from.
            _check(
                set(training_orientations(view)) == set(training_orientations(dataset)),
                f"{self.dataset} {kind} view: orientations differ from the dataset's",
            )


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} tensor of shape {tuple(value.shape)}"
    return type(value).__name__
