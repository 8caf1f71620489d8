"""`hstu`: HSTU (Zhai et al., "Actions Speak Louder than Words: Trillion-Parameter Sequential
Transducers for Generative Recommendations", ICML 2024).

Pointwise-aggregated (softmax-free) gated attention with a relative-distance bias over the
session's plays; training, artifacts and serving are shared with `sasrec` (see
`recommenders.models.sequential`), the network is `nn.sequential.HSTUNet`.
"""

from __future__ import annotations

from typing import Any

from recommenders.models.config import HSTUConfig, SequentialConfig
from recommenders.models.sequential import SequentialRecommender


class HSTURecommender(SequentialRecommender):
    """HSTU served live from the session (shapes and cold start: `recommenders.models.sequential`)."""

    name = "hstu"
    config_class = HSTUConfig

    def _build(self, tracks: Any, config: SequentialConfig) -> Any:
        from recommenders.models.nn.sequential import HSTUNet

        assert isinstance(config, HSTUConfig)
        return HSTUNet(tracks, config)
