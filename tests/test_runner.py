"""The runner, on tiny notebooks executed for real by papermill with the python3 kernel."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import papermill
import pytest
from conftest import write_two_cell_notebook

from musicvae_lib import data
from musicvae_lib.run_folder import MissingInputError, data_fingerprint, require_outputs
from musicvae_lib.runner import (
    REPO_DIR,
    ConfigError,
    command_line,
    cpu_name,
    default_results_dir,
    git_state,
    main,
    package_versions,
    parse_override,
    run,
    trained_model,
)

# 01 writes a file and the dataset summary; 02 reads 01's file, so it only succeeds after 01.
# Their parameters cells hold a line with a second "=" (papermill.inspect_notebook drops it) and an annotation.
MAKE = (
    'run_dir = ""\nseed = 0\nlabel = "a"  # a = the default label',
    """
import json, pathlib
out = pathlib.Path(run_dir)
(out / "dataset").mkdir(exist_ok=True)
(out / "dataset" / "summary.json").write_text(json.dumps({"dataset_hash": f"hash-{label}"}))
(out / "made.txt").write_text(f"{label} {seed}")
""",
)
USE = (
    'run_dir = ""\nlabel = "b"\nscale: float = 1',
    """
import pathlib
from musicvae_lib.run_folder import require_outputs
require_outputs(run_dir, ["made.txt"], produced_by="01_make")
made = (pathlib.Path(run_dir) / "made.txt").read_text()
(pathlib.Path(run_dir) / "used.txt").write_text(f"{made} {label} x{scale}")
""",
)
FAIL = ('run_dir = ""', 'raise ValueError("boom")')
AFTER = ('run_dir = ""', 'open(run_dir + "/after.txt", "w").close()')
PROFILE = '[all]\nseed = 7\n\n["01_make"]\nlabel = "x"\n'


def write_notebook(path: Path, notebook: tuple[str, str]) -> None:
    """A notebook of a parameters-tagged cell and one body cell, for the python3 kernel."""
    write_two_cell_notebook(path, *notebook)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository layout with notebooks 01_make and 02_use and a profile ``quick``."""
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))  # outside the project, which may be a git checkout
    root = (tmp_path / "project").resolve()
    (root / "notebooks").mkdir(parents=True)
    (root / "profiles").mkdir()
    write_notebook(root / "notebooks" / "01_make.ipynb", MAKE)
    write_notebook(root / "notebooks" / "02_use.ipynb", USE)
    (root / "profiles" / "quick.toml").write_text(PROFILE)
    return root


def run_cli(project: Path, *args: str) -> int:
    return main(["--profile", "quick", "--notebooks", str(project / "notebooks"), *args])


def manifest(project: Path) -> dict:
    return json.loads((project / "results" / "local" / "quick" / "manifest.json").read_text())


def test_runs_notebooks_in_order_and_records_them_in_the_manifest(project: Path) -> None:
    assert run_cli(project) == 0
    run_dir = project / "results" / "local" / "quick"
    assert (run_dir / "used.txt").read_text() == "x 7 b x1"
    recorded = manifest(project)
    assert list(recorded["notebooks"]) == ["01_make", "02_use"]
    make, use = recorded["notebooks"]["01_make"], recorded["notebooks"]["02_use"]
    relative = "../results/local/quick"  # from notebooks/, where papermill runs: no path of this machine
    assert make["parameters"] == {"seed": 7, "label": "x", "run_dir": relative}
    assert use["parameters"] == {"run_dir": relative}  # [all] seed only where declared
    assert (recorded["run_dir"], recorded["profile_file"]) == ("results/local/quick", "profiles/quick.toml")
    assert (make["seed"], use["seed"]) == (7, None)
    assert (make["status"], make["error"], use["status"]) == ("ok", None, "ok")
    assert (make["dataset_hash"], use["dataset_hash"]) == ("hash-x", "hash-x")
    assert make["notebook"] == "notebooks/01_make.ipynb" and make["executed"] == "01_make.ipynb"
    assert [file["path"] for file in make["files"]] == ["dataset/summary.json", "made.txt"]
    assert [file["path"] for file in use["files"]] == ["used.txt"]
    for file in make["files"] + use["files"]:
        content = (run_dir / file["path"]).read_bytes()
        assert (file["size_bytes"], file["sha256"]) == (len(content), hashlib.sha256(content).hexdigest())
    started = [dt.datetime.fromisoformat(entry["started"]) for entry in (make, use)]
    assert started[0] <= started[1] and started[0].utcoffset() == dt.timedelta(0)
    assert use["duration_s"] > 0
    executed = nbformat.read(run_dir / "01_make.ipynb", as_version=4)
    injected = [cell for cell in executed.cells if "injected-parameters" in cell.metadata.get("tags", [])]
    assert 'label = "x"' in injected[0].source
    assert make["executed_sha256"] == hashlib.sha256((run_dir / "01_make.ipynb").read_bytes()).hexdigest()
    assert str(project) not in (run_dir / "01_make.ipynb").read_text() + json.dumps(recorded)
    assert (recorded["profile"], recorded["profile_toml"]) == ("quick", PROFILE)
    assert recorded["packages"]["papermill"] == papermill.__version__
    assert recorded["python"] == sys.version
    assert (recorded["git_commit"], recorded["git_dirty"]) == (None, None)  # tmp_path is no git checkout


