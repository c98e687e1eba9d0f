import ast
import inspect
import json
import math
import os
import re
import shutil
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
from conftest import scale_windows
from optuna.trial import TrialState
from postgres_server import free_port

from musicvae_lib import chapter, plots, runner, search, shared_study, storage_url
from musicvae_lib.model import preset
from musicvae_lib.training import TrainConfig

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
    jobs = [search.Job(*point, 0) for point in POINTS] + [
        search.Job(*point, 1, rerun) for point in promoted for rerun in (False, True)
    ]
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
    assert (table.loc[table["state"] == "COMPLETE", "rung"] == 1).all() and (
        table.loc[table["state"] == "PRUNED", "rung"] == 0
    ).all()
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
        # train's lines go to the log
        assert "Stopped by max epochs" in (run_dir / row.folder / "train.log").read_text()


def test_a_promoted_point_goes_on_from_its_checkpoint_and_its_rerun_has_the_next_seed(finished):
    run_dir, table = finished
    for row in table[table["state"] == "COMPLETE"].itertuples():
        # not started over
        assert done(run_dir / row.folder)["sessions"] == 2 and done(run_dir / row.folder)["steps"] == 4
        steps = pd.read_csv(run_dir / row.folder / "steps.csv")
        assert steps["step"].tolist() == [1, 2, 3, 4]
        rerun = run_dir / row.folder / "seed=1"
        assert (
            torch.load(rerun / "model.pt", weights_only=True)["train_config"]["seed"] == 1
            and done(rerun)["sessions"] == 1
        )


def test_the_promotion_takes_the_best_points_of_the_rung(finished):
    run_dir, table = finished
    rung_0 = {
        search.job_of(t).point: t.user_attrs
        for t in trials_of(run_dir)
        if search.job_of(t) == search.Job(*search.job_of(t).point, 0)
    }
    ranked = sorted(
        rung_0, key=lambda point: (-rung_0[point]["sampling_accuracy"], rung_0[point]["negative_elbo_nats"], *point)
    )
    assert sorted(ranked[:2]) == [(row.beta, row.free_nats) for row in table.itertuples() if row.state == "COMPLETE"]


def test_scheduled_jobs_halve_a_3_x_3_grid_by_sampling_accuracy():
    spec = replace(SPEC, betas=(0.5, 1.0, 2.0), free_nats=(0.0, 16.0, 32.0))
    accuracy = dict(zip(spec.points, [0.5, 0.9, 0.1, 0.2, 0.8, 0.3, 0.85, 0.4, 0.6]))
    finished = {
        search.Job(*point, 0): {"sampling_accuracy": value, "negative_elbo_nats": 1.0}
        for point, value in accuracy.items()
    }
    assert len(search.scheduled_jobs(spec, dict(list(finished.items())[:8]))) == 9  # rung 0 unfinished: nothing more
    jobs = search.scheduled_jobs(spec, finished)
    assert [job.point for job in jobs[9:]] == [(0.5, 16.0), (2.0, 0.0), (1.0, 16.0)]  # the best third, best first
    finished |= {
        job: {"sampling_accuracy": value, "negative_elbo_nats": 1.0} for job, value in zip(jobs[9:], [0.7, 0.9, 0.8])
    }
    reruns = search.scheduled_jobs(spec, finished)[12:]
    assert reruns == [search.Job(2.0, 0.0, 1, True), search.Job(1.0, 16.0, 1, True)]  # the best two of the last rung


def test_the_shown_table_is_short_and_rounded(finished):
    _, table = finished
    text = chapter.grid_table(table).to_string(delimiter="|").splitlines()
    assert text[0].split("|") == [short for short, _ in chapter.GRID_COLUMNS.values()]
    first = dict(zip(text[0].split("|"), text[1].split("|")))
    assert (
        first["beta"] == "0.5" and first["lambda"] == "0" and first["-ELBO"] == f"{table['negative_elbo_nats'][0]:.1f}"
    )
    assert first["acc. sampl."] == f"{table['sampling_accuracy'][0]:.3f}" and first["rung"] == f"{table['rung'][0]:g}"


