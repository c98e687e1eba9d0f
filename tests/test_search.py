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
from dataclasses import asdict, astuple, replace
from pathlib import Path

import nbformat
import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from optuna.trial import TrialState

from musicvae_lib import chapter, plots, search, shared_study
from musicvae_lib.model import preset
from musicvae_lib.train import TrainConfig
from conftest import scale_windows

REPOSITORY = Path(__file__).parent.parent
NOTEBOOK = REPOSITORY / "notebooks" / "02_grid_search.ipynb"
# 2 x 2 grid of the tiny model: 2 steps of 16 windows an epoch, a checkpoint after each; rung 0 one epoch,
# the best two go on to a second, and train again with the next seed
SPEC = search.GridSpec(
    betas=(1.0, 0.5),  # unsorted on purpose: the spec sorts
    free_nats=(16.0, 0.0),
    model_config=preset("tiny"),
    train_config=TrainConfig(batch_size=16, checkpoint_every_steps=1, bf16=False),
    eval_windows=16,
    rung_budgets=(1, 2),
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


def complete_jobs(trials) -> list[search.Job]:
    return sorted((search.job_of(t) for t in trials if t.state == TrialState.COMPLETE), key=lambda job: astuple(job))


# every job of SPEC's search once: each point at rung 0, two at rung 1, the same two re-run with the next seed
def expected_jobs(table: pd.DataFrame) -> list[search.Job]:
    promoted = [(row.beta, row.free_nats) for row in table.itertuples() if row.rung == 1]
    jobs = [search.Job(*point, 0) for point in POINTS] + [search.Job(*point, 1, rerun) for point in promoted for rerun in (False, True)]
    return sorted(jobs, key=lambda job: astuple(job))


def done(folder: str | Path) -> dict:
    return json.loads((Path(folder) / "done.json").read_text())


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    run_dir = tmp_path_factory.mktemp("search")
    return run_dir, search.run_grid_search(run_dir, SPEC, TRAIN, VALID, device="cpu")


# --- the search -----------------------------------------------------------------------------------


def test_every_point_trains_at_rung_0_and_the_best_two_go_on(finished):
    run_dir, table = finished
    assert list(zip(table["beta"], table["free_nats"])) == POINTS
    assert sorted(table["state"]) == ["COMPLETE"] * 2 + ["PRUNED"] * 2
    assert (table.loc[table["state"] == "COMPLETE", "rung"] == 1).all() and (table.loc[table["state"] == "PRUNED", "rung"] == 0).all()
    assert (run_dir / "grid_search" / "study.db").exists()
    accuracies = table[["teacher_forced_accuracy", "sampling_accuracy", "greedy_accuracy"]]
    assert ((accuracies >= 0) & (accuracies <= 1)).all().all()
    assert np.allclose(table["negative_elbo_nats"], table["reconstruction_nats"] + table["kl_bits"] * math.log(2))
    assert (table["epochs"] == table["rung"] + 1).all() and (table["eval_windows"] == 16).all()
    assert np.allclose(table["free_bits"], table["free_nats"] / math.log(2))
    assert table["rerun_sampling_accuracy"].notna().tolist() == (table["state"] == "COMPLETE").tolist()
    assert complete_jobs(trials_of(run_dir)) == expected_jobs(table)  # each job once
    for row in table.itertuples():  # each folder holds the model of its own point, at its last rung
        saved = torch.load(run_dir / row.folder / "model.pt", weights_only=True)
        assert (saved["loss_config"]["beta"], saved["loss_config"]["free_nats"]) == (row.beta, row.free_nats)
        assert saved["train_config"]["max_epochs"] == row.rung + 1
        assert run_dir / row.folder == search.point_folder(run_dir, row.beta, row.free_nats)
        assert "Stopped by max_epochs" in (run_dir / row.folder / "train.log").read_text()  # train's lines go to the log


def test_a_promoted_point_goes_on_from_its_checkpoint_and_its_rerun_has_the_next_seed(finished):
    run_dir, table = finished
    for row in table[table["state"] == "COMPLETE"].itertuples():
        assert done(run_dir / row.folder)["sessions"] == 2 and done(run_dir / row.folder)["steps"] == 4  # not started over
        steps = pd.read_csv(run_dir / row.folder / "steps.csv")
        assert steps["step"].tolist() == [1, 2, 3, 4]
        rerun = run_dir / row.folder / "seed=1"
        assert torch.load(rerun / "model.pt", weights_only=True)["train_config"]["seed"] == 1 and done(rerun)["sessions"] == 1


def test_the_promotion_takes_the_best_points_of_the_rung(finished):
    run_dir, table = finished
    rung_0 = {search.job_of(t).point: t.user_attrs for t in trials_of(run_dir) if search.job_of(t) == search.Job(*search.job_of(t).point, 0)}
    ranked = sorted(rung_0, key=lambda point: (-rung_0[point]["sampling_accuracy"], rung_0[point]["negative_elbo_nats"], *point))
    assert sorted(ranked[:2]) == [(row.beta, row.free_nats) for row in table.itertuples() if row.state == "COMPLETE"]


def test_scheduled_jobs_halve_a_3_x_3_grid_by_sampling_accuracy():
    spec = replace(SPEC, betas=(0.5, 1.0, 2.0), free_nats=(0.0, 16.0, 32.0))
    accuracy = dict(zip(spec.points, [0.5, 0.9, 0.1, 0.2, 0.8, 0.3, 0.85, 0.4, 0.6]))
    finished = {search.Job(*point, 0): {"sampling_accuracy": value, "negative_elbo_nats": 1.0} for point, value in accuracy.items()}
    assert len(search.scheduled_jobs(spec, dict(list(finished.items())[:8]))) == 9  # rung 0 unfinished: nothing more
    jobs = search.scheduled_jobs(spec, finished)
    assert [job.point for job in jobs[9:]] == [(0.5, 16.0), (2.0, 0.0), (1.0, 16.0)]  # the best third, best first
    finished |= {job: {"sampling_accuracy": value, "negative_elbo_nats": 1.0} for job, value in zip(jobs[9:], [0.7, 0.9, 0.8])}
    reruns = search.scheduled_jobs(spec, finished)[12:]
    assert reruns == [search.Job(2.0, 0.0, 1, True), search.Job(1.0, 16.0, 1, True)]  # the best two of the last rung


def test_the_shown_table_is_short_and_rounded(finished):
    _, table = finished
    text = chapter.grid_table(table).to_string(delimiter="|").splitlines()
    assert text[0].split("|") == [short for short, _ in chapter.GRID_COLUMNS.values()]
    first = dict(zip(text[0].split("|"), text[1].split("|")))
    assert first["beta"] == "0.5" and first["lambda"] == "0" and first["-ELBO"] == f"{table['negative_elbo_nats'][0]:.1f}"
    assert first["acc. sampl."] == f"{table['sampling_accuracy'][0]:.3f}" and first["rung"] == f"{table['rung'][0]:g}"


def test_results_table_reads_the_same_table_from_storage(finished):
    run_dir, table = finished
    read = search.results_table(run_dir)
    assert list(read.columns) == [
        "beta", "free_nats", "free_bits", "state", "rung", *search.METRIC_COLUMNS,
        "rerun_sampling_accuracy", "host", "folder",
    ]
    pd.testing.assert_frame_equal(read, table)


def test_a_second_search_trains_nothing_and_adds_no_trial(finished, capsys):
    run_dir, table = finished
    files = [run_dir / folder / name for folder in table["folder"] for name in ("done.json", "steps.csv", "model.pt")]
    before = [path.stat().st_mtime_ns for path in files]
    count = len(trials_of(run_dir))
    again = search.run_grid_search(run_dir, SPEC, TRAIN, VALID, device="cpu")
    assert [path.stat().st_mtime_ns for path in files] == before  # the pruned points too
    assert len(trials_of(run_dir)) == count == 8
    pd.testing.assert_frame_equal(again, table)
    assert "8 trials so far" in capsys.readouterr().out


def test_a_study_of_other_settings_is_not_joined(finished):
    run_dir, _ = finished
    with pytest.raises(ValueError, match=r"rung_budgets: \[1\.0, 2\.0\] in the study, \[1\.0, 3\.0\] here.*another `study_name`"):
        search.run_grid_search(run_dir, replace(SPEC, rung_budgets=(1, 3)), TRAIN, VALID)
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
    assert sorted(left["state"]) == ["RUNNING"] + ["WAITING"] * 3  # rung 0 queued
    folder = run_dir / left.loc[left["state"] == "RUNNING", "folder"].item()
    assert (folder / "checkpoint.pt").exists() and not (folder / "done.json").exists()

    table = search.run_grid_search(run_dir, SPEC, TRAIN, VALID, device="cpu")
    assert sorted(table["state"]) == ["COMPLETE"] * 2 + ["PRUNED"] * 2
    trials = trials_of(run_dir)
    assert [t.state for t in trials].count(TrialState.FAIL) == 1 and len(trials) == 9
    assert complete_jobs(trials) == expected_jobs(table)  # each job once
    retry = next(t for t in trials if t.system_attrs.get("retry_history"))
    failed = next(t for t in trials if t.state == TrialState.FAIL)
    assert retry.system_attrs["retry_history"] == [failed.number] and retry.state == TrialState.COMPLETE
    assert search.job_of(retry) == search.job_of(failed)
    promoted = table.loc[table["folder"] == folder.relative_to(run_dir).as_posix(), "rung"].item()
    assert done(folder)["sessions"] == 2 + promoted  # resumed, not started over
    assert "Resuming" in (folder / "train.log").read_text()


def test_a_stale_heartbeat_of_another_machine_frees_its_job(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    with pytest.warns(optuna.exceptions.ExperimentalWarning, match="heartbeat_interval"):
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=1)
    run_dir = tmp_path / "run"
    search.run_grid_search(run_dir, SPEC, TRAIN, VALID, storage=storage, max_trials=0)
    study, _ = search.load_study(run_dir, storage)
    with pytest.warns(UserWarning, match="Heartbeat"):  # outside optimize, as a worker elsewhere would not
        remote = study.ask()  # a worker on another machine takes the first queued job ...
    point = search.job_of(remote).point
    remote.set_user_attr(shared_study.WORKER_ATTR, {"host": "elsewhere", "pid": 1, "trial": remote.number})
    remote_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study.study_name), remote.number)
    alive = threading.Event()

    def beat():
        while not alive.wait(0.3):
            storage.record_heartbeat(remote_id)

    storage.record_heartbeat(remote_id)
    beating = threading.Thread(target=beat)
    beating.start()
    try:  # ... and is alive: its job is left to it
        table = search.run_grid_search(run_dir, SPEC, TRAIN, VALID, storage=storage, device="cpu", max_trials=3)
    finally:
        alive.set()
        beating.join()
    states = dict(zip(zip(table["beta"], table["free_nats"]), table["state"]))
    assert states.pop(point) == "RUNNING" and set(states.values()) == {"COMPLETE"}
    time.sleep(2.5)  # ... then dies: no heartbeat for longer than the grace period (SQLite's clock counts whole seconds)
    table = search.run_grid_search(run_dir, SPEC, TRAIN, VALID, storage=storage, device="cpu")
    assert sorted(table["state"]) == ["COMPLETE"] * 2 + ["PRUNED"] * 2
    assert study.trials[remote.number].state == TrialState.FAIL
    assert complete_jobs(study.get_trials()) == expected_jobs(table)


