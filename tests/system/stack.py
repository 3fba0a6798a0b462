"""A real Airflow deployment on loopback, for the real-stack tier (``make test``) and ``make up``.

What it starts, each as a process of its own, with every file under ``build/stack/``:

* PostgreSQL (a cluster in ``build/stack/pgdata``; Debian's ``postgresql`` package is installed when
  no server binaries are found and this is root; ``initdb`` refuses root, so the server runs as the
  ``postgres`` user then),
* the bundled API emulator,
* ``airflow api-server``, ``scheduler`` (LocalExecutor), ``dag-processor`` and two ``triggerer``,
* with ``executor="celery"`` (``STACK_EXECUTOR=celery``, ``make test-stack EXECUTOR=celery``): the
  scheduler on CeleryExecutor, Redis as its broker (a server of its own; Debian's ``redis-server``
  package is installed when missing and this is root), Postgres as the result backend, and two
  ``airflow celery worker``,

from a virtualenv of its own (``build/stack/venv``) holding Airflow and the provider's wheel from
``dist/`` (what ``make dist`` builds; ``STACK_DIST_DIR`` names another folder): installed the way users
install it. The connection is stored in
the metadata database with ``airflow connections add``, never in an environment variable. Runs are
driven through the REST API with a JWT from the simple auth manager.

``python -m tests.system.stack up`` starts it for a person (UI on http://127.0.0.1:8080) and
``python -m tests.system.stack down`` stops every process it started, by process group.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW_VERSION = os.environ.get("STACK_AIRFLOW_VERSION", "3.3.2")
# For an older Airflow: install it with its dependencies as they were on its release day (what
# scripts/test_compat.sh does for the unit suite; today's FastAPI and pydantic break old releases).
UPLOADED_PRIOR_TO = os.environ.get("STACK_UPLOADED_PRIOR_TO", "")
# `make up` lives here; the test tier in a folder of its own (tests/system/conftest.py).
BUILD = ROOT / "build" / "stack"
STATE_FILE = "stack.json"
ADMIN = "admin"
TRIGGERERS = 2
#: ``local`` (LocalExecutor) or ``celery`` (CeleryExecutor with Redis and two Celery workers).
EXECUTOR = os.environ.get("STACK_EXECUTOR", "local")
EXECUTORS = ("local", "celery")
CELERY_WORKERS = 2
# Task processes per Celery worker: two workers together run as many as LocalExecutor's parallelism.
CELERY_CONCURRENCY = 4
# Celery 5.7 breaks Airflow's Celery provider (the scheduler rejects the executor setting; workers fail
# with "cannot import name 'retry' from 'celery.backends.database'"), so below it.
CELERY_REQUIREMENTS = ("apache-airflow-providers-celery", "celery[redis]>=5.5,<5.7")


class StackError(RuntimeError):
    """The stack could not be started; the message says what is missing and where the logs are."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _is_root() -> bool:
    return os.geteuid() == 0


def _run(argv: list[str], *, env: dict[str, str] | None = None, user: str | None = None, **kw: Any) -> str:
    if user:
        argv = ["runuser", "-u", user, "--", *argv]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, **kw)
    if done.returncode != 0:
        raise StackError(
            f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-4000:]}"
        )
    return done.stdout


# -- PostgreSQL ---------------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    """The newest PostgreSQL server's bin folder on this machine, if any."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3].split(".")[0])
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("postgres") and shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def ensure_postgres() -> Path:
    """The server's bin folder; installs Debian's ``postgresql`` when missing and this is root."""
    bindir = postgres_bindir()
    if bindir:
        return bindir
    if not _is_root():
        raise StackError(
            "The real-stack tier needs a PostgreSQL server (initdb and postgres), and none is installed. "
            "Install it with `sudo apt-get install postgresql` (Debian/Ubuntu), then run it again."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], env=env, timeout=600)
    _run(["apt-get", "install", "-y", "-qq", "postgresql"], env=env, timeout=900)
    bindir = postgres_bindir()
    if not bindir:
        raise StackError("apt-get installed postgresql, but no initdb/postgres binaries were found")
    return bindir


# -- Redis (CeleryExecutor's broker) --------------------------------------------------------------


