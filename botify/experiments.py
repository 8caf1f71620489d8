"""Experiments: who gets which treatment, and which recommender serves each treatment.

`config/experiments.yml` lists experiments; each has a name, 2..10 treatments (index 0 is the
control "C", index i is "T{i}") with a recommender (registry name, parameters, artifact) per
treatment. Exactly one experiment has `serving: true`: its treatment decides which recommender
answers a user. The others are only recorded, so analysis can split users by them too.

Assignment itself is `contracts.assignment.assign`, shared with `abtest` and the simulator.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from contracts.assignment import assign, treatment_label
from contracts.catalog import Catalog
from contracts.config import ConfigError, Strict, describe_validation_error, read_yaml
from recommenders import registry
from recommenders.base import Recommender

MIN_TREATMENTS = 2
MAX_TREATMENTS = 10
ASSIGNMENT_CACHE = 1 << 16  # users whose assignments are remembered


class RecommenderConfig(Strict):
    """A recommender as the registry builds it: name, parameters, artifact."""

    recommender: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    artifact: Path | None = None


def _by_name(value: Any) -> Any:
    """A bare registry name stands for `{recommender: name}`."""
    return {"recommender": value} if isinstance(value, str) else value


class ExploreConfig(Strict):
    """How a treatment explores (`recommenders.exploration`): exactly one of `softmax` and `epsilon`.

    `softmax: T` draws among the recommender's `candidates` best tracks with probability
    proportional to exp(score / T) (the recommender must score tracks: a learned model).
    `epsilon: e` serves the recommender's answer with probability 1 - e and otherwise one of
    `mix` (registry names or mappings like a treatment's), drawn uniformly. Every event logs the
    served track's probability (`propensity`) and the recommender's own answer (`greedy`).
    """

    softmax: float | None = Field(None, gt=0.0)
    candidates: int = Field(50, ge=2, le=10_000)
    epsilon: float | None = Field(None, gt=0.0, le=1.0)
    mix: list[RecommenderConfig] = Field(default_factory=list)
    salt: int = Field(0, ge=0)

    @field_validator("mix", mode="before")
    @classmethod
    def _mix_by_name(cls, value: Any) -> Any:
        return [_by_name(item) for item in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _one_kind(self) -> ExploreConfig:
        if (self.softmax is None) == (self.epsilon is None):
            raise ValueError("explore needs exactly one of softmax (a temperature) and epsilon (a probability)")
        if self.epsilon is not None and not self.mix:
            raise ValueError("explore with epsilon needs mix: the recommenders to explore with")
        if self.softmax is not None and self.mix:
            raise ValueError("explore with softmax takes no mix (that is epsilon's)")
        return self


class TreatmentConfig(RecommenderConfig):
    """One arm: the recommender that serves it, what answers when it fails, and its latency budget.

    `fallback` (a registry name, or a mapping like the treatment's own) answers the requests on
    which the recommender raises or breaks a rule of its answers (`recommenders.answers`); each
    such request is logged with the broken rule in the event's `error`. Without a fallback those
    requests fail (HTTP 500) and are still logged. An answer slower than `latency_budget_ms`
    (its share of the batch) is served and logged with error `slow`.

    `explore` serves the recommender stochastically (`ExploreConfig`), for off-policy
    evaluation. `interleave` (a registry name, or a mapping like the treatment's own) makes the
    arm a team-draft interleaving of the treatment's recommender (team A) and that one (team B):
    each request serves the top of the merged list and logs the drafting team's name as the
    event's `recommender` (`recommenders.interleaving`; docs/ope.md). `interleave_unit` says
    whether the team is drawn per request (default) or once per session.
    """

    fallback: RecommenderConfig | None = None
    latency_budget_ms: float | None = Field(None, gt=0.0)
    explore: ExploreConfig | None = None
    interleave: RecommenderConfig | None = None
    interleave_salt: int = Field(0, ge=0)
    interleave_unit: Literal["request", "session"] = "request"

    @field_validator("fallback", "interleave", mode="before")
    @classmethod
    def _fallback_by_name(cls, value: Any) -> Any:
        return _by_name(value)

    @model_validator(mode="after")
    def _explore_or_interleave(self) -> TreatmentConfig:
        if self.explore is not None and self.interleave is not None:
            raise ValueError("a treatment either explores or interleaves, not both")
        return self


class ExperimentConfig(Strict):
    """One experiment: a name, whether it serves, and its treatments (index 0 is the control)."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    serving: bool = False
    treatments: list[TreatmentConfig] = Field(min_length=MIN_TREATMENTS, max_length=MAX_TREATMENTS)


class ExperimentsConfig(Strict):
    """The whole `config/experiments.yml`."""

    experiments: list[ExperimentConfig] = Field(min_length=1)

    @field_validator("experiments")
    @classmethod
    def _unique_names(cls, experiments: list[ExperimentConfig]) -> list[ExperimentConfig]:
        names = [experiment.name for experiment in experiments]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"experiment names must be unique; repeated: {', '.join(duplicates)}")
        return experiments

    @model_validator(mode="after")
    def _one_serving(self) -> ExperimentsConfig:
        serving = [experiment.name for experiment in self.experiments if experiment.serving]
        if len(serving) != 1:
            found = f"found {len(serving)}" + (f": {', '.join(serving)}" if serving else "")
            raise ValueError(f"exactly one experiment must have serving: true ({found})")
        return self

    @property
    def serving(self) -> ExperimentConfig:
        return next(experiment for experiment in self.experiments if experiment.serving)


def experiments_from_mapping(data: Any, source: str = "experiments config") -> ExperimentsConfig:
    """Validate a mapping into `ExperimentsConfig`; `ConfigError` names every bad field."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping with key 'experiments', got {type(data).__name__}")
    try:
        return ExperimentsConfig.model_validate(dict(data))
    except ValidationError as error:
        raise ConfigError(describe_validation_error(error, source)) from None


def load_experiments(path: str | Path) -> ExperimentsConfig:
    """Read and validate `config/experiments.yml` (or another file)."""
    return experiments_from_mapping(read_yaml(path, "experiments file"), str(path))


@dataclass(frozen=True)
class Experiments:
    """The active experiments with a ready recommender for every treatment of the serving one.

    Attributes:
        config: the experiments file as validated; None for an in-process run's single treatment.
        names: experiment names, in file order (the order of `assignments`).
        sizes: the number of treatments of each experiment, same order.
        serving: the position of the serving experiment in `names`.
        recommenders: the serving experiment's recommender per treatment index.
        recommender_names: their registry names, same order.
        fallbacks: the recommender that answers when a treatment's fails, or None; same order.
        fallback_names: their registry names (None where there is no fallback).
        latency_budgets: seconds an answer may take per treatment, or None for no budget.
    """

    config: ExperimentsConfig | None
    names: tuple[str, ...]
    sizes: tuple[int, ...]
    serving: int
    recommenders: tuple[Recommender, ...]
    recommender_names: tuple[str, ...]
    fallbacks: tuple[Recommender | None, ...] = ()
    fallback_names: tuple[str | None, ...] = ()
    latency_budgets: tuple[float | None, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.recommenders)
        for name in ("fallbacks", "fallback_names", "latency_budgets"):
            if not getattr(self, name):
                object.__setattr__(self, name, (None,) * n)

    def assignments(self, user: int) -> tuple[int, ...]:
        """`user`'s treatment index in every experiment, in `names` order."""
        return _assign_all(self.names, self.sizes, user)


@functools.lru_cache(maxsize=ASSIGNMENT_CACHE)
def _assign_all(names: tuple[str, ...], sizes: tuple[int, ...], user: int) -> tuple[int, ...]:
    # Assignment is pure, so recent users' answers are kept: a dict hit instead of hashing.
    return tuple([assign(name, user, size) for name, size in zip(names, sizes, strict=True)])


def build_experiments(config: ExperimentsConfig, catalog: Catalog) -> Experiments:
    """Construct every treatment's recommender of the serving experiment once (`registry.make`).

    The other experiments are only recorded, so their recommenders are checked by name only.

    A recommender that cannot be built (unknown name, bad parameters, missing artifact) raises
    `ConfigError` naming the experiment and the treatment, so the service fails at start-up.
    """
    serving_config = config.serving
    recommenders: list[Recommender] = []
    fallbacks: list[Recommender | None] = []
    for index, treatment in enumerate(serving_config.treatments):
        where = f"experiment {serving_config.name!r}, treatment {index} ({treatment_label(index)})"
        recommenders.append(build_treatment(treatment, catalog, where))
        fallbacks.append(None if treatment.fallback is None else _build(treatment.fallback, catalog, f"{where}, fallback"))
    for experiment in config.experiments:
        if experiment is serving_config:
            continue
        for index, treatment in enumerate(experiment.treatments):
            try:
                registry.get_class(treatment.recommender)
            except LookupError as error:
                raise ConfigError(f"experiment {experiment.name!r}, treatment {index} ({treatment_label(index)}): {error}") from error
    return Experiments(
        config=config,
        names=tuple(experiment.name for experiment in config.experiments),
        sizes=tuple(len(experiment.treatments) for experiment in config.experiments),
        serving=config.experiments.index(serving_config),
        recommenders=tuple(recommenders),
        recommender_names=tuple(treatment.recommender for treatment in serving_config.treatments),
        fallbacks=tuple(fallbacks),
        fallback_names=tuple(None if t.fallback is None else t.fallback.recommender for t in serving_config.treatments),
        latency_budgets=tuple(None if t.latency_budget_ms is None else t.latency_budget_ms / 1e3 for t in serving_config.treatments),
    )


def build_treatment(treatment: TreatmentConfig, catalog: Catalog, where: str) -> Recommender:
    """The recommender serving one arm: the configured one, wrapped in its exploration or
    interleaving policy when the treatment has one; `ConfigError` naming `where` when it cannot be built."""
    recommender = _build(treatment, catalog, where)
    explore = treatment.explore
    if explore is None and treatment.interleave is None:
        return recommender
    # Imported here: a plain treatment (the usual one, and every `sim.run local:` run) does without them.
    from recommenders.exploration import EpsilonExplorer, SoftmaxExplorer
    from recommenders.interleaving import TeamDraftRecommender

    try:
        if explore is not None and explore.softmax is not None:
            return SoftmaxExplorer(catalog, recommender, treatment.recommender, explore.softmax, explore.candidates, explore.salt)
        if explore is not None and explore.epsilon is not None:
            others = [(m.recommender, _build(m, catalog, f"{where}, explore mix {j}")) for j, m in enumerate(explore.mix)]
            return EpsilonExplorer(catalog, recommender, others, explore.epsilon, explore.salt)
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from error
    if treatment.interleave is not None:
        other = _build(treatment.interleave, catalog, f"{where}, interleave")
        if treatment.interleave.recommender == treatment.recommender:
            raise ConfigError(f"{where}: interleave names {treatment.recommender!r}, the treatment's own recommender; the teams need two names")
        return TeamDraftRecommender(catalog, (treatment.recommender, recommender), (treatment.interleave.recommender, other), treatment.interleave_salt,
                                   treatment.interleave_unit)
    return recommender


def _build(config: RecommenderConfig, catalog: Catalog, where: str) -> Recommender:
    """`registry.make` for one configured recommender; `ConfigError` naming `where` when it cannot be built."""
    if config.artifact is not None and not config.artifact.exists():
        raise ConfigError(f"{where}: artifact {config.artifact} of recommender {config.recommender!r} does not exist")
    try:
        return registry.make(config.recommender, catalog, dict(config.params), config.artifact)
    except (LookupError, ValueError, TypeError, OSError) as error:
        raise ConfigError(f"{where}: {error}") from error


def single_treatment(
    experiment: str,
    name: str,
    recommender: Recommender,
    *,
    fallback: tuple[str, Recommender] | None = None,
    latency_budget: float | None = None,
) -> Experiments:
    """One experiment of one treatment, served by `recommender` (registered as `name`): how the
    simulator's in-process runs are served; it has no experiments file. `fallback` is (name,
    recommender) answering where `recommender` fails; `latency_budget` is in seconds."""
    return Experiments(
        config=None, names=(experiment,), sizes=(1,), serving=0, recommenders=(recommender,), recommender_names=(name,),
        fallbacks=(None if fallback is None else fallback[1],), fallback_names=(None if fallback is None else fallback[0],),
        latency_budgets=(latency_budget,),
    )


def describe(config: ExperimentsConfig) -> list[dict[str, Any]]:
    """One plain row per (experiment, treatment), as written to the log's `experiments` table."""
    return [
        {"experiment": experiment.name, "treatment": index, "recommender": treatment.recommender, "serving": experiment.serving}
        for experiment in config.experiments
        for index, treatment in enumerate(experiment.treatments)
    ]

