"""inpaintssl.testing: unet2d and synthetic pass their contracts, which catch broken components.

The loss and transfer-strategy contracts are shown failing in ``tests/losses`` and
``tests/transfer_learning``; here a plugin author's subclasses, with their own settings, pass.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import sys
import time
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from inpaintssl.corruption import ContextPrediction
from inpaintssl.data import DataError, SliceDataset
from inpaintssl.data.preflight import CaseCheck
from inpaintssl.data.synthetic import SyntheticShapes
from inpaintssl.models import UNet2d
from inpaintssl.registry import BACKBONES, DATASETS, PRETEXT_TASKS
from inpaintssl.testing import (
    BackboneContract,
    DatasetContract,
    LossContract,
    PretextTaskContract,
    TransferStrategyContract,
)


class TestUNet2dContract(BackboneContract):
    backbone = "unet2d"
    params: ClassVar[Mapping[str, Any]] = {"depth": 3, "base_width": 8, "groups": 4}


class TestUNet2dSingleLevelContract(BackboneContract):
    backbone = "unet2d"
    params: ClassVar[Mapping[str, Any]] = {"depth": 1, "base_width": 4}
    in_channels = 1
    out_channels = 1


# -- deliberately broken backbones: each must fail exactly the check that guards its defect ----------
class ExtraParameter(UNet2d):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.gain = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.gain


class IgnoresSeed(UNet2d):
    def __init__(self, *, seed: int | None = None, **kwargs: object) -> None:
        super().__init__(seed=None, **kwargs)  # type: ignore[arg-type]


class UsesGlobalRng(UNet2d):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        nn.Conv2d(1, 1, 3)  # default init draws from the global RNG


class AcceptsAnySize(UNet2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        multiple = self.size_multiple
        h, w = x.shape[-2:]
        padded = nn.functional.pad(x, (0, -w % multiple, 0, -h % multiple))
        return super().forward(padded)[..., :h, :w]


class DeadHead(UNet2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.zeros_like(self.decoder(self.encoder(x))))


class FlippedOutput(UNet2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).transpose(-1, -2)


BROKEN = {
    "broken_extra_parameter": (ExtraParameter, "test_parts_cover_every_parameter"),
    "broken_ignores_seed": (IgnoresSeed, "test_seed_is_deterministic"),
    "broken_global_rng": (UsesGlobalRng, "test_seed_leaves_global_rng_untouched"),
    "broken_any_size": (AcceptsAnySize, "test_rejects_indivisible_size"),
    "broken_dead_head": (DeadHead, "test_gradient_flows_to_every_parameter"),
    "broken_flipped": (FlippedOutput, "test_output_shape"),
}


@pytest.fixture
def broken_backbone(request: pytest.FixtureRequest) -> Iterator[str]:
    name: str = request.param
    BACKBONES.register(name)(BROKEN[name][0])
    yield name
    BACKBONES.unregister(name)


@pytest.mark.parametrize("broken_backbone", sorted(BROKEN), indirect=True)
def test_the_contract_catches_a_broken_backbone(broken_backbone: str) -> None:
    failing_check = BROKEN[broken_backbone][1]
    contract = type(
        "Contract",
        (BackboneContract,),
        {"backbone": broken_backbone, "params": {"depth": 3, "base_width": 8}},
    )()
    with pytest.raises(AssertionError, match=broken_backbone):
        getattr(contract, failing_check)()


def test_import_does_not_need_pytest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pytest", None)  # makes `import pytest` raise ImportError
    for name in [m for m in sys.modules if m == "inpaintssl.testing" or m.startswith("inpaintssl.testing.")]:
        monkeypatch.delitem(sys.modules, name)  # every contract module is imported afresh
    module = importlib.import_module("inpaintssl.testing")
    for contract in module.__all__:
        assert getattr(module, contract).check_names(), contract


# -- the loss and transfer-strategy contracts, subclassed with settings of their own ----------------
class TestOneClassSoftmaxDiceCEContract(LossContract):
    loss = "dice_ce"
    params: ClassVar[Mapping[str, Any]] = {"activation": "softmax", "ce_weight": 2.0}
    num_classes = 1
    batch_size = 2
    size = (5, 7)


class TestOneChannelL2Contract(LossContract):
    loss = "l2"
    image_channels = 1
    size = (16, 4)


class TestEncoderDecoderContract(TransferStrategyContract):
    strategy = "encoder_decoder"
    in_channels = 1
    num_classes = 4


# -- the pretext-task contract at the smallest patch sizes --------------------------------------
# Its "image smaller than the patch" was patch_size - 2 rows high: an empty image at patch_size 2
# (refused for its shape, in words that need not name patch_size) and torch.zeros(-1, ...) at 1.
class TestContextPredictionOnePixelPatchContract(PretextTaskContract):
    task = "context_prediction"
    patch_size = 1


class TestContextPredictionTwoPixelPatchContract(PretextTaskContract):
    task = "context_prediction"
    patch_size = 2


class TestContextRestorationTwoPixelPatchContract(PretextTaskContract):
    task = "context_restoration"
    patch_size = 2


class _VagueAboutSmallImages(ContextPrediction):
    """Refuses an image smaller than the patch, but without naming patch_size."""

    def corrupt(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if images.ndim == 4 and min(images.shape[-2:]) < self.patch_size:
            raise ValueError(f"image of shape {tuple(images.shape)} is too small")
        return super().corrupt(images, generator)


@pytest.mark.parametrize("patch_size", [2, 8])
def test_the_task_contract_still_asks_a_small_image_to_be_refused_naming_patch_size(patch_size: int) -> None:
    # The image one row short of the patch is still offered from patch_size 2 on.
    PRETEXT_TASKS.register("vague_small_images")(_VagueAboutSmallImages)
    try:
        contract = type(
            "Contract", (PretextTaskContract,), {"task": "vague_small_images", "patch_size": patch_size}
        )()
        with pytest.raises(AssertionError, match=r"does not name patch_size"):
            contract.test_bad_inputs_raise_clear_errors()
    finally:
        PRETEXT_TASKS.unregister("vague_small_images")


# -- the dataset contract: synthetic passes, deliberately broken datasets fail their check ------------
class TestSyntheticContract(DatasetContract):
    dataset = "synthetic"

    def params(self, root: Path) -> dict[str, Any]:
        return {"num_images": 3, "size": [16, 24]}


class _Tiny(SyntheticShapes):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(num_images=3, size=(16, 24), **kwargs)


class OverlappingClasses(_Tiny):
    def __getitem__(self, index: int) -> dict[str, Any]:
        item = super().__getitem__(index)
        if "label" in item:
            item["label"] = torch.ones_like(item["label"])  # every pixel in every class
        return item


class DoubleImages(_Tiny):
    def __getitem__(self, index: int) -> dict[str, Any]:
        item = super().__getitem__(index)
        item["image"] = item["image"].double()
        return item


class WrongVolumeIds(_Tiny):
    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**super().__getitem__(index), "volume_id": "same"}


class LabelWhenUnlabelled(_Tiny):
    def __getitem__(self, index: int) -> dict[str, Any]:
        item = super().__getitem__(index)
        item.setdefault("label", torch.zeros(1, *item["image"].shape[1:]))
        return item


class HoldsALambda(_Tiny):
    def __getitem__(self, index: int) -> dict[str, Any]:
        self.cache = lambda: index  # an open handle or a closure: nothing pickle can send a worker
        return super().__getitem__(index)


class OneSliceWithTwoChannels(_Tiny):
    def __getitem__(self, index: int) -> dict[str, Any]:
        item = super().__getitem__(index)
        if index == len(self) // 2:  # neither the first item nor the last
            item["image"] = item["image"].repeat(2, 1, 1)
        return item


class _CheckedTiny(_Tiny):
    """Each item its own case, with a check that reads it (what a file-backed dataset does)."""

    files: tuple[str, ...] = ()

    def preflight_checks(self, volume_ids: Collection[str]) -> list[CaseCheck]:
        return [
            CaseCheck(
                f"tiny {name!r}", functools.partial(self._check, index), files=self.files, parallel=True
            )
            for index, name in enumerate(self.volume_ids)
            if name in volume_ids
        ]

    def _check(self, index: int) -> None:
        self[index]


class NamesAMissingFile(_CheckedTiny):
    files = ("/nonexistent/tiny.nii.gz",)


class ChecksEveryCaseWhateverItIsAsked(_CheckedTiny):
    def preflight_checks(self, volume_ids: Collection[str]) -> list[CaseCheck]:
        return super().preflight_checks(set(self.volume_ids))


class RefusesItsOwnData(_CheckedTiny):
    def _check(self, index: int) -> None:
        raise DataError(f"tiny case {index}: made-up problem")


class ChecksShareState(_CheckedTiny):
    """Says its checks may run on threads, but each records when it finished in shared state,
    which the items then depend on: on threads the last case finishes first."""

    def _check(self, index: int) -> None:
        time.sleep(0.1 * (len(self) - index))
        self.__dict__.setdefault("finished", []).append(index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = super().__getitem__(index)
        finished = self.__dict__.get("finished", [])
        item["image"] = item["image"] + (finished.index(index) if index in finished else 0)
        return item


PREFLIGHT_CHECK = "test_preflight_passes_and_reads_on_threads_what_it_reads_one_by_one"

BROKEN_DATASETS = {
    "broken_overlapping_classes": (OverlappingClasses, "test_labelled_items", "belongs to two classes"),
    "broken_double_images": (
        DoubleImages,
        "test_labelled_items",
        "image is a torch.float64 tensor; expected float32",
    ),
    "broken_volume_ids": (WrongVolumeIds, "test_labelled_items", "is not volume_ids"),
    "broken_label_when_unlabelled": (LabelWhenUnlabelled, "test_unlabelled_items", "has a label"),
    "broken_unpicklable": (HoldsALambda, "test_survives_pickling_after_use", "does not pickle after use"),
    "broken_middle_channels": (
        OneSliceWithTwoChannels,
        "test_labelled_items",
        r"broken_middle_channels\[1\]: image has 2 channel\(s\) but the dataset's in_channels is 1",
    ),
    "broken_check_missing_file": (
        NamesAMissingFile,
        PREFLIGHT_CHECK,
        r"names files that do not exist: \['/nonexistent/tiny.nii.gz'\]",
    ),
    "broken_check_unasked": (
        ChecksEveryCaseWhateverItIsAsked,
        PREFLIGHT_CHECK,
        r"preflight_checks\(set\(\)\) returned 3",
    ),
    "broken_check_refuses": (
        RefusesItsOwnData,
        PREFLIGHT_CHECK,
        "refused the fixture's data: tiny case 0: made-up",
    ),
    "broken_check_shared_state": (
        ChecksShareState,
        PREFLIGHT_CHECK,
        r"broken_check_shared_state\[0\]: image after a check on threads differs",
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN_DATASETS))
def test_the_contract_catches_a_broken_dataset(name: str, tmp_path: Path) -> None:
    cls, failing_check, message = BROKEN_DATASETS[name]
    DATASETS.register(name)(cls)
    try:
        contract = type("Contract", (DatasetContract,), {"dataset": name})()
        with pytest.raises(AssertionError, match=message):
            getattr(contract, failing_check)(tmp_path)
    finally:
        DATASETS.unregister(name)


@pytest.mark.parametrize(("max_items", "caught"), [(3, True), (2, False)])
def test_the_dataset_contract_reads_max_items_spread_over_the_dataset(
    max_items: int, caught: bool, tmp_path: Path
) -> None:
    # Three items, the middle one bad: every item is read when max_items allows, else the first
    # and the last only (the spread of 2 over 3).
    DATASETS.register("broken_middle_sampled")(OneSliceWithTwoChannels)
    try:
        contract = type(
            "Contract", (DatasetContract,), {"dataset": "broken_middle_sampled", "max_items": max_items}
        )()
        with (
            pytest.raises(AssertionError, match="image has 2 channel") if caught else contextlib.nullcontext()
        ):
            contract.test_labelled_items(tmp_path)
    finally:
        DATASETS.unregister("broken_middle_sampled")


class _Unchecked(SliceDataset):
    """A plugin dataset with no checks of its own: the pre-flight check reads it item by item."""

    def __init__(self, *, split: str = "train", labelled: bool = True) -> None:
        self._inner = _Tiny(split=split, labelled=labelled)
        self.class_names = self._inner.class_names
        self.volume_ids = self._inner.volume_ids

    def __len__(self) -> int:
        return len(self._inner)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._inner[index]


def test_a_dataset_without_checks_of_its_own_is_read_item_by_item_by_the_contract(tmp_path: Path) -> None:
    reads: list[int] = []

    class Counted(_Unchecked):
        def __getitem__(self, index: int) -> dict[str, Any]:
            reads.append(index)
            return super().__getitem__(index)

    DATASETS.register("unchecked_tiny")(Counted)
    try:
        contract = type("Contract", (DatasetContract,), {"dataset": "unchecked_tiny"})()
        getattr(contract, PREFLIGHT_CHECK)(tmp_path)
    finally:
        DATASETS.unregister("unchecked_tiny")
    assert sorted(reads) == [0, 1, 2]
