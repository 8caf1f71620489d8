"""Deterministic generation of a world (catalog, tags, content frames, listeners) from a seed.

Geometry of the hidden taste space: genre centres are random unit directions; artists
scatter around their genre's centre, tracks around their artist; every track vector is then
scaled to norm `taste_scale`. Listener interests are points near a track (or at a genre
centre) with the same norm, so `dot(track, interest)` ranges over about +-scale**2 and the
course's `consume_bias` of 5 sits between "same genre" and "same artist".

Everything large is generated in fixed-size chunks, each from its own `SeedSequence` child,
so memory stays bounded for 10**6 tracks and users and the result never depends on how the
work is scheduled: the same config and seed give byte-identical files.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from tqdm import tqdm

from contracts import catalog as public_format
from sim.world import storage
from sim.world.config import Distribution, WorldConfig

CHUNK = 65_536  # rows per generation chunk; part of the format: changing it changes worlds
NEIGHBOUR_BLOCK = 2_048  # interests per block when searching their nearest tracks

# Purposes of the seed children, so that adding a stream never shifts another one.
_GENRES, _ARTISTS, _TRACKS, _TAGS, _TAG_CHUNK, _FRAMES, _USERS, _USER_CHUNK, _TITLES = range(9)

_ADJECTIVES = (
    "Blue Broken Burning Cold Crimson Dark Distant Electric Empty Endless Falling Fading Final "
    "Forgotten Frozen Gentle Golden Hidden Hollow Late Lonely Lost Midnight Neon Quiet Restless "
    "Rising Silent Silver Slow Soft Static Strange Summer Sweet Velvet Wild Winter Young Paper "
    "Glass Iron Copper Northern Southern Little Secret Open Wandering Bright Heavy Hazy Lucky "
    "Sleeping Shining Drifting Waking Burning Painted Running Secondhand Electric Ocean"
).split()
_NOUNS = (
    "Heart River Night Road City Dream Fire Light Rain Sky Star Shadow Song Stone Storm Sun "
    "Water Wind World Youth Ghost Garden Mirror Moon Ocean Echo Engine Highway Harbor Letter "
    "Machine Morning Mountain Paradise Radio Signal Silence Skyline Station Summer Thunder "
    "Tide Tower Valley Voice Wave Window Winter Wire Horizon Island Lantern Memory Orbit Pulse "
    "Canyon Desert Circuit Comet Feather Frontier Glacier Meadow"
).split()
_ARTIST_WORDS = (
    "The Velvet Static Northern Lights Paper Tigers Crystal Harbor Midnight Echo Neon Saints "
    "Hollow Pines Silver Wolves Golden Hour Desert Kites Ocean Avenue Iron Orchid Lunar "
    "Parade Wild Honey Glass Animals Copper Sun Electric Youth Broken Compass Quiet Riot Bloom"
).split()


def _rng(seed: int, *key: int) -> np.random.Generator:
    """A generator for one purpose (and chunk) of the world, independent of all others."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _chunks(n: int) -> Iterator[tuple[int, int, int]]:
    for index, start in enumerate(range(0, n, CHUNK)):
        yield index, start, min(start + CHUNK, n)


def _draw(dist: Distribution, rng: np.random.Generator, n: int, integer: bool) -> np.ndarray:
    values = np.full(n, dist.mean) if dist.std == 0 else rng.normal(dist.mean, dist.std, n)
    values = np.clip(values, dist.low, dist.high)
    return np.rint(values).astype(np.int32) if integer else values.astype(np.float32)


def _names(rng: np.random.Generator, first: tuple[str, ...] | list[str], second: list[str], n: int) -> np.ndarray:
    a = np.asarray(first, dtype=object)[rng.integers(len(first), size=n)]
    b = np.asarray(second, dtype=object)[rng.integers(len(second), size=n)]
    return a + " " + b


class _Progress:
    def __init__(self, enabled: bool, total: int) -> None:
        self._bar = tqdm(total=total, desc="world", unit="step", disable=not enabled, leave=False)

    def step(self, label: str) -> None:
        self._bar.set_postfix_str(label)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


