"""Every registered recommender passes the contract kit (as Gymnasium runs every env through check_env).

An entry whose module is missing, fails to import, or breaks the contract fails. A recommender that needs parameters to
be built goes in `PARAMS`.
"""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from contracts.catalog import Catalog
from recommenders import registry
from recommenders.testing import check_recommender, make_requests

logger = logging.getLogger(__name__)

#: Parameters for entries that cannot be built from the catalog alone (name -> params).
PARAMS: dict[str, dict[str, object]] = {
    "cold_mix": {"base": "sticky_artist", "cold": "random", "share": 0.3},
}


@pytest.mark.parametrize("name", registry.names())
def test_registered_recommender_passes_the_contract(name: str, small_catalog: Catalog, small_events: pd.DataFrame) -> None:
    cls = registry.get_class(name)
    params = PARAMS.get(name, {})
    requests = make_requests(small_catalog, 200, seed=3)
    # The rules, not the speed: a loaded machine slows sasrec's recommend() past the default 10 ms
    # budget, so the budget here only catches a pathological slowdown (speed: bench_recommenders).
    report = check_recommender(
        lambda: cls(small_catalog, **params), small_catalog, requests=requests, events=small_events, latency_budget=1.0
    )
    logger.info("%s", report)
    assert report.requests == 200 and "batch agrees with single" in report.checks
