"""The listener model's formulas, repeats, artist fatigue, budget and common random numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sim import streams
from sim.listener import ListenerModel
from sim.world import World


def _course_fraction(dot: float, bias: float, sharpness: float, gamma: float, artist_plays: int) -> float:
    return round(1 / (1 + math.exp(-(dot - bias) * sharpness)) * gamma**artist_plays, 2)


@pytest.mark.parametrize(
    ("dot", "bias", "sharpness", "gamma", "plays", "expected"),
    [
        (5.0, 5.0, 1.0, 0.8, 0, 0.5),  # at the bias: a coin flip
        (8.0, 5.0, 1.0, 0.8, 0, 0.95),  # sigmoid(3) = 0.9526
        (8.0, 5.0, 1.0, 0.8, 2, 0.61),  # 0.9526 * 0.64 = 0.6097
        (0.0, 5.0, 1.0, 0.8, 0, 0.01),  # sigmoid(-5) = 0.0067
        (6.0, 5.0, 2.0, 0.5, 1, 0.44),  # sigmoid(2) * 0.5 = 0.4404
    ],
)
def test_fraction_matches_hand_computed(dot, bias, sharpness, gamma, plays, expected) -> None:
    got = ListenerModel.fraction(np.array([dot]), np.array([bias]), np.array([sharpness]), np.array([gamma]), np.array([plays]), np.array([False]))
    assert got[0] == expected == _course_fraction(dot, bias, sharpness, gamma, plays)


def test_repeat_gets_nothing() -> None:
    got = ListenerModel.fraction(np.array([9.0]), np.array([5.0]), np.array([1.0]), np.array([0.8]), np.array([0]), np.array([True]))
    assert got[0] == 0.0


def _model(world: World, n: int = 1, key: int = 11) -> ListenerModel:
    return ListenerModel(world, n, key)


def test_first_track_is_a_neighbour_of_an_interest(small_world: World) -> None:
    model = _model(small_world, 50)
    users = np.arange(50)
    first = model.start(np.arange(50), users, np.arange(50))
    listeners = small_world.listeners
    for user, track in zip(users, first):
        rows = listeners.interests_of(user)
        k = listeners.interest_neighbours[user]
        assert track in listeners.interest_nearest[rows, :k]


def test_session_follows_the_formula_step_by_step(small_world: World) -> None:
    model = _model(small_world)
    user, episode = 3, 0
    first = int(model.start(np.array([0]), np.array([user]), np.array([episode]))[0])
    interest = model._interest[0].copy()
    artist = small_world.catalog.artist
    same_artist = [int(t) for t in small_world.catalog.tracks_of_artist(artist[first]) if t != first][:3]
    history = [first]
    budget = int(small_world.listeners.session_budget[user])
    for step, track in enumerate(same_artist + [first]):
        plays = sum(artist[h] == artist[track] for h in history)
        dot = float(np.dot(small_world.taste[track].astype(np.float64), interest))
        expected = 0.0 if track in history else _course_fraction(
            dot,
            float(small_world.listeners.consume_bias[user]),
            float(small_world.listeners.consume_sharpness[user]),
            float(small_world.listeners.artist_discount_gamma[user]),
            plays,
        )
        fractions, ended = model.respond(np.array([track]))
        assert fractions[0] == pytest.approx(expected, abs=1e-12)
        coin = streams.uniform_scalar(model.key, user, episode, streams.BUDGET, step)
        budget -= coin < 1 - expected
        assert model.budget[0] == budget and ended[0] == (budget <= 0)
        history.append(track)
        if ended[0]:
            break


def test_artist_fatigue_discounts_each_further_play(small_world: World) -> None:
    """Same track, same listener: heard after k plays of its artist it gets gamma ** k of the fresh fraction."""
    catalog = small_world.catalog
    artist = int(np.argmax(np.bincount(catalog.artist)))
    tracks = [int(t) for t in catalog.tracks_of_artist(artist)][:4]
    target, earlier = tracks[-1], tracks[:-1]
    user = 2
    results = []
    for plays in range(len(earlier) + 1):
        model = _model(small_world)
        model.start(np.array([0]), np.array([user]), np.array([0]))
        model.history[0, 0] = model._history_artist[0, 0] = -1  # forget the first track
        for track in earlier[:plays]:
            model.respond(np.array([track]))
        dot = float(small_world.taste[target].astype(np.float64) @ model._interest[0])
        raw = 1 / (1 + math.exp(-small_world.listeners.consume_sharpness[user] * (dot - small_world.listeners.consume_bias[user])))
        results.append((float(model.respond(np.array([target]))[0][0]), raw))
    gamma = float(small_world.listeners.artist_discount_gamma[user])
    for plays, (fraction, raw) in enumerate(results):
        assert fraction == round(raw * gamma**plays, 2)


def test_common_random_numbers_across_recommenders(small_world: World) -> None:
    """The same (listener, episode) gets the same first track and budget coins whatever is played."""
    a, b = _model(small_world, 20), _model(small_world, 20)
    users = np.arange(20) * 7
    assert np.array_equal(a.start(np.arange(20), users, np.arange(20)), b.start(np.arange(20), users, np.arange(20)))
    good = small_world.listeners.interest_nearest[small_world.listeners.interest_offsets[users], 1]
    fractions_a, _ = a.respond(good)
    fractions_b, _ = b.respond(np.random.default_rng(0).integers(small_world.n_tracks, size=20))
    coins = streams.uniform(a.key, users, np.arange(20), streams.BUDGET, 0)
    budget = small_world.listeners.session_budget[users]
    assert np.array_equal(a.budget, budget - (coins < 1 - fractions_a))
    assert np.array_equal(b.budget, budget - (coins < 1 - fractions_b))
    assert fractions_a.mean() > fractions_b.mean()


def test_budget_ends_the_session(small_world: World) -> None:
    model = _model(small_world)
    first = model.start(np.array([0]), np.array([1]), np.array([0]))
    budget = int(small_world.listeners.session_budget[1])
    ended = np.array([False])
    for _ in range(budget):
        assert not ended[0]
        _, ended = model.respond(first)  # a repeat: always spends one unit of budget
    assert ended[0] and model.budget[0] == 0


def _popularity_bins(popularity: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Each track's bin among `bins` bins of about equal prior mass (tracks sorted by popularity), and each bin's mass."""
    order = np.argsort(popularity, kind="stable")
    edges = np.searchsorted(np.cumsum(popularity[order]), np.linspace(0, 1, bins + 1)[1:-1] * popularity.sum())
    bin_of = np.empty(len(popularity), dtype=np.int64)
    bin_of[order] = np.searchsorted(edges, np.arange(len(popularity)), side="right")
    return bin_of, np.bincount(bin_of, weights=popularity, minlength=bins) / popularity.sum()


