"""Same profile, same commit, same machine: two runs give the same tables, figures, MIDI and arrays, byte for byte.

Runs ``profiles/repro.toml`` (notebooks 01-07 at sizes that still run every step of them: a grid with two rungs and a
re-run, the scheduled-sampling recipe, every analysis) twice, into two folders, and compares every file of the two run
folders byte for byte, but for the files named in ``EXCLUDED`` (they hold wall times or the run folder's own path) and,
in the files of ``TIMED_COLUMNS`` and ``TIMED_KEYS``, the named wall-time columns and keys (their other columns still
compared as written, their other keys by exact value). Both runs share one window cache: the first parses the corpus
(when the cache is cold), the second reads the cache, so a cache that changed a window would show too.
"""

import csv
import fnmatch
import io
import json
from pathlib import Path

import pytest

from musicvae_lib import run_folder, runner, training

PROFILE = "repro"

# Files (by name, anywhere in the run folder) not compared, and why: each holds a wall time or the run folder's path.
EXCLUDED = {
    run_folder.MANIFEST: "each notebook's start time and duration, the run folder's path, the executed copies' sha256",
    "??_*.ipynb": "papermill's start time and duration of every cell; printed lines name the run folder and minutes",
    "train.log": "a training's printed lines: the run folder's path and the minutes trained",
    training.CHECKPOINT_FILE: "the training clock (elapsed seconds) a resumed run's max_minutes guard goes on from",
    "study.db": "Optuna's SQLite database: each trial's start and end time, and the pid of the process that ran it",
    "02_grid_machine.csv": "where and how long each grid point trained (search.MACHINE_COLUMNS: minutes, host)",
}
# Files compared without their wall-time columns (CSV, the other fields as written) or keys (JSON, the others by exact
# value).
TIMED_COLUMNS = {training.EPOCHS_LOG: training.TIMING_COLUMNS}  # an epoch's seconds and sequences per second
TIMED_KEYS = {training.DONE_FILE: ("training_seconds",)}


def without_columns(text: str, columns: tuple[str, ...]) -> str:
    """The CSV ``text`` with ``columns`` removed; the other fields keep their text as written (no number re-read)."""
    rows = list(csv.reader(io.StringIO(text)))
    keep = [index for index, name in enumerate(rows[0]) if name not in columns]
    assert len(keep) == len(rows[0]) - len(columns), f"expected columns {columns} in {rows[0]}"
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([row[index] for index in keep] for row in rows)
    return out.getvalue()


def comparable(path: Path) -> bytes:
    """What of ``path`` must be equal between the two runs: its bytes, less the wall-time columns or keys it holds."""
    if path.name in TIMED_COLUMNS:
        return without_columns(path.read_text(encoding="utf-8"), TIMED_COLUMNS[path.name]).encode()
    if path.name in TIMED_KEYS:
        record = json.loads(path.read_text(encoding="utf-8"))
        assert set(TIMED_KEYS[path.name]) <= set(record), f"{path} lacks {TIMED_KEYS[path.name]}"
        return json.dumps({key: value for key, value in record.items() if key not in TIMED_KEYS[path.name]}).encode()
    return path.read_bytes()


def compared_files(run_dir: Path) -> set[str]:
    """Every file of ``run_dir`` not ``EXCLUDED``, relative to it."""
    return {
        path.relative_to(run_dir).as_posix()
        for path in run_dir.rglob("*")
        if path.is_file() and not any(fnmatch.fnmatch(path.name, pattern) for pattern in EXCLUDED)
    }


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    """The repro profile run twice from this checkout, into two fresh results folders."""
    folders = []
    for name in ("first", "second"):
        results = tmp_path_factory.mktemp(name)
        assert runner.run(PROFILE, results_dir=results), f"the {name} run of profile {PROFILE!r} failed; see {results}"
        folders.append(results / PROFILE)
    return folders[0], folders[1]


def test_two_runs_of_a_profile_write_the_same_files_byte_for_byte(two_runs):
    first, second = two_runs
    files = compared_files(first)
    assert files == compared_files(second)
    different = sorted(name for name in files if comparable(first / name) != comparable(second / name))
    assert different == [], f"{len(different)} of {len(files)} files differ between two runs: {different}"


def test_the_comparison_covers_every_kind_of_result(two_runs):
    # guards the test itself: an exclusion too wide would leave nothing to compare
    files = compared_files(two_runs[0])
    counts = {
        suffix: sum(name.endswith(suffix) for name in files)
        for suffix in (".csv", ".json", ".npy", ".mid", ".png", ".pt")
    }
    assert all(counts.values()), f"no file of some kinds compared: {counts}"
    tables = {name for name in files if name.startswith("tables/")}
    assert {"tables/02_grid.csv", "tables/03_reconstruction.csv", "tables/07_latent_summary.csv"} <= tables


def test_only_the_named_wall_times_are_left_out_of_the_comparison(tmp_path):
    header = ",".join(training.EPOCH_COLUMNS)
    values = {name: "1.5" for name in training.EPOCH_COLUMNS}
    for name, seconds, loss in (("a", "12.0", "1.5"), ("b", "47.25", "1.5"), ("c", "12.0", "1.50000001")):
        (tmp_path / name).mkdir()
        row = values | {"seconds": seconds, "sequences_per_second": seconds, "train/loss": loss}
        (tmp_path / name / training.EPOCHS_LOG).write_text(
            f"{header}\n{','.join(row[n] for n in training.EPOCH_COLUMNS)}\n"
        )
        (tmp_path / name / training.DONE_FILE).write_text(
            json.dumps({"steps": 7, "training_seconds": float(seconds), "loss": loss})
        )
        (tmp_path / name / "02_grid_machine.csv").write_text(f"minutes\n{seconds}\n")
    a, b, c = (compared_files(tmp_path / name) for name in "abc")
    assert a == b == c == {training.EPOCHS_LOG, training.DONE_FILE}
    for name in a:
        assert comparable(tmp_path / "a" / name) == comparable(tmp_path / "b" / name)  # only wall times differ
        assert comparable(tmp_path / "a" / name) != comparable(tmp_path / "c" / name)  # a result differs