def redis_server() -> str | None:
    """The ``redis-server`` binary on this machine, if any."""
    return shutil.which("redis-server") or next(
        (path for path in ("/usr/bin/redis-server", "/usr/sbin/redis-server") if os.access(path, os.X_OK)),
        None,
    )


def ensure_redis() -> str:
    """The ``redis-server`` binary; installs Debian's ``redis-server`` when missing and this is root."""
    found = redis_server()
    if found:
        return found
    if not _is_root():
        raise StackError(
            "The real-stack tier on CeleryExecutor needs a Redis server, and none is installed. "
            "Install it with `sudo apt-get install redis-server` (Debian/Ubuntu), then run it again."
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run(["apt-get", "update", "-qq"], env=env, timeout=600)
    _run(["apt-get", "install", "-y", "-qq", "redis-server"], env=env, timeout=900)
    found = redis_server()
    if not found:
        raise StackError("apt-get installed redis-server, but no redis-server binary was found")
    return found


# -- the stack ----------------------------------------------------------------------------------


@dataclass
class Stack:
    """A running (or startable) deployment; ``state`` is saved to ``build/stack/stack.json``."""

    root: Path = BUILD
    airflow_version: str = AIRFLOW_VERSION
    api_port: int = 0
    dag_folders: tuple[Path, ...] = (ROOT / "example_dags",)
    # Real generations take 30-60 s; much shorter ones meet an Airflow race (docs/deployment.md).
    generation_seconds: float = 20.0
    #: Airflow settings on top of the stack's own (``AIRFLOW__SECTION__KEY``: value).
    config: dict[str, str] = field(default_factory=dict)
    #: Environment of the triggerers only (the tier's loop diagnostics).
    triggerer_env: dict[str, str] = field(default_factory=dict)
    #: ``local`` or ``celery`` (see the module docstring).
    executor: str = EXECUTOR
    state: dict[str, Any] = field(default_factory=dict)

    # paths
    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise StackError(f"unknown executor {self.executor!r}: one of {', '.join(EXECUTORS)}")

    @property
    def celery(self) -> bool:
        return self.executor == "celery"

    @property
    def venv(self) -> Path:
        # Celery's venv holds more (its provider, Celery, Redis' client): one of its own.
        return self.root / (f"venv-{self.airflow_version}" + ("-celery" if self.celery else ""))

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    # -- install -----------------------------------------------------------------------------

    def install(self) -> None:
        """Airflow and the provider's wheel (from ``dist/``) into a virtualenv of their own."""
        dist = Path(os.environ.get("STACK_DIST_DIR") or ROOT / "dist")
        wheels = sorted(dist.glob("airflow_provider_stableaudio-*.whl"))
        if not wheels:
            raise StackError(f"no wheel in {dist}: run `make dist` first")
        stamp = self.venv / ".stack-installed"
        pip = [self.bin("python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        # The wheel's dependencies and Airflow's Postgres drivers (sync and async), Airflow pinned.
        requirements = [f"apache-airflow=={self.airflow_version}", "psycopg2-binary", "asyncpg"]
        if self.celery:  # Airflow's Celery provider and Celery with its Redis transport
            requirements += CELERY_REQUIREMENTS
        want = " ".join([*requirements, UPLOADED_PRIOR_TO])
        if not stamp.exists() or stamp.read_text() != want:
            shutil.rmtree(self.venv, ignore_errors=True)
            _run([sys.executable, "-m", "venv", str(self.venv)])
            if UPLOADED_PRIOR_TO:
                _run([*pip, "--upgrade", "pip>=26"], timeout=600)  # --uploaded-prior-to
                # No pip config: its local package folder carries no upload dates.
                _run(
                    [*pip, "--uploaded-prior-to", UPLOADED_PRIOR_TO, *requirements],
                    env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
                    timeout=1200,
                )
            # Then the wheel on top: it moves only what the provider itself requires.
            _run([*pip, *requirements, str(wheels[-1])], timeout=1200)
            stamp.write_text(want)
        # The provider itself, every time: the wheel changes with the code.
        _run([*pip, "--no-deps", "--force-reinstall", str(wheels[-1])], timeout=600)

    # -- environment -------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        s = self.state
        keep = ("PATH", "LANG", "LC_ALL", "HOME", "TMPDIR", "TZ")
        bundles = [
            {
                "name": f"bundle_{i}",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(folder), "refresh_interval": 0},
            }
            for i, folder in enumerate(s["dag_folders"])
        ]
        api = f"http://127.0.0.1:{s['api_port']}"
        return {
            **{k: os.environ[k] for k in keep if k in os.environ},
            "PYTHONUNBUFFERED": "1",
            "AIRFLOW_HOME": str(self.airflow_home),
            "STABLEAUDIO_OUTPUT_DIR": str(self.output),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor" if s.get("executor") == "celery" else "LocalExecutor",
            # Few task processes per worker: each is a Python process, and the machine has 2 cores
            # (more parallel deferrals also raise the odds of Airflow's own race, docs/deployment.md).
            "AIRFLOW__CORE__PARALLELISM": "8",
            "AIRFLOW__CORE__FERNET_KEY": s["fernet_key"],
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.airflow_home / "passwords.json"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (
                f"postgresql+psycopg2://postgres@127.0.0.1:{s['pg_port']}/airflow"
            ),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(s["api_port"]),
            "AIRFLOW__API__BASE_URL": api,
            "AIRFLOW__API__SECRET_KEY": s["secret_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": s["jwt_secret"],
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            # Free ports, not 8793: several stacks may run on one machine.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(s["worker_log_port"]),
            **(self._celery_env() if s.get("executor") == "celery" else {}),
            **s["config"],
        }

    def _celery_env(self) -> dict[str, str]:
        s = self.state
        return {
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{s['redis_port']}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://postgres@127.0.0.1:{s['pg_port']}/airflow",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(CELERY_CONCURRENCY),
            # A killed worker's task is found by its missing heartbeat (default 300 s) and retried.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        }

    def airflow(self, *args: str, timeout: float = 300) -> str:
        return _run([self.bin("airflow"), *args], env=self.env(), timeout=timeout)

    # -- processes ---------------------------------------------------------------------------

    def _spawn(
        self, name: str, argv: list[str], *, user: str | None = None, env: dict[str, str] | None = None
    ) -> int:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        if user:
            argv = ["runuser", "-u", user, "--", *argv]
        proc = subprocess.Popen(
            argv, env={**self.env(), **(env or {})}, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=self.root,
        )  # fmt: skip
        log.close()
        self.state.setdefault("pids", {})[name] = proc.pid
        self._save()
        return proc.pid

    def _save(self) -> None:
        (self.root / STATE_FILE).write_text(json.dumps(self.state, indent=2))

    @classmethod
    def load(cls, root: Path = BUILD) -> Stack:
        state = json.loads((root / STATE_FILE).read_text())
        return cls(
            root=root,
            airflow_version=state["airflow_version"],
            executor=state.get("executor", "local"),
            state=state,
        )

    def alive(self, name: str) -> bool:
        pid = self.state.get("pids", {}).get(name)
        if not pid:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # A zombie child (killed, not reaped) is not alive.
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
                return False
        return True

    def kill(self, name: str, sig: int = signal.SIGTERM, *, wait: float = 20) -> None:
        """Signal the process group of ``name``; after SIGTERM, SIGKILL what is left after ``wait``."""
        pid = self.state.get("pids", {}).get(name)
        if not pid:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while self.alive(name) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)

    def kill_session(self, name: str) -> list[int]:
        """SIGKILL every process in the session of ``name``, as when its machine is lost; the pids killed.

        More than :meth:`kill`: a task process puts itself in a process group of its own (the Task
        SDK's supervisor kills its tree that way), so a worker's process group does not hold it.
        """
        leader = self.state.get("pids", {}).get(name)
        killed = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                pid = int(stat.parent.name)
                if leader and int(stat.read_text().rsplit(") ", 1)[1].split()[3]) == leader:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
        deadline = time.monotonic() + 20
        while self.alive(name) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(leader, os.WNOHANG)
            time.sleep(0.1)
        return killed

    def session_of(self, pid: int) -> str | None:
        """The name of the started process whose session holds ``pid`` (a task's worker), if any."""
        try:
            sid = os.getsid(pid)
        except OSError:
            return None
        return next((name for name, leader in self.state.get("pids", {}).items() if leader == sid), None)

    # -- start / stop ------------------------------------------------------------------------

    def start(self, *, api_key: str | None = None) -> None:
        """Start everything, fresh; raises :class:`StackError` with what to read when a part fails."""
        if (self.root / STATE_FILE).exists():
            with contextlib.suppress(Exception):
                Stack.load(self.root).stop()
        for folder in ("airflow", "logs", "output", "pgdata", "run"):
            shutil.rmtree(self.root / folder, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)
        self.airflow_home.mkdir(parents=True)
        self.output.mkdir(parents=True)
        from cryptography.fernet import Fernet

        self.state = {
            "airflow_version": self.airflow_version,
            "dag_folders": [str(p) for p in self.dag_folders],
            "config": self.config,
            "triggerer_env": self.triggerer_env,
            "worker_log_port": _free_port(),
            "pg_port": _free_port(),
            "api_port": self.api_port or _free_port(),
            "fernet_key": Fernet.generate_key().decode(),
            "secret_key": secrets.token_hex(16),
            "jwt_secret": secrets.token_hex(32),
            "admin_password": secrets.token_urlsafe(12),
            "api_key": api_key or f"canary-{secrets.token_hex(16)}",
            "executor": self.executor,
            "redis_port": _free_port() if self.celery else None,
            "pids": {},
            "triggerer_jobs": {},
        }
        self._save()
        (self.airflow_home / "passwords.json").write_text(json.dumps({ADMIN: self.state["admin_password"]}))
        timings: dict[str, float] = {}
        started = time.monotonic()
        self.install()
        timings["install"] = time.monotonic() - started
        self._start_postgres()
        timings["postgres"] = time.monotonic() - started
        if self.celery:
            self._start_redis()
            timings["redis"] = time.monotonic() - started
        self.airflow("db", "migrate", timeout=600)
        timings["db_migrate"] = time.monotonic() - started
        self._start_emulator()
        self.airflow(
            "connections", "add", "stableaudio_default",
            "--conn-type", "stableaudio",
            "--conn-host", self.state["emulator_url"],
            "--conn-password", self.state["api_key"],
            "--conn-extra", json.dumps({"timeout": 30}),
        )  # fmt: skip
        # The same emulator serves Stability AI's routes: the stability connection type reaches them.
        self.airflow(
            "connections", "add", "stability_default",
            "--conn-type", "stability",
            "--conn-host", self.state["emulator_url"],
            "--conn-password", self.state["api_key"],
        )  # fmt: skip
        self._spawn("api-server", [self.bin("airflow"), "api-server"])
        self._spawn("scheduler", [self.bin("airflow"), "scheduler"])
        self._spawn("dag-processor", [self.bin("airflow"), "dag-processor"])
        self.wait_for(self._api_up, "the API server to answer", 180, "api-server")
        for n in range(1, TRIGGERERS + 1):
            self.start_triggerer(f"triggerer-{n}")
        if self.celery:
            for n in range(1, CELERY_WORKERS + 1):
                self.start_celery_worker(f"celery-worker-{n}")
        timings["up"] = time.monotonic() - started
        self.state["timings"] = timings
        self._save()

    def start_triggerer(self, name: str, *, env: dict[str, str] | None = None) -> None:
        """Start a triggerer and record its job id (triggers name their triggerer by it)."""
        known = set(self.triggerer_jobs_running())
        # Each triggerer serves its logs on a port of its own (two on one port: "address in use").
        own = {"AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()), **self.state["triggerer_env"]}
        self._spawn(name, [self.bin("airflow"), "triggerer"], env={**own, **(env or {})})

        def new_job() -> bool:
            fresh = set(self.triggerer_jobs_running()) - known
            if fresh:
                self.state["triggerer_jobs"][name] = max(fresh)
                self._save()
            return bool(fresh)

        self.wait_for(new_job, f"{name} to heartbeat", 120, name)

    def start_celery_worker(self, name: str) -> None:
        """Start a Celery worker (a Celery node name of its own) and wait until it takes tasks."""
        log = self.logs / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        self._spawn(
            name,
            [self.bin("airflow"), "celery", "worker", "--celery-hostname", name,
             "--concurrency", str(CELERY_CONCURRENCY)],
            # Each worker serves its task logs on a port of its own.
            env={"AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port())},
        )  # fmt: skip

        def ready() -> bool:
            with open(log, "rb") as handle:
                handle.seek(offset)
                return b" ready." in handle.read()

        self.wait_for(ready, f"{name} to be ready", 180, name)

    def stop(self) -> None:
        """Stop every process this stack started (Airflow first, Postgres last)."""
        pids = self.state.get("pids", {})
        for name in [n for n in pids if n not in ("postgres", "emulator", "redis")]:
            self.kill(name)
            if name.startswith("celery-worker"):
                self.kill_session(name)  # task processes left in groups of their own
        self.kill("emulator")
        self.kill("redis")
        if "postgres" in pids:
            self.kill("postgres", signal.SIGINT)  # fast shutdown
        self.state["pids"] = {}
        self._save()

    def wait_for(self, check: Any, what: str, timeout: float, log: str | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if check():
                    return
            if log and not self.alive(log):
                raise StackError(f"{log} exited while waiting for {what}: see {self.logs / (log + '.log')}")
            time.sleep(0.5)
        raise StackError(f"timed out after {timeout:g}s waiting for {what}: see the logs in {self.logs}")

    def _start_postgres(self) -> None:
        bindir = ensure_postgres()
        user = "postgres" if _is_root() else None
        self.pgdata.mkdir(parents=True)
        sockets = self.root / "run"
        sockets.mkdir(parents=True)
        if user:
            shutil.chown(self.pgdata, user)
            shutil.chown(sockets, user)
        _run(
            [str(bindir / "initdb"), "-D", str(self.pgdata), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            user=user, timeout=300,
        )  # fmt: skip
        self.state["pg_bindir"] = str(bindir)
        self._spawn(
            "postgres",
            [
                str(bindir / "postgres"), "-D", str(self.pgdata), "-p", str(self.state["pg_port"]),
                "-h", "127.0.0.1", "-k", str(sockets),
                # A throwaway test cluster: durability buys nothing, speed does.
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                "-c", "max_connections=300",
            ],
            user=user,
        )  # fmt: skip
        self.wait_for(lambda: self.psql("select 1", db="postgres") == "1", "PostgreSQL", 60, "postgres")
        self.psql("create database airflow", db="postgres")

    def _start_redis(self) -> None:
        server = ensure_redis()
        self._spawn(
            "redis",
            [server, "--port", str(self.state["redis_port"]), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root / "run"), "--daemonize", "no"],
        )  # fmt: skip

        def answers() -> bool:
            with socket.create_connection(("127.0.0.1", self.state["redis_port"]), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")

        self.wait_for(answers, "Redis", 60, "redis")

    def psql(self, sql: str, *, db: str = "airflow") -> str:
        """Run SQL as the superuser; the result rows, ``|``-separated."""
        return _run(
            [str(Path(self.state["pg_bindir"]) / "psql"), "-h", "127.0.0.1", "-p", str(self.state["pg_port"]),
             "-U", "postgres", "-d", db, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
            timeout=60,
        ).strip()  # fmt: skip

    def pg_dump(self) -> str:
        return _run(
            [str(Path(self.state["pg_bindir"]) / "pg_dump"), "-h", "127.0.0.1", "-p", str(self.state["pg_port"]),
             "-U", "postgres", "airflow"],
            timeout=300,
        )  # fmt: skip

    def _start_emulator(self) -> None:
        port_file = self.root / "run" / "emulator.port"
        self._spawn(
            "emulator",
            [self.bin("python"), "-m", "airflow_provider_stableaudio.emulator", "--port", "0",
             "--port-file", str(port_file), "--generation-seconds", str(self.generation_seconds),
             "--api-key", self.state["api_key"]],
        )  # fmt: skip
        self.wait_for(lambda: port_file.read_text().strip().isdigit(), "the emulator", 60, "emulator")
        self.state["emulator_url"] = f"http://127.0.0.1:{port_file.read_text().strip()}"
        self._save()

    def triggerer_jobs_running(self) -> list[int]:
        rows = self.psql(
            "select id from job where job_type = 'TriggererJob' and state = 'running' "
            "and latest_heartbeat > now() - interval '20 seconds'"
        )
        return [int(r) for r in rows.split()] if rows else []

    # -- REST API ----------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.state['api_port']}"

    def _api_up(self) -> bool:
        with urllib.request.urlopen(f"{self.api_url}/api/v2/monitor/health", timeout=5) as response:
            return bool(response.status == 200)

    def token(self) -> str:
        if not self.state.get("token") or self.state.get("token_at", 0) < time.time() - 3000:
            body = {"username": ADMIN, "password": self.state["admin_password"]}
            self.state["token"] = self._request("POST", "/auth/token", body, auth=False)["access_token"]
            self.state["token_at"] = time.time()
        return str(self.state["token"])

    def _request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.api_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise StackError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:2000]!r}") from None
        return json.loads(raw) if raw else None

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call ``/api/v2`` + ``path`` with the admin's JWT."""
        return self._request(method, "/api/v2" + path, body)

    def emulator(self, method: str, path: str, body: Any = None) -> Any:
        """Call the emulator's admin routes (``/_emulator/...``)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.state['emulator_url']}/_emulator/{path}", data=data, method=method,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        self.wait_for(
            lambda: self.api("GET", f"/dags/{dag_id}")["dag_id"] == dag_id, f"DAG {dag_id}", timeout
        )

    def unpause(self, dag_id: str) -> None:
        """DAGs arrive paused, as on any deployment (the scheduled examples would run otherwise)."""
        self.wait_for_dag(dag_id)
        self.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        self.unpause(dag_id)
        run = self.api(
            "POST",
            f"/dags/{dag_id}/dagRuns",
            {"logical_date": None, "conf": conf or {}, "dag_run_id": f"{dag_id}__{secrets.token_hex(4)}"},
        )
        return str(run["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.api("GET", f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}")["state"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in ("success", "failed"):
                return state
            time.sleep(1)
        raise StackError(f"run {run_id} of {dag_id} did not finish in {timeout:g}s: see {self.logs}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances?limit=1000"
        return list(self.api("GET", path)["task_instances"])

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str, map_index: int = -1) -> Any:
        path = (
            f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/{task_id}/xcomEntries/{key}"
            f"?map_index={map_index}&deserialize=true&stringify=false"
        )
        return self.api("GET", path)["value"]

    def links(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        path = f"/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/{task_id}/links"
        return dict(self.api("GET", path + f"?map_index={map_index}")["extra_links"])


# -- command line (make up / make down) ---------------------------------------------------------


def _up(args: argparse.Namespace) -> int:
    stack = Stack(api_port=args.port, generation_seconds=args.generation_seconds)
    print(f"==> Starting Airflow {stack.airflow_version} with Postgres, two triggerers and the emulator")
    print(f"    (logs in {stack.logs})", flush=True)
    try:
        stack.start()
    except StackError as exc:
        print(f"make up failed: {exc}", file=sys.stderr)
        with contextlib.suppress(Exception):
            stack.stop()
        return 1
    stack.unpause("example_stable_audio")
    print(
        f"\nAirflow is up: {stack.api_url}\n"
        f"  login:    {ADMIN}\n"
        f"  password: {stack.state['admin_password']}\n"
        f"  the stableaudio_default connection points at the emulator ({stack.state['emulator_url']}),\n"
        f"  clips are written under {stack.output}\n"
        "Trigger example_stable_audio, watch generate_clip go deferred, then open its 'Stable Audio clip' link.\n"
        "Stop it with: make down"
    )
    return 0


def _down(args: argparse.Namespace) -> int:
    if not (BUILD / STATE_FILE).exists():
        print("nothing to stop")
        return 0
    stack = Stack.load()
    names = [n for n in stack.state.get("pids", {}) if stack.alive(n)]
    stack.stop()
    print(f"stopped: {', '.join(names) or 'nothing was running'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.system.stack", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the stack for a person")
    up.add_argument("--port", type=int, default=8080, help="the UI's port (default: %(default)s)")
    up.add_argument("--generation-seconds", type=float, default=20.0, help="emulator's generation time")
    sub.add_parser("down", help="stop every process the stack started")
    args = parser.parse_args(argv)
    return _up(args) if args.command == "up" else _down(args)


if __name__ == "__main__":
    sys.exit(main())
