"""Offline evaluation of recommenders on the event log, without leakage.

Submodules: `protocol` (test cases from the sessions after the training period, and the
metrics of a ranker on them), `baselines` (reference rankers: random, top_pop, sticky_artist),
`report` (the comparison table).
"""

from recommenders.evaluation.baselines import RandomRanker, StickyArtistRanker, TopPopRanker
from recommenders.evaluation.protocol import Cases, EvaluationError, build_cases, evaluate
from recommenders.evaluation.report import Report

__all__ = ["Cases", "EvaluationError", "RandomRanker", "Report", "StickyArtistRanker", "TopPopRanker", "build_cases", "evaluate"]
