"""`--recommender console`: a person plays the recommender for one simulated listener at a time."""

from __future__ import annotations

import click
import numpy as np
import orjson
import urllib3
from urllib3.exceptions import HTTPError

from sim import streams
from sim.config import EnvConfig
from sim.env import pick_users
from sim.listener import ListenerModel
from sim.run.timeline import SESSION_ID_DAY
from sim.world import World


def _describe(track: int, world: World, base: str) -> str:
    """Track info from the service (GET /track/<id>), or from the local catalog if none answers."""
    try:
        answer = urllib3.request("GET", f"{base}/track/{track}", timeout=2.0, retries=False)
        record = orjson.loads(answer.data) if answer.status == 200 else world.catalog.record(track)
    except (HTTPError, orjson.JSONDecodeError):
        record = world.catalog.record(track)
    return f"#{record['track']} {record['title']!r} by {record['artist']}"


def run_console(config: EnvConfig, seed: int, day: int) -> None:
    """Sessions one after another; type a track id (or 's' for a same-artist pick, 'q' to stop)."""
    world = World(config.world)
    key = streams.key_from_seed(seed)
    model = ListenerModel.from_options(world, 1, key, config.listener)
    base = f"http://{config.service.host}:{config.service.port}"
    rng = np.random.default_rng(seed)
    episode = 0
    while True:
        session = np.array([day * SESSION_ID_DAY + episode])  # as `plan_day` numbers the day's sessions
        user = int(pick_users(key, session, world.n_users)[0])
        track = int(model.start(np.array([0]), np.array([user]), session)[0])
        click.echo(f"\nlistener {user} starts with {_describe(track, world, base)}")
        total, ended = 0.0, False
        while not ended:
            answer = click.prompt("next track id (s = same artist, q = quit)", default="s")
            if answer == "q":
                return
            if answer == "s":
                choices = world.catalog.tracks_of_artist(world.catalog.artist[track])
                track = int(choices[rng.integers(len(choices))])
            elif answer.isdigit() and world.catalog.contains(int(answer)):
                track = int(answer)
            else:
                click.echo(f"{answer!r} is not a track id in [0, {world.n_tracks})")
                continue
            fractions, done = model.respond(np.array([track]))
            total += float(fractions[0])
            ended = bool(done[0]) or int(model.step[0]) >= model.max_steps
            click.echo(f"  {_describe(track, world, base)}: listened {fractions[0]:.2f}")
        click.echo(f"session over: {int(model.step[0])} tracks, time {total:.2f}")
        episode += 1
        if not click.confirm("another listener?", default=True):
            return
