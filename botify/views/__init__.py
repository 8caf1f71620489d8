"""The service's blueprints: health (`GET /`), catalog (`GET /track/<id>`), recommend (`POST
/next`, `/last`, `/batch`) and experiments (`GET /experiments`, `GET /experiments/<user>`)."""
