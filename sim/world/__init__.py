"""World generation and loading: `generate_world(config, dir)` writes one, `World(dir)` reads it.

Submodules: `config` (validated YAML), `generate` (deterministic generation), `storage` (the
hidden files and the `World` loader). The public half is read by `recommenders.catalog`.
"""

from sim.world.config import ConfigError, WorldConfig, load_world_config, world_config_from_mapping
from sim.world.generate import generate_world
from sim.world.storage import World

__all__ = ["ConfigError", "World", "WorldConfig", "generate_world", "load_world_config", "world_config_from_mapping"]
