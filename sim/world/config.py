"""The world's configuration: a typed, validated mirror of `config/world.yml`.

YAML is parsed here, once, at the edge; everything else receives a `WorldConfig`. Unknown
keys and impossible values are errors whose message names the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from contracts.config import ConfigError, Strict, read_mapping, validate_mapping  # noqa: F401 - ConfigError is re-exported as sim.world.ConfigError


class Distribution(Strict):
    """A per-listener parameter: normal(mean, std) clipped to [low, high]; std 0 is a constant."""

    mean: float
    std: float = Field(0.0, ge=0.0)
    low: float = float("-inf")
    high: float = float("inf")

    @model_validator(mode="after")
    def _check_bounds(self) -> Distribution:
        if not self.low <= self.mean <= self.high:
            raise ValueError(f"mean == {self.mean}, must lie in [low, high] = [{self.low}, {self.high}]")
        return self


class TagsConfig(Strict):
    """The tag vocabulary: true tags follow the hidden taste, only part of them are observed."""

    vocabulary: int = Field(256, ge=1, le=4096)
    max_frequency: float = Field(0.5, gt=0.0, le=1.0)  # share of tracks carrying the commonest tag
    min_frequency: float = Field(0.002, gt=0.0, le=1.0)  # floor of the long tail
    zipf_exponent: float = Field(1.0, ge=0.0)  # frequency of tag k ~ (k + 1) ** -exponent
    noise: float = Field(0.15, ge=0.0)  # noise on the tag score before thresholding
    observed_fraction: float = Field(0.7, ge=0.0, le=1.0)  # chance a true tag is observed
    unlabeled_fraction: float = Field(0.25, ge=0.0, le=1.0)  # tracks with no observed tag at all

    @model_validator(mode="after")
    def _check_frequencies(self) -> TagsConfig:
        if self.min_frequency > self.max_frequency:
            raise ValueError(
                f"min_frequency == {self.min_frequency}, must be <= max_frequency == {self.max_frequency}"
            )
        return self


class ContentConfig(Strict):
    """Content frames: a variable-length sequence of vectors per track, like audio embeddings."""

    dim: int = Field(32, ge=1, le=1024)
    min_frames: int = Field(8, ge=1)
    max_frames: int = Field(32, ge=1, le=4096)
    noise: float = Field(0.8, ge=0.0)  # std of per-frame noise, relative to the signal's scale
    sections: int = Field(4, ge=1)  # frames drift between this many section means

    @model_validator(mode="after")
    def _check_frames(self) -> ContentConfig:
        if self.min_frames > self.max_frames:
            raise ValueError(f"min_frames == {self.min_frames}, must be <= max_frames == {self.max_frames}")
        return self


class ListenersConfig(Strict):
    """Listeners: interests in taste space and the course's behaviour parameters."""

    min_interests: int = Field(1, ge=1)
    max_interests: int = Field(5, ge=1, le=64)
    genre_interest_share: float = Field(0.2, ge=0.0, le=1.0)  # interests at a genre centre, not a track
    interest_noise: float = Field(0.3, ge=0.0)  # spread of an interest around its source track
    consume_bias: Distribution = Distribution(mean=5.0, std=0.5, low=0.0, high=20.0)
    consume_sharpness: Distribution = Distribution(mean=1.0, low=0.01, high=20.0)
    session_budget: Distribution = Distribution(mean=5, low=1, high=100)
    artist_discount_gamma: Distribution = Distribution(mean=0.8, low=0.0, high=1.0)
    interest_neighbours: Distribution = Distribution(mean=10, low=1, high=100)

    @model_validator(mode="after")
    def _check_interests(self) -> ListenersConfig:
        if self.min_interests > self.max_interests:
            raise ValueError(
                f"min_interests == {self.min_interests}, must be <= max_interests == {self.max_interests}"
            )
        return self


class WorldConfig(Strict):
    """Everything that determines a world, together with `seed`."""

    seed: int = Field(42, ge=0)
    tracks: int = Field(50_000, ge=1)
    artists: int = Field(2_000, ge=1)
    genres: int = Field(20, ge=1)
    users: int = Field(10_000, ge=1)
    taste_dim: int = Field(32, ge=2, le=1024)
    taste_scale: float = Field(3.0, gt=0.0)  # norm of track and interest vectors
    artist_spread: float = Field(0.8, ge=0.0)  # artists around their genre centre
    track_spread: float = Field(0.6, ge=0.0)  # tracks around their artist
    popularity_sigma: float = Field(1.5, ge=0.0)  # log-normal spread of the popularity prior
    duration_median: float = Field(210.0, gt=0.0)  # seconds
    tags: TagsConfig = TagsConfig()
    content: ContentConfig = ContentConfig()
    listeners: ListenersConfig = ListenersConfig()
    new_tracks_per_day: int = Field(0, ge=0)  # cold-start option: tracks released each simulated day
    release_days: int = Field(0, ge=0)  # days 1..release_days each release new_tracks_per_day tracks

    @model_validator(mode="after")
    def _check_sizes(self) -> WorldConfig:
        if self.artists > self.tracks:
            raise ValueError(f"artists == {self.artists}, must be <= tracks == {self.tracks}")
        if self.genres > self.artists:
            raise ValueError(f"genres == {self.genres}, must be <= artists == {self.artists}")
        if self.listeners.interest_neighbours.high > self.tracks:
            raise ValueError(
                f"listeners.interest_neighbours.high == {self.listeners.interest_neighbours.high}, "
                f"must be <= tracks == {self.tracks}"
            )
        return self


def world_config_from_mapping(data: dict[str, Any] | None, source: str = "world config") -> WorldConfig:
    """Validate a mapping into a `WorldConfig`; raise `ConfigError` naming every bad field."""
    return validate_mapping(WorldConfig, data, source)


def load_world_config(path: str | Path, **overrides: Any) -> WorldConfig:
    """Read `config/world.yml` (or another file), apply top-level overrides, validate."""
    return world_config_from_mapping(read_mapping(path, "world config", **overrides), source=str(path))
