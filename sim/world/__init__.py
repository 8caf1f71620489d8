"""World generation and loading: `generate_world(config, dir)` writes one, `World(dir)` reads it.

Submodules: `config` (validated YAML), `generate` (deterministic generation), `storage` (the
hidden files and the `World` loader). The public half is read by `contracts.catalog`.
"""

from typing import TYPE_CHECKING

from sim.world.config import ConfigError, WorldConfig, load_world_config, world_config_from_mapping
from sim.world.storage import World

if TYPE_CHECKING:
    from sim.world.generate import generate_world


def __getattr__(name: str) -> object:
    # Generation pulls in pandas and tqdm; a simulator that only reads a world skips them.
    if name == "generate_world":
        from sim.world.generate import generate_world

        return generate_world
    raise AttributeError(f"module 'sim.world' has no attribute {name!r}")


__all__ = ["ConfigError", "World", "WorldConfig", "generate_world", "load_world_config", "world_config_from_mapping"]
