import ast
import inspect
import json
import math
import os
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import asdict, replace
from pathlib import Path

import nbformat
import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState

from musicvae_lib import search, shared_study
from musicvae_lib.model import preset
from musicvae_lib.train import TrainConfig
from conftest import scale_windows

REPOSITORY = Path(__file__).parent.parent
NOTEBOOK = REPOSITORY / "notebooks" / "02_grid_search.ipynb"
# 2 x 2 grid of one-epoch trials of the tiny model: 2 steps of 16 windows, a checkpoint after each
SPEC = search.GridSpec(
    betas=(1.0, 0.5),  # unsorted on purpose: the spec sorts
    free_nats=(16.0, 0.0),
    model_config=preset("tiny"),
    train_config=TrainConfig(max_epochs=1, batch_size=16, checkpoint_every_steps=1, bf16=False),
    eval_windows=16,
)
POINTS = [(0.5, 0.0), (0.5, 16.0), (1.0, 0.0), (1.0, 16.0)]
TRAIN, VALID = scale_windows(32, 0), scale_windows(24, 1)


def write_dataset(run_dir: Path) -> None:
    (run_dir / "dataset").mkdir(parents=True)
    np.save(run_dir / "dataset" / "train.npy", TRAIN)
    np.save(run_dir / "dataset" / "valid.npy", VALID)


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPOSITORY)}


def trials_of(run_dir: Path, storage=None) -> list[optuna.trial.FrozenTrial]:
    study, _ = search.load_study(run_dir, storage)
    return study.get_trials()


def complete_points(trials) -> list[tuple[float, float]]:
    return sorted(search.point_of(t) for t in trials if t.state == TrialState.COMPLETE)


def done(folder: str | Path) -> dict:
    return json.loads((Path(folder) / "done.json").read_text())


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    run_dir = tmp_path_factory.mktemp("search")
    return run_dir, search.run_grid_search(run_dir, SPEC, TRAIN, VALID, device="cpu")


# --- the search -----------------------------------------------------------------------------------


def test_every_grid_point_completes_with_its_metrics(finished):
    run_dir, table = finished
    assert list(zip(table["beta"], table["free_nats"])) == POINTS
    assert (table["state"] == "COMPLETE").all() and (table["trials"] == 1).all()
    assert (run_dir / "grid_search" / "study.db").exists()
    accuracies = table[["teacher_forced_accuracy", "sampling_accuracy", "greedy_accuracy"]]
    assert ((accuracies >= 0) & (accuracies <= 1)).all().all()
    assert np.allclose(table["negative_elbo_nats"], table["reconstruction_nats"] + table["kl_bits"] * math.log(2))
    assert (table["reconstruction_nats"] > 0).all() and (table["epochs"] == 1).all() and (table["eval_windows"] == 16).all()
    assert np.allclose(table["free_bits"], table["free_nats"] / math.log(2))
    study, _ = search.load_study(run_dir)
    assert sorted(t.value for t in study.trials) == sorted(table["negative_elbo_nats"])
    for row in table.itertuples():  # each folder holds the model of its own point
        saved = torch.load(run_dir / row.folder / "model.pt", weights_only=True)["loss_config"]
        assert (saved["beta"], saved["free_nats"]) == (row.beta, row.free_nats)
        assert run_dir / row.folder == run_dir / "grid_search" / "beta_lambda" / f"beta={row.beta:g}_lambda={row.free_nats:g}"
        assert "Stopped by max_epochs" in (run_dir / row.folder / "train.log").read_text()  # train's lines go to the log


def test_the_shown_table_is_short_and_rounded(finished):
    _, table = finished
    text = search.shown_table(table).to_string(delimiter="|").splitlines()
    assert text[0].split("|") == [short for short, _ in search.SHOWN_COLUMNS.values()]
    first = dict(zip(text[0].split("|"), text[1].split("|")))
    assert first["beta"] == "0.5" and first["lambda"] == "0" and first["-ELBO"] == f"{table['negative_elbo_nats'][0]:.1f}"
    assert first["acc. sampl."] == f"{table['sampling_accuracy'][0]:.3f}" and first["state"] == "COMPLETE"


def test_results_table_reads_the_same_table_from_storage(finished):
    run_dir, table = finished
    read = search.results_table(run_dir)
    assert list(read.columns) == [
        "beta", "free_nats", "free_bits", "state", "trial", "trials", *search.METRIC_COLUMNS, "host", "folder",
    ]
    pd.testing.assert_frame_equal(read, table)


def test_a_second_search_trains_nothing_and_adds_no_trial(finished, capsys):
    run_dir, table = finished
    files = [run_dir / folder / name for folder in table["folder"] for name in ("done.json", "steps.csv", "model.pt")]
    before = [path.stat().st_mtime_ns for path in files]
    again = search.run_grid_search(run_dir, SPEC, TRAIN, VALID, device="cpu")
    assert [path.stat().st_mtime_ns for path in files] == before
    assert len(trials_of(run_dir)) == 4
    pd.testing.assert_frame_equal(again, table)
    assert "4 complete" in capsys.readouterr().out


