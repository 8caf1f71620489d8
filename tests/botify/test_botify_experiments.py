"""Experiment assignment (pure, stable, balanced, independent) and the experiments file."""

from __future__ import annotations

from pathlib import Path

import mmh3
import numpy as np
import pytest
from scipy import stats

from botify.config import ConfigError
from botify.experiments import build_experiments, experiments_from_mapping, load_experiments
from contracts.assignment import assign, treatment_label
from contracts.catalog import Catalog

N_USERS = 100_000
ALPHA = 0.001  # a fixed hash either passes or fails for good; this keeps a true split passing


def test_assignment_is_murmur3_of_name_and_user_modulo_n() -> None:
    # Pinned values: MurmurHash3 x86 32-bit, seed 0, of "cold_start:<user>" (also what abtest recomputes).
    assert mmh3.hash("hello", signed=False) == 0x248BFA47  # the published test vector of x86 32-bit, seed 0
    assert assign("cold_start", 1, 2) == mmh3.hash("cold_start:1", signed=False) % 2
    assert [assign("cold_start", user, 2) for user in range(8)] == [0, 0, 1, 1, 0, 0, 0, 0]
    assert [assign("cold_start", user, 10) for user in range(8)] == [2, 2, 7, 9, 0, 2, 2, 6]


@pytest.mark.parametrize("n_treatments", [2, 3, 5, 10])
def test_assignment_is_balanced(n_treatments: int) -> None:
    counts = np.bincount([assign("balance", user, n_treatments) for user in range(N_USERS)], minlength=n_treatments)

    result = stats.chisquare(counts)

    assert result.pvalue > ALPHA, f"counts {counts.tolist()} are unbalanced (p = {result.pvalue:.2g})"


def test_two_experiments_split_independently() -> None:
    first = np.array([assign("first", user, 2) for user in range(N_USERS)])
    second = np.array([assign("second", user, 3) for user in range(N_USERS)])
    table = np.zeros((2, 3))
    np.add.at(table, (first, second), 1)

    result = stats.chi2_contingency(table)

    assert result.pvalue > ALPHA, f"splits are dependent: {table.tolist()} (p = {result.pvalue:.2g})"


def test_treatment_labels() -> None:
    assert [treatment_label(i) for i in range(3)] == ["C", "T1", "T2"]


def arms(*names: str) -> list[dict]:
    return [{"recommender": name} for name in names]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"experiments": []}, "experiments: List should have at least 1 item"),
        ({"experiments": [{"name": "a", "treatments": arms("random", "random")}]}, "exactly one experiment must have serving: true (found 0)"),
        (
            {"experiments": [{"name": n, "serving": True, "treatments": arms("random", "random")} for n in ("a", "b")]},
            "exactly one experiment must have serving: true (found 2: a, b)",
        ),
        ({"experiments": [{"name": "a", "serving": True, "treatments": arms("random")}]}, "experiments.0.treatments: List should have at least 2 items"),
        ({"experiments": [{"name": "a", "serving": True, "treatments": arms(*["random"] * 11)}]}, "experiments.0.treatments: List should have at most 10 items"),
        ({"experiments": [{"name": "a b", "serving": True, "treatments": arms("random", "random")}]}, "experiments.0.name: String should match pattern"),
        (
            {"experiments": [{"name": "a", "serving": True, "treatments": arms("random", "random")}, {"name": "a", "treatments": arms("random", "random")}]},
            "experiment names must be unique; repeated: a",
        ),
        ({"experiments": [{"name": "a", "serving": True, "treatments": [{"recommender": "random", "param": {}}, {"recommender": "random"}]}]}, "experiments.0.treatments.0.param: unknown key"),
        ({"experiment": []}, "experiment: unknown key"),
        (["a"], "expected a mapping with key 'experiments'"),
    ],
)
def test_bad_experiment_files_name_the_field(data: object, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        experiments_from_mapping(data, "exp.yml")

    assert message in str(error.value)


def test_missing_experiments_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read experiments file .*nope.yml"):
        load_experiments(tmp_path / "nope.yml")


@pytest.mark.parametrize(
    ("treatment", "message"),
    [
        ({"recommender": "randon"}, "treatment 1 (T1): no recommender named 'randon'. Did you mean 'random'?"),
        ({"recommender": "random", "params": {"sed": 1}}, "treatment 1 (T1): recommender 'random': bad parameters"),
        ({"recommender": "random", "artifact": "/nonexistent/dssm"}, "artifact /nonexistent/dssm of recommender 'random' does not exist"),
    ],
)
def test_unbuildable_recommenders_fail_at_start_up_naming_the_treatment(small_world_dir: Path, treatment: dict, message: str) -> None:
    config = experiments_from_mapping({"experiments": [{"name": "e", "serving": True, "treatments": [{"recommender": "random"}, treatment]}]})

    with pytest.raises(ConfigError) as error:
        build_experiments(config, Catalog(small_world_dir))

    assert "experiment 'e'" in str(error.value) and message in str(error.value)


def test_recorded_experiments_are_checked_by_name_only(small_world_dir: Path) -> None:
    config = experiments_from_mapping(
        {
            "experiments": [
                {"name": "serving", "serving": True, "treatments": arms("random", "sticky_artist")},
                {"name": "recorded", "treatments": arms("random", "top_pop", "random")},
                {"name": "typo", "treatments": arms("random", "stiky_artist")},
            ]
        }
    )

    with pytest.raises(ConfigError, match="experiment 'typo', treatment 1 .*no recommender named 'stiky_artist'"):
        build_experiments(config, Catalog(small_world_dir))


def test_built_experiments_assign_every_experiment(small_world_dir: Path) -> None:
    config = experiments_from_mapping(
        {
            "experiments": [
                {"name": "recorded", "treatments": arms("random", "random", "random")},
                {"name": "serving", "serving": True, "treatments": arms("random", "sticky_artist")},
            ]
        }
    )

    experiments = build_experiments(config, Catalog(small_world_dir))

    assert experiments.names == ("recorded", "serving") and experiments.serving == 1
    assert experiments.recommender_names == ("random", "sticky_artist")
    # MurmurHash3 x86_32 (unsigned): "recorded:42" -> 4256242442, % 3 = 2; "serving:42" -> 1822884022, % 2 = 0.
    assert experiments.assignments(42) == (2, 0)
    assert experiments.assignments(3) == (1, 1)  # "recorded:3" -> 806908633, "serving:3" -> 804637307