def test_finished_notebooks_run_again_only_with_force(project: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_cli(project) == 0
    first = manifest(project)["notebooks"]
    assert run_cli(project, "--only", "2", "-p", "scale=3") == 0
    assert "skip 02_use: finished ok" in capsys.readouterr().out
    assert manifest(project)["notebooks"] == first
    assert (project / "results" / "local" / "quick" / "used.txt").read_text() == "x 7 b x1"

    assert run_cli(project, "--only", "02", "--force", "-p", "scale=3") == 0
    again = manifest(project)["notebooks"]
    assert again["01_make"] == first["01_make"]
    assert again["02_use"]["parameters"]["scale"] == 3
    assert (project / "results" / "local" / "quick" / "used.txt").read_text() == "x 7 b x3"


def test_running_a_notebook_again_makes_later_ones_stale_until_they_rerun(
    project: Path, capsys: pytest.CaptureFixture
) -> None:
    assert run_cli(project) == 0
    assert run_cli(project, "--only", "01", "--force", "-p", "label=z") == 0
    use = manifest(project)["notebooks"]["02_use"]
    assert use["status"] == "stale" and use["stale_because"].startswith("01_make ran again")
    capsys.readouterr()
    assert run_cli(project) == 0
    assert "skip 01_make" in capsys.readouterr().out
    assert manifest(project)["notebooks"]["02_use"]["status"] == "ok"
    assert (project / "results" / "local" / "quick" / "used.txt").read_text() == "z 7 b x1"


def test_only_refuses_before_running_anything_when_an_earlier_notebook_has_not_finished(
    project: Path, capsys: pytest.CaptureFixture
) -> None:
    assert run_cli(project, "--only", "02") == 2
    error = capsys.readouterr().err
    assert "01_make (never run)" in error
    assert f"Run {project / 'notebooks' / '01_make.ipynb'} first" in error
    assert f"./study.sh --profile quick --only 01 --notebooks {project / 'notebooks'}" in error
    assert not (project / "results").exists()


def test_a_failed_notebook_is_kept_reported_and_stops_the_run(project: Path, capsys: pytest.CaptureFixture) -> None:
    write_notebook(project / "notebooks" / "03_fail.ipynb", FAIL)
    write_notebook(project / "notebooks" / "04_after.ipynb", AFTER)
    run_dir = project / "results" / "local" / "quick"
    assert run_cli(project) == 1
    error = capsys.readouterr().err
    assert "03_fail failed: ValueError: boom" in error
    assert f"executed copy with the error: {run_dir / '03_fail.ipynb'}" in error
    executed = nbformat.read(run_dir / "03_fail.ipynb", as_version=4)
    assert any(output.get("ename") == "ValueError" for cell in executed.cells for output in cell.get("outputs", []))
    recorded = manifest(project)["notebooks"]
    assert recorded["03_fail"]["status"] == "failed"
    assert recorded["03_fail"]["error"].startswith("ValueError: boom")
    assert "04_after" not in recorded
    assert not (run_dir / "04_after.ipynb").exists() and not (run_dir / "after.txt").exists()

    assert run_cli(project, "--only", "04") == 2
    assert "03_fail (failed)" in capsys.readouterr().err


def test_overrides_reach_every_selected_notebook_that_declares_them(project: Path) -> None:
    assert run_cli(project, "-p", "label=y", "-p", "scale=2.5") == 0
    recorded = manifest(project)["notebooks"]
    assert recorded["01_make"]["parameters"]["label"] == "y"
    assert {key: recorded["02_use"]["parameters"][key] for key in ("label", "scale")} == {"label": "y", "scale": 2.5}
    assert (project / "results" / "local" / "quick" / "used.txt").read_text() == "y 7 y x2.5"


def test_an_override_no_selected_notebook_declares_is_refused(project: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_cli(project, "--only", "01", "-p", "scale=2") == 2
    assert "no selected notebook declares 'scale'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, expected",
    [
        ("max_tunes=300", ("max_tunes", 300)),
        ('collections=["essenFolksong", "miscFolk"]', ("collections", ["essenFolksong", "miscFolk"])),
        ("split_fractions=[0.8,0.1,0.1]", ("split_fractions", [0.8, 0.1, 0.1])),
        ("flag=true", ("flag", True)),
        ("limit=null", ("limit", None)),
        ('table={"a": 1}', ("table", {"a": 1})),
        ("source = 'folk'", ("source", "folk")),
        ("source=folk", ("source", "folk")),
        ("source=/data/midi", ("source", "/data/midi")),
    ],
)
def test_parse_override_reads_toml_then_json_then_a_string(text: str, expected: tuple) -> None:
    assert parse_override(text) == expected


@pytest.mark.parametrize("text", ["max_tunes", "=3", "max-tunes=3", "run_dir=/tmp/x"])
def test_parse_override_refuses_malformed_input(text: str) -> None:
    with pytest.raises(ConfigError, match="-p"):
        parse_override(text)


@pytest.mark.parametrize(
    "profile, fragments",
    [
        (PROFILE + "typo = 1\n", ["01_make", "'typo'", "it declares: label, run_dir, seed"]),
        (PROFILE + '["01_mak"]\nlabel = "y"\n', ['["01_mak"] names no notebook']),
        ("[all]\nsed = 7\n", ["[all] sets 'sed', which no notebook declares"]),
        ('[all]\nrun_dir = "/tmp"\n', ["sets 'run_dir'"]),
        ("seed = 7\n", ["top-level key 'seed'"]),
        ("[all\n", ["not valid TOML"]),
    ],
)
def test_a_profile_key_no_notebook_takes_is_an_error(project: Path, profile: str, fragments: list[str]) -> None:
    path = project / "profiles" / "quick.toml"
    path.write_text(profile)
    with pytest.raises(ConfigError) as raised:
        run("quick", project / "notebooks")
    for fragment in [f"profile {path}", *fragments]:
        assert fragment in str(raised.value)
    assert not (project / "results").exists()


def test_an_unknown_profile_or_notebook_number_is_refused(project: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--profile", "full", "--notebooks", str(project / "notebooks")]) == 2
    assert f"no profile file {project / 'profiles' / 'full.toml'}; profiles in" in capsys.readouterr().err
    assert run_cli(project, "--only", "01,07") == 2
    assert "--only 07: no such notebook; notebooks: 01_make, 02_use" in capsys.readouterr().err


def test_git_commit_is_recorded_and_the_results_folder_does_not_make_the_tree_dirty(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(variable, "test@example.org")
    for command in (["init", "-q"], ["add", "-A"], ["-c", "commit.gpgsign=false", "commit", "-qm", "notebooks"]):
        subprocess.run(["git", *command], cwd=project, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, check=True, capture_output=True, text=True)
    assert run_cli(project) == 0
    recorded = manifest(project)
    assert (recorded["git_commit"], recorded["git_dirty"]) == (head.stdout.strip(), False)
    assert recorded["notebooks"]["02_use"]["git_dirty"] is False  # results/quick/ was full by then
    (project / "notes.txt").write_text("uncommitted")
    assert git_state(project / "notebooks", project / "results") == {
        "git_commit": head.stdout.strip(),
        "git_dirty": True,
    }


def test_require_outputs_names_the_missing_files_and_the_command_to_make_them(tmp_path: Path) -> None:
    run_dir = tmp_path / "results" / "quick"
    run_dir.mkdir(parents=True)
    (run_dir / "present.txt").touch()
    require_outputs(run_dir, ["present.txt"], "01_dataset")
    with pytest.raises(MissingInputError) as raised:
        require_outputs(run_dir, ["present.txt", "dataset/windows.npz"], "notebooks/01_dataset.ipynb")
    assert isinstance(raised.value, FileNotFoundError)
    message = str(raised.value)
    assert f"missing in the run folder {run_dir}: dataset/windows.npz." in message
    assert "written by notebooks/01_dataset.ipynb" in message
    assert f"./study.sh --profile quick --only 01 --results {tmp_path / 'results'}" in message


@pytest.mark.parametrize("results, option", [("results/local", ""), ("results", " --reference")])
def test_require_outputs_omits_default_folders_from_the_command(results: str, option: str) -> None:
    with pytest.raises(MissingInputError) as raised:
        require_outputs(REPO_DIR / results / "quick", ["no-such-file.npz"], "01_dataset")
    assert str(raised.value).endswith(f"\n  ./study.sh --profile quick --only 01{option}")


def test_a_users_run_never_touches_the_reference_run_which_only_reference_writes(
    project: Path, capsys: pytest.CaptureFixture
) -> None:
    assert run_cli(project, "--reference") == 0
    reference = project / "results" / "quick"
    before = {path: path.read_bytes() for path in reference.rglob("*") if path.is_file()}
    assert run_cli(project, "--only", "01", "--force") == 0  # the README's example of re-running one chapter
    assert {path: path.read_bytes() for path in reference.rglob("*") if path.is_file()} == before
    assert (project / "results" / "local" / "quick" / "made.txt").read_text() == "x 7"
    assert capsys.readouterr().out.rstrip().endswith(f"in {project / 'results' / 'local' / 'quick'}/")
    assert run_cli(project, "--reference", "--results", str(project / "elsewhere")) == 2


def test_executed_copies_keep_each_progress_bar_at_its_last_state_in_one_output(project: Path) -> None:
    bars = (
        'import sys\nfor i in range(500):\n    print(f"\\r{i}%", end="", file=sys.stderr, flush=True)\n'
        'print("\\rdone", file=sys.stderr)\nprint("a")\nprint("b")'
    )
    write_notebook(project / "notebooks" / "03_bars.ipynb", ('run_dir = ""', bars))
    assert run_cli(project) == 0
    executed = nbformat.read(project / "results" / "local" / "quick" / "03_bars.ipynb", as_version=4)
    outputs = executed.cells[-1].outputs
    assert [(output.name, output.text) for output in outputs] == [("stderr", "done\n"), ("stdout", "a\nb\n")]


def test_require_outputs_refuses_a_producer_that_is_no_notebook(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="`produced_by` must name a notebook"):
        require_outputs(tmp_path, [], "dataset")


def readme_study_commands() -> list[list[str]]:
    """The ``./study.sh`` commands of the README's code blocks, as study.sh passes them on."""
    readme = (REPO_DIR / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    commands = []
    for line in "\n".join(blocks).splitlines():
        if line.startswith("./study.sh"):
            words = shlex.split(line, comments=True)[1:]
            commands.append(words if "--profile" in words else ["--profile", "default", *words])
    return commands


def test_the_readmes_example_commands_leave_the_committed_runs_alone() -> None:
    commands = readme_study_commands()
    assert len(commands) >= 4  # the two commands' study.sh, one chapter again, hier16, your own MIDI
    for words in commands:
        args = command_line().parse_args(words)
        assert not args.reference and args.results is None, words
        assert default_results_dir(args.notebooks, args.reference) == REPO_DIR / "results" / "local"


def test_a_profile_of_some_chapters_runs_those_and_needs_no_other(project: Path, capsys: pytest.CaptureFixture) -> None:
    write_notebook(project / "notebooks" / "03_after.ipynb", AFTER)
    (project / "profiles" / "some.toml").write_text('notebooks = ["01", "03"]\n' + PROFILE)
    assert main(["--profile", "some", "--notebooks", str(project / "notebooks"), "--only", "03"]) == 2
    assert "01_make (never run)" in capsys.readouterr().err  # 02 is not the profile's, so not asked for
    assert main(["--profile", "some", "--notebooks", str(project / "notebooks")]) == 0
    run_dir = project / "results" / "local" / "some"
    assert (run_dir / "after.txt").exists() and not (run_dir / "used.txt").exists()
    assert list(json.loads((run_dir / "manifest.json").read_text())["notebooks"]) == ["01_make", "03_after"]
    (project / "profiles" / "bad.toml").write_text('notebooks = ["01", "09"]\n' + PROFILE)
    assert main(["--profile", "bad", "--notebooks", str(project / "notebooks")]) == 2
    assert "`notebooks` names 09, no such notebook" in capsys.readouterr().err


# --- provenance of data and models: three chapters named as the study's, each writing by hand what the real one writes
TINY_SPLITS = {"train": (8, 0), "valid": (4, 5), "test": (4, 11)}  # name -> (windows, offset): uint8 [n, 32]
DATASET = (
    'run_dir = ""',
    f"""
import json, pathlib
import numpy as np
from musicvae_lib import data
out = pathlib.Path(run_dir) / "dataset"
out.mkdir(parents=True, exist_ok=True)
splits = {{
    name: data.Split(name, ((np.arange(n * 32) + offset) % 90).astype(np.uint8).reshape(n, 32), np.arange(n), n, 0)
    for name, (n, offset) in {TINY_SPLITS!r}.items()
}}
for name, split in splits.items():
    np.save(out / f"{{name}}.npy", split.windows)
(out / "summary.json").write_text(json.dumps({{"dataset_hash": data.dataset_hash(splits)}}))
""",
)
# done.json as training writes it, with the commit (a newer trainer) or without it (one from before it recorded it)
GRID = (
    'run_dir = ""\ntrained_on = ""',
    """
import json, pathlib
point = pathlib.Path(run_dir) / "grid_search" / "beta_lambda" / "beta=1_lambda=0"
point.mkdir(parents=True, exist_ok=True)
(point / "done.json").write_text(json.dumps({"git_commit": "1" * 40, "git_dirty": False,
                                              "identity": {"data_sha256": trained_on}}))
""",
)
TRAINING = (
    'run_dir = ""\ntrained_on = ""\ncommit = ""',
    """
import json, pathlib
folder, baseline = pathlib.Path(run_dir) / "training", pathlib.Path(run_dir) / "training_baseline"
for path in (folder, baseline):
    path.mkdir(exist_ok=True)
if not (folder / "done.json").exists():  # as train_or_load: a finished model is re-used, its done.json kept
    (folder / "done.json").write_text(json.dumps({"git_commit": commit, "identity": {"data_sha256": trained_on}}))
(baseline / "done.json").write_text(json.dumps({"identity": {"data_sha256": "0" * 64}}))
""",
)


def tiny_windows(name: str) -> np.ndarray:
    """The windows DATASET's notebook writes for split ``name``."""
    n, offset = TINY_SPLITS[name]
    return ((np.arange(n * 32) + offset) % 90).astype(np.uint8).reshape(n, 32)


@pytest.fixture
def study(project: Path) -> Path:
    """``project`` with the study's three first chapters instead: they write a dataset and trained models' done.json."""
    for path in (project / "notebooks").glob("*.ipynb"):
        path.unlink()
    write_notebook(project / "notebooks" / "01_dataset.ipynb", DATASET)
    write_notebook(project / "notebooks" / "02_grid_search.ipynb", GRID)
    write_notebook(project / "notebooks" / "03_training.ipynb", TRAINING)
    trained_on = data_fingerprint(tiny_windows("train"), tiny_windows("valid"))
    (project / "profiles" / "quick.toml").write_text(
        f'[all]\ntrained_on = "{trained_on}"\n\n["03_training"]\ncommit = "{"3" * 40}-dirty"\n'
    )
    return project


def test_the_manifest_names_the_commit_that_trained_each_model_apart_from_the_chapters_own(study: Path) -> None:
    assert run_cli(study) == 0
    assert run_cli(study, "--only", "03", "--force", "-p", f"commit={'9' * 40}") == 0  # re-executed: model re-used
    recorded = manifest(study)["notebooks"]
    assert "trained_models" not in recorded["01_dataset"]  # a chapter that trains nothing
    assert recorded["02_grid_search"]["trained_models"] == {
        "grid_search/beta_lambda/beta=1_lambda=0": {
            "trained_at_commit": "1" * 40,
            "trained_dirty": False,
            "data_sha256": recorded["02_grid_search"]["training_data_sha256"],
            "same_data_as_dataset": True,
        }
    }
    training = recorded["03_training"]
    assert training["git_commit"] is None  # the chapter's own commit: tmp_path is no git checkout
    assert training["trained_models"]["training"] == {
        "trained_at_commit": "3" * 40,  # the model's, from its done.json: not the re-execution's 999...
        "trained_dirty": True,
        "data_sha256": training["training_data_sha256"],
        "same_data_as_dataset": True,
    }
    assert training["trained_models"]["training_baseline"] == {
        "trained_at_commit": None,
        "trained_dirty": None,
        "trained_at_commit_note": "not recorded (done.json predates it)",
        "data_sha256": "0" * 64,
        "same_data_as_dataset": False,
    }


def test_the_manifest_records_both_data_hashes_and_what_each_covers(study: Path) -> None:
    assert run_cli(study, "--only", "01") == 0
    recorded = manifest(study)
    entry = recorded["notebooks"]["01_dataset"]
    splits = {name: data.Split(name, tiny_windows(name), np.arange(3), 3, 0) for name in TINY_SPLITS}
    assert entry["dataset_hash"] == data.dataset_hash(splits)  # train, valid and test
    assert entry["training_data_sha256"] == data_fingerprint(tiny_windows("train"), tiny_windows("valid"))
    assert entry["dataset_hash"] != entry["training_data_sha256"]
    splits["test"] = data.Split("test", tiny_windows("test")[:2], np.arange(2), 2, 0)  # the test split: only one moves
    assert data.dataset_hash(splits) != entry["dataset_hash"]
    assert set(recorded["hash_definitions"]) == {"dataset_hash", "training_data_sha256"}
    assert "test" in recorded["hash_definitions"]["dataset_hash"]
    assert "train and valid windows only" in recorded["hash_definitions"]["training_data_sha256"]


def test_each_chapter_keeps_the_versions_and_machine_it_ran_with(project: Path) -> None:
    assert run_cli(project) == 0
    path = project / "results" / "local" / "quick" / "manifest.json"
    recorded = json.loads(path.read_text())
    here = {"python": sys.version, "platform": platform.platform(), "cpu": cpu_name()}
    for entry in recorded["notebooks"].values():
        assert {key: entry["environment"][key] for key in here} == here
        assert entry["environment"]["packages"]["papermill"] == papermill.__version__
        assert entry["environment"]["packages"]["nbformat"] == nbformat.__version__
    # as if 01 had run on another machine with another torch: re-running 02 leaves 01's record alone
    other = {"python": "3.12.1", "platform": "Darwin", "cpu": "Apple M2, 8 cores", "packages": {"torch": "2.5.0"}}
    recorded["notebooks"]["01_make"]["environment"] = other
    path.write_text(json.dumps(recorded))
    assert run_cli(project, "--only", "02", "--force") == 0
    again = json.loads(path.read_text())
    assert again["notebooks"]["01_make"]["environment"] == other
    assert again["notebooks"]["02_use"]["environment"]["python"] == sys.version
    assert (again["python"], again["packages"]) == (sys.version, package_versions())  # the top-level summary stays


def test_a_model_resumed_under_another_commit_lists_each_sessions_commit() -> None:
    one = {"git_commit": "1" * 40, "git_dirty": False, "from_step": 0}
    two = {"git_commit": "2" * 40, "git_dirty": False, "from_step": 6600}
    done = {"git_commit": "2" * 40, "git_dirty": False, "session_commits": [one, two], "identity": {}}
    record = trained_model(done, None)
    assert record["trained_at_commit"] == "2" * 40  # the last session's, which wrote the model
    assert record["trained_in_sessions"] == [one, two]
    same_code = done | {"session_commits": [one, one | {"from_step": 6600}]}
    assert "trained_in_sessions" not in trained_model(same_code, None)  # one commit: nothing to tell apart
