"""An Optuna study that several worker processes share, each trial running a queued job in a folder of its own.

A job is a JSON-ready dict queued as a WAITING trial's user attribute (``run_jobs``); notebook 02's grid search
(``search``) queues its trainings so. What Optuna leaves to its user when a worker dies mid-trial: a worker holds its
job folder's lock file (``fcntl.flock``, freed when the process ends, killed or not) from before it records itself in
the trial (``claim``) until the trial is told. A RUNNING trial is stale when it was claimed on this machine and its
folder's lock is free, or, with an RDB storage, when its heartbeat is older than ``GRACE_SECONDS`` (Optuna's
``fail_stale_trials``, the only way to see a death on another machine; a journal file has no heartbeat). A stale trial
is failed and queued again by Optuna's ``RetryHeartbeatStaleTrialCallback``: a WAITING copy with its user attributes
(the job) and its ``retry_history``; a job whose trials all failed is queued again by the next worker that looks. Every
worker checks it trains with the settings stored in the study (``join_settings``). Only public Optuna API: storages,
their trial ids by number, the callback.

A storage URL may carry a password: ``mask_url`` shows it as ``postgresql://user:***@host/db`` wherever a URL is
written or printed, and a storage that cannot be opened is one ``StorageError`` line that names it so and says what
to check. ``postgres://`` reads as ``postgresql://`` (psycopg 3); a worker's look creates no table in a database.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from musicvae_lib.storage_url import mask_url, storage_url
from musicvae_lib.training import config_clashes

HEARTBEAT_SECONDS = 60  # RDB storages: a running trial records a heartbeat this often ...
GRACE_SECONDS = 180  # ... and is failed as stale when its last one is older than this
CONNECT_SECONDS = 10  # a PostgreSQL server that has not answered by then is reported, not waited for
LOCK_FILE = ".point.lock"
WORKER_ATTR = "worker"  # trial user attribute: host, pid and trial number of the process running it
JOB_ATTR = "job"  # trial user attribute: the job (a JSON-ready dict) a queued trial runs
WAIT_SECONDS = 2.0  # how often a worker looks whether jobs running elsewhere have finished
LIVE = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)  # a job with such a trial is not queued again
Job = dict[str, Any]
# an SQLAlchemy URL, a journal file path, an Optuna storage, or None (the caller's default SQLite file)
StorageArg = str | os.PathLike | optuna.storages.BaseStorage | None


@contextlib.contextmanager
def optuna_quiet() -> Iterator[None]:
    """Optuna's per-trial INFO lines and experimental-feature warnings off (the caller prints its own lines)."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


class StorageError(ValueError):
    """A study storage that cannot be opened: the message names it, its password masked, and what to check."""


STORAGE_HINTS = (  # (a pattern of the driver's message, what to check), the first match wins
    (
        r"password authentication failed|no password supplied|authentication failed",
        "check the user name and the password (given in PGPASSWORD or ~/.pgpass rather than in the URL)",
    ),
    (
        r'database "[^"]*" does not exist',
        "create the database on the server (createdb NAME, as its owner) or correct its name in the URL",
    ),
    (
        r"refused|resolve host|translate host name|timeout|timed out|no route|unreachable|could not connect",
        (
            "check the host name and port, and that the server runs and accepts TCP connections from this machine "
            "(postgresql.conf's listen_addresses, pg_hba.conf)"
        ),
    ),
    (
        r"Can't load plugin|import DB access module|No module named|Could not parse",
        (
            "check the URL: postgresql://USER@HOST[:PORT]/DATABASE (psycopg 3, a dependency of this project), "
            "sqlite:///PATH, or another SQLAlchemy URL whose driver is installed"
        ),
    ),
)


def storage_problem(url: str, error: Exception) -> StorageError:
    """The StorageError for ``error`` (the driver's, SQLAlchemy's) met opening ``url``: one line, password masked."""
    reason = " ".join(str(getattr(error, "orig", None) or error).split())
    reason = re.sub(r"\s*\(Background on this error at: \S+\)", "", reason)
    hint = next(
        (hint for pattern, hint in STORAGE_HINTS if re.search(pattern, reason, re.IGNORECASE)),
        "check the URL and the server",
    )
    return StorageError(f"cannot open the study storage {mask_url(url)}: {mask_url(reason)}; {hint}")


