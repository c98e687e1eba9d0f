"""The committed reference runs read as a thesis: no machine path, no progress-bar spam, light files.

These tests read ``results/<run>/`` as committed; they check what a reader of the repository meets.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from musicvae_lib import spread
from musicvae_lib.run_folder import DATASET_SUMMARY, DONE_FILE, REPO_DIR, SPLIT_NAMES, split_file
from musicvae_lib.runner import training_data_hash

RUNS = sorted(path.parent for path in REPO_DIR.glob("results/*/manifest.json"))
TEXT_SUFFIXES = {".ipynb", ".json", ".csv", ".md", ".py", ".toml", ".txt", ".log", ".sh"}
# Folders where machines keep checkouts and scratch files; a committed file naming one leaks a machine path.
MACHINE_PATH = re.compile(r"(?<![\w.])/(?:tmp|home|root|work|Users|private|var/folders)/")
MAX_STREAM_OUTPUTS = 3  # per cell: stdout, stderr and a little slack
MAX_TRAINING_NOTEBOOK_BYTES = 2_000_000


def tracked_text_files() -> list[Path]:
    """The committed text files of README.md, musicvae_lib/, notebooks/ and results/."""
    listed = subprocess.run(
        ["git", "-C", str(REPO_DIR), "ls-files", "README.md", "musicvae_lib", "notebooks", "results", "docs"],
        capture_output=True,
        text=True,
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    return [REPO_DIR / name for name in listed.stdout.splitlines() if Path(name).suffix in TEXT_SUFFIXES]


def test_there_are_committed_runs_to_check() -> None:
    assert REPO_DIR / "results" / "default" in RUNS


def test_no_committed_file_points_outside_the_repository_or_to_a_machine_path() -> None:
    offenders = []
    for path in tracked_text_files():
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for pattern in ("../shared", str(REPO_DIR)):
            if pattern in text:
                offenders.append(f"{path.relative_to(REPO_DIR)}: {pattern}")
        match = MACHINE_PATH.search(text)
        if match:
            offenders.append(
                f"{path.relative_to(REPO_DIR)}: ...{text[max(0, match.start() - 40) : match.end() + 40]!r}"
            )
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("run_dir", RUNS, ids=[run.name for run in RUNS])
def test_every_committed_model_was_trained_on_its_runs_dataset_by_both_hashes_definitions(run_dir: Path) -> None:
    """The manifest's two data hashes, re-made from the committed windows as ``runner.HASH_DEFINITIONS`` says."""
    splits = {name: np.load(run_dir / split_file(name)) for name in SPLIT_NAMES}
    whole = hashlib.sha256(b"".join(name.encode() + splits[name].tobytes() for name in SPLIT_NAMES)).hexdigest()
    assert whole == json.loads((run_dir / DATASET_SUMMARY).read_text())["dataset_hash"]
    trained_on = training_data_hash(run_dir)
    assert trained_on != whole
    models = sorted(run_dir.rglob(DONE_FILE))
    assert models, f"{run_dir} holds no finished model"
    for done in models:
        assert json.loads(done.read_text())["identity"]["data_sha256"] == trained_on, done


@pytest.mark.parametrize("run_dir", RUNS, ids=[run.name for run in RUNS])
def test_manifest_names_its_folders_relative_to_the_repository(run_dir: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["run_dir"] == run_dir.relative_to(REPO_DIR).as_posix()
    assert manifest["profile_file"] == f"profiles/{manifest['profile']}.toml"
    for entry in manifest["notebooks"].values():
        assert entry["parameters"]["run_dir"] == f"../{manifest['run_dir']}"
        assert entry["status"] == "ok"


@pytest.mark.parametrize(
    "path",
    sorted(path for run in RUNS for path in run.glob("*.ipynb")),
    ids=lambda path: f"{path.parent.name}/{path.name}",
)
def test_executed_notebook_cells_hold_a_handful_of_stream_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    crowded = {
        index: count
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
        and (count := sum(output.output_type == "stream" for output in cell.outputs)) > MAX_STREAM_OUTPUTS
    }
    assert not crowded, f"cells (index: stream outputs) {crowded}"
    assert "\r" not in "".join(output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", []))


def test_the_training_chapter_stays_light() -> None:
    assert (REPO_DIR / "results" / "default" / "03_training.ipynb").stat().st_size < MAX_TRAINING_NOTEBOOK_BYTES


@pytest.mark.parametrize("run_dir", RUNS, ids=[run.name for run in RUNS])
def test_chapters_open_with_their_title_before_any_code(run_dir: Path) -> None:
    for path in sorted(run_dir.glob("*.ipynb")):
        first = nbformat.read(path, as_version=4).cells[0]
        assert first.cell_type == "markdown" and first.source.lstrip().startswith("# "), path.name


SPREADS = sorted(path.parent.parent for path in REPO_DIR.glob("results/*-seeds/tables/seed_spread.csv"))


@pytest.mark.parametrize("spread_dir", SPREADS, ids=[spread_dir.name for spread_dir in SPREADS])
def test_a_committed_seed_spread_is_what_its_seed_folders_say(spread_dir: Path) -> None:
    """The summary re-made from the committed tables of every seed folder equals the committed summary."""
    committed = pd.read_csv(spread_dir / "tables" / spread.SPREAD_TABLE)
    seeds = [int(column.removeprefix("seed=")) for column in committed.columns if column.startswith("seed=")]
    assert len(seeds) >= 3, f"{spread_dir.name}: a reference spread has at least 3 seeds, found {seeds}"
    remade = spread.spread_tables({seed: spread_dir / f"seed={seed}" for seed in seeds})
    pd.testing.assert_frame_equal(remade.table.reset_index(drop=True), committed, check_dtype=False, rtol=1e-9)
    findings = pd.read_csv(spread_dir / "tables" / spread.FINDINGS_TABLE, keep_default_na=False)
    assert list(remade.findings["finding"]) == list(findings["finding"])
    assert list(remade.findings["holds"]) == list(findings["holds"])
