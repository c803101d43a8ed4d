"""`technic demo`: the whole product on one machine, in one command.

1. train a quick model on the first two years of the shipped data (100 symbols) and register
   it, if the registry has no promoted version;
2. choose the replay window AFTER the model's training data plus the label purge, so every
   score shown is out of sample, with warm-up bars before it (``stream.tools.demo_window``);
3. start the embedded broker (fresh data dir; or use ``$TECHNIC_BOOTSTRAP``) and create the
   topics; start a worker process (``technic-stream worker --score-from``);
4. replay the bars (and fundamentals) in event-time order while a live terminal view shows the
   latest timestamp's top and bottom scores, alerts and counters;
5. shut everything down cleanly on completion, Ctrl-C, SIGTERM or SIGHUP: the worker, then the
   broker (which writes its snapshot), each stopped and reaped (``stream.io.children``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
import orjson
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from stream.io.children import spawn, stop_child, wait_http
from stream.tools.demo_window import LABEL_LAG, TRAIN_SYMBOLS, Window, replay_window, training_dates
from stream.io.kafka import new_consumer


def _ensure_model(registry: Path, bars, fund, secs, con: Console) -> dict:
    """The promoted version's manifest; trains and registers the demo model first if there is none."""
    from technic.training import train_quick_model
    from technic.registry import Registry
    reg = Registry(registry)
    if not reg.promoted():
        first, cut = training_dates(bars["date"].unique())
        syms = sorted(bars["symbol"].unique())[:TRAIN_SYMBOLS]
        train = bars[(bars["date"] <= cut) & bars["symbol"].isin(syms)]
        con.print(f"registry {registry} is empty: training a quick LightGBM model on {len(syms)} symbols, "
                  f"{str(first)[:10]}..{str(cut)[:10]} ...")
        t0 = time.time()
        v = train_quick_model(train, fund, secs, registry_root=registry, end=cut)
        con.print(f"registered and promoted {v} in {time.time() - t0:.0f}s (see `technic registry show {v}`)")
    doc = reg.show(reg.promoted())
    doc.setdefault("version", reg.promoted())
    return doc


def _window(manifest: dict, bars, days) -> Window:
    """Out-of-sample replay window for the promoted model (see stream.tools.demo_window)."""
    from technic.features import registry as R
    lookback = {d["name"]: int(d["lookback"]) for d in R.describe()}
    warm = max((lookback.get(f, 0) for f in manifest.get("feature_names", [])), default=0) + 1
    # the furthest any training label looked ahead (multi-horizon targets reach beyond the horizons)
    purge = int(manifest.get("purge_bars") or max(int(h) for h in manifest.get("horizons", [10])) + LABEL_LAG)
    return replay_window(bars["date"].unique(), manifest["data_range"]["end"], days, purge, warm)


class View:
    """State of the live terminal view."""

    def __init__(self, n_bars: int, n_scores: int | None = None, note: str = ""):
        self.n_bars = n_bars
        self.n_scores = n_bars if n_scores is None else n_scores
        self.note = note
        self.published = 0
        self.scores = 0
        self.dead = 0
        self.latest_ts = None
        self.latest: dict[str, dict] = {}
        self.alerts: deque = deque(maxlen=8)
        self.t0 = time.time()

    def on_score(self, v: dict) -> None:
        self.scores += 1
        if v["ts"] != self.latest_ts:
            if self.latest_ts is None or v["ts"] > self.latest_ts:
                self.latest_ts, self.latest = v["ts"], {}
            else:
                return
        self.latest[v["symbol"]] = v

    def render(self):
        el = max(time.time() - self.t0, 1e-9)
        head = (f"bars published {self.published:,}/{self.n_bars:,}   scores {self.scores:,} "
                f"({self.scores / el:,.0f}/s)   dead letters {self.dead}   latest bar {self.latest_ts or '-'}")
        rows = sorted(self.latest.values(), key=lambda v: v["rank"])
        t = Table(expand=True)
        for col in ("", "symbol", "score 5d", "score 10d", "pct", "top contributions"):
            t.add_column(col)
        picks = rows[:5] + rows[-5:] if len(rows) > 10 else rows
        for v in picks:
            tag = "[green]top[/]" if v["rank"] <= 5 else "[red]bottom[/]"
            contrib = ", ".join(f"{c['feature']} {c['contribution']:+.4f}" for c in v["top_contributions"][:3])
            sc = v["scores"]
            t.add_row(tag, v["symbol"], f"{sc.get('5d', float('nan')):+.4f}", f"{sc.get('10d', float('nan')):+.4f}",
                      f"{v['percentile']:.2f}", contrib)
        al = Table(expand=True, show_header=False)
        for a in list(self.alerts)[::-1]:
            al.add_row(a.get("ts", ""), a["severity"], a["type"], a.get("symbol", ""), a["message"][:80])
        model = rows[0]["model_version"] if rows else "-"
        head = head + (f"\n{self.note}" if self.note else "")
        return Group(Panel(head, title=f"Technic live scores (model {model}, out of sample)"), t,
                     Panel(al, title="alerts"))


