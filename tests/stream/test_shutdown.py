"""`technic demo` stopped by SIGTERM, SIGHUP or SIGINT leaves nothing behind.

The demo runs in its own session (as under a supervisor, ``timeout`` or CI); once its broker and
worker are up and bars are flowing, it gets the signal. Within 20 s no process of that session may
be left (checked in /proc: every process whose session id is the demo's pid), the broker must have
been stopped gracefully (its snapshot written, its state file removed) and the demo exits 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from technic.errors import TechnicError

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.broker, pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")]


def session_members(sid: int) -> list[tuple[int, str]]:
    """(pid, command name) of every live process whose session id is ``sid``."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        state, session = fields[0], int(fields[3])
        if session == sid and state != "Z":
            out.append((int(d.name), comm))
        elif session == sid:
            out.append((int(d.name), comm + " <zombie>"))
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    from technic.paths import data_dir
    try:
        data_dir()
    except TechnicError:
        pytest.skip("shipped dev data not found (set TECHNIC_DATA_DIR)")
    return tmp_path_factory.mktemp("demo")   # shared: the first run trains the registry, the others reuse it


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_demo_stopped_by_a_signal_leaves_no_process(sig, workdir):
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="120")
    env.pop("TECHNIC_BOOTSTRAP", None)
    env.pop("TECHNIC_REGISTRY", None)
    log = workdir / f"demo-{sig.name}.log"
    with open(log, "wb") as out:
        # --rate: the replay lasts ~30 s, so the signal always arrives while bars are flowing
        demo = subprocess.Popen([sys.executable, "-m", "technic.cli", "demo", "--days", "60", "--symbols", "20",
                                 "--rate", "200", "--workdir", str(workdir)], cwd=workdir, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 240
        while "ready (health" not in log.read_text(errors="replace"):
            assert demo.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.time() < deadline, "the demo's worker did not come up"
            time.sleep(0.5)
        time.sleep(1.0)                       # bars are being published and scored
        members = session_members(demo.pid)
        names = " ".join(c for _, c in members)
        assert len(members) >= 3 and "noida-db" in names, members   # demo, broker, worker
        t0 = time.time()
        demo.send_signal(sig)
        rc = demo.wait(20)
        left = session_members(demo.pid)
        while left and time.time() - t0 < 20:
            time.sleep(0.5)
            left = session_members(demo.pid)
        text = log.read_text(errors="replace")
        print(f"\n{sig.name}: demo exited {rc} after {time.time() - t0:.1f}s; {len(members)} processes before, "
              f"{len(left)} after")
        assert not left, (left, text[-2000:])
        assert rc == 0, text[-2000:]
        assert "broker stopped" in text
        broker_dir = workdir / "broker"
        assert not (broker_dir / "broker.json").exists()           # graceful stop removed its state file
        assert any(p.stat().st_size > 0 for p in broker_dir.glob("*.json"))   # and the snapshot is on disk
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
