"""The seed spread's runner on a project of small real notebooks (papermill, a python3 kernel): 01 makes the data
and its hash, 02 a grid with a model and a checkpoint, 03 a model and a table from the seed it is passed."""

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from conftest import write_two_cell_notebook

from musicvae_lib import seed_spread, spread
from musicvae_lib.profiles import ConfigError

PARAMETERS = 'seed = 0\nscale = 1.0\nrun_dir = "."\n'
NOTEBOOKS = {
    "01_dataset": """from pathlib import Path
Path(run_dir, "dataset").mkdir(parents=True, exist_ok=True)
Path(run_dir, "dataset", "summary.json").write_text('{"dataset_hash": "data-%d"}' % seed)
Path(run_dir, "dataset", "train.npy").write_bytes(bytes(range(7)))""",
    "02_grid_search": """from pathlib import Path
point = Path(run_dir, "grid_search", "beta_lambda", "beta=1")
point.mkdir(parents=True, exist_ok=True)
Path(run_dir, "grid_search", "choice.json").write_text('{"beta": 1.0}')
(point / "model.pt").write_bytes(b"model")
(point / "checkpoint.pt").write_bytes(b"resume state")""",
    "03_training": """from pathlib import Path
import json
assert (Path(run_dir) / "grid_search" / "beta_lambda" / "beta=1" / "model.pt").read_bytes() == b"model"
data = json.loads((Path(run_dir) / "dataset" / "summary.json").read_text())["dataset_hash"]
Path(run_dir, "tables").mkdir(exist_ok=True)
Path(run_dir, "tables", "03_reconstruction.csv").write_text(
    f"metric,value,unit,data\\ngreedy accuracy (z = mu),{(0.9 + seed / 100) * scale},share of steps,{data}\\n"
)""",
}
PROFILE = '[all]\nseed = 5\n\n["01_dataset"]\n'


def write_notebook(path: Path, body: str) -> None:
    write_two_cell_notebook(path, PARAMETERS, body)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository layout with notebooks 01-03 and a profile ``tiny`` whose [all] seed is 5."""
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    root = (tmp_path / "project").resolve()
    (root / "notebooks").mkdir(parents=True)
    (root / "profiles").mkdir()
    for stem, body in NOTEBOOKS.items():
        write_notebook(root / "notebooks" / f"{stem}.ipynb", body)
    (root / "profiles" / "tiny.toml").write_text(PROFILE)
    return root


def run_cli(project: Path, *seeds: str, options: tuple[str, ...] = ()) -> int:
    return seed_spread.main(
        ["--profile", "tiny", "--notebooks", str(project / "notebooks"), *options, "--seeds", *seeds]
    )


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())


@pytest.fixture
def spread_run(project: Path, capsys: pytest.CaptureFixture) -> Path:
    """The tiny profile's spread over seeds 0 and 1, made once."""
    assert run_cli(project, "0", "1") == 0
    capsys.readouterr()
    return project / "results" / "local" / "tiny-seeds"


def test_the_data_is_made_once_and_each_seed_trains_with_its_own_seed(spread_run: Path) -> None:
    common = spread_run / "common"
    assert set(manifest(common)["notebooks"]) == {"01_dataset", "02_grid_search"}
    assert manifest(common)["notebooks"]["01_dataset"]["parameters"]["seed"] == 5  # the profile's seed
    for seed in (0, 1):
        seed_dir = spread_run / f"seed={seed}"
        entries = manifest(seed_dir)["notebooks"]
        assert entries["01_dataset"]["shared_from"] == "../common"
        assert entries["01_dataset"]["started"] == manifest(common)["notebooks"]["01_dataset"]["started"]
        assert entries["03_training"]["parameters"]["seed"] == seed
        assert entries["03_training"]["parameters"]["run_dir"] == f"../results/local/tiny-seeds/seed={seed}"
        table = pd.read_csv(seed_dir / "tables" / "03_reconstruction.csv")
        assert table["data"].tolist() == ["data-5"]  # the common data
        model = seed_dir / "grid_search" / "beta_lambda" / "beta=1" / "model.pt"
        assert os.path.samefile(model, common / "grid_search" / "beta_lambda" / "beta=1" / "model.pt")
        assert not (model.parent / "checkpoint.pt").exists()
        assert not os.path.samefile(seed_dir / "dataset" / "train.npy", common / "dataset" / "train.npy")  # a copy
    numbers = pd.read_csv(spread_run / "tables" / spread.SPREAD_TABLE).set_index("measure")
    assert numbers.loc["greedy accuracy (z = mu)", ["min", "max", "seed=0", "seed=1"]].tolist() == pytest.approx(
        [0.9, 0.91, 0.9, 0.91]
    )
    findings = pd.read_csv(spread_run / "tables" / spread.FINDINGS_TABLE).set_index("finding")
    assert findings.loc["greedy accuracy reaches the target 0.95", "holds"] == "none"


