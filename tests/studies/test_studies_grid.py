"""Grid expansion: job counts, shared pretraining, stable ids, whole-group shards."""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inpaintssl.config import (
    ConfigError,
    ConfigWarning,
    FinetuneConfig,
    PretrainConfig,
    TransferConfig,
    apply_overrides,
    update_fields,
)
from inpaintssl.registry import PRETEXT_TASKS, SAMPLERS
from inpaintssl.studies.grid import Job, StudyPlan, expand_study, parse_shard, run_id, transfer_acronym
from inpaintssl.studies.spec import StudySpec, load_spec

EXAMPLES = Path(__file__).parents[2] / "examples" / "studies"


def _pretext_spec(output: Path, **changes: Any) -> StudySpec:
    data = {
        "study": "pretext_design",
        "output": str(output),
        "grid": {
            "pretrain.pretext.task": ["context_prediction", "context_restoration"],
            "pretrain.pretext.patch_size": [8, 16, 32],
            "pretrain.pretext.sampler": ["random", "poisson_disc"],
        },
        "label_fractions": [1.0, 0.5, 0.25, 0.1, 0.05],
        "subset_seeds": [0, 1],
    }
    data.update(changes)
    return StudySpec.model_validate(data)


def test_pretext_grid_counts_and_sharing(tmp_path: Path) -> None:
    plan = expand_study(_pretext_spec(tmp_path))
    pretrain = plan.pretrain_jobs()
    strategies = 2 * 3 * 2
    # 4 label-limited fractions x 2 subset seeds, plus all labels once (every seed draws the same set).
    subsets = 4 * 2 + 1
    assert len(pretrain) == strategies
    ssl = [j for j in plan.finetune_jobs() if j.depends_on is not None]
    baseline = [j for j in plan.finetune_jobs() if j.depends_on is None]
    assert len(ssl) == strategies * subsets
    assert len(baseline) == subsets
    assert sorted((j.labels["label_fraction"], j.labels["subset_seed"]) for j in baseline)[-3:] == [
        (0.5, 0),
        (0.5, 1),
        (1.0, 0),
    ]
    # Each pretrained model serves exactly the fine-tuning runs of its strategy.
    for pre in pretrain:
        dependants = plan.dependants(pre.id)
        assert len(dependants) == subsets
        assert {j.labels["strategy"] for j in dependants} == {pre.labels["strategy"]}
    assert len({j.id for j in plan}) == len(plan)


def test_configs_point_at_their_folders_and_pretrained_runs(tmp_path: Path) -> None:
    plan = expand_study(_pretext_spec(tmp_path, label_fractions=[0.25], subset_seeds=[3]))
    runs = tmp_path / "runs"
    for job in plan:
        assert job.config.run.output_dir == runs / job.id
    for job in plan.finetune_jobs():
        assert job.config.data.label_fraction == 0.25 and job.config.data.subset_seed == 3
        expected = None if job.depends_on is None else runs / job.depends_on
        assert job.config.transfer.pretrained == expected
    pre = plan.pretrain_jobs()[0]
    assert (pre.config.pretext.task, pre.config.pretext.patch_size, pre.config.pretext.sampler) == (
        pre.labels["task"],
        pre.labels["patch_size"],
        pre.labels["sampler"],
    )


def test_run_ids_are_stable_and_ignore_where_a_run_executes(tmp_path: Path) -> None:
    first = [j.id for j in expand_study(_pretext_spec(tmp_path / "a"))]
    again = [j.id for j in expand_study(_pretext_spec(tmp_path / "a"))]
    moved = [j.id for j in expand_study(_pretext_spec(tmp_path / "b"))]
    assert first == again == moved
    job = expand_study(_pretext_spec(tmp_path)).pretrain_jobs()[0]
    runtime_only = [
        "run.device=cpu",
        "run.resume=true",
        "data.num_workers=3",
        "data.worker_start_method=spawn",
        "data.cache_dir=/scratch/decompressed",
        "data.check_threads=3",
        "run.compile=reduce-overhead",
        "run.cudnn_benchmark=true",
    ]
    with pytest.warns(ConfigWarning, match=r"run\.cudnn_benchmark=true has no effect"):  # on the CPU
        cpu = apply_overrides(job.config, runtime_only)
    assert run_id("pretrain", cpu) == job.id
    # Speed alone (docs/concepts.rst): switching one on mid-study retrained every run.
    faster = ["run.reuse_host_memory=true", "run.cpu_weight_gradient=onednn", "run.checkpoint_every=5"]
    for override in faster:
        assert run_id("pretrain", apply_overrides(job.config, [override])) == job.id, override
    assert run_id("pretrain", apply_overrides(job.config, ["run.seed=7"])) != job.id
    assert run_id("finetune", job.config, depends_on="pt-x") != run_id(
        "finetune", job.config, depends_on="pt-y"
    )