def generate_world(config: WorldConfig, out_dir: str | Path, *, progress: bool = False, overwrite: bool = False) -> Path:
    """Generate the world described by `config` into `out_dir` and return the directory.

    The directory is written under a temporary name and renamed at the end, so an
    interrupted run never leaves a half-written world where a complete one is expected.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already exists; pass overwrite=True (--force) to replace it")
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / public_format.PUBLIC_DIR).mkdir(parents=True)
    (tmp / storage.HIDDEN_DIR).mkdir(parents=True)
    bar = _Progress(progress, total=6)
    try:
        _generate_into(config, tmp, bar)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        bar.close()
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def _generate_into(config: WorldConfig, root: Path, bar: _Progress) -> None:
    seed, d, scale = config.seed, config.taste_dim, config.taste_scale
    public, hidden = root / public_format.PUBLIC_DIR, root / storage.HIDDEN_DIR
    n_tracks = config.tracks + config.new_tracks_per_day * config.release_days

    # Genres and artists.
    genre_centres = _unit(_rng(seed, _GENRES).standard_normal((config.genres, d)))
    rng = _rng(seed, _ARTISTS)
    artist_genre = np.concatenate(
        [np.arange(config.genres), rng.integers(config.genres, size=config.artists - config.genres)]
    ).astype(np.int32)
    artist_dir = _unit(genre_centres[artist_genre] + config.artist_spread * rng.standard_normal((config.artists, d)) / np.sqrt(d))
    artist_weight = rng.lognormal(0.0, 1.0, config.artists)
    artist_names = _names(rng, _ARTIST_WORDS, list(_NOUNS), config.artists)
    # Every artist gets a track; the rest follow a long-tailed artist size.
    track_artist = np.concatenate(
        [
            np.arange(config.artists),
            rng.choice(config.artists, size=config.tracks - config.artists, p=artist_weight / artist_weight.sum()),
        ]
    ).astype(np.int32)
    if n_tracks > config.tracks:  # releases: existing artists, chosen the same way
        fresh = rng.choice(config.artists, size=n_tracks - config.tracks, p=artist_weight / artist_weight.sum())
        track_artist = np.concatenate([track_artist, fresh.astype(np.int32)])
    release_day = np.zeros(n_tracks, dtype=np.int32)
    if config.new_tracks_per_day:
        release_day[config.tracks :] = 1 + np.arange(n_tracks - config.tracks) // config.new_tracks_per_day
    bar.step("artists")

    # Tracks: taste, popularity prior, duration, titles.
    taste = np.empty((n_tracks, d), dtype=np.float32)
    popularity = np.empty(n_tracks)
    duration = np.empty(n_tracks, dtype=np.float32)
    titles = np.empty(n_tracks, dtype=object)
    for index, start, stop in _chunks(n_tracks):
        rng = _rng(seed, _TRACKS, index)
        artists = track_artist[start:stop]
        noise = rng.standard_normal((stop - start, d)) / np.sqrt(d)
        taste[start:stop] = scale * _unit(artist_dir[artists] + config.track_spread * noise)
        popularity[start:stop] = artist_weight[artists] * rng.lognormal(0.0, config.popularity_sigma, stop - start)
        duration[start:stop] = np.clip(rng.lognormal(np.log(config.duration_median), 0.35, stop - start), 30, 900)
        titles[start:stop] = _names(_rng(seed, _TITLES, index), _ADJECTIVES, list(_NOUNS), stop - start)
    popularity[release_day > 0] = 0.0  # unreleased tracks have no prior plays
    popularity /= popularity.sum()
    track_genre = artist_genre[track_artist]
    bar.step("tracks")

    true_tags, observed_tags, tag_names = _generate_tags(config, taste / scale)
    bar.step("tags")
    frame_offsets = _write_frames(config, taste / scale, public / public_format.FRAMES_FILE)
    bar.step("frames")
    users = _generate_users(config, taste, track_genre, popularity, genre_centres, release_day)
    bar.step("listeners")

    catalog = pd.DataFrame(
        {
            "track": np.arange(n_tracks, dtype=np.int64),
            "artist": track_artist,
            "title": titles.astype(str),
            "artist_name": artist_names[track_artist].astype(str),
            "duration": duration,
            "popularity": popularity,
            "release_day": release_day,
        }
    )
    catalog.to_parquet(public / public_format.CATALOG_FILE, index=False)
    (public / public_format.TAG_NAMES_FILE).write_text(json.dumps(tag_names))
    np.save(public / public_format.TAGS_INDPTR_FILE, observed_tags[0])
    np.save(public / public_format.TAGS_INDICES_FILE, observed_tags[1])
    np.save(public / public_format.FRAME_OFFSETS_FILE, frame_offsets)
    storage.save_hidden(
        hidden,
        {
            "track_taste": taste,
            "track_genre": track_genre,
            "artist_genre": artist_genre,
            "genre_centres": genre_centres.astype(np.float32),
            "true_tags_indptr": true_tags[0],
            "true_tags_indices": true_tags[1],
            **users,
        },
    )
    manifest = {"format_version": public_format.FORMAT_VERSION, "config": config.model_dump()}
    (root / public_format.MANIFEST_FILE).write_text(yaml.safe_dump(manifest, sort_keys=False))
    bar.step("saved")


def _tag_frequencies(config: WorldConfig) -> np.ndarray:
    tags = config.tags
    ranks = np.arange(tags.vocabulary)
    return np.clip(tags.max_frequency * (ranks + 1.0) ** -tags.zipf_exponent, tags.min_frequency, tags.max_frequency)


def _generate_tags(config: WorldConfig, unit_taste: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], list[str]]:
    """True tags are thresholded noisy projections of the taste; observed ones a random subset.

    Each tag has a random direction; its threshold is the quantile that gives the tag its
    Zipf-like target frequency, so a few tags sit on most tracks and most tags are rare.
    """
    tags, n = config.tags, len(unit_taste)
    rng = _rng(seed := config.seed, _TAGS)
    directions = _unit(rng.standard_normal((tags.vocabulary, config.taste_dim)))
    frequency = _tag_frequencies(config)
    sample = unit_taste[: min(n, 20_000)] @ directions.T + tags.noise * rng.standard_normal((min(n, 20_000), tags.vocabulary))
    ranked = np.sort(sample, axis=0)
    rank = np.minimum(((1.0 - frequency) * len(sample)).astype(int), len(sample) - 1)
    thresholds = ranked[rank, np.arange(tags.vocabulary)]
    true_rows, observed_rows = [], []
    for index, start, stop in _chunks(n):
        rng = _rng(seed, _TAG_CHUNK, index)
        scores = unit_taste[start:stop] @ directions.T + tags.noise * rng.standard_normal((stop - start, tags.vocabulary))
        truth = scores > thresholds
        labeled = rng.random(stop - start) >= tags.unlabeled_fraction
        observed = truth & (rng.random(truth.shape) < tags.observed_fraction) & labeled[:, None]
        true_rows.append(truth)
        observed_rows.append(observed)
    tag_names = [f"tag_{k:03d}" for k in range(tags.vocabulary)]
    return _to_csr(true_rows), _to_csr(observed_rows), tag_names


def _to_csr(blocks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    counts = np.concatenate([block.sum(axis=1) for block in blocks])
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    indices = np.concatenate([np.nonzero(block)[1] for block in blocks]).astype(np.int16)
    return indptr, indices


def _write_frames(config: WorldConfig, unit_taste: np.ndarray, path: Path) -> np.ndarray:
    """Stream every track's frames to one float16 .npy file; return the (n+1,) offsets.

    Frame t of a track = (taste @ P) + a track-level nuisance + its section's offset + noise,
    with P a fixed random projection: informative about taste, never a copy of it.
    """
    content, n = config.content, len(unit_taste)
    projection = _rng(config.seed, _FRAMES).standard_normal((config.taste_dim, content.dim))
    lengths = np.concatenate(
        [
            _rng(config.seed, _FRAMES, index, 0).integers(content.min_frames, content.max_frames + 1, stop - start)
            for index, start, stop in _chunks(n)
        ]
    )
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    with open(path, "wb") as handle:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)), "fortran_order": False, "shape": (int(offsets[-1]), content.dim)}
        np.lib.format.write_array_header_1_0(handle, header)
        for index, start, stop in _chunks(n):
            rng = _rng(config.seed, _FRAMES, index, 1)
            m = stop - start
            base = unit_taste[start:stop] @ projection + 0.5 * rng.standard_normal((m, content.dim))
            sections = 0.3 * rng.standard_normal((m, content.sections, content.dim))
            chunk_lengths = lengths[start:stop]
            owner = np.repeat(np.arange(m), chunk_lengths)
            position = np.arange(len(owner)) - np.repeat(offsets[start:stop] - offsets[start], chunk_lengths)
            section = position * content.sections // np.repeat(chunk_lengths, chunk_lengths)
            frames = base[owner] + sections[owner, section] + content.noise * rng.standard_normal((len(owner), content.dim))
            handle.write(frames.astype(np.float16).tobytes())
    return offsets


def _generate_users(
    config: WorldConfig,
    taste: np.ndarray,
    track_genre: np.ndarray,
    popularity: np.ndarray,
    genre_centres: np.ndarray,
    release_day: np.ndarray,
) -> dict[str, np.ndarray]:
    """Listeners: interests near popular tracks or at genre centres, behaviour parameters, and
    each interest's nearest tracks (searched within the interest's genre, released tracks only)."""
    listeners, d, scale = config.listeners, config.taste_dim, config.taste_scale
    cumulative = np.cumsum(popularity)
    counts = _rng(config.seed, _USERS).integers(listeners.min_interests, listeners.max_interests + 1, config.users)
    interest_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    n_interests = int(interest_offsets[-1])
    interests = np.empty((n_interests, d), dtype=np.float32)
    interest_genre = np.empty(n_interests, dtype=np.int32)
    params: dict[str, list[np.ndarray]] = {name: [] for name in storage.BEHAVIOUR_PARAMETERS}
    for index, start, stop in _chunks(config.users):
        rng = _rng(config.seed, _USER_CHUNK, index)
        lo, hi = interest_offsets[start], interest_offsets[stop]
        m = hi - lo
        sources = np.minimum(np.searchsorted(cumulative, rng.random(m) * cumulative[-1]), len(cumulative) - 1)
        at_genre = rng.random(m) < listeners.genre_interest_share
        genre = np.where(at_genre, rng.integers(config.genres, size=m), track_genre[sources])
        centre = np.where(at_genre[:, None], genre_centres[genre], taste[sources] / scale)
        noise = listeners.interest_noise * rng.standard_normal((m, d)) / np.sqrt(d)
        interests[lo:hi] = scale * _unit(centre + np.where(at_genre[:, None], 0.0, noise))
        interest_genre[lo:hi] = genre
        for name in storage.BEHAVIOUR_PARAMETERS:
            integer = name in storage.INTEGER_PARAMETERS
            params[name].append(_draw(getattr(listeners, name), rng, stop - start, integer))
    behaviour = {name: np.concatenate(parts) for name, parts in params.items()}
    k = int(behaviour["interest_neighbours"].max())
    neighbours = _nearest_tracks(interests, interest_genre, taste, track_genre, release_day == 0, k)
    return {
        "interest_offsets": interest_offsets,
        "interests": interests,
        "interest_genre": interest_genre,
        "interest_nearest": neighbours,
        **behaviour,
    }


def _nearest_tracks(
    interests: np.ndarray, interest_genre: np.ndarray, taste: np.ndarray, track_genre: np.ndarray, available: np.ndarray, k: int
) -> np.ndarray:
    """For every interest, its `k` tracks of highest dot product within its genre, best first."""
    nearest = np.empty((len(interests), k), dtype=np.int32)
    candidates = np.flatnonzero(available)
    for genre in np.unique(interest_genre):
        pool = candidates[track_genre[candidates] == genre]
        if len(pool) < k:  # a tiny genre borrows from the whole catalog
            pool = candidates
        members = np.flatnonzero(interest_genre == genre)
        vectors = taste[pool]
        for block in range(0, len(members), NEIGHBOUR_BLOCK):
            rows = members[block : block + NEIGHBOUR_BLOCK]
            scores = interests[rows] @ vectors.T
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < len(pool) else np.tile(np.arange(len(pool)), (len(rows), 1))
            order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
            nearest[rows] = pool[np.take_along_axis(top, order, axis=1)]
    return nearest
