import pytest

from musicvae_lib import search


def test_choice_round_trip_and_absence(tmp_path):
    assert search.load_choice(tmp_path) is None
    search.write_choice(tmp_path, beta=0.5, free_nats=16.0, rule="best ELBO")
    assert search.load_choice(tmp_path) == {"beta": 0.5, "free_nats": 16.0, "rule": "best ELBO"}


def test_incomplete_choice_names_the_file_and_the_notebook(tmp_path):
    (tmp_path / "grid_search").mkdir()
    (tmp_path / "grid_search" / "choice.json").write_text('{"beta": 1.0}')
    with pytest.raises(ValueError, match=r"choice.json lacks \['free_nats'\].*02_grid_search"):
        search.load_choice(tmp_path)