def test_run_ids_of_the_default_configs_are_those_earlier_releases_computed() -> None:
    # Computed by the code of commit e889ce7 (before run.compile existed): a study folder written by
    # an earlier release keeps its run ids, so resuming it after an upgrade re-trains nothing.
    assert run_id("finetune", FinetuneConfig(), depends_on="pt-x") == "ft-de65d72a1cc2ab26"
    # Pretraining's early stopping changed on purpose (min_delta 50 per 512x512 slice, scaled to
    # the slice area): a default pretraining run is another run now. The old one keeps its id when
    # its spec says what it trained with, so such a study resumes without re-training.
    old_default = update_fields(PretrainConfig(), {"early_stopping.min_delta": 50.0})
    assert run_id("pretrain", old_default) == "pt-b4f41ded7d3e2909"
    assert run_id("pretrain", PretrainConfig()) == "pt-bc9c3577751c34a0"


def test_transfer_grid_does_not_duplicate_immediate_runs(tmp_path: Path) -> None:
    spec = StudySpec(
        study="transfer_design",
        output=tmp_path,
        label_fractions=[0.05],
        baseline=False,
        grid={
            "finetune.transfer.weights": ["encoder", "encoder_decoder"],
            "finetune.transfer.schedule": ["immediate", "freeze_then_unfreeze"],
            "finetune.optim.lr": [1e-2, 1e-3, 1e-4, 1e-5],
            "finetune.transfer.second_lr": [1e-2, 1e-3, 1e-4, 1e-5],
        },
    )
    plan = expand_study(spec)
    assert len(plan.pretrain_jobs()) == 1
    # immediate: weights x lr; freeze_then_unfreeze: weights x lr x second lr.
    assert len(plan.finetune_jobs()) == 2 * 4 + 2 * 4 * 4
    acronyms = {j.labels["acronym"] for j in plan.finetune_jobs()}
    assert acronyms == {"FEF", "FBF", "FFES", "FFBS"}
    for job in plan.finetune_jobs():
        if job.labels["schedule"] == "immediate":
            assert job.config.transfer.second_lr is None and job.labels["second_lr"] is None
        else:
            assert job.labels["second_lr"] == job.config.transfer.second_lr
    assert len({j.labels["strategy"] for j in plan.finetune_jobs()}) == len(plan.finetune_jobs())


@pytest.mark.parametrize(
    ("weights", "schedule", "expected"),
    [
        ("encoder", "immediate", "FEF"),
        ("encoder_decoder", "immediate", "FBF"),
        ("encoder", "freeze_then_unfreeze", "FFES"),
        ("encoder_decoder", "freeze_then_unfreeze", "FFBS"),
        ("decoder_only", "immediate", "F[decoder_only]F"),
    ],
)
def test_transfer_acronyms_follow_figure_a1(weights: str, schedule: str, expected: str) -> None:
    assert transfer_acronym(weights, schedule) == expected


def test_data_scaling_sets_every_unlabelled_fraction(tmp_path: Path) -> None:
    spec = StudySpec.model_validate(
        {
            "study": "data_scaling",
            "output": str(tmp_path),
            "pretrain": {"data": {"unlabelled": [{"dataset": "synthetic"}, {"dataset": "mni152"}]}},
            "unlabelled_fractions": [0.0, 0.5, 1.0],
            "label_fractions": [0.5, 0.1],
        }
    )
    plan = expand_study(spec)
    found = {j.labels["unlabelled_fraction"]: j.config.data.unlabelled for j in plan.pretrain_jobs()}
    assert sorted(found) == [0.0, 0.5, 1.0]
    assert found[0.0] == []
    for fraction in (0.5, 1.0):
        assert [s.fraction for s in found[fraction]] == [fraction, fraction]
        assert [s.dataset for s in found[fraction]] == ["synthetic", "mni152"]
    assert len(plan.finetune_jobs()) == 3 * 2 + 2