def test_popular_start_draws_first_tracks_from_the_popularity_prior(small_world: World) -> None:
    """With popular_start=1 first tracks are draws from the popularity prior: counts in ten bins
    of equal prior mass pass a chi-square test (false alarm 1e-4); interest starts fail it. With
    popular_start=0.5 each session starts where one of the two would, the chart in a share
    within the binomial band around 0.5. Over keys 0-19 the chi-square p-values of chart starts
    were 0.004-0.84, those of interest starts below 1e-300.
    """
    n = 2000
    slots, users = np.arange(n), np.arange(n) % small_world.n_users
    bin_of, mass = _popularity_bins(small_world.catalog.popularity)
    charted = ListenerModel(small_world, n, 5, popular_start=1.0).start(slots, users, slots)
    interest = _model(small_world, n, 5).start(slots, users, slots)
    half = ListenerModel(small_world, n, 5, popular_start=0.5).start(slots, users, slots)

    assert stats.chisquare(np.bincount(bin_of[charted], minlength=10), mass * n).pvalue > 1e-4
    assert stats.chisquare(np.bincount(bin_of[interest], minlength=10), mass * n).pvalue < 1e-4
    assert ((half == charted) | (half == interest)).all()
    differ = charted != interest
    lower, upper = stats.binom.interval(1 - 1e-4, differ.sum(), 0.5)
    assert lower <= (half[differ] == charted[differ]).sum() <= upper


