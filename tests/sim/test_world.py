"""World generation: determinism, the public/hidden split, tags, frames and config errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from contracts.catalog import Catalog, CatalogError
from sim.world import ConfigError, World, generate_world, load_world_config, world_config_from_mapping
from sim.world.__main__ import main as world_cli
from tests.conftest import SMALL_WORLD


def _digest(directory: Path) -> dict[str, str]:
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def test_same_seed_gives_identical_files(tmp_path: Path, small_world_dir: Path) -> None:
    again = generate_world(world_config_from_mapping(SMALL_WORLD), tmp_path / "again")
    assert _digest(again) == _digest(small_world_dir)
    assert Catalog(again).fingerprint == Catalog(small_world_dir).fingerprint


def test_other_seed_gives_another_world(tmp_path: Path, small_world: World) -> None:
    other = World(generate_world(world_config_from_mapping({**SMALL_WORLD, "seed": 8}), tmp_path / "other"))
    assert not np.array_equal(other.taste, small_world.taste)
    assert other.catalog.fingerprint != small_world.catalog.fingerprint


def test_public_half_holds_no_hidden_arrays(small_world_dir: Path) -> None:
    public = {path.name for path in (small_world_dir / "public").iterdir()}
    assert not any("taste" in name or "interest" in name or "true" in name for name in public)
    assert Catalog(small_world_dir).n_tracks == SMALL_WORLD["tracks"]


def test_catalog_structure(small_world: World) -> None:
    catalog = small_world.catalog
    assert catalog.n_artists == SMALL_WORLD["artists"]  # every artist has a track
    assert np.isclose(catalog.popularity.sum(), 1.0)
    assert (catalog.duration >= 30).all() and (catalog.duration <= 900).all()
    record = catalog.record(5)
    assert record["track"] == 5 and record["artist"] == catalog.artist_name[5] and record["title"]
    for artist in (0, 17, 199):
        assert (catalog.artist[catalog.tracks_of_artist(artist)] == artist).all()
    # Long tail: the top 1% of tracks carry far more than 1% of the popularity prior.
    top = np.sort(catalog.popularity)[-len(catalog) // 100 :].sum()
    assert top > 0.05


def test_tracks_cluster_by_artist(small_world: World) -> None:
    """A track's taste is unit(artist direction + track_spread * z / sqrt(d)), z standard normal.

    So the cosine of two tracks of one artist has a known mean (a Monte Carlo estimate of that
    formula, computed here), and each artist's mean over its pairs is an independent estimate of
    it: their average must lie within 5 standard errors. Tracks of different artists are far less
    alike. Over world seeds 0-19 the artists' average cosine was 0.7336-0.7434 against 0.7390,
    z-scores -2.69..+2.45 (tolerance 5); cross-artist cosines averaged 0.035-0.079.
    """
    config = small_world.config
    unit_taste = small_world.taste.astype(np.float64) / config.taste_scale
    rng = np.random.default_rng(0)
    m, d = 100_000, config.taste_dim
    centre = rng.standard_normal((m, d))
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    pair = [centre + config.track_spread * rng.standard_normal((m, d)) / np.sqrt(d) for _ in range(2)]
    model = np.einsum("ij,ij->i", *pair) / np.linalg.norm(pair[0], axis=1) / np.linalg.norm(pair[1], axis=1)

    per_artist = []
    for artist in range(small_world.catalog.n_artists):
        tracks = small_world.catalog.tracks_of_artist(artist)
        if len(tracks) > 1:
            gram = unit_taste[tracks] @ unit_taste[tracks].T
            per_artist.append((gram.sum() - np.trace(gram)) / (len(tracks) * (len(tracks) - 1)))
    same = np.array(per_artist)
    se = np.hypot(same.std(ddof=1) / np.sqrt(len(same)), model.std() / np.sqrt(m))
    assert abs(same.mean() - model.mean()) < 5 * se

    a, b = rng.integers(len(unit_taste), size=(2, 20_000))
    other = small_world.catalog.artist[a] != small_world.catalog.artist[b]
    cross = np.einsum("ij,ij->i", unit_taste[a[other]], unit_taste[b[other]])
    assert same.mean() - cross.mean() > 5 * np.hypot(se, cross.std() / np.sqrt(len(cross)))
    assert cross.mean() < same.mean() / 2


def test_tags_are_long_tailed_and_partly_observed(small_world: World) -> None:
    catalog, config = small_world.catalog, small_world.config.tags
    n = catalog.n_tracks
    true_counts = np.bincount(small_world.true_tags_indices, minlength=config.vocabulary)
    # The commonest tag sits on max_frequency of tracks: binomial tolerance, 5 sigma.
    p = config.max_frequency
    assert abs(true_counts[0] / n - p) < 5 * np.sqrt(p * (1 - p) / n) + 0.02  # + quantile-estimation slack
    assert true_counts[:10].sum() > 5 * true_counts[-100:].sum()
    observed = catalog.tag_matrix()
    unlabeled = (np.diff(observed.indptr) == 0).mean()
    assert unlabeled >= config.unlabeled_fraction - 5 * np.sqrt(0.25 / n)
    # Observed tags are a subset of the true ones.
    for track in range(0, n, 97):
        assert set(catalog.tags(track)) <= set(small_world.true_tags_indices[small_world.true_tags_indptr[track] : small_world.true_tags_indptr[track + 1]])
    assert 0.0 < observed.sum() / true_counts.sum() < config.observed_fraction + 0.05


def test_frames_are_variable_length_and_informative(small_world: World) -> None:
    catalog, content = small_world.catalog, small_world.config.content
    lengths = catalog.frame_lengths()
    assert lengths.min() >= content.min_frames and lengths.max() <= content.max_frames
    assert catalog.frames(3).shape == (lengths[3], content.dim)
    # Mean frames of same-artist tracks are closer than those of random pairs.
    means = np.stack([catalog.frames(t).mean(axis=0) for t in range(600)])
    artist = catalog.artist[:600]
    corr = np.corrcoef(means)
    same = (artist[:, None] == artist[None, :]) & ~np.eye(600, dtype=bool)
    result = stats.mannwhitneyu(corr[same], corr[~same & ~np.eye(600, dtype=bool)], alternative="greater")
    assert result.pvalue < 1e-6


def test_interest_neighbours_are_sorted_and_near(small_world: World) -> None:
    listeners, taste = small_world.listeners, small_world.taste
    dots = np.einsum("id,ikd->ik", listeners.interests[:200], taste[listeners.interest_nearest[:200]])
    assert (np.diff(dots, axis=1) <= 1e-5).all()
    random_dots = listeners.interests[:200] @ taste[:50].T
    assert dots[:, 0].mean() > random_dots.mean() + 4.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"tracks": 0}, "tracks: Input should be greater than or equal to 1"),
        ({"artists": 5000}, "artists == 5000, must be <= tracks == 3000"),
        ({"genres": 300}, "genres == 300, must be <= artists == 200"),
        ({"tags": {"max_frequency": 1.5}}, "tags.max_frequency"),
        ({"tags": {"min_frequency": 0.6}}, "min_frequency == 0.6, must be <= max_frequency == 0.5"),
        ({"content": {"min_frames": 9, "max_frames": 4}}, "content: min_frames == 9, must be <= max_frames == 4"),
        ({"listeners": {"consume_bias": {"mean": 5.0, "low": 6.0}}}, "listeners.consume_bias: mean == 5.0, must lie in [low, high]"),
        ({"listeners": {"interest_neighbours": {"mean": 10, "high": 5000}}}, "interest_neighbours.high == 5000.0, must be <= tracks"),
        ({"colour": "blue"}, "colour: unknown key"),
        ({"seed": "abc"}, "seed: Input should be a valid integer"),
    ],
)
def test_impossible_config_names_the_field(override: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as error:
        world_config_from_mapping({**SMALL_WORLD, **override})
    assert message in str(error.value)


def test_config_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("tracks: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_world_config(bad)
    with pytest.raises(ConfigError, match="cannot read world config"):
        load_world_config(tmp_path / "missing.yml")
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_world_config(bad)


def test_default_config_file_is_valid() -> None:
    config = load_world_config(Path(__file__).parents[2] / "config" / "world.yml")
    assert config == world_config_from_mapping({})  # the file documents the defaults


def test_world_cli(tmp_path: Path) -> None:
    config = tmp_path / "world.yml"
    config.write_text("tracks: 500\nartists: 50\ngenres: 5\nusers: 40\n")
    runner = CliRunner()
    result = runner.invoke(world_cli, ["--config", str(config), "--out", str(tmp_path / "w"), "--seed", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "500 tracks" in result.output and World(tmp_path / "w").config.seed == 3
    again = runner.invoke(world_cli, ["--config", str(config), "--out", str(tmp_path / "w"), "--quiet"])
    assert again.exit_code != 0 and "already exists" in again.output
    config.write_text("tracks: -1\n")
    bad = runner.invoke(world_cli, ["--config", str(config), "--out", str(tmp_path / "x"), "--quiet"])
    assert bad.exit_code != 0 and "tracks" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "x").exists()


def test_incomplete_world_is_reported(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="not a world directory"):
        Catalog(tmp_path)
    (tmp_path / "public").mkdir()
    with pytest.raises(CatalogError, match="missing catalog.parquet"):
        Catalog(tmp_path)


def test_catalog_reads_every_row_group_and_rejects_missing_values(tmp_path: Path, small_world_dir: Path) -> None:
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    world = tmp_path / "world"
    shutil.copytree(small_world_dir, world)
    path = world / "public" / "catalog.parquet"
    table = pq.read_table(path)
    pq.write_table(table, path, row_group_size=7)  # many chunks per column, some sliced
    assert pq.ParquetFile(path).num_row_groups > 1

    chunked, original = Catalog(world), Catalog(small_world_dir)

    for name in ("artist", "title", "artist_name", "duration", "popularity", "release_day"):
        assert np.array_equal(getattr(chunked, name), getattr(original, name)), name
        assert getattr(chunked, name).dtype == getattr(original, name).dtype
    assert np.array_equal(original.duration, table.column("duration").to_numpy())

    durations = table.column("duration").to_pylist()
    durations[3] = None
    column = table.schema.get_field_index("duration")
    pq.write_table(table.set_column(column, "duration", pa.array(durations, pa.float32())), path)
    with pytest.raises(CatalogError, match="column 'duration' has 1 missing values"):
        Catalog(world)


def test_loading_a_world_does_not_import_pandas(small_world_dir: Path) -> None:
    # pandas costs a quarter of a second at every simulator and service start; pyarrow pulls it in
    # through read_table and to_numpy unless the catalog avoids them.
    import subprocess
    import sys

    code = f"import sys; from sim.world import World; World({str(small_world_dir)!r}); print('pandas' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
