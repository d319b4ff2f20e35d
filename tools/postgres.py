"""A throwaway PostgreSQL server for tests and benchmarks: the Debian package's `initdb` and
`postgres` in a temp dir, on a free loopback port, owned by this process and removed after."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from types import TracebackType

import psycopg

from mesh.local.stack import free_port
from runner.child import Child

BIN_DIR = Path(os.environ.get("POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
HOST = "127.0.0.1"
# Test-only settings: durability traded for speed; the data dies with the run anyway.
FAST = ("fsync=off", "synchronous_commit=off", "full_page_writes=off", "max_connections=300")


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing or the server did not start in time."""


def available() -> bool:
    return (BIN_DIR / "initdb").is_file() and (BIN_DIR / "postgres").is_file()


@dataclass
class TempPostgres:
    """`with TempPostgres() as pg: pg.create_database()` gives a URL to a fresh database."""

    timeout: float = 60.0
    port: int = 0
    workdir: Path = field(init=False)
    _server: Child | None = field(default=None, init=False)
    _names: count[int] = field(default_factory=count, init=False)

    def __enter__(self) -> TempPostgres:
        if not available():
            raise PostgresUnavailable(
                f"no initdb/postgres in {BIN_DIR} (install the `postgresql` package or set "
                "POSTGRES_BIN)"
            )
        self.workdir = Path(tempfile.mkdtemp(prefix="shop-pg-"))
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        # postgres refuses to run as root: as root, run it as the package's `postgres` user.
        user = "postgres" if os.geteuid() == 0 else None
        if user is not None:
            account = pwd.getpwnam(user)
            os.chown(self.workdir, account.pw_uid, account.pw_gid)
        data = self.workdir / "data"
        initdb = [str(BIN_DIR / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
        initdb += ["--encoding=UTF8", "--locale=C", "--no-sync"]
        subprocess.run(
            initdb,
            user=user,
            check=True,
            capture_output=True,
            timeout=self.timeout,
        )
        self.port = self.port or free_port()
        settings = [f"listen_addresses={HOST}", f"port={self.port}"]
        settings.append(f"unix_socket_directories={self.workdir}")
        self._server = Child(
            [str(BIN_DIR / "postgres"), "-D", str(data)]
            + [arg for s in (*settings, *FAST) for arg in ("-c", s)],
            self.workdir / "server.log",
            user=user,
            own_session=True,  # a Ctrl-C in the terminal reaches us, not the server
            stop_signal=signal.SIGINT,  # "fast" shutdown: clients are cut off
        )
        self._server.start()
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError as error:
                if not self._server.running or time.monotonic() > deadline:
                    raise PostgresUnavailable(
                        f"postgres did not start:\n{self.log_tail()}"
                    ) from error
                time.sleep(0.05)

    def url(self, database: str) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{database}"

    def create_database(self, prefix: str = "shop") -> str:
        """A new empty database; returns its URL."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def create_schema(self, database: str = "postgres", prefix: str = "test") -> str:
        """A new empty schema in `database`; returns a URL whose connections use only it. Much
        cheaper than a database, so tests take one each."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(database), autocommit=True) as admin:
            admin.execute(f'CREATE SCHEMA "{name}"')
        return f"{self.url(database)}?options=-csearch_path%3D{name}"

    def log_tail(self, lines: int = 20) -> str:
        return "(no log)" if self._server is None else self._server.log_tail(lines)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.stop(grace=10)
        shutil.rmtree(self.workdir, ignore_errors=True)