def test_uniform_streams_are_uniform_and_independent() -> None:
    key = streams.key_from_seed(123)
    u = streams.uniform(key, np.arange(200_000), 5, streams.BUDGET, 0)
    v = streams.uniform(key, np.arange(200_000), 5, streams.BUDGET, 1)
    n = len(u)
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / n)
    assert abs(np.corrcoef(u, v)[0, 1]) < 5 / np.sqrt(n)
    counts = np.bincount((u * 10).astype(int), minlength=10)
    assert stats.chisquare(counts).pvalue > 1e-4
    assert streams.uniform_scalar(key, 17, 5, streams.BUDGET, 1) == v[17]


def test_options_and_arguments_reach_the_model(small_world: World) -> None:
    from sim.config import ListenerOptions

    model = ListenerModel.from_options(small_world, 3, 9, ListenerOptions(max_session_steps=7, popular_start=0.25, interest_drift=0.5))

    assert (model.n_slots, model.key, model.max_steps, model.popular_start, model.interest_drift) == (3, 9, 7, 0.25, 0.5)
    assert ListenerModel(small_world, 1, 0).max_steps == 250  # the course's time limit
    assert ListenerModel(small_world, 1, 0, max_steps=1).max_steps == 1
    with pytest.raises(ValueError, match="n_slots == 0, must be >= 1"):
        ListenerModel(small_world, 0, 0)
    with pytest.raises(ValueError, match="max_steps == 0, must be >= 1"):
        ListenerModel(small_world, 1, 0, max_steps=0)


@pytest.mark.parametrize("n", [2, 12])
def test_many_slots_at_once_equal_one_slot_at_a_time(small_world: World, n: int) -> None:
    """The vectorised paths (several slots) give each session exactly what it gets alone."""
    users, episodes = (np.arange(n) * 31) % small_world.n_users, np.arange(n) + 100
    together = _model(small_world, n)
    first = together.start(np.arange(n), users, episodes)
    actions = np.random.default_rng(3).integers(small_world.n_tracks, size=(4, n))
    responses = [together.respond(step) for step in actions]
    for i in range(n):
        alone = _model(small_world)
        assert alone.start(np.array([0]), users[i : i + 1], episodes[i : i + 1])[0] == first[i]
        for step, (fractions, ended) in zip(actions, responses):
            got, done = alone.respond(step[i : i + 1])
            assert (got[0], done[0]) == (fractions[i], ended[i])
        assert alone.budget[0] == together.budget[i]


def test_only_tracks_played_in_the_session_count_as_repeats(small_world: World) -> None:
    """Track 1 and artist 1 were not played: they get the full formula, not a repeat's 0 or a fatigue discount."""
    catalog, listeners = small_world.catalog, small_world.listeners
    by_artist_1 = int(catalog.tracks_of_artist(1)[0])
    for track in (1, by_artist_1):
        model = _model(small_world)
        for user in range(small_world.n_users):  # a listener who did not start with artist 1 and likes `track` a little
            first = model.start(np.array([0]), np.array([user]), np.array([0]))[0]
            params = (float(listeners.consume_bias[user]), float(listeners.consume_sharpness[user]), float(listeners.artist_discount_gamma[user]))
            expected = _course_fraction(float(small_world.taste[track].astype(np.float64) @ model._interest[0]), *params, 0)
            if catalog.artist[first] not in (catalog.artist[track], 1) and expected > 0:
                break
        model.start(np.array([0]), np.array([user]), np.array([0]))  # a reused slot starts clean

        fractions, _ = model.respond(np.array([track]))

        assert fractions[0] == expected > 0


