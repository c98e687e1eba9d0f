from pathlib import Path

import pytest

from musicvae_lib import run_folder

REPOSITORY = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "run, chapters",
    [
        ("default", ["01_dataset", "02_grid_search", "03_training", "04_generation"]),
        ("hier16", ["01_dataset", "03_training"]),
    ],
)
def test_the_committed_reference_runs_hold_the_files_the_layout_names(run, chapters):
    folder = REPOSITORY / "results" / run
    run_folder.require_chapters(folder, chapters)  # raises if a name no longer matches the committed layout
    named = [
        run_folder.MANIFEST,
        run_folder.TUNES_TABLE,
        run_folder.PRIOR_MIXTURE,
        run_folder.PRIOR_CHOICE,
        *(run_folder.split_tunes_file(name) for name in run_folder.SPLIT_NAMES),
        *(run_folder.TRAINING / name for name in (run_folder.DONE_FILE, run_folder.STEPS_LOG, run_folder.EPOCHS_LOG)),
    ]
    assert [str(path) for path in named if not (folder / path).is_file()] == []
    assert (folder / run_folder.FIGURES).is_dir() and (folder / run_folder.TABLES).is_dir()


def test_require_chapters_names_the_first_missing_chapter_and_refuses_unknown_ones(tmp_path):
    run_dir = tmp_path / "results" / "local" / "quick"
    (run_dir / run_folder.DATASET).mkdir(parents=True)
    for path in run_folder.CHAPTER_OUTPUTS["01_dataset"]:
        (run_dir / path).touch()
    run_folder.require_chapters(run_dir, ["01_dataset"])
    with pytest.raises(
        run_folder.MissingInputError, match=r"grid_search/choice.json\.\n.*02_grid_search\.ipynb"
    ) as raised:
        run_folder.require_chapters(run_dir, ["03_training", "02_grid_search", "01_dataset"])
    assert str(raised.value).endswith(
        "./study.sh --profile quick --only 02 --results " + str(tmp_path / "results" / "local")
    )
    with pytest.raises(ValueError, match=r"`needs` must name notebooks among .*got \['05_rhythm'\]"):
        run_folder.require_chapters(run_dir, ["05_rhythm"])