@pytest.mark.parametrize("storage_kind", ["journal", "sqlite"])
def test_two_workers_share_one_storage(tmp_path, storage_kind):
    run_dir = tmp_path / "run"
    storage = tmp_path / "shared" / "study.log" if storage_kind == "journal" else f"sqlite:///{tmp_path / 'study.db'}"
    write_dataset(run_dir)
    spec = replace(SPEC, rung_budgets=(2, 3))  # long enough to overlap
    created = search.run_grid_search(run_dir, spec, TRAIN, VALID, storage=storage, max_trials=0)
    assert (created["state"] == "WAITING").all()
    command = [sys.executable, "-m", "musicvae_lib.search", "--run-dir", str(run_dir), "--storage", str(storage), "--device", "cpu"]
    workers = [
        subprocess.Popen(command, env=subprocess_env(), cwd=REPOSITORY, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=240) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], [err for _, err in outputs]
    table = search.results_table(run_dir, storage)
    assert sorted(table["state"]) == ["COMPLETE"] * 2 + ["PRUNED"] * 2
    trials = trials_of(run_dir, storage)
    assert complete_jobs(trials) == expected_jobs(table)  # every job exactly once, none twice at once
    for row in table.itertuples():
        assert done(run_dir / row.folder)["sessions"] == 1 + row.rung and done(run_dir / row.folder)["epochs"] == 2 + row.rung
    pids = {t.user_attrs[shared_study.WORKER_ATTR]["pid"] for t in trials if t.state == TrialState.COMPLETE}
    assert pids == {worker.pid for worker in workers}  # both worked


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
    for budgets, unit in (((2, 1), "epochs"), ((0, 1), "epochs"), ((1, 2), "hours"), ((0.5, 1), "epochs")):
        with pytest.raises(ValueError, match="`rung_budgets`"):
            replace(SPEC, rung_budgets=budgets, budget_unit=unit)
    assert SPEC.rung_config(1).max_epochs == 2 and SPEC.rung_config(1, rerun=True).seed == SPEC.train_config.seed + 1
    minutes = replace(SPEC, rung_budgets=(0.6, 1.8), budget_unit="minutes").rung_config(0)
    assert (minutes.max_minutes, minutes.max_epochs) == (0.6, SPEC.train_config.max_epochs)
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