def engine_options(url: str) -> dict[str, Any]:
    """SQLAlchemy engine options for ``url``: a PostgreSQL connection gives up after ``CONNECT_SECONDS``
    unless the URL says otherwise."""
    if url.startswith("postgresql") and "connect_timeout" not in url:
        return {"connect_args": {"connect_timeout": CONNECT_SECONDS}}
    return {}


def holds_studies(url: str) -> bool:
    """Whether the database at ``url`` holds Optuna's tables, looked at without creating anything
    (not even an SQLite file)."""
    database = sqlalchemy.engine.make_url(url).database
    if url.startswith("sqlite") and database not in (None, "", ":memory:") and not Path(database).exists():
        return False
    engine = sqlalchemy.create_engine(url, **engine_options(url))
    try:
        with engine.connect() as connection:
            return sqlalchemy.inspect(connection).has_table("studies")
    finally:
        engine.dispose()


def open_storage(storage: StorageArg, default_file: Path, must_exist: bool = False) -> optuna.storages.BaseStorage:
    """A journal file for a path; an RDBStorage with heartbeats and retries for a URL,
    or SQLite in ``default_file`` for None.

    ``must_exist``: FileNotFoundError for a file that is not there yet, or a database without Optuna's tables, rather
    than creating it (a reader's look, a worker joining a study). StorageError (one line, the password masked) for a URL
    that cannot be opened: a wrong password, a server that cannot be reached, a missing database, an unknown scheme."""
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage
    file = default_file if storage is None else Path(storage) if "://" not in str(storage) else None
    if must_exist and file is not None and not file.exists():
        raise FileNotFoundError(f"no study storage at {file}")
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
    if storage is not None and file is not None:
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(file)))
    url = f"sqlite:///{file.resolve()}" if storage is None else storage_url(str(storage))
    try:
        if must_exist and not holds_studies(url):
            raise FileNotFoundError(f"no Optuna study in {mask_url(url)}, which was left as it was")
        with optuna_quiet():
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_options(url),
                heartbeat_interval=HEARTBEAT_SECONDS,
                grace_period=GRACE_SECONDS,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(),
            )
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as error:
        raise storage_problem(url, error) from error


def join_settings(
    study: optuna.Study,
    attribute: str,
    wanted: dict[str, Any],
    completed: Callable[[dict[str, Any]], dict[str, Any]] = dict,
) -> None:
    """Store ``wanted`` (JSON-ready) as the study's user attribute ``attribute`` if it has none; ValueError naming
    every clash if it holds others: every worker must train with the same settings.

    ``completed`` fills in what the stored settings lack because it was added since the study was made (e.g.
    ``training.with_added_defaults``), so that a study of an earlier version joins with the defaults that keep
    its behaviour.
    """
    if attribute not in study.user_attrs:
        study.set_user_attr(attribute, wanted)
    clashes = config_clashes(completed(study.user_attrs[attribute]), wanted, stored_as="in the study")
    if clashes:
        raise ValueError(
            f"study {study.study_name!r} was created with other settings ({'; '.join(clashes)}). Pass the study's "
            "settings to join it, another `study_name` to start a new one, or delete its storage to start over"
        )


def folder_lock(folder: Path) -> TextIO | None:
    """The folder's lock, held until the returned file is closed or the process ends (killed or not); None if held."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_FILE, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def wait_for_lock(folder: Path) -> None:
    """Block until no process holds the folder's lock (``folder_lock``)."""
    with open(folder / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)


def claim(trial: optuna.Trial) -> None:
    """Record this process in ``trial`` (after taking its folder's lock): what ``requeue_killed`` checks."""
    trial.set_user_attr(WORKER_ATTR, {"host": socket.gethostname(), "pid": os.getpid(), "trial": trial.number})


def requeue(study: optuna.Study, storage: optuna.storages.BaseStorage, trial: FrozenTrial) -> None:
    """FAIL ``trial`` if it is RUNNING, then queue it again as Optuna's retry callback does."""
    if trial.state == TrialState.RUNNING:
        trial_id = storage.get_trial_id_from_study_id_trial_number(
            storage.get_study_id_from_name(study.study_name), trial.number
        )
        try:
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker failed it first, and queued it
            return
    optuna.storages.RetryHeartbeatStaleTrialCallback()(study, trial)