def test_queued_points_are_run_and_not_queued_again(tmp_path):
    search.run_grid_search(tmp_path, SPEC, TRAIN, VALID, max_trials=0)
    study, _ = search.load_study(tmp_path)
    distributions = {
        "beta": optuna.distributions.CategoricalDistribution(SPEC.betas),
        "free_nats": optuna.distributions.CategoricalDistribution(SPEC.free_nats),
    }
    for beta, free_nats in POINTS:  # as search.requeue leaves them when a worker is killed before taking them
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING, params={"beta": beta, "free_nats": free_nats}, distributions=distributions
            )
        )
    table = search.run_grid_search(tmp_path, SPEC, TRAIN, VALID, device="cpu")
    assert (table["state"] == "COMPLETE").all()
    assert len(study.get_trials()) == 4


def test_a_study_of_other_settings_is_not_joined(finished):
    run_dir, _ = finished
    with pytest.raises(ValueError, match=r"train_config\.max_epochs: 1 in the study, 2 here.*another `study_name`"):
        search.run_grid_search(run_dir, replace(SPEC, train_config=replace(SPEC.train_config, max_epochs=2)), TRAIN, VALID)
    with pytest.raises(ValueError, match=r"data_sha256"):
        search.run_grid_search(run_dir, SPEC, TRAIN[:16], VALID)


def test_a_killed_search_resumes_the_killed_point_from_its_checkpoint(tmp_path):
    data_path = tmp_path / "data.npz"
    np.savez(data_path, train=TRAIN, valid=VALID)
    run_dir = tmp_path / "run"
    # the worker kills itself (SIGKILL: no cleanup) right after its first trial's mid-epoch checkpoint
    script = (
        "import json, os, signal, sys, numpy as np, torch\n"
        "from musicvae_lib import search, train\n"
        "torch.set_num_threads(1)\n"
        "save = train.Trainer.save_checkpoint\n"
        "def save_then_die(self):\n"
        "    save(self)\n"
        "    if self.progress.step == 1:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "train.Trainer.save_checkpoint = save_then_die\n"
        "data = np.load(sys.argv[3])\n"
        "search.run_grid_search(sys.argv[1], search.GridSpec.from_dict(json.loads(sys.argv[2])), "
        "data['train'], data['valid'], device='cpu')\n"
    )
    killed = subprocess.run(
        [sys.executable, "-c", script, str(run_dir), json.dumps(SPEC.to_dict()), str(data_path)],
        env=subprocess_env(), capture_output=True, text=True, timeout=120,
    )
    assert killed.returncode == -9, killed.stderr
    left = search.results_table(run_dir)
    assert sorted(left["state"]) == ["NOT_STARTED"] * 3 + ["RUNNING"]
    folder = run_dir / left.loc[left["state"] == "RUNNING", "folder"].item()
    assert (folder / "checkpoint.pt").exists() and not (folder / "done.json").exists()

    table = search.run_grid_search(run_dir, SPEC, TRAIN, VALID, device="cpu")
    assert (table["state"] == "COMPLETE").all()
    trials = trials_of(run_dir)
    assert [t.state for t in trials].count(TrialState.FAIL) == 1 and len(trials) == 5
    assert complete_points(trials) == POINTS  # each point once
    retry = next(t for t in trials if t.system_attrs.get("retry_history"))
    failed = next(t for t in trials if t.state == TrialState.FAIL)
    assert retry.system_attrs["retry_history"] == [failed.number] and retry.state == TrialState.COMPLETE
    assert done(folder)["sessions"] == 2  # resumed, not started over
    assert "Resuming" in (folder / "train.log").read_text()


