"""docs/reference.md is what `scripts/reference.py` writes from the docstrings today."""

from __future__ import annotations

from scripts import reference


def test_the_committed_reference_is_up_to_date() -> None:
    assert reference.OUTPUT.read_text() == reference.render(), "docs/reference.md is stale: run `python scripts/reference.py`"


def test_it_covers_the_catalog_and_the_contract() -> None:
    text = reference.render()
    for name in ("### class `Catalog`", "`tracks_of_artist(artist: int) -> np.ndarray`", "`tag_matrix() -> sp.csr_matrix`", "`popularity`"):
        assert name in text
    for name in ("### class `Recommender`", "`_recommend(request: Request) -> Recommendation`** (to implement)", "### `check_recommender("):
        assert name in text


def test_google_sections_become_lists() -> None:
    doc = "Summary.\n\nArgs:\n    alpha: the level,\n        continued.\n    beta: another.\n\nAfter."
    assert reference.markdown(doc) == "Summary.\n\n**Args:**\n\n- `alpha`: the level, continued.\n- `beta`: another.\n\nAfter."