async def _consume(boot: str, view: View, stop: asyncio.Event) -> None:
    from stream.io.topics_config import topic_name
    c = new_consumer(boot, topic_name("scores"), topic_name("alerts"), topic_name("deadletter"),
                     auto_offset_reset="earliest")
    await c.start()
    try:
        while not stop.is_set():
            batch = await c.getmany(timeout_ms=200, max_records=5000)
            for tp, msgs in batch.items():
                kind = tp.topic.rsplit(".", 1)[-1]
                for m in msgs:
                    v = orjson.loads(m.value)
                    if kind == "scores":
                        view.on_score(v)
                    elif kind == "alerts":
                        view.alerts.append(v)
                    else:
                        view.dead += 1
    finally:
        await c.stop()


async def _run(boot: str, records, n_bars: int, view: View, rate, con: Console) -> None:
    from stream.tools.publisher import publish
    stop = asyncio.Event()
    consumer = asyncio.create_task(_consume(boot, view, stop))

    def tick(n):
        view.published += n

    with Live(view.render(), console=con, refresh_per_second=4) as live:
        pub = asyncio.create_task(publish(boot, records, rate=rate, window=2000, progress=tick))
        idle_since = None
        while True:
            await asyncio.sleep(0.25)
            live.update(view.render())
            if pub.done():
                pub.result()
                if view.scores >= view.n_scores:
                    break
                last = view.scores
                if idle_since is None or last != idle_since[0]:
                    idle_since = (last, time.time())
                elif time.time() - idle_since[1] > 15:
                    break
        stop.set()
        await consumer
        live.update(view.render())


def run_demo(*, days=None, symbols=None, data: Path, workdir: Path, rate=None) -> None:
    from technic.commands.features import load_inputs
    from technic.paths import require_dev_files

    from stream.io.broker import EmbeddedBroker, free_port, resolve_bootstrap
    from stream.tools.publisher import bar_records, fundamental_records, publish
    from stream.io.topics_config import create_topics, topic_specs

    con = Console()
    files = require_dev_files(Path(data))
    bars, fund, secs, _ = load_inputs(files["bars"], files.get("fundamentals"), files.get("securities"),
                                      None, symbols)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    registry = Path(os.environ.get("TECHNIC_REGISTRY", workdir / "registry"))
    manifest = _ensure_model(registry, bars, fund, secs, con)
    win = _window(manifest, bars, days)
    con.print(f"model {manifest['version']}: {win.describe()}")
    warm = bars[bars["date"].isin(win.warmup)]
    replay = bars[bars["date"].isin(win.dates)]
    broker = worker = None
    boot = resolve_bootstrap()
    try:
        if boot is None:
            shutil.rmtree(workdir / "broker", ignore_errors=True)
            broker = EmbeddedBroker(workdir / "broker").start()
            boot = broker.bootstrap
            con.print(f"embedded broker (noida-db) on {boot}, pid {broker.pid}")
        create_topics(boot, topic_specs())
        port = free_port()
        cmd = [sys.executable, "-m", "stream.cli", "worker", "--bootstrap", boot, "--registry", str(registry),
               "--web-port", str(port), "--datadir", str(workdir / "worker"), "--app-id", f"technic-demo-{port}",
               "--score-from", win.first]
        if files.get("securities"):
            cmd += ["--securities", str(files["securities"])]
        asyncio.run(publish(boot, list(fundamental_records(fund))))  # reference data before the worker starts
        log = open(workdir / "worker.log", "wb")
        worker = spawn(cmd, stdout=log, stderr=log)
        wait_http(f"http://127.0.0.1:{port}/health", 120, worker)
        con.print(f"worker pid {worker.pid} ready (health: http://127.0.0.1:{port}/health, log {workdir / 'worker.log'})")
        # one frame: per-symbol seq numbers run on from the warm-up into the window
        records = list(bar_records(bars[bars["date"].isin(np.concatenate([win.warmup, win.dates]))]))
        view = View(len(records), len(replay), note=f"[dim]{win.describe()}[/]")
        asyncio.run(_run(boot, records, len(records), view, rate, con))
        el = time.time() - view.t0
        con.print(f"done: {view.published:,} bars ({len(warm):,} warm-up) -> {view.scores:,} out-of-sample scores "
                  f"in {el:.1f}s ({view.published / el:,.0f} bars/s end to end), {view.dead} dead letters")
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM/SIGHUP (technic.commands.shutdown.Shutdown)
        con.print(f"{getattr(e, 'signame', 'interrupted')}: shutting down")
    finally:
        stop_child(worker)
        if broker is not None:
            broker.stop()
            con.print("broker stopped")
