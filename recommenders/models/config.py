"""Validated configurations of the learned models: training (`--config` YAML) and serving parameters.

Defaults follow the write-ups the models come from (DSSM: LayerNorm towers, hidden 64,
embedding 96, AdamW 1e-3, plateau thresholds 0.002 / 0.001, 50 epochs; BPR+KNN: embedding
128, 4 negatives, batch 16384, lr 0.005, at most 50 neighbours). YAML is parsed once here;
unknown keys and impossible values raise `ConfigError` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, model_validator

from contracts.config import ConfigError, Strict, read_mapping, validate_mapping  # noqa: F401 - ConfigError is re-exported for the training command


class LikeConfig(Strict):
    """What counts as a like, how much of the session a model sees, the seed and the thread count: shared by every learned model."""

    seed: int = Field(0, ge=0)  # seeds every random choice of training (same seed, same artifact)
    threads: int = Field(1, ge=1)  # torch CPU threads of training: the weights depend on it, not on the machine
    like_threshold: float = Field(0.5, ge=0.0, le=1.0)  # a listen of at least this fraction is a like
    history: int = Field(10, ge=1, le=256)  # most recent session tracks a model looks at


class DSSMConfig(LikeConfig):
    """Training configuration of the two-tower DSSM."""

    hidden_dim: int = Field(64, ge=1, le=4096)  # size of every input feature embedding
    embedding_dim: int = Field(96, ge=1, le=4096)  # size of the tower outputs
    content_features: bool = True  # feed the mean of each track's content frames to the item side
    user_dropout: float = Field(0.1, ge=0.0, lt=1.0)  # share of examples trained as a cold user
    track_dropout: float = Field(0.1, ge=0.0, lt=1.0)  # share of target ids replaced by the cold-track id
    batch_size: int = Field(512, ge=2)
    sampled_negatives: int = Field(512, ge=0)  # uniform catalog negatives per batch, besides in-batch ones
    logq_correction: bool = False  # subtract log(expected sampling count) from every logit (debiases popularity)
    lr: float = Field(0.001, gt=0.0)
    weight_decay: float = Field(1e-3, ge=0.0)
    epochs: int = Field(50, ge=1, le=10_000)
    validation_fraction: float = Field(0.1, gt=0.0, lt=1.0)  # latest sessions held out for early stopping
    lr_reduce_min_delta: float = Field(0.002, ge=0.0)  # plateau: val loss improved by less than this
    lr_reduce_factor: float = Field(0.1, gt=0.0, lt=1.0)
    lr_reduce_patience: int = Field(1, ge=1)  # epochs on a plateau before the learning rate drops
    early_stopping_min_delta: float = Field(0.001, ge=0.0)
    early_stopping_patience: int = Field(2, ge=1)  # epochs without improvement before training stops
    min_track_count: int = Field(1, ge=1)  # tracks seen fewer times share the cold-track id


class BPRKNNConfig(LikeConfig):
    """Training configuration of KNN candidate pairing plus the BPR ranker.

    The write-up's values where they carry over (embedding 128, 4 negatives, batch 16384,
    lr 0.005, at most 50 neighbours); candidate counts are larger because a listening session
    consumes many tracks, and training runs more epochs with an L2 penalty because an event log
    is far smaller than the write-up's data set (a batch of 16384 triplets is most of an epoch).
    """

    min_candidates: int = Field(100, ge=1)  # add neighbours until a user has this many candidate tracks
    max_neighbours: int = Field(50, ge=1)
    candidates: int = Field(200, ge=1)  # candidate tracks kept per user (sampled by neighbour votes)
    embedding_dim: int = Field(128, ge=1, le=4096)
    negatives: int = Field(4, ge=1)  # sampled negatives per positive
    batch_size: int = Field(16_384, ge=1)
    lr: float = Field(0.005, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    l2: float = Field(0.1, ge=0.0)  # penalty on the mean squared norm of each batch's embeddings
    epochs: int = Field(100, ge=1, le=10_000)
    early_stopping_patience: int = Field(10, ge=1)  # epochs without a better validation MRR before training stops
    validation_fraction: float = Field(0.1, ge=0.0, lt=1.0)  # users whose latest like is held out for MRR
    validation_negatives: int = Field(50, ge=1)

    @model_validator(mode="after")
    def _check_candidates(self) -> BPRKNNConfig:
        if self.min_candidates > self.candidates:
            raise ValueError(f"min_candidates == {self.min_candidates}, must be <= candidates == {self.candidates}")
        return self


class SequentialConfig(LikeConfig):
    """Training configuration shared by the sequential transformers (SASRec, HSTU).

    `history` is the longest session prefix the model reads (RecTools' `session_max_len`);
    defaults are those of RecTools' SASRecModel scaled to a session of a few dozen plays.
    """

    history: int = Field(32, ge=2, le=256)  # most recent session tracks the model attends to
    embedding_dim: int = Field(64, ge=2, le=4096)  # n_factors: item and hidden width
    blocks: int = Field(2, ge=1, le=16)  # transformer blocks
    heads: int = Field(2, ge=1, le=64)  # attention heads (embedding_dim must divide by them)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    batch_size: int = Field(128, ge=1)  # sessions per batch
    loss: Literal["softmax", "sampled_softmax"] = "sampled_softmax"  # softmax: against the whole catalog (RecTools' "softmax")
    sampled_negatives: int = Field(1024, ge=1)  # sampled_softmax: uniform catalog negatives per batch, shared by every position
    artist_repeat_targets: bool = True  # off: a liked play of an artist already played in the session is not a target (serving penalises repeats)
    repeat_target_weight: float = Field(1.0, ge=0.0, le=1.0)  # weight of a target whose artist was already played in the session (a sticky logging policy's bias)
    targets: Literal["liked", "heard"] = "heard"  # heard: every next play is a target weighted by the fraction heard; liked: likes only, weight 1
    item_tower: bool = False  # a track is an MLP over its concatenated id and feature embeddings (DSSM's item tower) instead of their sum
    opening_marker: bool = False  # a learned vector marks the session's opening play (the listener's own pick) when the window holds it
    listen_weight: float = Field(0.0, ge=0.0)  # weight of a term that fits every next play's fraction heard (skips too) beside the ranking loss
    in_batch_negatives: bool = True  # the batch's other targets are negatives too (mixed negatives: popular tracks count against)
    track_ids: bool = False  # learn an embedding per track id besides its features (off: a track is its features)
    artist_embedding: bool = False  # learn an embedding per artist (off: a track's artist shows only through its tags and content)
    lr: float = Field(0.001, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    epochs: int = Field(30, ge=1, le=10_000)
    validation_fraction: float = Field(0.1, gt=0.0, lt=1.0)  # latest sessions held out for early stopping
    early_stopping_min_delta: float = Field(0.001, ge=0.0)
    early_stopping_patience: int = Field(2, ge=1)  # epochs without improvement before training stops

    @model_validator(mode="after")
    def _check_heads(self) -> SequentialConfig:
        if self.embedding_dim % self.heads:
            raise ValueError(f"embedding_dim == {self.embedding_dim}, must be a multiple of heads == {self.heads}")
        return self


class SASRecConfig(SequentialConfig):
    """Training configuration of SASRec (Kang & McAuley 2018)."""


class HSTUConfig(SequentialConfig):
    """Training configuration of HSTU (Zhai et al. 2024): SASRec's fields plus the width of the gated value path."""

    linear_dim: int = Field(32, ge=1, le=4096)  # per-head width of the U and V projections
    attention_dim: int = Field(32, ge=1, le=4096)  # per-head width of Q and K


class CandidateServing(Strict):
    """How a learned model finds the tracks it ranks: the whole catalog, or an inverted file's candidates.

    `exact` scores every catalog track; `ivf` scans the `n_probe` best of `n_lists` k-means cells
    of the item vectors (`recommenders.models.candidates`) and ranks what it scanned by the same
    rules. `n_lists: 0` takes about the square root of the catalog size.
    """

    candidates: Literal["exact", "ivf"] = "ivf"  # exact: score the whole catalog per request
    n_lists: int = Field(0, ge=0)  # k-means cells of the inverted file (0: about sqrt(n_tracks))
    n_probe: int = Field(16, ge=1)  # cells scanned per request; n_probe >= n_lists scans every track


class SequentialServing(CandidateServing):
    """Serving parameters of `sasrec` and `hstu`."""

    artist_penalty: float = Field(1.0, ge=0.0)  # score subtracted per earlier play of the artist in the session
    candidates: Literal["exact", "ivf"] = "ivf"  # the inverted file halves the serving time at the same online quality (docs/sequential.md)


class DSSMServing(CandidateServing):
    """Serving parameters of `dssm` (the treatment's `params` in `config/experiments.yml`)."""

    n_probe: int = Field(24, ge=1)  # 16 kept 94.6% of the demo's tuned DSSM's answers, 24 keeps 97.6% (docs/learned.md)
    artist_penalty: float = Field(0.5, ge=0.0)  # score subtracted per earlier play of the artist in the session
    # table: the tower's first layer from per-track rows cached on first use, float32's answers up to rounding, twice as
    # fast; float32: that layer as one dense product; int8: in 8-bit integers, faster still, other answers (docs/learned.md)
    user_tower: Literal["float32", "int8", "table"] = "table"
    table_mb: int = Field(256, ge=1)  # bound of `user_tower: table`'s row cache, MiB per served artifact and process


class BPRKNNServing(CandidateServing):
    """Serving parameters of `bpr_knn`; defaults from a 30-trial online search on the demo world (docs/learned.md, "Tuning")."""

    n_probe: int = Field(24, ge=1)  # BPR's item vectors form loose cells: more of them are scanned (docs/learned.md)
    session_weight: float = Field(1.07, ge=0.0)  # weight of the session's recent tracks in the query vector
    artist_weight: float = Field(2.08, ge=0.0)  # added per unit of listen time the session gave the track's artist
    candidate_boost: float = Field(0.78, ge=0.0)  # added to the scores of the user's KNN candidates; .inf serves only them
    artist_penalty: float = Field(0.89, ge=0.0)  # score subtracted per earlier play of the artist in the session


@dataclass(frozen=True)
class Dim:
    """One dimension of a search space, free of any tuning library (`recommenders.tuning` maps it to Ray Tune's).

    Attributes:
        kind: "float" (uniform on [low, high]), "int" (integers in [low, high]) or "choice" (one of `choices`).
        low, high: the bounds of a "float" or "int" dimension.
        log: sample uniformly on the log scale (learning rates, penalties spanning decades).
        choices: the values of a "choice" dimension.
    """

    kind: Literal["float", "int", "choice"]
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[Any, ...] = ()


def uniform(low: float, high: float, *, log: bool = False) -> Dim:
    """A float dimension on [low, high]."""
    return Dim("float", low, high, log)


def integer(low: int, high: int, *, log: bool = False) -> Dim:
    """An integer dimension on [low, high]."""
    return Dim("int", low, high, log)


def choice(*values: Any) -> Dim:
    """A categorical dimension."""
    return Dim("choice", choices=tuple(values))


@dataclass(frozen=True)
class SearchSpace:
    """What `recommenders tune` searches for one model: training-config keys and serving parameters.

    Attributes:
        train: keys of the model's training config (`--config`) and their ranges.
        serve: the model's serving parameters (the treatment's `params`) and their ranges.
    """

    train: dict[str, Dim] = field(default_factory=dict)
    serve: dict[str, Dim] = field(default_factory=dict)


# The search space of each tunable model, next to the configs it searches. Ranges bracket the
# defaults above; serving ranges are those a hand sweep found the scores sensitive to.
SEARCH_SPACES: dict[str, SearchSpace] = {
    "bpr_knn": SearchSpace(
        train={
            "embedding_dim": choice(32, 64, 128),
            "lr": uniform(1e-3, 2e-2, log=True),
            "l2": uniform(1e-3, 1.0, log=True),
            "candidates": choice(200, 400),
        },
        serve={
            "session_weight": uniform(0.0, 6.0),
            "artist_weight": uniform(0.0, 3.0),
            "candidate_boost": uniform(0.0, 2.0),
            "artist_penalty": uniform(0.0, 1.0),
        },
    ),
    "dssm": SearchSpace(
        train={
            "embedding_dim": choice(48, 96, 128),
            "hidden_dim": choice(32, 64, 128),
            "lr": uniform(3e-4, 5e-3, log=True),
            "weight_decay": uniform(1e-5, 1e-2, log=True),
            "user_dropout": uniform(0.0, 0.3),
            "track_dropout": uniform(0.0, 0.3),
            "history": integer(5, 20),
        },
        serve={"artist_penalty": uniform(0.0, 2.0)},
    ),
    "sasrec": SearchSpace(
        train={"embedding_dim": choice(32, 64), "dropout": uniform(0.1, 0.5), "lr": uniform(3e-4, 3e-3, log=True), "weight_decay": uniform(0.0, 0.1)},
        serve={"artist_penalty": uniform(0.0, 2.0)},
    ),
}


Config = TypeVar("Config", bound=Strict)


def from_mapping(cls: type[Config], data: dict[str, Any] | None, source: str) -> Config:
    """Validate `data` into `cls`; raise `ConfigError` naming every bad field."""
    return validate_mapping(cls, data, source)


def serving_params(cls: type[Config], params: dict[str, Any], name: str) -> Config:
    """Validate a recommender's construction parameters: `TypeError` for unknown ones, `ValueError` for bad values."""
    unknown = sorted(set(params) - set(cls.model_fields))
    if unknown:
        raise TypeError(f"recommender {name!r} got unknown parameter(s): {', '.join(unknown)} (known: {', '.join(cls.model_fields)})")
    return from_mapping(cls, params, source=f"{name} params")


def load_config(cls: type[Config], path: str | Path | None, **overrides: Any) -> Config:
    """Read a YAML config for `cls` (defaults when `path` is None) and apply non-None overrides."""
    if path is None:
        return from_mapping(cls, {key: value for key, value in overrides.items() if value is not None}, "defaults")
    return from_mapping(cls, read_mapping(path, "config", **overrides), str(path))