def test_a_session_can_run_to_the_time_limit(small_world: World) -> None:
    model = ListenerModel(small_world, 1, 11, max_steps=3)
    first = int(model.start(np.array([0]), np.array([0]), np.array([0]))[0])
    model.budget[0] = 100  # nothing ends it but the limit
    tracks = [t for t in range(small_world.n_tracks) if t != first][:3]

    for track in tracks:
        model.respond(np.array([track]))

    assert model.step[0] == 3 and model.history[0].tolist() == [first, *tracks]


def test_interest_drift_pulls_the_interest_towards_what_was_listened(small_world: World) -> None:
    """interest <- |interest| * unit(interest + drift * fraction * (track - interest)), norm kept."""
    drifting, still = (ListenerModel(small_world, 2, 11, interest_drift=drift) for drift in (0.5, 0.0))
    for model in (drifting, still):
        model.start(np.arange(2), np.array([4, 5]), np.arange(2))
    before = drifting._interest.copy()
    tracks = np.array([10, 20])

    fractions, _ = drifting.respond(tracks)
    still.respond(tracks)

    moved = before + (0.5 * fractions)[:, None] * (small_world.taste[tracks].astype(np.float64) - before)
    expected = np.linalg.norm(before, axis=1, keepdims=True) * moved / np.linalg.norm(moved, axis=1, keepdims=True)
    np.testing.assert_allclose(drifting._interest, expected, rtol=1e-12)
    np.testing.assert_array_equal(still._interest, before)


def test_growing_keeps_the_sessions_in_progress(small_world: World) -> None:
    grown, fixed = _model(small_world, 2), _model(small_world, 5)
    for model in (grown, fixed):
        model.start(np.arange(2), np.array([1, 2]), np.arange(2))
        model.respond(np.array([7, 8]), np.arange(2))
    grown.grow(3)  # one more slot
    assert grown.n_slots == 3 and len(grown.history) == 3
    grown.grow(5)
    grown.grow(4)  # never shrinks
    for model in (grown, fixed):
        model.start(np.array([4]), np.array([3]), np.array([9]))

    results = [model.respond(np.array([30, 31, 0, 0, 32]), np.arange(5)) for model in (grown, fixed)]

    assert grown.n_slots == 5
    np.testing.assert_array_equal(results[0][0][[0, 1, 4]], results[1][0][[0, 1, 4]])
    for name in ("user", "episode", "step", "budget", "track", "history", "_history_artist", "_interest", "_bias", "_sharpness", "_gamma"):
        np.testing.assert_array_equal(getattr(grown, name)[[0, 1, 4]], getattr(fixed, name)[[0, 1, 4]], err_msg=name)


def test_histories_widen_without_changing_a_response(small_world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Long sessions (repeats and artist plays from their first steps included) get the same
    answers whether the histories start one column wide and widen, or start wide enough."""
    rng = np.random.default_rng(8)
    actions = rng.integers(small_world.n_tracks, size=(60, 3))
    actions[40:] = actions[:20]  # late repeats of early tracks
    models = []
    for columns in (1, 61):
        monkeypatch.setattr("sim.listener.HISTORY_COLUMNS", columns)
        model = ListenerModel(small_world, 3, 11, max_steps=100)
        model.start(np.arange(3), np.array([1, 2, 3]), np.arange(3))
        model.budget[:] = 1000  # nothing ends the sessions early
        models.append(model)

    responses = [[model.respond(step) for step in actions] for model in models]

    assert models[0].history.shape[1] == 64  # widened from 1, doubling
    for (fractions, ended), (wide_fractions, wide_ended) in zip(*responses, strict=True):
        np.testing.assert_array_equal(fractions, wide_fractions)
        np.testing.assert_array_equal(ended, wide_ended)
    assert all(fractions[k] == 0.0 for fractions, _ in responses[0][40:] for k in range(3))  # the repeats were seen
    np.testing.assert_array_equal(models[0].history[:, :61], models[1].history)
    assert (models[0].history[:, 61:] == -1).all()
    np.testing.assert_array_equal(models[0].budget, models[1].budget)