def test_results_table_holds_what_each_points_folder_records(finished):
    # run_grid_search returns results_table itself: compare with the files the trainings wrote instead
    run_dir, table = finished
    assert list(table.columns) == [
        "beta",
        "free_nats",
        "free_bits",
        "state",
        "rung",
        *search.METRIC_COLUMNS,
        "rerun_sampling_accuracy",
        "host",
        "folder",
    ]
    assert sorted(zip(table["beta"], table["free_nats"])) == sorted(POINTS)
    for row in table.itertuples():
        recorded = done(run_dir / row.folder)
        assert (row.epochs, row.best_epoch, row.steps, row.stopped) == tuple(
            recorded[name] for name in ("epochs", "best_epoch", "steps", "stopped")
        )
        assert row.minutes == pytest.approx(recorded["training_seconds"] / 60)
        stored_loss = recorded["identity"]["loss_config"]
        assert (stored_loss["beta"], stored_loss["free_nats"]) == (row.beta, row.free_nats)
        assert row.free_bits == pytest.approx(row.free_nats / math.log(2))
        assert recorded["identity"]["train_config"]["max_epochs"] == SPEC.rung_budgets[int(row.rung)]


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
    with pytest.raises(
        ValueError, match=r"rung_budgets: \[1\.0, 2\.0\] in the study, \[1\.0, 3\.0\] here.*another `study_name`"
    ):
        search.run_grid_search(run_dir, replace(SPEC, rung_budgets=(1, 3)), TRAIN, VALID)
    with pytest.raises(ValueError, match=r"data_sha256"):
        search.run_grid_search(run_dir, SPEC, TRAIN[:16], VALID)


def shared_storage(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str | Path | None:
    """A storage of ``kind``: None (the run folder's SQLite file), a journal file, an SQLite URL, or a new database on
    the test's PostgreSQL server (started only for this kind)."""
    return {
        "default": lambda: None,
        "journal": lambda: tmp_path / "shared" / "study.log",
        "sqlite": lambda: f"sqlite:///{tmp_path / 'study.db'}",
        "postgresql": lambda: request.getfixturevalue("postgres_url"),
    }[kind]()


def run_worker_that_dies(
    tmp_path: Path, run_dir: Path, storage: str, before: str = ""
) -> subprocess.CompletedProcess[str]:
    """A grid worker in a process of its own that kills itself (SIGKILL: no cleanup) right after its first trial's
    first checkpoint; ``before`` is Python run first (to pose as another machine). Storage "" is the default."""
    data_path = tmp_path / "data.npz"
    np.savez(data_path, train=TRAIN, valid=VALID)
    script = before + (
        "import json, os, signal, sys, numpy as np, torch\n"
        "from musicvae_lib import search, training\n"
        "torch.set_num_threads(1)\n"
        "save = training.Trainer.save_checkpoint\n"
        "def save_then_die(self):\n"
        "    save(self)\n"
        "    if self.progress.step == 1:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "training.Trainer.save_checkpoint = save_then_die\n"
        "data = np.load(sys.argv[3])\n"
        "search.run_grid_search(sys.argv[1], search.GridSpec.from_dict(json.loads(sys.argv[2])), "
        "data['train'], data['valid'], storage=sys.argv[4] or None, device='cpu')\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script, str(run_dir), json.dumps(SPEC.to_dict()), str(data_path), storage],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("storage_kind", ["default", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_killed_search_resumes_the_killed_point_from_its_checkpoint(tmp_path, storage_kind, request):
    storage = shared_storage(storage_kind, tmp_path, request)
    run_dir = tmp_path / "run"
    killed = run_worker_that_dies(tmp_path, run_dir, str(storage or ""))
    assert killed.returncode == -9, killed.stderr
    left = search.results_table(run_dir, storage)
    assert sorted(left["state"]) == ["RUNNING"] + ["WAITING"] * 3  # rung 0 queued
    folder = run_dir / left.loc[left["state"] == "RUNNING", "folder"].item()
    assert (folder / "checkpoint.pt").exists() and not (folder / "done.json").exists()

    table = search.run_grid_search(run_dir, SPEC, TRAIN, VALID, storage=storage, device="cpu")
    assert sorted(table["state"]) == ["COMPLETE"] * 2 + ["PRUNED"] * 2
    trials = trials_of(run_dir, storage)
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
    remote_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study.study_name), remote.number
    )
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
    # ... then dies: no heartbeat for longer than the grace period (SQLite's clock counts whole seconds)
    time.sleep(2.5)
    table = search.run_grid_search(run_dir, SPEC, TRAIN, VALID, storage=storage, device="cpu")
    assert sorted(table["state"]) == ["COMPLETE"] * 2 + ["PRUNED"] * 2
    assert study.trials[remote.number].state == TrialState.FAIL
    assert complete_jobs(study.get_trials()) == expected_jobs(table)


