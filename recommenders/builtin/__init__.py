"""The built-in recommenders: baselines that need no training and the stored-list ones.

One module per recommender: `random`, `sticky_artist`, `top_pop` (picks from pools of released
tracks, see `_pooled`), `indexed` (stored per-user lists) and `i2i` (stored per-track lists).
They are registered by name in `recommenders.registry.BUILTINS`.
"""