@pytest.mark.parametrize("profile", sorted(path.stem for path in (REPOSITORY / "profiles").glob("*.toml")))
def test_each_profile_makes_a_valid_grid_over_the_defaults(profile):
    table = tomllib.loads((REPOSITORY / "profiles" / f"{profile}.toml").read_text()).get("02_grid_search", {})
    assert set(table) <= set(notebook_parameters())  # the runner refuses other keys too
    values = asdict(search.ChapterDefaults()) | table
    spec = search.chapter_spec(32, **{name: values[name] for name in inspect.signature(search.chapter_spec).parameters if name != "steps"})
    assert spec.betas == tuple(sorted(values["betas"])) and spec.rung_budgets == tuple(values["rung_budgets"])
    assert spec.train_config.early_stopping_patience == search.TRIAL_PATIENCE and spec.model_config.steps == 32


# --- the choice ---------------------------------------------------------------------------------------


def hand_table() -> pd.DataFrame:
    rows = [  # beta, lambda, state, rung, sampling accuracy, negative ELBO, KL bits
        (0.5, 0.0, "COMPLETE", 1, 0.81, 50.0, 10.0),  # best accuracy
        (1.0, 0.0, "COMPLETE", 1, 0.80, 40.0, 20.0),  # within 0.01 of it, lower -ELBO
        (2.0, 0.0, "COMPLETE", 1, 0.70, 30.0, 5.0),  # lowest -ELBO, far below in accuracy
        (2.0, 16.0, "COMPLETE", 1, 0.60, 60.0, 40.0),
        (1.0, 16.0, "PRUNED", 0, 0.90, 20.0, 50.0),  # pruned at rung 0: out of the choice, in the contrasts
        (0.5, 16.0, "RUNNING", None, None, None, None),
    ]
    table = pd.DataFrame(rows, columns=["beta", "free_nats", "state", "rung", "sampling_accuracy", "negative_elbo_nats", "kl_bits"])
    for name in search.METRIC_COLUMNS:
        if name not in table:
            table[name] = 1.0
    table["rerun_sampling_accuracy"] = np.nan
    table["folder"] = [f"f{i}" for i in range(len(table))]
    return table


