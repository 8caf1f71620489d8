"""`sasrec`: SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018).

A causal transformer over the session's plays, each with its listen fraction, predicts the
next liked track; training, artifacts and serving are shared with `hstu` (see
`recommenders.models.sequential`), the network is `nn.sequential.SASRecNet`.
"""

from __future__ import annotations

from typing import Any

from recommenders.models.config import SASRecConfig, SequentialConfig
from recommenders.models.sequential import SequentialRecommender


class SASRecRecommender(SequentialRecommender):
    """SASRec served live from the session (shapes and cold start: `recommenders.models.sequential`)."""

    name = "sasrec"
    config_class = SASRecConfig

    def _build(self, tracks: Any, config: SequentialConfig) -> Any:
        from recommenders.models.nn.sequential import SASRecNet

        return SASRecNet(tracks, config)
