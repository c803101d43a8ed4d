"""The split topology as child processes: N per-symbol workers + 1 scoring worker.

Used by ``technic-stream parity --symbol-workers N`` and the benchmarks. Static partition
assignment (``--member i/N``): the embedded broker's group coordinator freezes after a crash.
``kill(i)`` SIGKILLs per-symbol worker ``i`` (``kill("scoring")``: the scoring worker);
``restart(i)`` starts it again (it restores the latest snapshots of its partitions, or the scoring
snapshot, and replays only the input after them). Per-symbol workers checkpoint every ``checkpoint_s``, the
scoring worker every ``scoring_checkpoint_s`` (None: the CLI's default).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from stream.io.broker import free_port
from stream.io.children import spawn, stop_child, wait_http


def health(port: int) -> dict:
    return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10).read())


class SplitTopology:
    def __init__(self, bootstrap: str, registry, work: Path, env: dict, n_symbol: int, securities=None,
                 checkpoint_s: float = 1.0, grace_s: float = 2.0, extra=(), scoring_checkpoint_s: float | None = None,
                 group: str | None = None, symbol_nice: int = 0):
        self.boot, self.registry, self.work, self.env = bootstrap, registry, Path(work), env
        self.symbol_nice = symbol_nice   # per-symbol workers' --nice (sharing the cores with the scoring worker)
        self.group = group     # per-symbol workers take partitions from this consumer group, not --member
        self.n = n_symbol
        self.securities = securities
        self.checkpoint_s, self.grace_s = checkpoint_s, grace_s
        self.scoring_checkpoint_s = scoring_checkpoint_s
        self.extra = list(extra)
        self.procs: dict = {}
        self.ports: dict = {}
        self.restarts = 0
        self.restore_s: list[float] = []

    def _cmd(self, role: str, port: int, member: int | None = None) -> list[str]:
        cmd = [sys.executable, "-m", "stream.cli", "worker", "--bootstrap", self.boot, "--registry",
               str(self.registry), "--web-port", str(port), "--role", role, "--grace", str(self.grace_s),
               "--no-drift", "--log-text"]
        if member is not None:
            cmd += (["--group", self.group] if self.group else ["--member", f"{member}/{self.n}"])
            cmd += ["--checkpoint", str(self.checkpoint_s)]
            if self.symbol_nice:
                cmd += ["--nice", str(self.symbol_nice)]
        elif self.scoring_checkpoint_s is not None:
            cmd += ["--checkpoint", str(self.scoring_checkpoint_s)]
        if self.securities:
            cmd += ["--securities", str(self.securities)]
        return cmd + self.extra

    def _spawn(self, name, role, member=None):
        port = self.ports.setdefault(name, free_port())
        log = open(self.work / f"{name}.log", "ab")
        self.procs[name] = spawn(self._cmd(role, port, member), env=self.env, stdout=subprocess.DEVNULL, stderr=log)

    def start(self, timeout_s: float = 180, n_symbol: int | None = None) -> None:
        """Start the scoring worker and the first ``n_symbol`` (default all) per-symbol workers."""
        self._spawn("scoring", "scoring")
        for i in range(self.n if n_symbol is None else n_symbol):
            self._spawn(f"symbol{i}", "symbol", i)
        for name, p in self.procs.items():
            wait_http(f"http://127.0.0.1:{self.ports[name]}/health", timeout_s, p)

    @staticmethod
    def name_of(i) -> str:
        return "scoring" if i == "scoring" else f"symbol{i}"

    def kill(self, i) -> None:
        p = self.procs[self.name_of(i)]
        p.send_signal(signal.SIGKILL)
        p.wait()

    def restart(self, i, timeout_s: float = 180) -> float:
        """Start worker ``i`` (or "scoring") again; return its ``restore_s`` (snapshot read and loaded)."""
        name = self.name_of(i)
        if i == "scoring":
            self._spawn(name, "scoring")
        else:
            self._spawn(name, "symbol", i)
        wait_http(f"http://127.0.0.1:{self.ports[name]}/health", timeout_s, self.procs[name])
        self.restarts += 1
        deadline = time.time() + timeout_s
        while health(self.ports[name]).get("restore_s") is None and time.time() < deadline:
            time.sleep(0.1)   # a group member restores once the group has assigned it partitions
        r = float(health(self.ports[name])["restore_s"])
        self.restore_s.append(r)
        return r

    def status(self, name: str) -> dict:
        return health(self.ports[name])

    def stop(self) -> None:
        for p in self.procs.values():
            stop_child(p)