def test_a_stale_heartbeat_of_another_machine_frees_its_point(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    with pytest.warns(optuna.exceptions.ExperimentalWarning, match="heartbeat_interval"):
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=1)
    run_dir = tmp_path / "run"
    search.run_grid_search(run_dir, SPEC, TRAIN, VALID, storage=storage, max_trials=0)
    study, _ = search.load_study(run_dir, storage)
    with pytest.warns(UserWarning, match="Heartbeat"):  # outside optimize, as a worker elsewhere would not
        remote = study.ask()  # a worker on another machine takes the first point ...
    point = (remote.suggest_categorical("beta", SPEC.betas), remote.suggest_categorical("free_nats", SPEC.free_nats))
    remote.set_user_attr(shared_study.WORKER_ATTR, {"host": "elsewhere", "pid": 1, "start": None, "trial": remote.number})
    alive = threading.Event()

    def beat():
        while not alive.wait(0.3):
            storage.record_heartbeat(remote._trial_id)

    storage.record_heartbeat(remote._trial_id)
    beating = threading.Thread(target=beat)
    beating.start()
    try:  # ... and is alive: its point is left to it
        table = search.run_grid_search(run_dir, SPEC, TRAIN, VALID, storage=storage, device="cpu")
    finally:
        alive.set()
        beating.join()
    states = dict(zip(zip(table["beta"], table["free_nats"]), table["state"]))
    assert states.pop(point) == "RUNNING" and set(states.values()) == {"COMPLETE"}
    time.sleep(2.5)  # ... then dies: no heartbeat for longer than the grace period (SQLite's clock counts whole seconds)
    table = search.run_grid_search(run_dir, SPEC, TRAIN, VALID, storage=storage, device="cpu")
    assert (table["state"] == "COMPLETE").all()
    assert study.trials[remote.number].state == TrialState.FAIL
    assert complete_points(study.get_trials()) == POINTS


@pytest.mark.parametrize("storage_kind", ["journal", "sqlite"])
def test_two_workers_share_one_storage(tmp_path, storage_kind):
    run_dir = tmp_path / "run"
    storage = tmp_path / "shared" / "study.log" if storage_kind == "journal" else f"sqlite:///{tmp_path / 'study.db'}"
    write_dataset(run_dir)
    spec = replace(SPEC, train_config=replace(SPEC.train_config, max_epochs=3))  # long enough to overlap
    created = search.run_grid_search(run_dir, spec, TRAIN, VALID, storage=storage, max_trials=0)
    assert (created["state"] == "NOT_STARTED").all()
    command = [  # at most 2 trials each: the grid completes only if both work and no point is taken twice
        sys.executable, "-m", "musicvae_lib.search",
        "--run-dir", str(run_dir), "--storage", str(storage), "--device", "cpu", "--max-trials", "2",
    ]
    workers = [
        subprocess.Popen(command, env=subprocess_env(), cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=180) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], [err for _, err in outputs]
    table = search.results_table(run_dir, storage)
    assert (table["state"] == "COMPLETE").all()
    trials = trials_of(run_dir, storage)
    assert complete_points(trials) == POINTS  # every point exactly once
    assert all(done(run_dir / folder)["sessions"] == 1 and done(run_dir / folder)["epochs"] == 3 for folder in table["folder"])
    assert len(trials) == 4
    pids = [t.user_attrs[shared_study.WORKER_ATTR]["pid"] for t in trials]
    assert sorted(pids) == sorted(2 * [worker.pid for worker in workers])


def test_the_command_names_notebook_01_without_a_dataset(tmp_path, capsys):
    with pytest.raises(SystemExit):
        search.main(["--run-dir", str(tmp_path)])
    assert "01_dataset" in capsys.readouterr().err


def test_results_table_without_a_study_names_notebook_02(tmp_path):
    with pytest.raises(ValueError, match="02_grid_search"):
        search.results_table(tmp_path)
    assert not (tmp_path / "grid_search").exists()  # looking did not create a storage


# --- the grid ---------------------------------------------------------------------------------------


def test_grid_spec_sorts_checks_and_round_trips(tmp_path):
    assert SPEC.betas == (0.5, 1.0) and SPEC.points == POINTS
    assert search.GridSpec.from_dict(json.loads(json.dumps(SPEC.to_dict()))) == SPEC
    with pytest.raises(ValueError, match=r"`betas` must be distinct"):
        replace(SPEC, betas=(1.0, 1))
    with pytest.raises(ValueError, match=r"`free_nats` must be distinct values >= 0"):
        replace(SPEC, free_nats=(-1.0,))
    with pytest.raises(ValueError, match="too close"):
        replace(SPEC, free_nats=(33.3, 33.3000001))
    with pytest.raises(ValueError, match="`study_name` names a folder"):
        search.run_grid_search(tmp_path, SPEC, TRAIN, VALID, study_name="../elsewhere")


def notebook_parameters() -> dict:
    """The names and literal values of notebook 02's parameters cell, in its order."""
    cell = next(c for c in nbformat.read(NOTEBOOK, as_version=4).cells if "parameters" in c.metadata.get("tags", []))
    return {statement.targets[0].id: ast.literal_eval(statement.value) for statement in ast.parse(cell.source).body}


def test_notebook_02_mirrors_the_library_defaults():
    defaults = {name: list(value) if isinstance(value, tuple) else value for name, value in asdict(search.ChapterDefaults()).items()}
    assert list(notebook_parameters().items()) == list(defaults.items())
    assert search.ChapterDefaults().study_name == search.STUDY_NAME
    assert search.ChapterDefaults().margin == inspect.signature(search.choose).parameters["margin"].default


