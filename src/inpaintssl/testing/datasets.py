"""The item contract every dataset keeps (sec. 2.1, 2.2); see :mod:`inpaintssl.testing`."""

from __future__ import annotations

import copy
import math
import pickle
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.utils.data import default_collate

from inpaintssl.data.base import DataError, SliceDataset
from inpaintssl.data.checks import check_item_tensors
from inpaintssl.data.orientation import check_axis_codes, training_orientations
from inpaintssl.data.preflight import Checkable, PreflightReport, preflight
from inpaintssl.data.views import (
    ConcatSlices,
    FitToSize,
    ImagesOnly,
    Subset,
    slice_orientation_of,
    slice_shape_of,
    slice_spacing_of,
)
from inpaintssl.registry import DATASETS
from inpaintssl.testing._checks import Contract, check

__all__ = ["DatasetContract"]


class DatasetContract(Contract):
    """Checks one registered dataset; subclass it as ``Test<Something>`` and set the attributes.

    The item contract of :class:`inpaintssl.data.SliceDataset` (sec. 2.1, 2.2): ``float32``
    ``(C, H, W)`` finite images, one ``volume_id`` per item as listed in ``volume_ids``, an int
    ``slice_index``, a positive ``(3,)`` ``spacing`` in mm, exclusive one-hot ``float32`` labels
    of ``num_classes`` channels when labelled and none otherwise; what the dataset tells without
    reading an item (shape, spacing, orientation) is what the item holds; items collate with
    torch's default rules; the dataset survives pickling after use (as spawned ``DataLoader``
    workers receive it); the cropping, resizing, subset and concatenation views report the
    shape and spacing their items hold; and a run's pre-flight check passes on the dataset, through
    its own case checks where it has them (``preflight_checks``, :mod:`inpaintssl.data.preflight`),
    which then name files that exist, read on threads what they read one by one, and are asked
    for no case when given no volume id.

    Each check takes a folder the dataset's files may be written into (pytest's ``tmp_path``).

    Attributes:
        dataset: Registered name to check.
        split: The split built.
        max_items: How many items the item checks read: every item of a dataset this small, else
            this many spread evenly over it, the first and the last included (at least 2).

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
    max_items: ClassVar[int] = 64

    # -- helpers --------------------------------------------------------------------------------
    def params(self, root: Path) -> dict[str, Any]:
        """``data.params`` for the dataset, after writing any files it reads into ``root``."""
        return {}

    def build(self, root: Path, *, labelled: bool = True) -> SliceDataset:
        """Build the dataset from :meth:`params`, checked to be a non-empty :class:`SliceDataset`."""
        dataset = DATASETS.build(self.dataset, split=self.split, labelled=labelled, **self.params(root))
        check(
            isinstance(dataset, SliceDataset),
            f"{self.dataset}: built a {type(dataset).__name__}, not a SliceDataset",
        )
        check(len(dataset) > 0, f"{self.dataset}: split {self.split!r} is empty")
        check(
            len(dataset.volume_ids) == len(dataset),
            f"{self.dataset}: {len(dataset.volume_ids)} volume_ids for {len(dataset)} items",
        )
        return dataset

    def sampled(self, count: int) -> list[int]:
        """The indices the item checks read of ``count`` items: all, or ``max_items`` spread evenly."""
        most = max(self.max_items, 2)
        if count <= most:
            return list(range(count))
        return sorted({round(i * (count - 1) / (most - 1)) for i in range(most)})

    def check_item(self, dataset: SliceDataset, index: int) -> dict[str, Any]:
        """Item ``index`` of ``dataset``, checked against the item contract."""
        where = f"{self.dataset}[{index}]"
        item = dataset[index]
        check(
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
        check(
            isinstance(item["volume_id"], str) and item["volume_id"] == dataset.volume_ids[index],
            f"{where}: volume_id {item['volume_id']!r} is not volume_ids[{index}] "
            f"({dataset.volume_ids[index]!r})",
        )
        check(isinstance(item["slice_index"], int), f"{where}: slice_index must be an int")
        spacing = torch.as_tensor(item["spacing"], dtype=torch.float64)
        check(
            spacing.shape == (3,) and bool((spacing > 0).all()),
            f"{where}: spacing must be 3 positive mm values; found {spacing.tolist()}",
        )
        check(
            slice_shape_of(dataset, index) == tuple(image.shape[-2:]),
            f"{where}: slice_shape_of says {slice_shape_of(dataset, index)}, the image is "
            f"{tuple(image.shape[-2:])}",
        )
        told = slice_spacing_of(dataset, index)
        held = tuple(spacing[:2].tolist())
        check(
            all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(told, held)),
            f"{where}: slice_spacing_of says {told}, the item holds {held}",
        )
        codes = slice_orientation_of(dataset, index)  # unknown (None) or three valid axis codes
        check(
            codes is None or check_axis_codes(codes, where="slice_orientation") == codes,
            f"{where}: slice_orientation_of gave {codes!r}",
        )
        return item

    # -- checks ---------------------------------------------------------------------------------
    def _items(self, root: Path, *, labelled: bool) -> None:
        dataset = self.build(root, labelled=labelled)
        check(
            dataset.labelled is labelled and (dataset.num_classes > 0) is labelled,
            f"{self.dataset}: built with labelled={labelled}, it has labelled={dataset.labelled} and "
            f"{dataset.num_classes} classes",
        )
        # Every item, as a run's pre-flight check reads every item of a plugin dataset: one bad
        # slice in the middle (another channel count, a float64 image) would otherwise pass here
        # and be refused only when training starts. Test fixtures are small; a larger dataset
        # is sampled evenly, its first and last items always included.
        items = [self.check_item(dataset, index) for index in self.sampled(len(dataset))]
        first, last = items[0], items[-1]
        if first["image"].shape == last["image"].shape:
            batch = default_collate([first, last])  # extras must collate with torch's default rules
            check(batch["image"].shape[0] == 2, f"{self.dataset}: two items did not collate into two")

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
            check(
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
                check(
                    slice_shape_of(view, index) == tuple(item["image"].shape[-2:]),
                    f"{self.dataset} {kind} view [{index}]: slice_shape_of disagrees with the item",
                )
                check(
                    all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(told, held)),
                    f"{self.dataset} {kind} view [{index}]: slice_spacing_of says {told}, the item {held}",
                )
            # Views keep the orientation of the volume a slice comes from.
            check(
                set(training_orientations(view)) == set(training_orientations(dataset)),
                f"{self.dataset} {kind} view: orientations differ from the dataset's",
            )

    def _preflight(self, dataset: SliceDataset, *, threads: int) -> PreflightReport:
        try:
            return preflight({"train": dataset}, progress=False, threads=threads)
        except DataError as exc:
            raise AssertionError(
                f"{self.dataset}: the pre-flight check refused the fixture's data: {exc}"
            ) from exc

    def test_preflight_passes_and_reads_on_threads_what_it_reads_one_by_one(self, tmp_path: Path) -> None:
        dataset = self.build(tmp_path)
        # The same dataset in its pickled state (what spawned workers receive), before any check.
        one_by_one = copy.deepcopy(dataset)
        if not isinstance(dataset, Checkable):
            report = self._preflight(dataset, threads=1)
            check(
                report.items == len(dataset),
                f"{self.dataset}: the pre-flight check read {report.items} of {len(dataset)} items",
            )
            return
        checks = dataset.preflight_checks(set(dataset.volume_ids))
        unasked = dataset.preflight_checks(set())
        check(unasked == [], f"{self.dataset}: preflight_checks(set()) returned {len(unasked)} checks")
        names = [case.what for case in checks]
        check(len(set(names)) == len(names), f"{self.dataset}: two case checks share a name: {names}")
        for case in checks:
            missing = [name for name in case.files if not Path(name).is_file()]
            check(
                not missing,
                f"{self.dataset}: the check {case.what!r} names files that do not exist: {missing}",
            )
        # More threads than a fixture's cases: any check that may run beside another does.
        report = self._preflight(dataset, threads=4)
        check(
            report.cases == len(checks) and report.items == 0,
            f"{self.dataset}: the pre-flight check ran {report.cases} case checks and read "
            f"{report.items} items; preflight_checks returned {len(checks)}",
        )
        self._preflight(one_by_one, threads=1)
        for index in self.sampled(len(dataset)):
            threaded, alone = dataset[index], one_by_one[index]
            for key in ("image", "label"):
                check(
                    (key in threaded) == (key in alone)
                    and (key not in alone or torch.equal(threaded[key], alone[key])),
                    f"{self.dataset}[{index}]: {key} after a check on threads differs from {key} "
                    "after the same check one case after the other",
                )
