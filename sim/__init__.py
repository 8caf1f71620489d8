"""The simulated side of Botify Lab: the world, the listeners and their sessions.

Submodules: `world` (generate and load worlds), `listener` (the listener model), `streams`
(common random numbers), `env` (`botify/Session-v0`), `vector_env` (many sessions at once),
`oracle` (the hidden truth, for the oracle recommender and validation), `policies`
(reference policies for the environments), `config` (`config/env.yml`).

Importing `sim` registers `botify/Session-v0` with gymnasium.
"""

import gymnasium

ENV_ID = "botify/Session-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(
        id=ENV_ID,
        entry_point="sim.env:SessionEnv",
        vector_entry_point="sim.vector_env:SessionVectorEnv",
    )
