"""Soak: a real worker process at a fixed bar rate for N minutes (loopback only, bounded loop).

Synthetic random-walk daily bars for ``--symbols`` symbols are published at
``--rate`` bars/s (one timestamp = one bar per symbol) onto a fresh topic
prefix of the embedded broker (or ``--bootstrap``); every ``--sample-s``
seconds the worker's RSS (``/proc/PID/status`` VmRSS), its ``/health``
counters, the lag (bars published - bars received by the worker) and the
bar -> score latency (interval mean and p99 from the ``/metrics`` histogram)
are sampled. Memory growth = median RSS over the last 10 % of the run vs the
median over the 10 % right after warm-up (``--warmup`` fraction, default 0.2);
the bound is 5 %.

    .venv/bin/python bench/soak.py --minutes 10          # -> bench/results/soak.json + soak.md
    .venv/bin/python bench/soak.py --minutes 1 --out /tmp/soak   # CI-sized

``WorkerProc`` (start a worker subprocess, wait for /ready, read /health,
/metrics and RSS, SIGTERM/SIGKILL) is shared with the fault tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"

# worker with the tests' linear stand-in scorer (no registry needed): argv = bootstrap port app_id datadir grace secs
_LINEAR_LAUNCH = """
import sys
from stream.service.app import WorkerSettings
from stream.service.logs import setup_logging
from stream.stages.models import ModelSource
from stream.stages.pipeline import PipelineConfig
from stream.service.worker import run_worker
from technic.data import load_securities, sector_map
from tests.stream.test_pipeline import LinearScorer
boot, port, app_id, datadir, grace, secs = sys.argv[1:7]
setup_logging(True)
run_worker(WorkerSettings(bootstrap=boot, app_id=app_id, web_port=int(port), datadir=datadir),
           models=ModelSource(None, scorer=LinearScorer()), pipeline_config=PipelineConfig(grace_s=float(grace)),
           sectors=sector_map(load_securities(secs)) if secs else None)