def test_choose_takes_the_lowest_elbo_within_the_margin_of_the_best_accuracy_of_the_last_rung():
    table = hand_table()
    assert (search.choose(table, margin=0.01)["beta"], search.choose(table, margin=0.01)["free_nats"]) == (1.0, 0.0)
    assert search.choose(table, margin=0.0)["beta"] == 0.5  # only the best accuracy itself
    assert search.choose(table, margin=0.2)["beta"] == 2.0 and search.choose(table, margin=0.2)["free_nats"] == 0.0
    choice = search.choose(table)
    assert choice["eligible_points"] == 2 and choice["best_sampling_accuracy"] == 0.81 and choice["folder"] == "f1"
    assert "within 0.01 of the best" in choice["rule"] and choice["last_rung_points"] == 4
    assert choice["seed_noise"] is None and not choice["separated"] and choice["lead"] == pytest.approx(0.01)
    assert not set(search.MACHINE_COLUMNS) & set(choice)  # a wall time would make choice.json differ between runs


def test_the_seed_noise_widens_the_margin_and_changes_the_choice():
    table = hand_table()
    table.loc[[0, 1], "rerun_sampling_accuracy"] = [0.80, 0.805]  # the best point's second seed: 0.01 lower
    assert search.choose(table, margin=0.0)["beta"] == 1.0  # 0.81 beats 0.80 by no more than the noise
    table.loc[0, "rerun_sampling_accuracy"] = 0.78  # noise 0.03: now 0.70 is still out, 0.80 in
    choice = search.choose(table, margin=0.0)
    assert (choice["seed_noise"], choice["margin"], choice["margin_set"]) == (pytest.approx(0.03), pytest.approx(0.03), 0.0)
    assert choice["eligible_points"] == 2 and not choice["separated"]
    assert "cannot separate" in search.describe_choice(choice) and "2 of the 4 points" in search.describe_choice(choice)
    table.loc[[0, 1], "rerun_sampling_accuracy"] = [0.812, 0.799]  # noise 0.002: the lead of 0.01 holds
    choice = search.choose(table, margin=0.0)
    assert choice["beta"] == 0.5 and choice["separated"] and choice["seed_noise"] == pytest.approx(0.002)
    assert "separates its points" in search.describe_choice(choice) and "5.0 times" in search.describe_choice(choice)


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
    assert list(pair["folder"]) == ["f0", "f4"]  # a pruned point's model is its last rung's
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


def test_the_heat_maps_know_the_better_end_of_grid_metrics_only():
    assert set(plots.GRID_BETTER) <= set(search.METRIC_COLUMNS) and "kl_bits" not in plots.GRID_BETTER
