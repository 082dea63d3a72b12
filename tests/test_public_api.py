"""Pin the public contract of DESIGN.md section 1: names, signatures and exported members."""

from __future__ import annotations

import inspect

import inpaintssl as issl
from inpaintssl import metrics, registry, stats, testing
from inpaintssl.losses import dice_loss, l2_loss


def test_top_level_exports_exactly_all() -> None:
    assert sorted(issl.__all__) == sorted(
        [
            "EvaluationTable",
            "FinetuneConfig",
            "FinetuneResult",
            "PredictionError",
            "PredictionReport",
            "PretrainConfig",
            "PretrainResult",
            "TransferReport",
            "__version__",
            "evaluate",
            "export_model",
            "finetune",
            "load_model",
            "predict",
            "pretrain",
            "registry",
            "transfer",
        ]
    )
    for name in issl.__all__:
        assert getattr(issl, name) is not None, name
    assert isinstance(issl.__version__, str) and issl.__version__.count(".") == 2


def test_api_signatures() -> None:
    assert list(inspect.signature(issl.pretrain).parameters)[:1] == ["config"]
    assert list(inspect.signature(issl.finetune).parameters)[:1] == ["config"]
    transfer = inspect.signature(issl.transfer).parameters
    assert list(transfer)[:2] == ["pretrained", "model"]
    assert transfer["weights"].kind is inspect.Parameter.KEYWORD_ONLY
    assert transfer["weights"].default == "encoder"
    assert list(inspect.signature(issl.evaluate).parameters)[:2] == ["checkpoint_or_model", "data"]
    # Second wave (DESIGN.md section 1): load_model(run_or_checkpoint), predict(run, inputs, *, output).
    assert list(inspect.signature(issl.load_model).parameters)[:1] == ["run_or_checkpoint"]
    predict = inspect.signature(issl.predict).parameters
    assert list(predict)[:2] == ["run_or_checkpoint", "inputs"]
    assert predict["output"].kind is inspect.Parameter.KEYWORD_ONLY


def test_registries_and_their_methods() -> None:
    for name in ("PRETEXT_TASKS", "SAMPLERS", "BACKBONES", "LOSSES", "TRANSFER_STRATEGIES", "DATASETS"):
        reg = getattr(registry, name)
        assert isinstance(reg, registry.Registry)
        for method in ("register", "get", "build", "names"):
            assert callable(getattr(reg, method))
    assert registry.PRETEXT_TASKS.group == "inpaintssl.pretext_tasks"
    assert registry.TRANSFER_STRATEGIES.group == "inpaintssl.transfer_strategies"


def test_metric_and_stat_names() -> None:
    for name in (
        "dice_per_class",
        "qdess_t2",
        "tissue_volume",
        "cross_sectional_area",
        "mean_hu",
        "mean_t2",
        "percent_error",
    ):
        assert name in metrics.__all__ and callable(getattr(metrics, name))
    t2 = inspect.signature(metrics.qdess_t2).parameters
    assert {"tr_ms", "te_ms", "flip_angle_deg", "gl_area", "tg_us"} <= set(t2)
    assert t2["t1_ms"].default == 1200.0 and t2["diffusivity"].default == 1.25e-9
    assert callable(stats.wilcoxon_greater) and callable(stats.fit_power_law)
    assert list(inspect.signature(l2_loss).parameters) == ["pred", "target"]
    assert list(inspect.signature(dice_loss).parameters)[:3] == ["probs", "target_onehot", "eps"]
    assert inspect.signature(dice_loss).parameters["eps"].default == 1e-7


def test_testing_exports_one_contract_per_plugin_kind() -> None:
    assert testing.__all__ == [
        "BackboneContract",
        "DatasetContract",
        "LossContract",
        "PretextTaskContract",
        "SamplerContract",
        "TransferStrategyContract",
    ]
    for name in testing.__all__:
        contract = getattr(testing, name)
        assert contract.__module__.startswith("inpaintssl.testing.") and contract.check_names(), name
        assert f":class:`{name}`" in (testing.__doc__ or ""), name
    # One contract for each registry a plugin can add to.
    assert len(testing.__all__) == len(
        ("PRETEXT_TASKS", "SAMPLERS", "BACKBONES", "LOSSES", "TRANSFER_STRATEGIES", "DATASETS")
    )