@pytest.mark.parametrize("profile", ["quick", "default"])
def test_each_profile_makes_a_valid_grid_over_the_defaults(profile):
    table = tomllib.loads((REPOSITORY / "profiles" / f"{profile}.toml").read_text()).get("02_grid_search", {})
    assert set(table) <= set(notebook_parameters())  # the runner refuses other keys too
    values = asdict(search.ChapterDefaults()) | table
    spec = search.chapter_spec(32, **{name: values[name] for name in inspect.signature(search.chapter_spec).parameters if name != "steps"})
    assert spec.betas == tuple(sorted(values["betas"])) and spec.train_config.max_epochs == values["trial_max_epochs"]
    assert spec.train_config.early_stopping_patience == search.TRIAL_PATIENCE and spec.model_config.steps == 32


# --- the choice ---------------------------------------------------------------------------------------


def hand_table() -> pd.DataFrame:
    rows = [  # beta, lambda, state, sampling accuracy, negative ELBO, KL bits
        (0.5, 0.0, "COMPLETE", 0.81, 50.0, 10.0),  # best accuracy
        (1.0, 0.0, "COMPLETE", 0.80, 40.0, 20.0),  # within 0.01 of it, lower -ELBO
        (2.0, 0.0, "COMPLETE", 0.70, 30.0, 5.0),  # lowest -ELBO, far below in accuracy
        (2.0, 16.0, "COMPLETE", 0.60, 60.0, 40.0),
        (0.5, 16.0, "RUNNING", None, None, None),
    ]
    table = pd.DataFrame(rows, columns=["beta", "free_nats", "state", "sampling_accuracy", "negative_elbo_nats", "kl_bits"])
    for name in search.METRIC_COLUMNS:
        if name not in table:
            table[name] = 1.0
    table["folder"] = [f"f{i}" for i in range(len(table))]
    return table


def test_choose_takes_the_lowest_elbo_within_the_margin_of_the_best_accuracy():
    table = hand_table()
    assert (search.choose(table, margin=0.01)["beta"], search.choose(table, margin=0.01)["free_nats"]) == (1.0, 0.0)
    assert search.choose(table, margin=0.0)["beta"] == 0.5  # only the best accuracy itself
    assert search.choose(table, margin=0.2)["beta"] == 2.0 and search.choose(table, margin=0.2)["free_nats"] == 0.0
    choice = search.choose(table)
    assert choice["eligible_points"] == 2 and choice["best_sampling_accuracy"] == 0.81 and choice["folder"] == "f1"
    assert "within 0.01 of the best" in choice["rule"]


def test_choose_breaks_ties_by_accuracy_then_smaller_beta():
    table = hand_table()
    table.loc[0, "negative_elbo_nats"] = 40.0  # ties row 1, with the higher accuracy
    assert search.choose(table)["beta"] == 0.5
    table.loc[0, "sampling_accuracy"] = 0.80  # now a full tie: the smaller beta
    table.loc[[0, 1], "beta"] = [3.0, 1.0]
    assert search.choose(table)["beta"] == 1.0


def test_the_choice_is_written_for_notebook_03(tmp_path):
    choice = search.choose(hand_table())
    search.write_choice(tmp_path, **choice)
    loaded = search.load_choice(tmp_path)
    assert (loaded["beta"], loaded["free_nats"], loaded["negative_elbo_nats"]) == (1.0, 0.0, 40.0)


def test_choose_needs_a_completed_point():
    table = hand_table()
    table["state"] = "FAIL"
    with pytest.raises(ValueError, match="no completed grid point"):
        search.choose(table)


def test_contrasting_points_are_the_least_and_most_kl_besides_the_choice():
    table = hand_table()
    pair = search.contrasting_points(table, {"beta": 2.0, "free_nats": 0.0})  # the least-KL point is chosen
    assert list(pair["role"]) == ["least KL", "most KL"]
    assert list(pair["folder"]) == ["f0", "f3"]
    with pytest.raises(ValueError, match="two completed grid points besides"):
        search.contrasting_points(table.iloc[[0, 2]], {"beta": 2.0, "free_nats": 0.0})


def test_choice_round_trip_and_absence(tmp_path):
    assert search.load_choice(tmp_path) is None
    search.write_choice(tmp_path, beta=0.5, free_nats=16.0, rule="best ELBO")
    assert search.load_choice(tmp_path) == {"beta": 0.5, "free_nats": 16.0, "rule": "best ELBO"}


def test_incomplete_choice_names_the_file_and_the_notebook(tmp_path):
    (tmp_path / "grid_search").mkdir()
    (tmp_path / "grid_search" / "choice.json").write_text('{"beta": 1.0}')
    with pytest.raises(ValueError, match=r"choice.json lacks \['free_nats'\].*02_grid_search"):
        search.load_choice(tmp_path)