def test_a_finished_seed_is_skipped_and_a_new_seed_runs_alone(
    project: Path, spread_run: Path, capsys: pytest.CaptureFixture
) -> None:
    executed = {seed: (spread_run / f"seed={seed}" / "03_training.ipynb").stat().st_mtime_ns for seed in (0, 1)}
    started = manifest(spread_run / "seed=0")["notebooks"]["03_training"]["started"]
    assert run_cli(project, "0", "1", "2") == 0
    out = capsys.readouterr().out
    assert "seed=0: notebooks 03 finished ok, skipped" in out
    assert "seed=1: notebooks 03 finished ok, skipped" in out
    assert "[seed 3 of 3, " in out and "seed=2: notebooks 03 with seed = 2" in out
    assert "skip 01_dataset: finished ok" in out  # the common data is not made again
    assert manifest(spread_run / "seed=0")["notebooks"]["03_training"]["started"] == started
    for seed, mtime in executed.items():
        assert (spread_run / f"seed={seed}" / "03_training.ipynb").stat().st_mtime_ns == mtime
    numbers = pd.read_csv(spread_run / "tables" / spread.SPREAD_TABLE).set_index("measure")
    assert numbers.loc["greedy accuracy (z = mu)", "seeds"] == 3


def test_a_seed_folder_of_other_data_is_refused_and_kept(
    project: Path, spread_run: Path, capsys: pytest.CaptureFixture
) -> None:
    summary = spread_run / "seed=1" / "dataset" / "summary.json"
    summary.write_text('{"dataset_hash": "other"}')
    assert run_cli(project, "0", "1") == 2  # finished, but not on the spread's data
    assert "seed=1/dataset has dataset hash other, " in capsys.readouterr().err
    assert summary.read_text() == '{"dataset_hash": "other"}'
    (spread_run / "seed=1" / "manifest.json").write_text(json.dumps({"notebooks": {}}))  # as if 03 had not finished
    assert run_cli(project, "0", "1") == 2
    assert summary.read_text() == '{"dataset_hash": "other"}'


@pytest.mark.parametrize("seeds", [["3"], ["1", "1"]])
def test_a_spread_needs_two_different_seeds(project: Path, seeds: list[str], capsys: pytest.CaptureFixture) -> None:
    assert run_cli(project, *seeds) == 2
    assert "--seeds takes at least two different seeds" in capsys.readouterr().err
    assert not (project / "results").exists()


def test_a_profile_without_training_makes_no_spread(project: Path) -> None:
    (project / "profiles" / "data.toml").write_text('notebooks = ["01"]\n' + PROFILE)
    with pytest.raises(ConfigError, match="a seed spread needs 01 .the data. and 03"):
        seed_spread.run_spread("data", [0, 1], project / "out", project / "notebooks")


def test_the_spread_goes_beside_the_runs_and_reference_cannot_go_elsewhere(
    project: Path, capsys: pytest.CaptureFixture
) -> None:
    notebooks = project / "notebooks"
    assert seed_spread.spread_dir("tiny", notebooks) == project / "results" / "local" / "tiny-seeds"
    assert seed_spread.spread_dir("tiny", notebooks, reference=True) == project / "results" / "tiny-seeds"
    arguments = ["--profile", "tiny", "--notebooks", str(notebooks), "--reference", "--results", str(project)]
    assert seed_spread.main(arguments) == 2
    assert "--reference writes results/<profile>-seeds/; it cannot be combined with --results" in (
        capsys.readouterr().err
    )


def test_parameters_go_to_the_seed_chapters_and_the_seed_is_not_one(
    project: Path, capsys: pytest.CaptureFixture
) -> None:
    assert run_cli(project, "0", "1", options=("-p", "scale=0.5")) == 0
    out = project / "results" / "local" / "tiny-seeds"
    numbers = pd.read_csv(out / "tables" / spread.SPREAD_TABLE).set_index("measure")
    assert numbers.loc["greedy accuracy (z = mu)", ["seed=0", "seed=1"]].tolist() == pytest.approx([0.45, 0.455])
    assert "scale" not in manifest(out / "common")["notebooks"]["01_dataset"]["parameters"]
    assert manifest(out / "seed=1")["notebooks"]["03_training"]["parameters"]["scale"] == 0.5
    assert run_cli(project, "0", "1", options=("-p", "seed=3")) == 2
    assert "-p seed=... is not allowed in a seed spread" in capsys.readouterr().err