@pytest.mark.parametrize("storage_kind", ["journal", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_two_workers_share_one_storage(tmp_path, storage_kind, request):
    run_dir = tmp_path / "run"
    storage = shared_storage(storage_kind, tmp_path, request)
    write_dataset(run_dir)
    spec = replace(SPEC, rung_budgets=(2, 3))  # long enough to overlap
    created = search.run_grid_search(run_dir, spec, TRAIN, VALID, storage=storage, max_trials=0)
    assert (created["state"] == "WAITING").all()
    # the second worker as the README says: a PostgreSQL password in PGPASSWORD, not in the URL (spelled as libpq does)
    url, password = storage_url.split_password(str(storage))
    spellings = [
        (str(storage), {}),
        (re.sub(r"^postgresql:", "postgres:", url), {"PGPASSWORD": password} if password else {}),
    ]
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "musicvae_lib.search",
                "--run-dir",
                str(run_dir),
                "--storage",
                spelling,
                "--device",
                "cpu",
            ],
            env=subprocess_env() | environment,
            cwd=REPOSITORY,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for spelling, environment in spellings
    ]
    outputs = [worker.communicate(timeout=240) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], [err for _, err in outputs]
    table = search.results_table(run_dir, storage)
    assert sorted(table["state"]) == ["COMPLETE"] * 2 + ["PRUNED"] * 2
    trials = trials_of(run_dir, storage)
    assert complete_jobs(trials) == expected_jobs(table)  # every job exactly once, none twice at once
    for row in table.itertuples():
        assert (
            done(run_dir / row.folder)["sessions"] == 1 + row.rung
            and done(run_dir / row.folder)["epochs"] == 2 + row.rung
        )
    pids = {t.user_attrs[shared_study.WORKER_ATTR]["pid"] for t in trials if t.state == TrialState.COMPLETE}
    assert pids == {worker.pid for worker in workers}  # both worked


def test_a_worker_of_another_machine_killed_for_good_is_recovered_through_its_heartbeat(
    tmp_path, postgres_url, monkeypatch
):
    monkeypatch.setattr(shared_study, "HEARTBEAT_SECONDS", 1)  # the storage records a heartbeat every second ...
    monkeypatch.setattr(shared_study, "GRACE_SECONDS", 2)  # ... and a trial without one for 2 seconds is stale
    run_dir = tmp_path / "run"
    # "another machine" (its own host name, so this machine's folder locks cannot tell it died), never coming back
    other_machine = (
        "import socket\nfrom musicvae_lib import shared_study\n"
        "socket.gethostname = lambda: 'other-machine'\n"
        "shared_study.HEARTBEAT_SECONDS, shared_study.GRACE_SECONDS = 1, 2\n"
    )
    killed = run_worker_that_dies(tmp_path, run_dir, postgres_url, before=other_machine)
    assert killed.returncode == -9, killed.stderr
    left = search.results_table(run_dir, postgres_url)
    running = left[left["state"] == "RUNNING"]
    assert sorted(left["state"]) == ["RUNNING"] + ["WAITING"] * 3 and running["host"].tolist() == ["other-machine"]

    table = search.run_grid_search(run_dir, SPEC, TRAIN, VALID, storage=postgres_url, device="cpu")
    assert sorted(table["state"]) == ["COMPLETE"] * 2 + ["PRUNED"] * 2
    trials = trials_of(run_dir, postgres_url)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1 and failed[0].user_attrs[shared_study.WORKER_ATTR]["host"] == "other-machine"
    retry = next(t for t in trials if t.system_attrs.get("retry_history"))
    assert retry.system_attrs["retry_history"] == [failed[0].number] and retry.state == TrialState.COMPLETE
    assert complete_jobs(trials) == expected_jobs(table)  # each job once, the dead machine's too
    folder = run_dir / running["folder"].item()
    assert "Resuming" in (folder / "train.log").read_text()  # from the dead machine's checkpoint, not started over


