"""Results and tables print as one short line each, not as the network and every row; a result's
model carries its run's record."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inpaintssl.checkpoint import CheckpointMeta, save_checkpoint
from inpaintssl.registry import BACKBONES
from inpaintssl.training.evaluation import EvaluationTable
from inpaintssl.training.outcome import TrainOutcome
from inpaintssl.training.results import FinetuneResult, PretrainResult


def _table(n: int) -> EvaluationTable:
    return EvaluationTable(
        [
            {"level": "image", "volume_id": f"v{i}", "slice_index": i, "dice_gm": 0.5 + i / (2 * n)}
            for i in range(n)
        ]
    )


def test_results_repr_is_a_short_summary() -> None:
    net = torch.nn.Sequential(*[torch.nn.Conv2d(8, 8, 3) for _ in range(20)])
    pre = PretrainResult(
        run_dir=Path("runs/pre"),
        best_val_loss=123.456,
        best_epoch=3,
        epochs_run=5,
        stopped_early=False,
        history=[{"epoch": e} for e in range(5)],
        converged=True,
        model=net,
        evaluation=_table(500),
    )
    fine = FinetuneResult(
        run_dir=Path("runs/ft"),
        best_val_loss=0.1,
        best_epoch=2,
        epochs_run=4,
        stopped_early=True,
        history=[],
        converged=False,
        test=_table(500),
        class_names=("gm",),
        model=net,
    )
    assert repr(pre) == (
        "PretrainResult(run_dir='runs/pre', epochs_run=5, best_val_loss=123.46, best_epoch=3, "
        "converged=True, stopped_early=False)"
    )
    # Mean of 0.5 + i / 1000 over i < 500 = 0.7495.
    assert repr(fine) == (
        "FinetuneResult(run_dir='runs/ft', epochs_run=4, best_val_loss=0.1, best_epoch=2, "
        "converged=False, test_dice={gm: 0.750}, transferred=False)"
    )


def test_evaluation_table_repr_counts_rows_instead_of_listing_them() -> None:
    text = repr(_table(1000))
    assert text.startswith("EvaluationTable(1000 rows, levels ['image'], columns ['level', 'volume_id'")
    assert "dice_gm=0.7498" in text and len(text) < 300


@pytest.mark.parametrize(
    ("result_type", "kind"), [(PretrainResult, "pretrain"), (FinetuneResult, "finetune")]
)
def test_the_model_a_run_hands_back_carries_its_best_checkpoints_meta(
    tmp_path: Path, result_type: type[PretrainResult | FinetuneResult], kind: str
) -> None:
    # It carried none: transfer and save_smp_encoder took it where they refuse its run folder.
    net = BACKBONES.build("unet2d", in_channels=1, out_channels=2, depth=2, base_width=4, seed=0)
    meta = CheckpointMeta(
        kind=kind,  # type: ignore[arg-type]
        backbone="unet2d",
        backbone_params={"depth": 2, "base_width": 4},
        in_channels=1,
        out_channels=2,
        epoch=3,
        val_loss=0.25,
    )
    save_checkpoint(tmp_path / "run" / "checkpoints" / "best", net.state_dict(), meta)
    outcome = TrainOutcome(history=[], best_val_loss=0.25, best_epoch=3, epochs_run=5, stopped_early=False)
    result = result_type.from_outcome(tmp_path / "run", outcome, model=net)
    assert result.model is net
    assert net.checkpoint_meta == meta


def test_without_a_best_checkpoint_the_model_carries_no_record(tmp_path: Path) -> None:
    # A rank on another machine than the run folder cannot read it: the result is still made.
    net = torch.nn.Conv2d(1, 1, 1)
    outcome = TrainOutcome(history=[], best_val_loss=0.25, best_epoch=0, epochs_run=1, stopped_early=False)
    FinetuneResult.from_outcome(tmp_path / "run", outcome, model=net)
    assert not hasattr(net, "checkpoint_meta")
    assert FinetuneResult.from_outcome(tmp_path / "run", outcome, model=None).model is None
