import json
import re
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest

from musicvae_lib import report, two_sample
from musicvae_lib.loss import recipe

REPOSITORY = Path(__file__).resolve().parent.parent


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run folder with a manifest and the tables the report reads, values written out."""
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "summary.json").write_text(json.dumps({"n_unique_windows": 1234, "n_tunes": 56}))
    (tmp_path / "grid_search").mkdir()
    (tmp_path / "grid_search" / "choice.json").write_text(json.dumps({"beta": 0.5, "free_nats": 64.0}))
    (tmp_path / "tables").mkdir()
    pd.DataFrame({"metric": ["greedy accuracy (z = mu)", "NLL per step"], "value": [0.8766, 0.3]}).to_csv(
        tmp_path / "tables" / "03_reconstruction.csv", index=False
    )
    pd.DataFrame(
        {"level": ["bar", "sixteenth"], "train": [0.2, 0.093], "T=1": [0.2, 0.1], "test": [0.2, 0.092]}
    ).to_csv(tmp_path / "tables" / "05_onset_levels.csv", index=False)
    manifest = {
        "profile": "quick",
        "platform": "Linux",
        "notebooks": {
            "01_dataset": {"duration_s": 90.0, "status": "ok", "git_commit": "abcdef123", "git_dirty": False},
            "03_training": {"duration_s": 30.0, "status": "failed", "git_commit": "abcdef123", "git_dirty": True},
        },
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path


def test_key_results_come_from_the_tables_and_the_manifest(run_dir):
    text = report.key_results(run_dir)
    assert "2 minutes in all" in text
    assert "| melody windows (2 bars, distinct) | 1,234 from 56 tunes |" in text
    assert "| grid search over the thesis' form: beta, lambda | 0.5, 64 nats (92.3 bits) |" in text
    assert "| greedy free-running accuracy, z = mu (A2; target >= 0.95) | 0.877 |" in text
    assert "| measure | train | test | T=1 |" in text  # real sets first
    assert "| onsets on odd 16ths (share of all the set's onsets) | 9.3% | 9.2% | 10.0% |" in text
    assert "| 03_training | 0.5 | failed | abcdef1+dirty |" in text
    assert "NLL" not in text


def test_the_seed_spread_beside_a_run_joins_its_key_results(run_dir):
    assert "seed spread" not in report.key_results(run_dir)
    spread_dir = run_dir.parent / f"{run_dir.name}-seeds"
    (spread_dir / "tables").mkdir(parents=True)
    numbers = {"measure": ["greedy accuracy (z = mu)"], "mean": [0.95], "min": [0.9], "max": [0.975]}
    pd.DataFrame(numbers | {"seed=0": [0.9], "seed=3": [0.975]}).to_csv(
        spread_dir / "tables" / "seed_spread.csv", index=False
    )
    findings = {"finding": ["greedy accuracy reaches the target 0.95"], "holds": ["1 of 2"]}
    pd.DataFrame(findings).to_csv(spread_dir / "tables" / "seed_spread_findings.csv", index=False)
    text = report.key_results(run_dir)
    assert f"The seed spread of this profile (`{spread_dir.name}`). Over 2 seeds (seed=0, seed=3)" in text
    assert "| greedy accuracy (z = mu) | 0.950 | 0.900 - 0.975 |" in text
    assert "| greedy accuracy reaches the target 0.95 | 1 of 2 |" in text
    assert text.index("| finding | holds |") < text.index("| notebook | minutes | status | commit |")


def test_a_re_execution_that_loaded_its_model_says_the_minutes_are_not_the_studys(run_dir):
    assert "Re-executed" not in report.key_results(run_dir)  # no done.json: nothing to compare
    (run_dir / "training").mkdir()
    done = {"training_seconds": 1500.0, "epochs": 18, "steps": 7214, "device": "cpu", "stopped": "max_minutes"}
    (run_dir / "training" / "done.json").write_text(json.dumps(done))
    assert "03 loaded its model (trained 25.0 minutes)" in report.key_results(run_dir)  # 0.5 minutes < 25
    done["training_seconds"] = 20.0
    (run_dir / "training" / "done.json").write_text(json.dumps(done))
    assert "Re-executed" not in report.key_results(run_dir)


@pytest.mark.parametrize(
    "recorded, shown",
    [
        ({"git_commit": "262bf34" + "0" * 33, "git_dirty": False}, ", at commit 262bf34 |"),
        ({"git_commit": "262bf34" + "0" * 33 + "-dirty"}, ", at commit 262bf34+dirty |"),
        ({}, "stopped by its time budget |"),  # a done.json from before training recorded its commit
    ],
)
def test_the_training_row_names_the_commit_that_trained_the_model(run_dir, recorded, shown):
    (run_dir / "training").mkdir()
    done = {"training_seconds": 1500.0, "epochs": 18, "steps": 7214, "device": "cpu", "stopped": "max_minutes"}
    (run_dir / "training" / "done.json").write_text(json.dumps(done | recorded))
    row = next(line for line in report.key_results(run_dir).splitlines() if line.startswith("| training |"))
    assert row.endswith(shown)
    assert "abcdef1" not in row  # the commit notebook 03 ran at is the timing table's, not the model's


def test_a_re_execution_that_read_its_grid_says_so(run_dir):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["notebooks"]["02_grid_search"] = {"duration_s": 12.0, "status": "ok", "git_commit": "abcdef123"}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    machine = pd.DataFrame({"beta": [0.5, 1.0], "free_nats": [0.0, 64.0], "minutes": [0.5, 1.5], "host": ["vm", "vm"]})
    machine.to_csv(run_dir / "tables" / "02_grid_machine.csv", index=False)
    assert (
        "notebook 02 read its grid from its study (the points trained 2.0 minutes), so its minutes"
        in report.key_results(run_dir)
    )
    (run_dir / "training").mkdir()
    done = {"training_seconds": 1500.0, "epochs": 18, "steps": 7214, "device": "cpu", "stopped": "max_minutes"}
    (run_dir / "training" / "done.json").write_text(json.dumps(done))
    assert "trained 2.0 minutes) and notebook 03 loaded its model (trained 25.0 minutes), so their minutes" in (
        report.key_results(run_dir)
    )
    machine.assign(minutes=[0.1, 0.05]).to_csv(run_dir / "tables" / "02_grid_machine.csv", index=False)
    assert "notebook 02 read" not in report.key_results(run_dir)  # 0.2 minutes of notebook 02 > 0.15 trained


def test_a_run_without_manifest_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        report.key_results(tmp_path)


def test_replace_block_keeps_the_text_around_it():
    text = f"intro\n{report.BLOCK_START}\nold\n{report.BLOCK_END}\noutro\n"
    replaced = report.replace_block(text, "new")
    assert replaced == f"intro\n{report.BLOCK_START}\nnew\n{report.BLOCK_END}\noutro\n"
    assert report.readme_block(replaced) == "new"
    with pytest.raises(ValueError, match="markers"):
        report.replace_block("no markers", "new")


def test_the_command_replaces_both_blocks_of_a_readme(run_dir, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.BLOCK_START}\nold\n{report.BLOCK_END}\nmiddle\n")
    with pytest.raises(ValueError, match="thesis-findings:start"):  # nothing written without both blocks
        report.main([str(run_dir), "--readme", str(readme)])
    assert "old" in readme.read_text()
    readme.write_text(readme.read_text() + f"{report.FINDINGS_START}\nold\n{report.FINDINGS_END}\noutro\n")
    assert report.main([str(run_dir), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert report.readme_block(text) == report.key_results(run_dir)
    findings = report.between(text, report.FINDINGS_START, report.FINDINGS_END)
    assert findings.startswith("Not measured in this run: odd 16ths (")  # the fixture has no 05_set_comparison
    assert text.startswith("intro\n") and "\nmiddle\n" in text and text.endswith("\noutro\n")


def test_the_readme_shows_the_committed_reference_run():
    readme = (REPOSITORY / "README.md").read_text()
    assert report.readme_block(readme) == report.key_results(REPOSITORY / "results" / "default"), (
        "README's key results differ from results/default: .venv/bin/python -m musicvae_lib.report results/default "
        "--readme README.md"
    )


def test_the_readme_shows_the_reference_runs_findings():
    readme = (REPOSITORY / "README.md").read_text()
    shown = report.between(readme, report.FINDINGS_START, report.FINDINGS_END)
    assert shown == report.findings_block(REPOSITORY / "results" / "default"), (
        "README's thesis findings differ from results/default: .venv/bin/python -m musicvae_lib.report "
        "results/default --readme README.md"
    )


def test_every_figure_the_readme_shows_is_in_the_reference_run():
    readme = (REPOSITORY / "README.md").read_text()
    shown = re.findall(r"\]\((results/[^)]+\.png)\)", readme)
    assert len(shown) >= 6
    assert [path for path in shown if not (REPOSITORY / path).exists()] == []


def test_the_grid_row_says_whether_the_choice_stands_out_of_the_seed_noise(run_dir):
    choice = {"beta": 1.0, "free_nats": 64.0, "seed_noise": 0.012, "lead": 0.004, "separated": False}
    (run_dir / "grid_search" / "choice.json").write_text(json.dumps(choice))
    assert (
        "1, 64 nats (92.3 bits); not separated from the runner-up (lead 0.004, seed noise 0.012)"
        in report.key_results(run_dir)
    )
    choice |= {"margin": 0.012, "margin_set": 0.01, "eligible_points": 2, "last_rung_points": 3}
    (run_dir / "grid_search" / "choice.json").write_text(json.dumps(choice))
    assert (
        "1, 64 nats (92.3 bits): the lowest negative ELBO among the 2 of 3 points within 0.012 of the best sampling "
        "accuracy; not separated from the runner-up (lead 0.004, margin 0.012: the larger of the seed noise 0.012 "
        "and 0.01)" in report.key_results(run_dir)
    )


def test_the_training_loss_is_read_from_the_finished_runs_identity(run_dir):
    (run_dir / "training").mkdir()
    done = {
        "training_seconds": 60.0,
        "epochs": 1,
        "steps": 10,
        "device": "cpu",
        "stopped": "max_epochs",
        "identity": {"loss_config": asdict(recipe("magenta"))},
    }
    (run_dir / "training" / "done.json").write_text(json.dumps(done))
    assert "| training loss | reconstruction + beta * KL, beta annealed towards 0.2" in report.key_results(run_dir)


def test_two_sample_measures_stand_beside_their_floor(run_dir):
    columns = [name for name in two_sample.TABLE_COLUMNS if name != "tested"]
    nan = float("nan")
    test_row = ["test", 100, nan, nan, nan, nan, nan, nan, 0.087, 0.19, 0.09, 0.5]
    tables = {
        "04_two_sample.csv": [
            test_row,
            ["train", 100, 0.6368, 0.6239, 0.651, 0.01, 0.89, 0.889, 0.9, 0.0, 0.0, 0.9],
            ["reconstructed", 100, 0.627, 0.614, 0.639, 0.01, 0.9, 0.9, 0.5, 0.05, 0.0, 0.7],
            ["T=1", 100, 0.975, 0.972, 0.978, 0.002, 0.827, 0.746, 0.003, 0.25, 0.19, 0.404],
        ],
        "07_two_sample_by_prior.csv": [
            test_row,
            ["train", 100, 0.64, 0.62, 0.65, 0.01, 0.89, 0.89, 0.9, 0.0, 0.0, 0.9],
            ["N(0, I)", 100, 0.982, 0.979, 0.984, 0.002, 0.44, 0.83, 0.0, 0.4, 0.3, 0.1],
            ["mixture as fitted", 100, 0.953, 0.948, 0.958, 0.003, 0.78, 0.83, 0.001, 0.3, 0.2, 0.3],
        ],
    }
    for name, rows in tables.items():
        pd.DataFrame(rows, columns=columns).to_csv(run_dir / "tables" / name, index=False)
    text = report.key_results(run_dir)
    assert (
        "| two-sample AUC against test, 95% interval (0.5 = indistinguishable) | 0.64 (0.62-0.65) |  "
        "| 0.97 (0.97-0.98) |" in text
    )
    assert "| precision / recall against test | 0.89 / 0.89 |  | 0.83 / 0.75 |" in text
    assert "| median distance to the nearest training window (share of steps) |  | 0.19 | 0.25 |" in text
    assert "| closer to training than a test melody (probability; 0.5 = as unseen tunes) |  | 0.50 | 0.40 |" in text
    assert "| measure | train | test | T=1 |" in text  # the reconstructions are no column of the sets' table
    assert (
        "| two-sample AUC against test, greedy reconstructions of a training sample (floor: the sample) | "
        "0.63 (0.61-0.64); floor 0.64 (0.62-0.65) |"
    ) in text
    assert (
        "| two-sample AUC against test at T = 1 by prior, N(0, I) / mixture as fitted (floor: train) "
        "| 0.98 / 0.95 (0.64) |" in text
    )