"""


def rss_kb(pid: int) -> int | None:
    """Resident set size of ``pid`` in KiB from /proc (no psutil needed)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class WorkerProc:
    """A `technic-stream worker` subprocess on its own topic prefix (``registry``) or the linear stand-in."""

    def __init__(self, bootstrap: str, prefix: str, workdir: Path, registry: Path | None = None,
                 grace: float = 2.0, securities: Path | None = None, app_id: str | None = None,
                 top_k: int = 5):
        self.bootstrap, self.prefix, self.workdir = bootstrap, prefix, Path(workdir)
        self.registry, self.grace, self.securities, self.top_k = registry, grace, securities, top_k
        self.app_id = app_id or f"{prefix}worker"
        from stream.io.broker import free_port
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.workdir / f"worker{self.starts}.log"

    def start(self, ready_timeout: float = 120.0) -> "WorkerProc":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        env = dict(os.environ, TECHNIC_TOPIC_PREFIX=self.prefix, PYTHONPATH=str(ROOT))
        datadir = str(self.workdir / "worker")
        if self.registry is not None:
            cmd = [sys.executable, "-m", "stream.cli", "worker", "--bootstrap", self.bootstrap, "--registry",
                   str(self.registry), "--web-port", str(self.port), "--app-id", self.app_id, "--datadir", datadir,
                   "--grace", str(self.grace), "--top-k", str(self.top_k)]
            if self.securities:
                cmd += ["--securities", str(self.securities)]
        else:
            cmd = [sys.executable, "-c", _LINEAR_LAUNCH, self.bootstrap, str(self.port), self.app_id, datadir,
                   str(self.grace), str(self.securities or "")]
        from stream.io.children import spawn
        self.proc = spawn(cmd, env=env, cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=open(self.log_path, "wb"))
        self.wait_ready(ready_timeout)
        return self

    def get(self, path: str, timeout: float = 2.0) -> bytes:
        return urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout).read()

    def wait_ready(self, timeout: float) -> None:
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if json.loads(self.get("/ready", 1)).get("ready"):
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.3)
        raise TimeoutError(f"worker not ready after {timeout}s: {self.log_tail()}")

    def health(self) -> dict:
        return json.loads(self.get("/health"))

    def metrics(self) -> str:
        return self.get("/metrics").decode()

    def rss_kb(self) -> int | None:
        return rss_kb(self.proc.pid) if self.proc else None

    def log_tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def wait_for(self, pred, timeout: float, poll: float = 0.5) -> dict:
        """Poll /health until ``pred(health)``; return the last health (raises on timeout)."""
        t0, h = time.time(), {}
        while time.time() - t0 < timeout:
            try:
                h = self.health()
                if pred(h):
                    return h
            except (OSError, ValueError):
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}: {self.log_tail()}")
            time.sleep(poll)
        raise TimeoutError(f"condition not met after {timeout}s; last health {h}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (graceful), SIGKILL after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def kill(self) -> int:
        """SIGKILL (crash)."""
        self.proc.kill()
        return self.proc.wait(10)


def synthetic_bars(symbols: int, days: int, seed: int = 0):
    """Random-walk daily OHLCV bars (canonical columns) for symbols S000.. over business days from 2000."""
    import pandas as pd
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2000-01-03", periods=days)
    syms = [f"S{i:03d}" for i in range(symbols)]
    ret = rng.normal(0, 0.015, (days, symbols))
    close = 50 * np.exp(np.cumsum(ret, axis=0)) * rng.uniform(0.5, 2, symbols)
    opn = close * np.exp(rng.normal(0, 0.005, close.shape))
    high = np.maximum(opn, close) * (1 + rng.uniform(0, 0.01, close.shape))
    low = np.minimum(opn, close) * (1 - rng.uniform(0, 0.01, close.shape))
    vol = rng.integers(1e5, 5e6, close.shape).astype(np.float64)
    return pd.DataFrame({"date": np.repeat(dates.to_numpy(), symbols), "symbol": syms * days,
                         "open": opn.ravel(), "high": high.ravel(), "low": low.ravel(), "close": close.ravel(),
                         "volume": vol.ravel()})


def _latency_hist(text: str) -> tuple[list[tuple[float, float]], float, float]:
    from prometheus_client.parser import text_string_to_metric_families
    buckets, total, count = [], 0.0, 0.0
    for fam in text_string_to_metric_families(text):
        if fam.name != "technic_bar_to_score_latency_seconds":
            continue
        for s in fam.samples:
            if s.name.endswith("_bucket"):
                buckets.append((float(s.labels["le"]), s.value))
            elif s.name.endswith("_sum"):
                total = s.value
            elif s.name.endswith("_count"):
                count = s.value
    return sorted(buckets), total, count


def _p99(prev, cur) -> float | None:
    d = [(le, c - p) for (le, c), (_, p) in zip(cur, prev)] if prev else cur
    n = d[-1][1] if d else 0
    if n <= 0:
        return None
    for le, c in d:
        if c >= 0.99 * n:
            return le
    return None


def train_registry(workdir: Path) -> Path:
    """A quick LightGBM model on the 40 x 2y fixture (a demo model, not a research claim)."""
    from technic.data import clean_bars, load_bars, load_securities
    from technic.training import train_quick_model
    reg = workdir / "registry"
    bars, _ = clean_bars(load_bars(FIX / "bars_40x2y.csv.gz"))
    train_quick_model(bars, None, load_securities(FIX / "securities_40.csv"), registry_root=reg)
    return reg


def run_soak(minutes: float, rate: float = 500.0, symbols: int = 100, sample_s: float = 5.0, warmup: float = 0.2,
             bootstrap: str | None = None, registry: Path | None = None, workdir: Path | None = None,
             top_k: int = 5, log=print) -> dict:
    from stream.io.broker import EmbeddedBroker, resolve_bootstrap
    from stream.tools.publisher import bar_records, publish
    from stream.io.topics_config import create_topics, topic_specs

    work = Path(workdir or tempfile.mkdtemp(prefix="technic-soak-"))
    duration = minutes * 60.0
    n_bars = int(rate * duration)
    days = int(np.ceil(n_bars / symbols)) + 1
    linear = registry == "linear"  # the tests' linear stand-in scorer (CI variant: no training)
    if registry is None:
        log("training a quick model ...")
        registry = train_registry(work)
    prefix = f"soak{os.getpid()}{int(time.time())}."
    os.environ["TECHNIC_TOPIC_PREFIX"] = prefix  # before bar_records: it names the topic
    records = list(bar_records(synthetic_bars(symbols, days)))[:n_bars]
    broker = None
    boot = resolve_bootstrap(bootstrap)
    worker = None
    samples: list[dict] = []
    try:
        if boot is None:
            broker = EmbeddedBroker(work / "broker").start()
            boot = broker.bootstrap
        create_topics(boot, topic_specs())
        worker = WorkerProc(boot, prefix, work, registry=None if linear else registry, grace=2.0,
                            top_k=top_k).start()
        published = {"n": 0}
        stop = threading.Event()

        def sampler():
            t0 = time.time()
            prev_hist = None
            prev_sum = prev_cnt = 0.0
            while not stop.wait(sample_s):
                try:
                    h = worker.health()
                    hist, tot, cnt = _latency_hist(worker.metrics())
                except (OSError, ValueError) as e:
                    log(f"sample failed: {e}")
                    continue
                row = {"t_s": round(time.time() - t0, 1), "rss_mb": round((worker.rss_kb() or 0) / 1024, 1),
                       "published": published["n"], "bars_in": h["bars_in"], "scores_out": h["scores_out"],
                       "lag_bars": published["n"] - h["bars_in"], "pending_ts": h["pending_timestamps"],
                       "latency_mean_s": round((tot - prev_sum) / (cnt - prev_cnt), 4) if cnt > prev_cnt else None,
                       "latency_p99_le_s": _p99(prev_hist, hist)}
                prev_hist, prev_sum, prev_cnt = hist, tot, cnt
                samples.append(row)
                if len(samples) % 12 == 1:
                    log(json.dumps(row))

        th = threading.Thread(target=sampler, daemon=True)
        th.start()
        t_pub = time.time()
        stats = asyncio.run(publish(boot, records, rate=rate, window=max(1, int(rate / 20)),
                                    progress=lambda k: published.__setitem__("n", published["n"] + k)))
        pub_s = time.time() - t_pub
        try:
            final = worker.wait_for(lambda h: h["bars_in"] >= n_bars and h["pending_timestamps"] <= 1, 120)
        except TimeoutError as e:
            final = {"error": str(e)}
        stop.set()
        th.join(10)
        rss_exit = worker.rss_kb()
        rc = worker.stop()
    finally:
        if worker is not None:
            worker.stop()
        if broker is not None:
            broker.stop()
        os.environ.pop("TECHNIC_TOPIC_PREFIX", None)

    def med(rows):
        v = [r["rss_mb"] for r in rows if r["rss_mb"]]
        return float(np.median(v)) if v else float("nan")

    live = [s for s in samples if s["published"] < n_bars] or samples
    k = max(1, len(live) // 10)
    w0 = int(len(live) * warmup)
    rss_warm, rss_end = med(live[w0:w0 + k]), med(live[-k:])
    lat = [s["latency_mean_s"] for s in live[w0:] if s["latency_mean_s"] is not None]
    p99 = [s["latency_p99_le_s"] for s in live[w0:] if s["latency_p99_le_s"] is not None]
    summary = {
        "minutes": minutes, "rate_target": rate, "symbols": symbols, "bars": n_bars,
        "publish_seconds": round(pub_s, 1), "rate_achieved": round(n_bars / pub_s, 1), "publisher": stats,
        "rss_start_mb": samples[0]["rss_mb"] if samples else None, "rss_after_warmup_mb": rss_warm,
        "rss_end_mb": rss_end, "rss_at_exit_mb": round((rss_exit or 0) / 1024, 1),
        "rss_growth_pct": round(100 * (rss_end - rss_warm) / rss_warm, 2),
        "lag_max_bars": max((s["lag_bars"] for s in live[w0:]), default=None),
        "lag_median_bars": float(np.median([s["lag_bars"] for s in live[w0:]])) if live[w0:] else None,
        "latency_mean_s": round(float(np.mean(lat)), 4) if lat else None,
        "latency_p99_max_le_s": max(p99) if p99 else None,
        "final_health": {k2: final.get(k2) for k2 in ("bars_in", "bars_applied", "scores_out", "redelivered",
                                                        "offsets_skipped", "deadletter", "error") if k2 in final},
        "worker_exit_code": rc, "bootstrap_embedded": broker is not None, "warmup_fraction": warmup,
    }
    return {"summary": summary, "samples": samples}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=500.0, help="bars per second")
    ap.add_argument("--symbols", type=int, default=100)
    ap.add_argument("--sample-s", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=0.2, help="fraction of the run treated as warm-up")
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--registry", type=Path, default=None, help="registry with a promoted model (else trains one)")
    ap.add_argument("--out", type=Path, default=None, help="results dir (default bench/results)")
    ap.add_argument("--name", default="soak")
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from bench.common import environment, write_results
    res = run_soak(a.minutes, a.rate, a.symbols, a.sample_s, a.warmup, a.bootstrap, a.registry)
    s = res["summary"]
    meta = {**{k: v for k, v in s.items()}, "bound_rss_growth_pct": 5.0, "env": environment(),
            "command": " ".join(["bench/soak.py"] + (argv if argv is not None else sys.argv[1:]))}
    jp, mp = write_results(a.name, res["samples"], meta, a.out)
    print(json.dumps(s, indent=1, default=str))
    print(f"wrote {jp} {mp}")
    return 0 if s["rss_growth_pct"] < 5.0 and "error" not in s["final_health"] else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
