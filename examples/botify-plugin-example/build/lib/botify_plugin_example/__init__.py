"""An example Botify Lab plugin: `recent_artist_mix`, registered through the `botify.recommenders` entry point."""

from botify_plugin_example.recent_artist_mix import RecentArtistMixRecommender

__all__ = ["RecentArtistMixRecommender"]