@pytest.mark.parametrize(
    ("fractions", "names"),
    [
        # Whole percents while they tell the amounts apart: the names studies always had.
        ([0.0, 0.125, 0.375], ["+0% unlabelled", "+12% unlabelled", "+38% unlabelled"]),
        # 0.12 and 0.125 are both 12%: one strategy name averaged two arms in the Dice table.
        ([0.0, 0.12, 0.125], ["+0.0% unlabelled", "+12.0% unlabelled", "+12.5% unlabelled"]),
    ],
)
def test_data_scaling_names_every_amount_apart(
    tmp_path: Path, fractions: list[float], names: list[str]
) -> None:
    spec = StudySpec.model_validate(
        {
            "study": "data_scaling",
            "output": str(tmp_path),
            "pretrain": {"data": {"unlabelled": [{"dataset": "mni152"}]}},
            "unlabelled_fractions": fractions,
            "label_fractions": [1.0],
        }
    )
    plan = expand_study(spec)
    by_fraction = {j.labels["unlabelled_fraction"]: j.labels["strategy"] for j in plan.pretrain_jobs()}
    assert [by_fraction[f] for f in fractions] == names
    ssl_names = {j.labels["strategy"] for j in _ssl(plan)}
    assert ssl_names == set(names)


@pytest.mark.parametrize("task", PRETEXT_TASKS.names())
@pytest.mark.parametrize("sampler", SAMPLERS.names())
def test_every_registered_task_and_sampler_expands(tmp_path: Path, task: str, sampler: str) -> None:
    spec = StudySpec.model_validate(
        {
            "study": "pretext_design",
            "output": str(tmp_path),
            "grid": {"pretrain.pretext.task": [task], "pretrain.pretext.sampler": [sampler]},
            "label_fractions": [0.5],
        }
    )
    (pre,) = expand_study(spec).pretrain_jobs()
    assert (pre.config.pretext.task, pre.config.pretext.sampler) == (task, sampler)
    assert task in pre.labels["strategy"] and sampler in pre.labels["strategy"]


def test_extra_grid_keys_become_labels_and_split_strategies(tmp_path: Path) -> None:
    spec = StudySpec.model_validate(
        {
            "study": "clinical",
            "output": str(tmp_path),
            "label_fractions": [0.5],
            "baseline": False,
            "grid": {"finetune.loss.name": ["dice", "l2"]},
        }
    )
    jobs = expand_study(spec).finetune_jobs()
    assert sorted(j.labels["finetune.loss.name"] for j in jobs) == ["dice", "l2"]
    assert sorted(j.labels["strategy"] for j in jobs) == ["ssl name=dice", "ssl name=l2"]


@given(
    patch_sizes=st.lists(st.sampled_from([4, 8, 16, 32, 64]), min_size=1, max_size=4, unique=True),
    fractions=st.lists(st.sampled_from([1.0, 0.5, 0.25, 0.1, 0.05]), min_size=1, max_size=3, unique=True),
    baseline=st.booleans(),
    count=st.integers(1, 6),
)
def test_shards_partition_the_plan_into_whole_groups(
    patch_sizes: list[int], fractions: list[float], baseline: bool, count: int
) -> None:
    spec = StudySpec(
        study="pretext_design",
        output=Path("unused"),
        label_fractions=fractions,
        baseline=baseline,
        grid={"pretrain.pretext.patch_size": patch_sizes},
    )
    plan = expand_study(spec)
    shards = [plan.shard(i, count) for i in range(count)]
    ids = [j.id for shard in shards for j in shard]
    assert sorted(ids) == sorted(j.id for j in plan)  # a partition: every job once
    for shard in shards:
        members = {j.id for j in shard}
        for job in shard:
            assert job.group in members  # the pretraining job travels with its dependants
    sizes = [len(s) for s in shards]
    largest_group = max(1 + len(fractions), 1)
    assert max(sizes) - min(sizes) <= largest_group
    # Deterministic: another process computes the same split.
    assert [j.id for j in expand_study(spec).shard(count - 1, count)] == [j.id for j in shards[-1]]


@pytest.mark.parametrize(("text", "expected"), [("0/1", (0, 1)), ("3/8", (3, 8)), ("7/8", (7, 8))])
def test_parse_shard(text: str, expected: tuple[int, int]) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["8/8", "-1/4", "1", "a/b", "1/0", ""])
def test_parse_shard_rejects_bad_values(text: str) -> None:
    with pytest.raises(ValueError, match="expected 'i/n' with 0 <= i < n"):
        parse_shard(text)