def storage_error(run_dir: Path, storage: str, capsys) -> str:
    """The command-line worker's stderr for ``storage``, after checking it exits with status 2."""
    with pytest.raises(SystemExit) as exit_:
        search.main(["--run-dir", str(run_dir), "--storage", storage, "--device", "cpu"])
    assert exit_.value.code == 2
    return capsys.readouterr().err


def test_a_storage_that_cannot_be_opened_is_one_line_naming_it_without_its_password(tmp_path, postgres_server, capsys):
    write_dataset(tmp_path)
    database = postgres_server.create_database()
    cases = {  # storage URL -> what the line says to check
        postgres_server.url(database, password="not-the-password"): "check the user name and the password",
        postgres_server.url(database).replace(
            f":{postgres_server.port}/", f":{free_port()}/"
        ): "check the host name and port",
        postgres_server.url(database).replace("127.0.0.1", "no-such-host.invalid"): "check the host name and port",
        postgres_server.url("no_such_database"): "create the database on the server",
        postgres_server.url(database).replace("postgresql:", "postgresql+nodriver:"): "check the URL",
    }
    for url, hint in cases.items():
        error = storage_error(tmp_path, url, capsys)
        password = url.split(":")[2].split("@")[0]
        assert error.startswith("error: cannot open the study storage ") and error.count("\n") == 1, error
        assert password not in error and url.replace(password, "***") in error and hint in error, error
    wrong = postgres_server.url(database, password="not-the-password")
    with pytest.raises(shared_study.StorageError, match=r"musicvae:\*\*\*@.*password authentication failed") as raised:
        search.run_grid_search(tmp_path, SPEC, TRAIN, VALID, storage=wrong)  # what notebook 02 shows
    assert "not-the-password" not in str(raised.value) and postgres_server.tables(database) == []


def test_a_worker_on_a_database_without_the_study_creates_nothing_there(tmp_path, postgres_server, capsys):
    write_dataset(tmp_path)
    database = postgres_server.create_database()
    for url in (postgres_server.url(database), postgres_server.url(database, scheme="postgres")):
        error = storage_error(tmp_path, url, capsys)
        assert error == (
            f"error: no grid study 'beta_lambda' in {url.replace(postgres_server.password, '***')}: run "
            "notebooks/02_grid_search.ipynb (or search.run_grid_search) first with this storage; it creates the study\n"
        )
    assert postgres_server.tables(database) == []
    with pytest.raises(ValueError, match="no grid study") as raised:  # the library says the same, masked too
        search.results_table(tmp_path, postgres_server.url(database))
    assert postgres_server.password not in str(raised.value) and postgres_server.tables(database) == []


