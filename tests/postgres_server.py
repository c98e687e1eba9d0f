"""A real PostgreSQL server on 127.0.0.1 for the shared-study tests: Debian's package, started in a temporary folder.

``start_server`` runs ``initdb`` in a fresh data folder (password authentication over TCP, a random
password), starts ``postgres`` on a free port with its socket in that folder, and ``stop_server``
stops it and deletes the folder. PostgreSQL refuses to run as root, so under root the folder
belongs to the ``postgres`` system user (Debian's package creates it) and every command runs as
that user through ``runuser``. ``find_binaries`` looks on PATH, then in Debian's
``/usr/lib/postgresql/<version>/bin`` (not on PATH), newest version first.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

USER = "musicvae"  # the server's superuser, as initdb -U makes it
SERVICE_USER = "postgres"  # the system user that runs the server when the tests run as root
INSTALL = "apt-get install postgresql (./test.sh does so where it runs as root with apt)"


@dataclass(frozen=True)
class Server:
    """A running server: its folder (data/, the socket, the log), port and the superuser's password."""

    folder: Path
    bin_dir: Path
    port: int
    password: str
    run_as: str | None  # the system user running it (root's tests), None for the current user

    def url(self, database: str, password: str | None = None, scheme: str = "postgresql") -> str:
        """The SQLAlchemy URL of ``database`` as ``USER`` with ``password`` (the server's by default)."""
        return f"{scheme}://{USER}:{self.password if password is None else password}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database of a unique name: each test its own study tables."""
        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=USER, password=self.password, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return name

    def tables(self, database: str) -> list[str]:
        """The names of the tables in ``database``'s public schema."""
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=USER, password=self.password, dbname=database
        ) as connection:
            rows = connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
            return [row[0] for row in rows]


def find_binaries() -> Path | None:
    """The folder of ``initdb``, ``pg_ctl`` and ``postgres``: on PATH, else Debian's newest;
    None if PostgreSQL is not installed."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(os.path.realpath(on_path)).parent
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    return debian[-1].parent if debian else None


def missing_reason() -> str | None:
    """Why no server can start here (no binaries; root without the ``postgres`` user), None if one can."""
    if find_binaries() is None:
        return f"PostgreSQL's initdb and pg_ctl not found on PATH or in /usr/lib/postgresql/*/bin: {INSTALL}"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            return (
                f"running as root, and PostgreSQL refuses root: no {SERVICE_USER!r} system user "
                f"to run it as ({INSTALL})"
            )
    return None


def free_port() -> int:
    """A TCP port of 127.0.0.1 nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(run_as: str | None, *command: str) -> None:
    """Run ``command`` as the system user ``run_as`` (None: as this process);
    RuntimeError with its output if it fails."""
    prefix = ["runuser", "-u", run_as, "--"] if run_as else []
    done = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()}"
        )


def start_server() -> Server:
    """initdb and start a server on a free port of 127.0.0.1 in a new temporary folder (see the module docstring)."""
    bin_dir = find_binaries()
    # /tmp: every user may enter it (a root-only TMPDIR would lock the postgres user out) and its paths are short
    # enough for the socket's (107 bytes at most)
    folder = Path(tempfile.mkdtemp(prefix="musicvae-postgres-", dir="/tmp" if Path("/tmp").is_dir() else None))
    try:
        return start_in(folder, bin_dir)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def start_in(folder: Path, bin_dir: Path) -> Server:
    """``start_server``'s work in ``folder``, a new empty folder of its own."""
    run_as = SERVICE_USER if os.geteuid() == 0 else None
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(folder, entry.pw_uid, entry.pw_gid)  # mkdtemp made it 0700: the server's user alone reads it
    password = secrets.token_urlsafe(16)
    password_file = folder / "password"
    password_file.write_text(password + "\n")
    if run_as:
        os.chown(password_file, entry.pw_uid, entry.pw_gid)
    data = folder / "data"
    run(
        run_as,
        str(bin_dir / "initdb"),
        "-D",
        str(data),
        "-U",
        USER,
        f"--pwfile={password_file}",
        "--auth-local=scram-sha-256",
        "--auth-host=scram-sha-256",
        "--encoding=UTF8",
        "--no-instructions",
    )
    password_file.unlink()
    port = free_port()
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -k {folder} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    try:
        run(
            run_as,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(folder / "server.log"),
            "-o",
            options,
            "-w",
            "start",
        )
    except RuntimeError as error:
        log = folder / "server.log"
        raise RuntimeError(f"{error}\n{log.read_text()[-2000:] if log.exists() else ''}") from None
    return Server(folder, bin_dir, port, password, run_as)


def stop_server(server: Server) -> None:
    """Stop the server (immediate: its data is thrown away, no checkpoint needed) and delete its folder."""
    try:
        run(
            server.run_as,
            str(server.bin_dir / "pg_ctl"),
            "-D",
            str(server.folder / "data"),
            "-m",
            "immediate",
            "-w",
            "stop",
        )
    finally:
        shutil.rmtree(server.folder, ignore_errors=True)