@pytest.mark.parametrize("given", [3, (3, 8), None])
def test_parse_shard_names_what_is_no_text(given: object) -> None:
    # 3 failed as "'int' object has no attribute 'partition'".
    with pytest.raises(TypeError, match=r"expected the text 'i/n', e\.g\. '0/4'$"):
        parse_shard(given)  # type: ignore[arg-type]


def test_shard_rejects_an_index_outside_the_count(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shard 4/4 is invalid"):
        expand_study(_pretext_spec(tmp_path)).shard(4, 4)


def test_grid_order_is_baselines_then_each_pretraining_job_before_its_dependants(tmp_path: Path) -> None:
    plan = expand_study(_pretext_spec(tmp_path, label_fractions=[0.5, 0.1], subset_seeds=[0]))
    position = {j.id: i for i, j in enumerate(plan)}
    for job in plan.finetune_jobs():
        if job.depends_on is not None:
            assert position[job.depends_on] < position[job.id]
    kinds = [j.labels["arm"] for j in plan]
    assert kinds[:2] == ["supervised", "supervised"]
    expected = list(
        itertools.product(
            ["context_prediction", "context_restoration"], [8, 16, 32], ["random", "poisson_disc"]
        )
    )
    found = [(j.labels["task"], j.labels["patch_size"], j.labels["sampler"]) for j in plan.pretrain_jobs()]
    assert found == expected
    assert math.isclose(sum(j.config.data.label_fraction for j in plan.finetune_jobs()), 13 * (0.5 + 0.1))


def _ssl(plan: StudyPlan) -> list[Job]:
    return [j for j in plan.finetune_jobs() if j.labels["arm"] == "ssl"]


def _baselines(plan: StudyPlan) -> list[Job]:
    return [j for j in plan.finetune_jobs() if j.labels["arm"] == "supervised"]


def _old_baseline_id(spec: StudySpec, fraction: float, seed: int) -> str:
    # How releases before grid-following baselines built the one baseline of every study.
    subset = {"transfer": TransferConfig(), "data.label_fraction": fraction, "data.subset_seed": seed}
    return run_id("finetune", update_fields(spec.finetune, subset))


def _what_it_trains(config: FinetuneConfig) -> dict[str, Any]:
    """The config without what differs between the arms: the transfer section and the folder."""
    data = config.model_dump(mode="json")
    del data["transfer"], data["run"]["output_dir"]
    return data


def test_each_ssl_run_has_a_baseline_with_its_learning_rates_and_its_phases(tmp_path: Path) -> None:
    spec = StudySpec.model_validate(
        {
            "study": "transfer_design",
            "output": str(tmp_path),
            "finetune": {"optim": {"lr": 1e-2, "max_epochs": 10, "steps_per_epoch": 5}},
            "grid": {
                "finetune.optim.lr": [1e-2, 1e-3],
                "finetune.transfer.schedule": ["immediate", "freeze_then_unfreeze"],
            },
            "label_fractions": [0.1],
            "subset_seeds": [0, 1],
        }
    )
    plan = expand_study(spec)
    # Worked by hand: immediate trains one run of 10 x 5 steps, freeze_then_unfreeze two, the
    # second at lr / 10; the baseline of each trains from scratch in as many runs of 10 x 5 steps
    # at the same rates (a two-run one as immediate_twice: nothing transferred, nothing to freeze).
    expected = {
        ("FEF", 1e-2): (1e-2, None, 10),
        ("FFES", 1e-2): (1e-2, 1e-3, 20),
        ("FEF", 1e-3): (1e-3, None, 10),
        ("FFES", 1e-3): (1e-3, 1e-4, 20),
    }
    ssl = _ssl(plan)
    assert len(plan.pretrain_jobs()) == 1
    assert len(ssl) == 4 * 2  # strategies x subset seeds
    assert len(_baselines(plan)) == 4 * 2  # (lr, one or two runs) pairs x subset seeds
    assert len(plan) == 1 + 8 + 8
    paired = set()
    for job in ssl:
        baseline = plan.baseline_of(job)
        assert baseline is not None and baseline.id == job.labels["baseline_id"]
        lr, second_lr, epochs = expected[(job.labels["acronym"], job.config.optim.lr)]
        assert baseline.config.optim.effective_lr == lr == job.config.optim.effective_lr
        assert job.labels["second_lr"] == second_lr
        assert baseline.config.optim.max_epochs == job.config.optim.max_epochs == 10  # per run
        assert job.labels["budget_epochs"] == baseline.labels["budget_epochs"] == epochs
        if second_lr is None:
            assert baseline.config.transfer == TransferConfig()  # from scratch, one run
        else:  # from scratch, two runs at the SSL run's rates
            assert baseline.config.transfer == TransferConfig(schedule="immediate_twice", second_lr=second_lr)
        subset = (job.config.data.label_fraction, job.config.data.subset_seed)
        assert (baseline.config.data.label_fraction, baseline.config.data.subset_seed) == subset
        # Nothing else differs: loss, recipe, early stopping, model, data and run seed are shared.
        assert _what_it_trains(baseline.config) == _what_it_trains(job.config)
        paired.add(baseline.id)
    assert paired == {j.id for j in _baselines(plan)}  # no baseline trains for nothing
    names = {j.labels["strategy"] for j in _baselines(plan)}
    assert names == {
        "supervised lr=0.01",
        "supervised lr=0.01 second_lr=0.001",
        "supervised lr=0.001",
        "supervised lr=0.001 second_lr=0.0001",
    }
    for baseline in _baselines(plan):
        assert plan.baseline_of(baseline) is baseline
        assert baseline.config.run.output_dir == tmp_path / "runs" / baseline.id


def test_a_grid_over_transfer_settings_alone_keeps_one_baseline_and_its_old_id(tmp_path: Path) -> None:
    spec = StudySpec(
        study="transfer_design",
        output=tmp_path,
        label_fractions=[0.5, 0.1],
        grid={
            "finetune.transfer.weights": ["encoder", "encoder_decoder"],
            "finetune.transfer.schedule": ["immediate", "frozen"],
        },
    )
    plan = expand_study(spec)
    baselines = _baselines(plan)
    # One per label fraction, exactly the runs (and ids) of a study planned before this change.
    assert [j.id for j in baselines] == [_old_baseline_id(spec, 0.5, 0), _old_baseline_id(spec, 0.1, 0)]
    assert [j.labels["strategy"] for j in baselines] == ["supervised", "supervised"]
    assert len(_ssl(plan)) == 2 * 2 * 2  # weights x schedules x label fractions
    for job in _ssl(plan):
        fraction = job.labels["label_fraction"]
        assert job.labels["baseline_id"] == _old_baseline_id(spec, fraction, 0)


def test_two_run_schedules_at_one_second_rate_share_one_two_run_baseline(tmp_path: Path) -> None:
    spec = StudySpec.model_validate(
        {
            "study": "transfer_design",
            "output": str(tmp_path),
            "finetune": {"optim": {"max_epochs": 7}},
            "label_fractions": [0.1],
            "grid": {
                "finetune.transfer.schedule": ["immediate_twice", "freeze_then_unfreeze"],
                "finetune.transfer.second_lr": [1e-3, 1e-4],
            },
        }
    )
    plan = expand_study(spec)
    # One baseline per second learning rate, shared by F?S and FF?S: from scratch both train twice.
    found = {j.labels["strategy"]: j for j in _baselines(plan)}
    assert sorted(found) == ["supervised second_lr=0.0001", "supervised second_lr=0.001"]
    for second_lr, baseline in (
        (1e-3, found["supervised second_lr=0.001"]),
        (1e-4, found["supervised second_lr=0.0001"]),
    ):
        assert baseline.config.optim.max_epochs == 7  # per run, as the SSL runs
        assert baseline.config.transfer == TransferConfig(schedule="immediate_twice", second_lr=second_lr)
        assert baseline.labels["budget_epochs"] == 14
        paired = [j for j in _ssl(plan) if j.labels["baseline_id"] == baseline.id]
        assert sorted(j.labels["schedule"] for j in paired) == ["freeze_then_unfreeze", "immediate_twice"]
        assert {j.labels["second_lr"] for j in paired} == {second_lr}
    assert len(_ssl(plan)) == 4


def test_ssl_runs_with_equal_total_budgets_in_different_runs_do_not_share_a_baseline(tmp_path: Path) -> None:
    spec = StudySpec(
        study="transfer_design",
        output=tmp_path,
        label_fractions=[0.1],
        grid={
            "finetune.optim.max_epochs": [10, 20],
            "finetune.transfer.schedule": ["immediate", "immediate_twice"],
        },
    )
    plan = expand_study(spec)
    # Totals: 10 x 1 = 10, 10 x 2 = 20, 20 x 1 = 20, 20 x 2 = 40 epochs; 20 epochs in one run and
    # 10 in each of two (each with its own early stopping) train differently: four baselines.
    found = {(j.config.optim.max_epochs, j.labels["schedule"]): plan.baseline_of(j) for j in _ssl(plan)}
    trained = {
        key: (b.config.optim.max_epochs, b.config.transfer.schedule, b.labels["budget_epochs"])
        for key, b in found.items()
        if b is not None
    }
    assert trained == {
        (10, "immediate"): (10, "immediate", 10),
        (10, "immediate_twice"): (10, "immediate_twice", 20),
        (20, "immediate"): (20, "immediate", 20),
        (20, "immediate_twice"): (20, "immediate_twice", 40),
    }
    assert found[(10, "immediate_twice")] is not found[(20, "immediate")]
    assert sorted(j.labels["strategy"] for j in _baselines(plan)) == [
        "supervised max_epochs=10",
        "supervised max_epochs=10 second_lr=0.001",
        "supervised max_epochs=20",
        "supervised max_epochs=20 second_lr=0.001",
    ]


def test_other_finetune_grid_keys_give_each_value_its_baseline(tmp_path: Path) -> None:
    spec = StudySpec.model_validate(
        {
            "study": "clinical",
            "output": str(tmp_path),
            "label_fractions": [0.5],
            "grid": {"finetune.loss.name": ["dice", "l2"], "finetune.early_stopping.patience": [3]},
        }
    )
    plan = expand_study(spec)
    loss = {j.labels["strategy"]: j.config.loss.name for j in _baselines(plan)}
    assert loss == {"supervised name=dice patience=3": "dice", "supervised name=l2 patience=3": "l2"}
    for job in _ssl(plan):
        baseline = plan.baseline_of(job)
        assert baseline is not None
        assert baseline.config.loss.name == job.config.loss.name
        assert baseline.config.early_stopping.patience == job.config.early_stopping.patience == 3
        assert baseline.labels["finetune.loss.name"] == job.labels["finetune.loss.name"]


def test_without_a_baseline_no_run_names_one(tmp_path: Path) -> None:
    spec = StudySpec(
        study="transfer_design",
        output=tmp_path,
        label_fractions=[0.1],
        baseline=False,
        grid={"finetune.optim.lr": [1e-2, 1e-3]},
    )
    plan = expand_study(spec)
    assert len(plan.finetune_jobs()) == 2 and not _baselines(plan)
    assert all(j.labels["baseline_id"] is None and plan.baseline_of(j) is None for j in plan.finetune_jobs())
    assert plan.baseline_of(plan.pretrain_jobs()[0]) is None


def test_the_shipped_transfer_study_compares_like_with_like_and_reuses_its_old_baseline() -> None:
    spec = load_spec(EXAMPLES / "transfer_design.yaml")
    plan = expand_study(spec)
    baselines = _baselines(plan)
    # Three first learning rates x (one run, or two runs at each of two second rates), 10 epochs
    # of 10 steps per run.
    assert sorted((j.config.optim.effective_lr, j.config.transfer.second_lr or 0) for j in baselines) == [
        (1e-4, 0),
        (1e-4, 1e-4),
        (1e-4, 1e-3),
        (1e-3, 0),
        (1e-3, 1e-4),
        (1e-3, 1e-3),
        (1e-2, 0),
        (1e-2, 1e-4),
        (1e-2, 1e-3),
    ]
    assert {j.config.optim.max_epochs for j in baselines} == {10}
    # The paper recipe's rate is 1e-3: the 1e-3 one-run baseline is the study's old baseline run.
    assert _old_baseline_id(spec, 0.1, 0) in {j.id for j in baselines}
    for job in _ssl(plan):
        baseline = plan.baseline_of(job)
        assert baseline is not None
        runs = 2 if job.labels["schedule"] in ("immediate_twice", "freeze_then_unfreeze") else 1
        assert baseline.config.optim.effective_lr == job.config.optim.effective_lr
        assert baseline.config.optim.max_epochs == job.config.optim.max_epochs
        assert baseline.config.transfer.second_lr == job.labels["second_lr"]
        assert baseline.labels["budget_epochs"] == job.labels["budget_epochs"] == runs * 10


# -- demo folders: one per run ------------------------------------------------------------------
def test_demo_runs_that_a_readable_name_would_join_get_a_folder_each(tmp_path: Path) -> None:
    # A demo folder's name leaves out grid values and rounds the fraction: distinct runs shared a
    # folder, and a later one resumed the earlier one's finished run and was recorded with its Dice.
    spec = StudySpec.model_validate(
        {
            "study": "demo",
            "output": str(tmp_path),
            "label_fractions": [0.051, 0.049, 0.5],
            "grid": {
                "pretrain.pretext.task": ["context_prediction", "context_restoration"],
                "finetune.run.deterministic": [False, True],
            },
        }
    )
    plan = expand_study(spec)
    assert len(plan) == 2 + 2 * 2 * 3 + 2 * 3  # pretraining, SSL (task x deterministic x fraction), baselines
    folders = {job.id: job.config.run.output_dir for job in plan}
    assert len(set(folders.values())) == len(plan)
    runs = tmp_path / "runs"
    percent = {0.051: 5, 0.049: 5, 0.5: 50}

    def expected(job: Job) -> Path:
        # The base spec (context_restoration, deterministic false) has one run per name at 50%:
        # it keeps the name. 5.1% and 4.9% both round to 5%, so neither of those keeps it.
        arm, fraction = job.labels["arm"], job.labels.get("label_fraction")
        if arm == "pretrain":
            name, base = "pretrain", job.labels["task"] == "context_restoration"
        else:
            name = f"{arm}_{percent[fraction]}pct_seed0"
            task = job.labels.get("task", "context_restoration")  # baselines have no pretext task
            base = fraction == 0.5 and not job.config.run.deterministic and task == "context_restoration"
        return runs / (name if base else f"{name}_{job.id}")

    for job in plan:
        assert job.config.run.output_dir == expected(job), job.labels
        if job.depends_on is not None:
            assert job.config.transfer.pretrained == folders[job.depends_on]


@pytest.mark.parametrize("quick", [True, False])
def test_the_shipped_demo_keeps_its_readable_folder_names(tmp_path: Path, quick: bool) -> None:
    from inpaintssl.studies.demo import demo_spec, settings_for

    # The names README.md and docs quote (runs/ssl_10pct_seed0, runs/supervised_100pct_seed0):
    # 5% with three subset seeds, 10%, 25% and all labels with one.
    plan = expand_study(demo_spec(settings_for(quick=quick), output=tmp_path))
    subsets = [(5, 0), (5, 1), (5, 2), (10, 0), (25, 0), (100, 0)]
    names = {"pretrain"} | {
        f"{arm}_{pct}pct_seed{seed}" for arm in ("ssl", "supervised") for pct, seed in subsets
    }
    assert sorted(job.config.run.output_dir.name for job in plan) == sorted(names)
    assert {job.config.run.output_dir.parent for job in plan} == {tmp_path / "runs"}


# -- a value written out at the recipe's --------------------------------------------------------
# Each recipe's values, as docs/training.rst and inpaintssl.config describe them.
_RECIPE_VALUES = {
    "budget": {"lr": 1e-2, "betas": [0.9, 0.999], "schedule": "warmup_cosine", "loss": "dice_ce"},
    "paper": {"lr": 1e-3, "betas": [0.99, 0.995], "schedule": "step_decay", "loss": "dice"},
}


def _recipe_spec(output: Path, recipe: str, *, written: bool, **changes: Any) -> StudySpec:
    values = _RECIPE_VALUES[recipe]
    optim: dict[str, Any] = {"recipe": recipe}
    if written:
        optim.update(lr=values["lr"], betas=values["betas"], schedule=values["schedule"])
    finetune: dict[str, Any] = {"optim": optim, **({"loss": {"name": values["loss"]}} if written else {})}
    data = {
        "study": "pretext_design",
        "output": str(output),
        "pretrain": {"optim": optim},
        "finetune": finetune,
        "grid": {"pretrain.pretext.patch_size": [16, 32]},
        "label_fractions": [1.0, 0.5],
    }
    data.update(changes)
    return StudySpec.model_validate(data)


@pytest.mark.parametrize("recipe", ["budget", "paper"])
def test_a_value_written_out_at_the_recipes_keeps_the_run_ids_of_leaving_it_to_the_recipe(
    tmp_path: Path, recipe: str
) -> None:
    # optim.lr: 0.01 under the budget recipe trains what optim.lr: null does; only the baselines
    # were compared with the recipe's values filled in, so pretraining and SSL runs got new ids.
    left = expand_study(_recipe_spec(tmp_path, recipe, written=False))
    written = expand_study(_recipe_spec(tmp_path, recipe, written=True))
    assert [(j.kind, j.labels["arm"]) for j in written] == [(j.kind, j.labels["arm"]) for j in left]
    assert {j.labels["arm"] for j in left} == {"pretrain", "ssl", "supervised"}
    assert [j.id for j in written] == [j.id for j in left]
    # A grid that writes the recipe's rate beside another keeps the runs at the recipe's rate.
    lr = _RECIPE_VALUES[recipe]["lr"]
    grid = {"pretrain.pretext.patch_size": [16, 32], "finetune.optim.lr": [lr, lr / 10]}
    widened = expand_study(_recipe_spec(tmp_path, recipe, written=False, grid=grid))
    assert {j.id for j in left} < {j.id for j in widened}
    # Another value is another run, pretraining and fine-tuning alike.
    other = {"recipe": recipe, "lr": 2 * lr}
    changed = expand_study(
        _recipe_spec(tmp_path, recipe, written=False, pretrain={"optim": other}, finetune={"optim": other})
    )
    assert not {j.id for j in changed} & {j.id for j in left}


def test_the_budget_recipes_rate_written_out_keeps_the_id_earlier_releases_computed() -> None:
    # The id of the default fine-tuning config, computed by the code of commit e889ce7.
    written = update_fields(FinetuneConfig(), {"optim.lr": 0.01, "loss.name": "dice_ce"})
    assert run_id("finetune", written, depends_on="pt-x") == "ft-de65d72a1cc2ab26"
    # The paper recipe's rate is not the budget recipe's: written out under it, it is another run.
    paper = update_fields(FinetuneConfig(), {"optim.recipe": "paper"})
    assert run_id("finetune", update_fields(paper, {"optim.lr": 0.01})) != run_id("finetune", paper)


def test_a_grid_near_the_recipes_values_keeps_every_point_and_its_run_ids() -> None:
    # Values that train differently stay one run each now that values trained alike are refused
    # ("4" and 4; null and the recipe's 0.01): null beside 0.001, "32" (read as 32) beside 16.
    spec = StudySpec(
        study="pretext_design",
        label_fractions=[0.1],
        grid={"pretrain.pretext.patch_size": [16, "32"], "finetune.optim.lr": [None, 0.001]},
    )
    # By hand: 2 pretraining runs, 2 x 2 SSL runs, a baseline per learning rate.
    plan = expand_study(spec)
    assert [len(plan.pretrain_jobs()), len(plan.finetune_jobs())] == [2, 6]
    # The ids of the code of commit 50708ca, before the refusal: a valid study keeps its runs.
    assert [(job.id, job.labels["strategy"]) for job in plan] == [
        ("ft-2ab1f46b4e7602e2", "supervised lr=0.01"),
        ("ft-c2d26aa015de4c17", "supervised lr=0.001"),
        ("pt-717fc1ab411122c6", "context_restoration 16x16 poisson_disc"),
        ("ft-98abdb99170c5c06", "context_restoration 16x16 poisson_disc lr=None"),
        ("ft-ce072e14ae425ec9", "context_restoration 16x16 poisson_disc lr=0.001"),
        ("pt-bc9c3577751c34a0", "context_restoration 32x32 poisson_disc"),
        ("ft-0a5f6a7c1c619d6f", "context_restoration 32x32 poisson_disc lr=None"),
        ("ft-4092a5c5b35af25d", "context_restoration 32x32 poisson_disc lr=0.001"),
    ]


@pytest.mark.parametrize(
    ("grid", "alike"),
    [
        ({"finetune.optim.lr": [None, 0.01, 0.001]}, "null and 0.01 are one run"),  # budget's rate: 0.01
        ({"pretrain.pretext.patch_size": ["4", 4]}, "'4' and 4 are one run"),
    ],
)
def test_grid_points_that_would_be_one_run_are_refused_not_dropped(
    tmp_path: Path, grid: dict[str, list[Any]], alike: str
) -> None:
    # Was: 3 learning rates gave 2 SSL runs (the strategy named lr=None, its baseline lr=0.01) and
    # ["4", 4] gave 1: the plan kept one of each pair of grid points under one run id, silently.
    with pytest.raises(ConfigError, match=re.escape(alike)):
        load_spec(
            {"study": "pretext_design", "output": str(tmp_path), "label_fractions": [0.5], "grid": grid}
        )
