"""The candidate stage: the inverted file on its own, the serving rules over its candidates, and the
learned models' answers, which equal exact scoring whenever the scan covers the catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contracts.catalog import Catalog
from recommenders import registry
from recommenders.base import Request
from recommenders.evaluation import build_cases
from recommenders.models.candidates import InvertedFile, Workspace, balanced_cells, euclidean_transform
from recommenders.models.features import vocabulary_index
from recommenders.models.ranking import CatalogScorer, Context, top_k
from recommenders.models.sessions import SessionLog
from recommenders.testing import write_catalog

ARTISTS = [0, 0, 0, 1, 1, 2, 3, 3, 3, 3]
RELEASES = [0, 0, 0, 0, 0, 0, 1, 1, 2, 3]
EVERY_CELL = 10**6  # n_probe above any n_lists: the scan covers the catalog


def test_scanning_every_cell_scores_every_item_once() -> None:
    rng = np.random.default_rng(0)
    items = rng.standard_normal((500, 8)).astype(np.float32)
    queries = rng.standard_normal((7, 8)).astype(np.float32)
    index = InvertedFile(items, n_lists=9)

    scan = index.scan(queries, n_probe=9)

    rows, columns = np.nonzero(np.isfinite(scan.scores))
    tracks = index.tracks_at(scan, rows, columns)
    assert np.array_equal(np.bincount(rows, minlength=7), np.full(7, 500))
    for row in range(7):
        assert sorted(tracks[rows == row].tolist()) == list(range(500))
    np.testing.assert_allclose(scan.scores[rows, columns], (queries @ items.T)[rows, tracks], rtol=1e-5, atol=1e-5)
    assert np.array_equal(index.locate(scan, rows, tracks), columns)


def test_a_partial_scan_keeps_the_cells_whose_centroids_score_highest() -> None:
    rng = np.random.default_rng(1)
    items = rng.standard_normal((400, 4)).astype(np.float32)
    queries = rng.standard_normal((5, 4)).astype(np.float32)
    index = InvertedFile(items, n_lists=8)

    scan = index.scan(queries, n_probe=3)

    best_cells = np.argsort(-(queries @ index.centroids.T), axis=1)[:, :3]
    assert [sorted(row) for row in scan.cells.tolist()] == [sorted(row) for row in best_cells.tolist()]
    unscanned = index.locate(scan, np.repeat(np.arange(5), 400), np.tile(np.arange(400), 5)) < 0
    assert unscanned.sum() == sum(int(index.sizes[np.setdiff1d(np.arange(8), cells)].sum()) for cells in scan.cells)


def test_the_best_track_is_the_scans_top_column_after_the_same_rules() -> None:
    rng = np.random.default_rng(5)
    items = rng.standard_normal((300, 6)).astype(np.float32)
    items[7] = items[3]  # a tie: the scan's column order decides
    queries = rng.standard_normal((40, 6)).astype(np.float32)
    index = InvertedFile(items, n_lists=12)
    rows, tracks = rng.integers(0, 40, 2000), rng.integers(0, 300, 2000)
    amounts = rng.random(2000).astype(np.float32)
    amounts[::7] = np.inf
    # 50 pairs listed again with another amount: the last one counts, in both paths
    rows, tracks, amounts = np.append(rows, rows[:50]), np.append(tracks, tracks[:50]), np.append(amounts, np.full(50, 0.5, np.float32))
    release, days = rng.integers(0, 4, 300), rng.integers(-1, 4, 40)

    value, best = index.best(queries, 4, rows, tracks, amounts, release, days)

    scan = index.scan(queries, 4)
    everyone = np.arange(40)
    late = release[np.maximum(index.scanned_tracks(scan, everyone), 0)] > np.where(days >= 0, days, 99)[:, None]
    scan.scores[late] = -np.inf
    columns = index.locate(scan, rows, tracks)
    hit = columns >= 0
    scan.scores[rows[hit], columns[hit]] -= amounts[hit]
    top = top_k(scan.scores, 1)[:, 0]
    expected_value = scan.scores[everyone, top]
    assert np.isfinite(expected_value).sum() > 30  # most rows keep a live track
    np.testing.assert_array_equal(value, expected_value)
    assert np.array_equal(best, np.where(np.isfinite(expected_value), index.tracks_at(scan, everyone, top), -1))


def test_rules_on_whole_labels_are_the_rules_on_each_of_their_tracks() -> None:
    rng = np.random.default_rng(6)
    items = rng.standard_normal((300, 6)).astype(np.float32)
    queries = rng.standard_normal((40, 6)).astype(np.float32)
    labels = rng.integers(0, 30, 300)
    index = InvertedFile(items, n_lists=12)
    index.label(labels)
    label_rows, label_of = np.repeat(np.arange(40), 3), rng.integers(0, 30, 120)
    label_amounts = rng.random(120).astype(np.float32)
    label_amounts[::9] = np.inf
    rows, tracks = rng.integers(0, 40, 200), rng.integers(0, 300, 200)  # listed after the labels: these count where both apply
    amounts = np.where(rng.random(200) < 0.5, np.inf, 0.25).astype(np.float32)
    release, days = np.zeros(300, np.int64), np.full(40, -1)

    value, best = index.best(queries, 4, rows, tracks, amounts, release, days, (label_rows, label_of, label_amounts))

    members = [np.flatnonzero(labels == label) for label in label_of]
    spelled_rows = np.concatenate([np.full(len(tracks_of), row) for row, tracks_of in zip(label_rows, members, strict=True)])
    spelled_amounts = np.concatenate([np.full(len(tracks_of), amount, np.float32) for amount, tracks_of in zip(label_amounts, members, strict=True)])
    expected_value, expected = index.best(
        queries, 4, np.concatenate([spelled_rows, rows]), np.concatenate([*members, tracks]), np.concatenate([spelled_amounts, amounts]), release, days
    )
    np.testing.assert_array_equal(value, expected_value)
    assert np.array_equal(best, expected)
    assert not np.array_equal(value, index.best(queries, 4, rows, tracks, amounts, release, days)[0])  # the labels' rules matter here


def test_cells_respect_their_capacity_and_prefer_the_nearest_cell() -> None:
    points = np.array([[0.0], [0.1], [0.2], [0.3], [10.0]], dtype=np.float32)
    centroids = np.array([[0.0], [10.0]], dtype=np.float32)

    cells = balanced_cells(points, centroids, capacity=3)

    assert cells.tolist() == [0, 0, 0, 1, 1]  # the farthest of the four near points moves over


def test_the_euclidean_transform_gives_every_item_the_largest_norm() -> None:
    items = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 0.0]], dtype=np.float32)

    points = euclidean_transform(items)

    np.testing.assert_allclose(np.linalg.norm(points, axis=1), [5.0, 5.0, 5.0], rtol=1e-6)
    np.testing.assert_array_equal(points[:, :2], items)


class FlatProduct(CatalogScorer):
    """Scores track i as [1, 0] . [i / 10, 0], through the candidate stage: every rule is visible."""

    def __init__(self, catalog: Catalog, artist_penalty: float, n_lists: int, n_probe: int) -> None:
        self.catalog, self.history_length, self.artist_penalty = catalog, 5, artist_penalty
        self.candidates, self.n_lists, self.n_probe = "ivf", n_lists, n_probe
        self._build_index()

    def _score_all(self, context: Context) -> np.ndarray:
        return np.tile(np.arange(self.catalog.n_tracks, dtype=np.float32) / 10, (len(context.users), 1))

    def _item_vectors(self) -> np.ndarray:
        return np.stack([np.arange(self.catalog.n_tracks, dtype=np.float32) / 10, np.zeros(self.catalog.n_tracks, np.float32)], axis=1)

    def _query_vectors(self, context: Context) -> np.ndarray:
        return np.tile(np.array([1.0, 0.0], np.float32), (len(context.users), 1))


RULE_REQUESTS = [
    Request(1, 1, 0.5, (0, 1), (1.0, 0.5), 0, 1),  # artist 0 twice, on day 1: 8 and 9 not out yet
    Request(2, 6, 0.5, (6,), (1.0,), 0, None),  # artist 3 once, no day: everything is out
    Request(3, 3, 0.5, (3,), (1.0,), 0, 0),  # artist 1 once, on day 0: 6 to 9 not out yet
]


@pytest.mark.parametrize("n_lists", [1, 3, 10])
def test_the_candidate_stage_applies_the_serving_rules(n_lists: int, tmp_path: Path) -> None:
    catalog = Catalog(write_catalog(tmp_path / "world", artist=ARTISTS, release_day=RELEASES))
    model = FlatProduct(catalog, artist_penalty=0.25, n_lists=n_lists, n_probe=n_lists)

    ranked = model.rank(RULE_REQUESTS, 3)

    # Scores of test_serving_rules: row 1 has 9 and 8 at 0.65 and 0.55 after the penalty, row 2
    # has 4 at 0.4 - 0.25 below 2, and 6 to 9 are not out on day 0.
    assert ranked.tolist() == [[7, 6, 5], [9, 8, 5], [5, 2, 4]]


def test_a_request_left_without_candidates_is_served_by_exact_scoring(tmp_path: Path) -> None:
    catalog = Catalog(write_catalog(tmp_path / "world", artist=ARTISTS, release_day=RELEASES))
    model = FlatProduct(catalog, artist_penalty=0.0, n_lists=10, n_probe=1)  # one track per cell: the scan sees only track 9
    request = Request(1, 9, 0.5, (9,), (1.0,), 0, None)  # ... which was just played

    assert model.rank([request], 2).tolist() == [[8, 7]]


def _requests(split_log: tuple[SessionLog, SessionLog], catalog: Catalog) -> list[Request]:
    return build_cases(*split_log, catalog.n_tracks, 0.5).requests


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("dssm", {}),
        ("dssm", {"artist_penalty": 0.0}),
        ("bpr_knn", {}),
        ("bpr_knn", {"candidate_boost": float("inf"), "artist_weight": 0.3, "artist_penalty": 0.2}),
    ],
)
def test_a_scan_of_the_whole_catalog_answers_as_exact_scoring(
    name: str, params: dict[str, Any], artifacts: dict[str, Path], split_log: tuple[SessionLog, SessionLog], small_catalog: Catalog
) -> None:
    requests = _requests(split_log, small_catalog)
    exact = registry.make(name, small_catalog, {**params, "candidates": "exact"}, artifacts[name])
    covering = registry.make(name, small_catalog, {**params, "candidates": "ivf", "n_probe": EVERY_CELL}, artifacts[name])

    assert covering._index is not None and exact._index is None
    assert np.array_equal(covering.rank(requests, 5), exact.rank(requests, 5))
    assert [r.track for r in covering.recommend_batch(requests)] == [r.track for r in exact.recommend_batch(requests)]


@pytest.mark.parametrize("name", ["dssm", "bpr_knn"])
def test_the_default_scan_answers_mostly_as_exact_and_never_repeats(
    name: str, artifacts: dict[str, Path], split_log: tuple[SessionLog, SessionLog], small_catalog: Catalog
) -> None:
    requests = _requests(split_log, small_catalog)
    exact = registry.make(name, small_catalog, {"candidates": "exact"}, artifacts[name])
    default = registry.make(name, small_catalog, {}, artifacts[name])

    answers = [r.track for r in default.recommend_batch(requests)]

    assert default._index is not None
    assert all(track not in request.history for track, request in zip(answers, requests, strict=True))
    # Not a quality figure (docs/learned.md has those, on the default world): a scan that lost
    # most answers would mean the cells do not follow the model's scores at all.
    agreement = np.mean(np.array(answers) == np.array([r.track for r in exact.recommend_batch(requests)]))
    assert agreement > 0.5


def test_candidates_must_be_exact_or_ivf(artifacts: dict[str, Path], small_catalog: Catalog) -> None:
    with pytest.raises(registry.RegistryError, match="candidates: Input should be 'exact' or 'ivf'"):
        registry.make("dssm", small_catalog, {"candidates": "hnsw"}, artifacts["dssm"])


def test_scanned_tracks_lists_each_rows_cells_in_column_order() -> None:
    rng = np.random.default_rng(2)
    items = rng.standard_normal((300, 4)).astype(np.float32)
    index = InvertedFile(items, n_lists=6)
    scan = index.scan(rng.standard_normal((4, 4)).astype(np.float32), n_probe=2, extra=3)

    tracks = index.scanned_tracks(scan, np.array([1, 3]))

    for i, row in enumerate([1, 3]):
        columns = np.flatnonzero(np.isfinite(scan.scores[row]))
        assert np.array_equal(tracks[i, columns], index.tracks_at(scan, np.full(len(columns), row), columns))
        assert (np.delete(tracks[i], columns) == -1).all()


def test_many_unreleased_tracks_are_masked_over_the_scan(tmp_path: Path) -> None:
    artists = [track // 4 for track in range(200)]
    releases = [0 if track % 2 else 5 for track in range(200)]  # 100 tracks out only on day 5: the dense mask
    catalog = Catalog(write_catalog(tmp_path / "world", artist=artists, release_day=releases))
    model = FlatProduct(catalog, artist_penalty=0.25, n_lists=7, n_probe=7)
    requests = [Request(1, 199, 1.0, (197, 199), (1.0, 1.0), 0, 1), Request(2, 3, 1.0, (3,), (1.0,), 0, 6)]

    ranked = model.rank(requests, 4)

    exact = top_k(model._serving_scores(Context.from_requests(requests, 5, catalog.n_tracks)), 4)
    assert ranked.tolist() == exact.tolist()
    assert ranked[0].tolist() == [195, 193, 191, 189]  # odd tracks only on day 1; 197 and 199 played


def test_a_scan_in_a_reused_workspace_overwrites_what_an_earlier_batch_left() -> None:
    rng = np.random.default_rng(3)
    items = rng.standard_normal((300, 4)).astype(np.float32)
    queries = rng.standard_normal((4, 4)).astype(np.float32)
    index = InvertedFile(items, n_lists=6)
    workspace = Workspace()
    workspace.array("scan", (50, 1000)).fill(7.0)  # a larger batch's scores, still in the buffer

    scan = index.scan(queries, n_probe=2, extra=3, workspace=workspace)

    assert np.shares_memory(scan.scores, workspace.array("scan", (1,)))
    finite = np.isfinite(scan.scores).sum(axis=1)
    assert finite.tolist() == [int(index.sizes[cells].sum()) for cells in scan.cells]  # padding and extra columns are -inf
    rows, columns = np.nonzero(np.isfinite(scan.scores))
    np.testing.assert_allclose(scan.scores[rows, columns], (queries @ items.T)[rows, index.tracks_at(scan, rows, columns)], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["dssm", "bpr_knn"])
def test_answers_do_not_depend_on_the_batches_served_before(
    name: str, artifacts: dict[str, Path], split_log: tuple[SessionLog, SessionLog], small_catalog: Catalog
) -> None:
    requests = _requests(split_log, small_catalog)
    served = registry.make(name, small_catalog, {}, artifacts[name])
    served.rank(requests, 5)  # fills the reused buffers with a larger batch

    later = served.rank(requests[:7], 5)

    assert np.array_equal(later, registry.make(name, small_catalog, {}, artifacts[name]).rank(requests[:7], 5))


class FlatWithForced(FlatProduct):
    """FlatProduct whose tracks 0 and 1 get 2.0 added and are forced candidates of every request."""

    def _score_all(self, context: Context) -> np.ndarray:
        scores = super()._score_all(context)
        scores[:, :2] += 2.0
        return scores

    def _forced(self, context: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        batch = len(context.users)
        return np.repeat(np.arange(batch), 2), np.tile(np.array([0, 1]), batch), np.full(2 * batch, 2.0, np.float32)


def test_the_serving_rules_reach_forced_candidates_outside_the_scan(tmp_path: Path) -> None:
    catalog = Catalog(write_catalog(tmp_path / "world", artist=ARTISTS, release_day=RELEASES))
    model = FlatWithForced(catalog, artist_penalty=0.25, n_lists=10, n_probe=1)  # the scan sees track 9 alone
    requests = [
        Request(1, 0, 0.5, (0,), (1.0,), 0, None),  # 0 played, 1 penalised (artist 0): 1.85 before 9's 0.9
        Request(2, 6, 0.5, (6,), (1.0,), 0, None),  # artist 3 played: 9 drops to 0.65, below 1 and 0
        Request(3, 3, 0.5, (3,), (1.0,), 0, 2),  # 9 is not out on day 2
    ]

    ranked = model.rank(requests, 2)

    assert ranked.tolist() == [[1, 9], [1, 0], [1, 0]]
    assert ranked.tolist() == top_k(model._serving_scores(Context.from_requests(requests, 5, catalog.n_tracks)), 2).tolist()


class FlatWithForcedArtists(FlatProduct):
    """FlatProduct where every track of artist 0 and of artist 3 gets 2.0 added and is a forced candidate
    of every request (tracks 0-2 and 6-9); tracks 2 and 6 tie with tracks 1 and 7 of their artists."""

    def _item_vectors(self) -> np.ndarray:
        items = super()._item_vectors()
        items[2], items[6] = items[1], items[7]
        return items

    def _score_all(self, context: Context) -> np.ndarray:
        scores = (self._query_vectors(context) @ self._item_vectors().T).astype(np.float32)
        scores[:, np.isin(self.catalog.artist, [0, 3])] += 2.0
        return scores

    def _forced_artists(self, context: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        batch = len(context.users)
        return np.repeat(np.arange(batch), 2), np.tile(np.array([0, 3]), batch), np.full(2 * batch, 2.0, np.float32)


@pytest.mark.parametrize("k", [1, 2, 4, 6])  # no tie straddles the k-th place: top_k breaks those arbitrarily
def test_forced_artists_give_the_ranking_of_exact_scoring(k: int, tmp_path: Path) -> None:
    catalog = Catalog(write_catalog(tmp_path / "world", artist=ARTISTS, release_day=RELEASES))
    model = FlatWithForcedArtists(catalog, artist_penalty=0.25, n_lists=10, n_probe=1)  # the scan sees one track
    requests = [
        Request(1, 0, 0.5, (0,), (1.0,), 0, None),  # artist 0 played: its 1 and 2 tie at 1.85, below artist 3's
        Request(2, 7, 0.5, (9, 7), (1.0, 1.0), 0, None),  # artist 3 twice: 8 and 6 drop to 2.3 and 2.2, above 1 and 2 (2.1)
        Request(3, 3, 0.5, (3,), (1.0,), 0, 1),  # on day 1: 8 and 9 not out, 7 and 6 tie at 2.6
    ]
    context = Context.from_requests(requests, 5, catalog.n_tracks)

    ranked = model.rank(requests, k)

    assert ranked.tolist() == top_k(model._serving_scores(context), k).tolist()
    assert ranked[:, 0].tolist() == [9, 8, 6]


def test_dssm_sums_the_history_as_the_dense_formula_does(fitted: dict[str, Any], split_log: tuple[SessionLog, SessionLog], small_catalog: Catalog) -> None:
    model = fitted["dssm"]
    context = Context.from_requests(_requests(split_log, small_catalog)[:60], model.history_length, small_catalog.n_tracks)
    recent = np.maximum(context.recent, 0)
    liked = context.recent_times * (context.recent >= 0)
    skipped = (1.0 - context.recent_times) * (context.recent >= 0)

    liked_sum, skipped_sum, last = model._weighted_features(recent, liked, skipped)

    features = model._features[recent]  # (B, L, F): what the sums avoid building
    np.testing.assert_array_equal(liked_sum, (liked[..., None] * features).sum(1))
    np.testing.assert_array_equal(skipped_sum, (skipped[..., None] * features).sum(1))
    np.testing.assert_array_equal(last, features[:, 0])


def test_forced_products_are_each_pairs_inner_product(artifacts: dict[str, Path], split_log: tuple[SessionLog, SessionLog], small_catalog: Catalog) -> None:
    model = registry.make("bpr_knn", small_catalog, {}, artifacts["bpr_knn"])
    context = Context.from_requests(_requests(split_log, small_catalog)[:80], model.history_length, small_catalog.n_tracks)
    queries = model._query_vectors(context)
    artist_rows, artists, _ = model._forced_artists(context)
    rows = np.repeat(artist_rows, [len(small_catalog.tracks_of_artist(artist)) for artist in artists])
    tracks = np.concatenate([small_catalog.tracks_of_artist(artist) for artist in artists])

    products = model._forced_products(queries, rows, tracks)

    assert len(np.unique(small_catalog.artist[tracks])) > 1 and len(np.unique(rows)) > 1  # several artists' products, several rows each
    # One dot product per pair in float64; the per-artist products differ from it by float32 rounding only.
    expected = (model._item_vectors()[tracks].astype(np.float64) * queries[rows]).sum(axis=1)
    np.testing.assert_allclose(products, expected, rtol=1e-5, atol=1e-5)


def test_bpr_knn_forces_the_session_artists_tracks_and_the_pool_with_their_bonus(
    artifacts: dict[str, Path], split_log: tuple[SessionLog, SessionLog], small_catalog: Catalog
) -> None:
    model = registry.make("bpr_knn", small_catalog, {}, artifacts["bpr_knn"])
    context = Context.from_requests(_requests(split_log, small_catalog)[:80], model.history_length, small_catalog.n_tracks)
    users = vocabulary_index(context.users, model._arrays["user_vocabulary"])

    rows, tracks, bonus = model._forced(context)
    artist_rows, artists, artist_bonus = model._forced_artists(context)

    affinity, weight = model._artist_affinity(context, users)  # the dense form the exact scorer uses
    expected = set(zip(*(part.tolist() for part in np.nonzero(affinity * (weight[:, None] > 0)))))
    assert set(zip(artist_rows.tolist(), artists.tolist())) == expected
    assert np.all(np.diff(artist_rows * small_catalog.n_artists + artists) > 0)  # distinct, by row then artist
    np.testing.assert_array_equal(artist_bonus, (weight[artist_rows] * affinity[artist_rows, artists]).astype(np.float32))
    pool = set(zip(*(part.tolist() for part in model._pool_pairs(context))))
    assert pool  # the fixture has warm users with KNN candidates
    assert set(zip(rows.tolist(), tracks.tolist())) == pool
    assert np.all(np.diff(rows * small_catalog.n_tracks + tracks) > 0)  # distinct, by row then track
    expected_bonus = weight[rows] * affinity[rows, small_catalog.artist[tracks]] + np.float32(model.candidate_boost)
    np.testing.assert_array_equal(bonus, expected_bonus.astype(np.float32))