def requeue_killed(
    study: optuna.Study, storage: optuna.storages.BaseStorage, folder_of: Callable[[FrozenTrial], Path]
) -> None:
    """Requeue the RUNNING trials claimed on this machine whose folder (``folder_of``) is locked no more: killed."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        record = trial.user_attrs.get(WORKER_ATTR)
        if (
            isinstance(record, dict)
            and record.get("trial") == trial.number
            and record.get("host") == socket.gethostname()
        ):
            lock = folder_lock(folder_of(trial))
            if lock is not None:
                lock.close()
                requeue(study, storage, trial)


def told_first_elsewhere(error: Exception) -> bool:
    """Whether ``error`` is Optuna refusing to finish a trial that is finished already: SQLite handed the same
    WAITING trial to another worker too, which told it first (both pruned a duplicate, or one waited for the other)."""
    return isinstance(error, optuna.exceptions.UpdateFinishedTrialError) or (
        isinstance(error, ValueError)
        and re.fullmatch(r"Cannot tell a (COMPLETE|PRUNED|FAIL) trial\.", str(error)) is not None
    )


def run_jobs(
    study: optuna.Study,
    storage: optuna.storages.BaseStorage,
    due_jobs: Callable[[], list[Job]],
    folder_of: Callable[[Job], Path],
    run_job: Callable[[optuna.Trial, Job, Path], float],
    max_trials: int | None = None,
) -> None:
    """Run the study's queued jobs, a trial each, until none is left (or after ``max_trials``); every worker calls this.

    Before and after each trial: jobs of killed workers are queued again (``requeue_killed``,
    Optuna's ``fail_stale_trials``), and each job of ``due_jobs()`` without a COMPLETE, RUNNING or
    WAITING trial is queued (so one that failed runs again). A trial whose job is COMPLETE or RUNNING
    in an earlier trial is PRUNED, as is one whose folder another process holds, once that process has
    let go; ``run_job`` runs the rest while this process holds the job folder's lock. SQLite may hand
    one WAITING trial to two workers (``told_first_elsewhere``): the later tell is dropped, and a job left
    without a live trial so is queued again. While only other workers' jobs run, it waits: the jobs
    due next may depend on theirs.
    """
    held: list[TextIO | None] = []

    def objective(trial: optuna.Trial) -> float:
        if (job := trial.user_attrs.get(JOB_ATTR)) is None:  # made by Optuna: another worker took the last queued job
            raise optuna.TrialPruned("no job queued")
        for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
            if other.user_attrs.get(JOB_ATTR) == job and (
                other.state == TrialState.COMPLETE or other.number < trial.number
            ):
                raise optuna.TrialPruned(f"{job} is {other.state.name} in trial {other.number}")
        held.append(folder_lock(folder_of(job)))  # held until the trial is told (tidy): else a live trial looks killed
        if held[-1] is None:  # SQLite can hand one WAITING trial to two workers: let the other tell it first
            wait_for_lock(folder_of(job))
            raise optuna.TrialPruned(f"another process worked in {folder_of(job)}")
        claim(trial)
        return run_job(trial, job, folder_of(job))

    def tidy(study: optuna.Study, trial: FrozenTrial | None = None) -> None:
        while held:
            if (lock := held.pop()) is not None:
                lock.close()
        requeue_killed(study, storage, lambda killed: folder_of(killed.user_attrs[JOB_ATTR]))
        optuna.storages.fail_stale_trials(study)  # heartbeats tell which workers of other machines died
        live = [t.user_attrs.get(JOB_ATTR) for t in study.get_trials(deepcopy=False, states=LIVE)]
        for job in due_jobs():
            if job not in live:
                study.enqueue_trial({}, user_attrs={JOB_ATTR: job})

    trials = 0
    with optuna_quiet():
        try:
            tidy(study)
            while (max_trials is None or trials < max_trials) and (
                states := {t.state for t in study.get_trials(deepcopy=False, states=LIVE[1:])}
            ):
                if TrialState.WAITING in states:
                    try:
                        study.optimize(objective, n_trials=1, callbacks=[tidy])
                    except Exception as error:  # re-raised unless another worker told this trial first
                        if not told_first_elsewhere(error):
                            raise
                        tidy(study)
                    trials += 1
                else:
                    time.sleep(WAIT_SECONDS)
                    tidy(study)
        finally:
            tidy(study)
