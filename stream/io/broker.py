"""Embedded Kafka-protocol broker (noida-db) for development, demos and tests.

There is no Apache Kafka or Docker on the development machines, so the demo and the
tests run against ``noida-db`` (a local Rust binary shipped in the ``noida_db`` wheel).
It is a single-worker convenience with known limits (see ``docs/broker.md``): all
data lives in RAM and is snapshotted to one JSON file about once a second, its group
coordinator freezes when a member crashes or a second member joins, and topics
auto-create with a single partition (so :meth:`EmbeddedBroker.create_topics` creates
ours explicitly).

Production points ``TECHNIC_BOOTSTRAP`` (or a CLI flag) at a real Kafka cluster; then
no embedded broker starts (:func:`resolve_bootstrap`, :func:`ensure_broker`).

We run the binary directly (not via the ``noida-db`` Python wrapper) so the PID we
hold is the broker's and SIGTERM reaches it.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import signal
import socket
import subprocess
import time
from importlib.resources import files
from pathlib import Path
from typing import Iterable

from stream.io.children import spawn, stop_child
from stream.io.topics_config import create_topics, create_topics_async  # noqa: F401 (re-export)
from technic.errors import TechnicError

ENV_BOOTSTRAP = "TECHNIC_BOOTSTRAP"
LOG_NAME = "noida-broker.log"
#: Written in the data dir while a broker runs, so other CLIs attach instead of starting a second one.
STATE_NAME = "broker.json"
#: Suggested fixed port for ``technic-stream broker`` (stable TECHNIC_BOOTSTRAP across runs).
DEFAULT_PORT = 19092


class BrokerError(TechnicError):
    """The embedded broker could not start, become ready, or create topics."""


def broker_binary() -> Path:
    """Path of the noida-db executable inside the installed ``noida_db`` package."""
    name = "noida-db.exe" if os.name == "nt" else "noida-db"
    path = Path(str(files("noida_db").joinpath(name)))
    if not path.is_file():
        raise BrokerError(f"noida-db binary not found at {path}; install the 'noida-db' package")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the usual bind-to-0 trick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something already listens on ``host:port``.

    SO_REUSEADDR makes lingering TIME_WAIT sockets (e.g. right after a restart) not count.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
        return False


def running_broker(data_dir: str | os.PathLike) -> str | None:
    """Bootstrap of a live embedded broker that owns ``data_dir`` (per its state file), else None."""
    import json

    try:
        state = json.loads((Path(data_dir) / STATE_NAME).read_text())
        pid, host, port = int(state["pid"]), state["host"], int(state["port"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return f"{host}:{port}" if port_in_use(port, host) else None


def resolve_bootstrap(flag: str | None = None) -> str | None:
    """Bootstrap servers of an external cluster: ``flag``, else ``$TECHNIC_BOOTSTRAP``, else None.

    None means "no external cluster: start the embedded broker".
    """
    if flag:
        return flag
    return os.environ.get(ENV_BOOTSTRAP) or None


async def _metadata_ok(bootstrap: str, timeout_s: float) -> None:
    """One real Kafka-protocol round trip: bootstrap + metadata request.

    aiokafka logs every refused connection at ERROR; while polling for readiness
    those are expected, so its logger is quietened for the duration.
    """
    import logging

    from aiokafka.admin import AIOKafkaAdminClient

    log = logging.getLogger("aiokafka")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        await _metadata_round_trip(AIOKafkaAdminClient, bootstrap, timeout_s)
    finally:
        log.setLevel(level)


async def _metadata_round_trip(client_cls, bootstrap: str, timeout_s: float) -> None:
    admin = client_cls(bootstrap_servers=bootstrap, request_timeout_ms=int(max(timeout_s, 1) * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(admin.list_topics(), timeout_s)
    finally:
        await admin.close()


def wait_ready(bootstrap: str, timeout_s: float = 30.0) -> float:
    """Block until a metadata request to ``bootstrap`` succeeds; return seconds waited."""
    t0 = time.monotonic()
    last: Exception | None = None
    while time.monotonic() - t0 < timeout_s:
        try:
            asyncio.run(_metadata_ok(bootstrap, min(5.0, timeout_s)))
            return time.monotonic() - t0
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
            last = exc
            time.sleep(0.05)
    raise BrokerError(f"Kafka broker at {bootstrap} not ready after {timeout_s:.0f}s: {last!r}")


class EmbeddedBroker:
    """A noida-db Kafka broker as a child process on ``127.0.0.1:port`` with data in ``data_dir``.

    >>> with EmbeddedBroker("/tmp/technic-broker") as b:   # doctest: +SKIP
    ...     b.create_topics(TOPIC_SPECS); print(b.bootstrap)
    """

    def __init__(self, data_dir: str | os.PathLike, port: int | None = None,
                 host: str = "127.0.0.1", ready_timeout_s: float = 30.0,
                 stop_timeout_s: float = 10.0):
        self.data_dir = Path(data_dir)
        self.port = port
        self.host = host
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.startup_s: float | None = None
        self._proc: subprocess.Popen | None = None
        self._log = None

    # -- properties -------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"`` for Kafka clients."""
        if self.port is None:
            raise BrokerError("broker has no port yet; call start() first")
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """PID of the noida-db process (None when not running)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_NAME

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, n_chars: int = 2000) -> str:
        """Last characters of the broker's log file (for error messages)."""
        try:
            return self.log_path.read_text(errors="replace")[-n_chars:]
        except OSError:
            return "<no log>"

    # -- lifecycle --------------------------------------------------------
    def start(self) -> "EmbeddedBroker":
        """Start the broker and block until it answers a metadata request."""
        if self.is_running():
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        other = running_broker(self.data_dir)
        if other:
            # Two brokers on one data dir would overwrite each other's snapshot.
            raise BrokerError(f"a broker already runs on data dir {self.data_dir} at {other}; "
                              f"use it (export {ENV_BOOTSTRAP}={other}) or stop it first")
        if self.port is None:
            self.port = free_port(self.host)
        elif port_in_use(self.port, self.host):
            # Otherwise the readiness probe would talk to whatever already listens there.
            raise BrokerError(f"port {self.port} on {self.host} is already in use; "
                              "pick another port or leave it out to get a free one")
        cmd = [str(broker_binary()), "start", "--only", "kafka", "--host", self.host,
               "--kafka-port", str(self.port), "--data-dir", str(self.data_dir)]
        self._log = open(self.log_path, "ab")
        t0 = time.monotonic()
        # own process group (Ctrl-C in the terminal does not reach it; stop() does) and SIGTERM
        # when this process dies without stopping it (stream.io.children)
        self._proc = spawn(cmd, stdout=self._log, stderr=subprocess.STDOUT)
        atexit.register(self.stop)  # never leave an orphaned broker behind
        deadline = t0 + self.ready_timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                rc = self._proc.returncode
                self._cleanup()
                raise BrokerError(f"noida-db exited with code {rc} during start-up "
                                  f"(port {self.port}); log tail:\n{self.log_tail()}")
            try:
                asyncio.run(_metadata_ok(self.bootstrap, 2.0))
                if self._proc.poll() is not None:
                    continue  # answered by someone else; the exit branch above reports it
                self.startup_s = time.monotonic() - t0
                self._write_state()
                return self
            except Exception as exc:  # noqa: BLE001 - not ready yet
                last = exc
                time.sleep(0.02)
        self.stop()
        raise BrokerError(f"noida-db on {self.bootstrap} not ready after {self.ready_timeout_s:.0f}s "
                          f"({last!r}); log tail:\n{self.log_tail()}")

    def stop(self, timeout_s: float | None = None) -> int | None:
        """Graceful stop: SIGTERM (the broker writes its snapshot), wait, SIGKILL after a timeout.

        Returns the exit code (None if it was not running).
        """
        if self._proc is None:
            return None
        timeout = self.stop_timeout_s if timeout_s is None else timeout_s
        try:
            rc = stop_child(self._proc, timeout)
        finally:
            self._cleanup()
        return rc

    def kill(self) -> None:
        """SIGKILL (crash simulation): the last ~second of acknowledged writes may be lost."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)
        self._cleanup()

    def restart(self) -> "EmbeddedBroker":
        """Graceful stop, then start on the same data dir and port."""
        self.stop()
        return self.start()

    def create_topics(self, specs: Iterable) -> list[str]:
        """Create topics explicitly (partitions + configs); existing ones are left alone."""
        return create_topics(self.bootstrap, specs)

    def _write_state(self) -> None:
        import json

        state = {"pid": self.pid, "host": self.host, "port": self.port, "bootstrap": self.bootstrap}
        (self.data_dir / STATE_NAME).write_text(json.dumps(state) + "\n")

    def _cleanup(self) -> None:
        atexit.unregister(self.stop)
        try:
            (self.data_dir / STATE_NAME).unlink()
        except OSError:
            pass
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.is_running() else "stopped"
        return f"EmbeddedBroker({str(self.data_dir)!r}, port={self.port}, {state})"


def ensure_broker(data_dir: str | os.PathLike, port: int | None = None,
                  flag: str | None = None) -> tuple[str, EmbeddedBroker | None]:
    """Bootstrap for a CLI: an external cluster if configured, else an embedded broker.

    Order: ``flag``/``$TECHNIC_BOOTSTRAP``; a live broker already serving ``data_dir``
    (e.g. ``technic-stream broker`` in another terminal); else start one.
    Returns ``(bootstrap, broker)``; ``broker`` is None unless this call started it,
    in which case the caller owns it and must ``stop()`` it.
    """
    external = resolve_bootstrap(flag) or running_broker(data_dir)
    if external:
        return external, None
    broker = EmbeddedBroker(data_dir, port=port).start()
    return broker.bootstrap, broker


def run_broker(data_dir: str | os.PathLike, port: int | None = None,
               create: bool = True, partitions: int | None = None) -> int:
    """Run the embedded broker in the foreground until Ctrl-C/SIGTERM (``technic-stream broker``)."""
    from stream.io.topics_config import topic_specs

    broker = EmbeddedBroker(data_dir, port=port)
    stop = {"flag": False}

    def _on_signal(signum, frame):  # noqa: ARG001
        stop["flag"] = True

    # SIGINT too: a Ctrl-C (or a supervisor) must reach us even if SIGINT was ignored; SIGHUP
    # (terminal closed) unless it is ignored (nohup)
    sigs = [signal.SIGTERM, signal.SIGINT]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        sigs.append(signal.SIGHUP)
    old = {sig: signal.signal(sig, _on_signal) for sig in sigs}
    try:
        broker.start()
        if create:
            names = broker.create_topics(topic_specs(partitions))
            print(f"created topics: {', '.join(names) or '(all existed)'}", flush=True)
        print(f"broker ready on {broker.bootstrap} (pid {broker.pid}, data {broker.data_dir}, "
              f"started in {broker.startup_s:.2f}s); export {ENV_BOOTSTRAP}={broker.bootstrap}; "
              "Ctrl-C stops", flush=True)
        while not stop["flag"]:
            if not broker.is_running():
                print(f"broker exited unexpectedly; log tail:\n{broker.log_tail()}", flush=True)
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        broker.stop()
    print("broker stopped (data saved)", flush=True)
    return 0