def test_a_run_folder_made_with_a_password_in_the_storage_url_holds_no_password(tmp_path, postgres_server, monkeypatch):
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / "notebooks" / NOTEBOOK.name).write_bytes(NOTEBOOK.read_bytes())
    (project / "profiles").mkdir()
    (project / "profiles" / "pg.toml").write_text(
        'notebooks = ["02"]\n\n["02_grid_search"]\nbetas = [1.0]\nfree_nats_values = [0.0]\nrung_budgets = [1]\n'
        "eval_windows = 16\n"
    )
    run_dir = project / "results" / "pg"
    (run_dir / "dataset").mkdir(parents=True)
    splits = {"train": scale_windows(64, 0), "valid": VALID, "test": VALID}
    for name, windows in splits.items():
        np.save(run_dir / "dataset" / f"{name}.npy", windows)
    (run_dir / "dataset" / "summary.json").write_text(json.dumps({"steps_per_window": 32, "dataset_hash": "test"}))
    url = postgres_server.url(postgres_server.create_database())
    assert (
        runner.main(
            [
                "--profile",
                "pg",
                "--notebooks",
                str(project / "notebooks"),
                "--results",
                str(project / "results"),
                "-p",
                f"storage={url}",
            ]
        )
        == 0
    )
    assert "PGPASSWORD" not in os.environ  # the kernel's, not this process's
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["notebooks"]["02_grid_search"]["parameters"]["storage"] == url.replace(
        f":{postgres_server.password}@", "@"
    )
    assert search.load_choice(run_dir) is not None and len(search.results_table(run_dir, url)) == 1
    files = [path for path in run_dir.rglob("*") if path.is_file()]
    assert len(files) > 10 and {"manifest.json", "02_grid_search.ipynb", "grid_search/choice.json"} <= {
        path.relative_to(run_dir).as_posix() for path in files
    }
    holding = [path for path in files if postgres_server.password.encode() in path.read_bytes()]
    assert holding == []


def test_the_runner_refuses_a_password_it_cannot_keep_out_of_the_notebook():
    kept, environment = runner.passwords_out({"storage": "postgres://u:s3cret@db/musicvae", "seed": 0})
    assert kept == {"storage": "postgresql://u@db/musicvae", "seed": 0} and environment == {"PGPASSWORD": "s3cret"}
    with pytest.raises(runner.ConfigError, match=r"mysql://u:\*\*\*@db/x.*PGPASSWORD") as raised:
        runner.passwords_out({"storage": "mysql://u:s3cret@db/x"})
    assert "s3cret" not in str(raised.value)


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
    defaults = {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in asdict(search.GridNotebookDefaults()).items()
    }
    assert list(notebook_parameters().items()) == list(defaults.items())
    assert search.GridNotebookDefaults().study_name == search.STUDY_NAME
    assert search.GridNotebookDefaults().margin == inspect.signature(search.choose).parameters["margin"].default


@pytest.mark.parametrize("profile", sorted(path.stem for path in (REPOSITORY / "profiles").glob("*.toml")))
def test_each_profile_makes_a_valid_grid_over_the_defaults(profile):
    table = tomllib.loads((REPOSITORY / "profiles" / f"{profile}.toml").read_text()).get("02_grid_search", {})
    assert set(table) <= set(notebook_parameters())  # the runner refuses other keys too
    values = asdict(search.GridNotebookDefaults()) | table
    spec = search.chapter_spec(32, values)
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
    table = pd.DataFrame(
        rows, columns=["beta", "free_nats", "state", "rung", "sampling_accuracy", "negative_elbo_nats", "kl_bits"]
    )
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
    assert (choice["seed_noise"], choice["margin"], choice["margin_set"]) == (
        pytest.approx(0.03),
        pytest.approx(0.03),
        0.0,
    )
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


def test_a_grid_study_made_before_cuda_graphs_and_guard_minutes_existed_joins(tmp_path):
    # tests/data/grid_study_2026-11.db is results/default's study as made on 2026-11-27 (minutes rungs): its
    # TrainConfig lacks `cuda_graphs` and its GridSpec `guard_minutes`. Notebook 02 re-executed on such a study
    # must join with the fields' defaults (eager steps, no guard: as then), not refuse it
    (tmp_path / "grid_search").mkdir()
    shutil.copy(Path(__file__).with_name("data") / "grid_study_2026-11.db", tmp_path / "grid_search" / "study.db")
    study, spec = search.load_study(tmp_path)
    stored = study.user_attrs[search.SPEC_ATTR]
    assert "cuda_graphs" not in stored["train_config"] and "guard_minutes" not in stored
    assert spec.budget_unit == "minutes" and spec.guard_minutes == 0.0
    wanted = stored | spec.to_dict()  # today's settings of the same grid: cuda_graphs False, guard_minutes 0
    with pytest.raises(ValueError, match="cuda_graphs: None in the study, False here"):
        shared_study.join_settings(study, search.SPEC_ATTR, wanted)
    shared_study.join_settings(study, search.SPEC_ATTR, wanted, completed=search.with_added_spec_defaults)
