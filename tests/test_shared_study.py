import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from musicvae_lib import shared_study

REPOSITORY = Path(__file__).parent.parent


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPOSITORY)}


def test_a_folder_lock_is_held_until_its_process_ends(tmp_path):
    script = (  # another process takes the lock, says so, and waits to be killed
        "import pathlib, sys, time\nfrom musicvae_lib import shared_study\n"
        "lock = shared_study.folder_lock(pathlib.Path(sys.argv[1]))\n"
        "print(lock is not None, flush=True)\ntime.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)], env=subprocess_env(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "True"
        assert shared_study.folder_lock(tmp_path) is None
    finally:
        holder.kill()
        holder.wait()
    lock = shared_study.folder_lock(tmp_path)  # freed by the kill, no cleanup needed
    assert lock is not None
    assert shared_study.folder_lock(tmp_path) is None  # held by this process now: a second open is refused too
    lock.close()


def test_a_path_opens_a_journal_file_and_none_the_default_sqlite_file_with_heartbeats(tmp_path):
    journal = shared_study.open_storage(tmp_path / "shared" / "study.log", tmp_path / "unused.db")
    assert isinstance(journal, optuna.storages.JournalStorage) and not (tmp_path / "unused.db").exists()
    rdb = shared_study.open_storage(None, tmp_path / "grid" / "study.db")
    assert isinstance(rdb, optuna.storages.RDBStorage) and (tmp_path / "grid" / "study.db").exists()
    assert rdb.get_heartbeat_interval() == shared_study.HEARTBEAT_SECONDS
    assert isinstance(rdb.get_heartbeat_stale_trial_callback(), optuna.storages.RetryHeartbeatStaleTrialCallback)
    with pytest.raises(FileNotFoundError, match="no study storage"):  # a reader's look creates nothing
        shared_study.open_storage(tmp_path / "absent" / "study.log", tmp_path / "unused.db", must_exist=True)
    assert not (tmp_path / "absent").exists() and not (tmp_path / "unused.db").exists()


def test_a_study_keeps_the_first_settings_and_names_every_clash():
    study = optuna.create_study()
    shared_study.join_settings(study, "settings", {"a": 1, "train": {"epochs": 2}})
    shared_study.join_settings(study, "settings", {"a": 1, "train": {"epochs": 2}})  # the same settings: joined
    with pytest.raises(ValueError, match=r"a: 1 in the study, 3 here; train\.epochs: 2 in the study, None here"):
        shared_study.join_settings(study, "settings", {"a": 3, "train": {}})
    assert study.user_attrs["settings"] == {"a": 1, "train": {"epochs": 2}}


def test_a_readers_look_at_an_sqlite_url_creates_no_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Optuna study"):
        shared_study.open_storage(f"sqlite:///{tmp_path / 'absent.db'}", tmp_path / "unused.db", must_exist=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("storage_kind", ["journal", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_run_jobs_runs_each_due_job_once_and_queues_a_failed_one_again(tmp_path, storage_kind, request):
    where = tmp_path / "study.log" if storage_kind == "journal" else request.getfixturevalue("postgres_url")
    storage = shared_study.open_storage(where, tmp_path / "unused.db")
    study = optuna.create_study(storage=storage)
    ran, failing = [], {1}

    def due() -> list[dict]:  # job 0 first; jobs 1 and 2 once it is done, as a rung follows the one before
        done = {
            t.user_attrs[shared_study.JOB_ATTR]["n"]
            for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        }
        return [{"n": 0}] + ([{"n": 1}, {"n": 2}] if 0 in done else [])

    def run_job(trial, job, folder):
        assert shared_study.folder_lock(folder) is None  # this process holds the job folder
        ran.append(job["n"])
        if job["n"] in failing:
            failing.clear()
            raise RuntimeError("out of memory")
        return float(job["n"])

    with pytest.raises(RuntimeError, match="out of memory"):
        shared_study.run_jobs(study, storage, due, lambda job: tmp_path / str(job["n"]), run_job)
    shared_study.run_jobs(study, storage, due, lambda job: tmp_path / str(job["n"]), run_job)
    assert ran == [0, 1, 2, 1]  # the failed job once more, the others never again
    shared_study.run_jobs(study, storage, due, lambda job: tmp_path / str(job["n"]), run_job)
    assert ran == [0, 1, 2, 1] and sorted(t.value for t in study.trials if t.value is not None) == [0.0, 1.0, 2.0]


def test_a_job_whose_folder_another_process_holds_waits_for_it_then_runs_unless_done(tmp_path):
    storage = shared_study.open_storage(tmp_path / "study.log", tmp_path / "unused.db")
    study = optuna.create_study(storage=storage)
    folder = tmp_path / "0"
    folder.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import fcntl, sys, time\n"
                f"handle = open({str(folder / shared_study.LOCK_FILE)!r}, 'a'); fcntl.flock(handle, fcntl.LOCK_EX)\n"
                "print('locked', flush=True); time.sleep(2)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    ran = []
    started = time.monotonic()
    shared_study.run_jobs(
        study, storage, lambda: [{"n": 0}], lambda job: folder, lambda trial, job, _: ran.append(job["n"]) or 0.0
    )
    holder.wait()
    assert time.monotonic() - started >= 1.0  # it waited for the holder rather than giving up at once
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE] and ran == [0]


def test_a_trial_another_worker_told_first_is_left_to_it_and_its_job_queued_again(tmp_path):
    storage = shared_study.open_storage(tmp_path / "study.log", tmp_path / "unused.db")
    study = optuna.create_study(storage=storage)
    ran = []

    def run_job(trial, job, folder):  # the first time, the other worker SQLite also handed this trial to tells it first
        ran.append(trial.number)
        if len(ran) == 1:
            optuna.load_study(study_name=study.study_name, storage=storage).tell(
                trial.number, state=optuna.trial.TrialState.PRUNED
            )
        return 1.0

    shared_study.run_jobs(study, storage, lambda: [{"n": 0}], lambda job: tmp_path / "0", run_job)
    assert ran == [0, 1] and [t.state for t in study.trials] == [
        optuna.trial.TrialState.PRUNED,
        optuna.trial.TrialState.COMPLETE,
    ]

    def fails(trial, job, folder):
        # a job's own ValueError is not taken for a lost race
        raise ValueError("Cannot tell whether this melody is in 4/4")

    with pytest.raises(ValueError, match="4/4"):
        shared_study.run_jobs(study, storage, lambda: [{"n": 1}], lambda job: tmp_path / "1", fails)


def test_settings_added_since_a_study_was_made_join_with_the_defaults_that_keep_its_behaviour():
    study = optuna.create_study()
    shared_study.join_settings(study, "settings", {"train": {"epochs": 2}})  # made before "graphs" existed
    with pytest.raises(ValueError, match=r"train\.graphs: None in the study, False here"):
        shared_study.join_settings(study, "settings", {"train": {"epochs": 2, "graphs": False}})

    def completed(stored):
        return {"train": {"graphs": False} | stored["train"]}

    shared_study.join_settings(study, "settings", {"train": {"epochs": 2, "graphs": False}}, completed=completed)
    with pytest.raises(ValueError, match=r"train\.graphs: False in the study, True here"):
        shared_study.join_settings(study, "settings", {"train": {"epochs": 2, "graphs": True}}, completed=completed)
