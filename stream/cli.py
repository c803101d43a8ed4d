"""`technic-stream ...`: broker, worker, publish, tail, parity. Parses and calls.

Every command talks to ``--bootstrap`` or ``$TECHNIC_BOOTSTRAP`` when given (a
real cluster: no embedded broker starts); otherwise to the embedded broker of
``--broker-dir``, started on demand (or already running from
``technic-stream broker``).
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import os
from pathlib import Path
from typing import Optional

import typer

from technic.errors import TechnicError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Technic streaming scorer (Faust on Kafka).")
BROKER_DIR = Path(os.environ.get("TECHNIC_BROKER_DIR", ".technic/broker"))
BootstrapOpt = typer.Option(None, "--bootstrap", help="Kafka bootstrap servers (else $TECHNIC_BOOTSTRAP, else embedded)")
BrokerDirOpt = typer.Option(BROKER_DIR, "--broker-dir", help="data dir of the embedded broker")


def _bootstrap(bootstrap: str | None, broker_dir: Path):
    from stream.io.broker import ensure_broker
    from stream.io.topics_config import topic_specs
    boot, broker = ensure_broker(broker_dir, flag=bootstrap)
    from stream.io.topics_config import create_topics
    create_topics(boot, topic_specs())
    return boot, broker


class Ingest(str, enum.Enum):
    direct = "direct"
    faust = "faust"


@app.command("broker")
def broker_cmd(broker_dir: Path = BrokerDirOpt,
               port: Optional[int] = typer.Option(None, min=1, max=65535, help="port (default: free)"),
               partitions: Optional[int] = typer.Option(None, min=1, help="partitions of symbol-keyed topics")):
    """Run the embedded Kafka-protocol broker (noida-db) in the foreground; creates the topics."""
    from stream.io.broker import run_broker
    raise SystemExit(run_broker(broker_dir, port=port, partitions=partitions))


class Role(str, enum.Enum):
    all = "all"
    symbol = "symbol"
    scoring = "scoring"


class Explain(str, enum.Enum):
    inline = "inline"
    deferred = "deferred"


def _group(group, member, partitions):
    if group is not None and (member or partitions):
        raise TechnicError("--group takes partitions from the consumer group: drop --member/--partitions")
    return group


@app.command("worker")
def worker_cmd(
    bootstrap: Optional[str] = BootstrapOpt, broker_dir: Path = BrokerDirOpt,
    registry: Optional[Path] = typer.Option(None, help="model registry (else $TECHNIC_REGISTRY or ./registry)"),
    securities: Optional[Path] = typer.Option(None, help="securities file for GICS sectors (default: shipped data)"),
    web_port: int = typer.Option(6066, min=0, max=65535, help="port of the health/metrics web server"),
    web_bind: str = typer.Option("127.0.0.1", help="address of the web server (0.0.0.0 inside a container)"),
    grace: float = typer.Option(2.0, help="seconds without new bars after which a timestamp is closed"),
    top_k: int = typer.Option(5, help="feature contributions per score (0 = off)"),
    explain: Explain = typer.Option(Explain.inline, help="inline: contributions in the score record; deferred: "
                                                         "scores first, contributions after them on "
                                                         "technic.explanations (TreeSHAP off the latency path)"),
    app_id: str = typer.Option("technic-worker", help="consumer group / Faust app id"),
    datadir: Path = typer.Option(Path(".technic/worker"), help="worker data directory"),
    log_json: bool = typer.Option(True, "--log-json/--log-text", help="structured JSON logs or human-readable"),
    ingest: Ingest = typer.Option(Ingest.direct, help="bars ingest: direct (one worker, fastest) or faust "
                                                      "(consumer group)"),
    universe: Optional[Path] = typer.Option(None, help="file of allowed symbols (one per line, or a securities "
                                                       "CSV); bars of other symbols are dead-lettered. "
                                                       "Default: open universe"),
    drift: bool = typer.Option(True, "--drift/--no-drift", help="drift monitoring (PSI, IC decay, ADWIN, Page-Hinkley)"),
    score_from: Optional[str] = typer.Option(None, help="score bar timestamps from this date on (YYYY-MM-DD); "
                                                       "earlier bars only warm up the features"),
    online_learning: bool = typer.Option(False, "--online-learning/--no-online-learning",
                                         help="River online correction of the scores (off: it did not help "
                                              "out of sample, see technic online-eval)"),
    role: Role = typer.Option(Role.all, help="all: the whole pipeline in one process (catch-up, then live); "
                                             "symbol: the per-symbol stage of some partitions (checkpointed); "
                                             "scoring: the universe-wide scoring stage over technic.features"),
    member: Optional[str] = typer.Option(None, help="--role symbol: static assignment i/N (partitions p % N == i)"),
    partitions: Optional[str] = typer.Option(None, help="--role symbol: static assignment, e.g. 0,3"),
    group: Optional[str] = typer.Option(None, help="--role symbol: take partitions from this consumer group "
                                                   "(Apache Kafka; rebalances restore from technic.snapshots) "
                                                   "instead of --member/--partitions"),
    checkpoint: float = typer.Option(5.0, min=0.05, help="--role symbol|scoring: seconds between state snapshots"),
    stall: float = typer.Option(60.0, help="--role scoring: seconds without progress after which a timestamp "
                                           "is scored without the partitions that did not report"),
    nice: int = typer.Option(0, min=0, max=19, help="lower this worker's CPU priority by N (os.nice): for "
                                                    "per-symbol workers sharing few cores with the scoring worker, "
                                                    "whose timestamp close is on the latency path"),
):
    """Run a worker: the whole pipeline (default), or one stage of the split mode (--role)."""
    from stream.service.app import WorkerSettings
    from stream.service.logs import setup_logging
    from stream.stages.pipeline import PipelineConfig
    from stream.service.worker import run_worker
    from stream.online.layer import OnlineConfig
    setup_logging(log_json)
    if nice:
        os.nice(nice)
    # every input is checked before a broker starts: a typo must not leave anything running
    root, sectors = _registry(registry), _sectors(securities)
    group = _group(group, member, partitions)
    config = PipelineConfig(grace_s=grace, top_k=top_k, explain=Explain(explain).value, universe=_universe(universe),
                            score_from=_date(score_from))
    online = OnlineConfig(enabled=drift or online_learning, online_learning=online_learning)
    boot, broker = _bootstrap(bootstrap, broker_dir)
    logging.getLogger("aiokafka").setLevel(logging.NOTSET)  # connected: outages are logged, rate-limited
    settings = WorkerSettings(bootstrap=boot, app_id=app_id, web_port=web_port, web_bind=web_bind,
                              datadir=str(datadir), ingest=Ingest(ingest).value)
    try:
        if role == Role.symbol:
            import asyncio
            from stream.service.assignment import parse_member, parse_partitions
            from stream.service.symbol_worker import serve_symbol_worker
            from stream.stages.symbol import SymbolConfig
            asyncio.run(serve_symbol_worker(
                settings, sectors=sectors, config=SymbolConfig(universe=config.universe),
                group=group, member=parse_member(member) if member else None,
                partitions=parse_partitions(partitions) if partitions else None, checkpoint_s=checkpoint))
        elif role == Role.scoring:
            import asyncio
            from stream.service.scoring_worker import serve_scoring_worker
            from stream.stages.models import ModelSource
            from stream.stages.scoring import ScoringConfig, ScoringStage
            stage = ScoringStage(ModelSource(root, None), sectors=sectors,
                                 config=ScoringConfig(grace_s=grace, stall_s=stall, top_k=top_k,
                                                      explain=Explain(explain).value))
            asyncio.run(serve_scoring_worker(settings, stage, checkpoint_s=checkpoint))
        else:
            run_worker(settings, registry_root=root, sectors=sectors, pipeline_config=config, online=online)
    finally:
        if broker is not None:
            broker.stop()


@app.command("publish")
def publish_cmd(
    bars: Path = typer.Option(..., help="bars file (Kaggle format csv/csv.gz/parquet)"),
    fundamentals: Optional[Path] = typer.Option(None), alt: Optional[Path] = typer.Option(None),
    rate: Optional[float] = typer.Option(None, help="bars per second (default: as fast as possible)"),
    symbols: Optional[int] = typer.Option(None, help="first N symbols"),
    days: Optional[int] = typer.Option(None, help="first N trading days"),
    bootstrap: Optional[str] = BootstrapOpt, broker_dir: Path = BrokerDirOpt,
):
    """Replay a bars file (and fundamentals/alt) onto the input topics in event-time order."""
    from technic.commands.features import load_inputs
    from technic.commands.progress import progress_bar
    from stream.tools.publisher import alt_records, bar_records, fundamental_records, publish
    b, f, _, a = load_inputs(bars, fundamentals, None, alt, symbols)
    if days:
        keep = sorted(b["date"].unique())[:days]
        b = b[b["date"].isin(keep)]
    boot, broker = _bootstrap(bootstrap, broker_dir)
    try:
        side = list(fundamental_records(f)) + list(alt_records(a))
        st1 = asyncio.run(publish(boot, side)) if side else {"sent": 0}
        recs = list(bar_records(b))
        window = max(1, int(rate / 20)) if rate else 5000
        with progress_bar(len(recs), "bars") as tick:
            st2 = asyncio.run(publish(boot, recs, rate=rate, window=window, progress=tick))
        print(json.dumps({"side_records": st1["sent"], "bars": st2["sent"], "seconds": st2["seconds"],
                          "retries": st2["retries"], "bootstrap": boot}))
    finally:
        if broker is not None:
            broker.stop()


@app.command("tail")
def tail_cmd(topic: str = typer.Argument(..., help="topic kind (bars, fundamentals, alt, scores, alerts, "
                                                   "deadletter, control) or full topic name"),
             as_json: bool = typer.Option(False, "--json", help="one JSON record per line"),
             from_beginning: bool = typer.Option(False, "--from-beginning"),
             limit: Optional[int] = typer.Option(None, help="stop after N records"),
             timeout: Optional[float] = typer.Option(None, help="stop after N seconds without records"),
             bootstrap: Optional[str] = BootstrapOpt, broker_dir: Path = BrokerDirOpt):
    """Print records of a topic as they arrive (pretty, or --json)."""
    from stream.tools.tail import tail
    boot, broker = _bootstrap(bootstrap, broker_dir)
    try:
        asyncio.run(tail(boot, topic, as_json=as_json, from_beginning=from_beginning, limit=limit, idle_s=timeout))
    except KeyboardInterrupt:
        pass
    finally:
        if broker is not None:
            broker.stop()


@app.command("parity")
def parity_cmd(days: int = typer.Option(60, min=1, help="trading days to replay"),
               symbols: int = typer.Option(100, min=1, help="number of symbols"),
               as_json: bool = typer.Option(False, "--json"),
               data: Optional[Path] = typer.Option(None, help="data directory (default: shipped dev data)"),
               registry: Optional[Path] = typer.Option(None, help="registry with a promoted model "
                                                       "(default: a quick model trained in a temp registry)"),
               bootstrap: Optional[str] = BootstrapOpt,
               symbol_workers: int = typer.Option(0, help="0: one worker process (one-process mode); N: the split "
                                                          "mode, N per-symbol worker processes + 1 scoring worker"),
               partitions: int = typer.Option(6, min=1, help="split mode: partitions of the input topics"),
               chaos: Optional[str] = typer.Option(None, help="split mode: 'kill' SIGKILLs per-symbol worker 0 "
                                                              "mid-replay and restarts it; 'kill-scoring' the "
                                                              "scoring worker; 'join' (with --group): the last "
                                                              "per-symbol worker joins mid-replay"),
               group: bool = typer.Option(False, "--group", help="split mode: per-symbol workers in a consumer "
                                                                "group instead of static --member i/N"),
               rate: Optional[float] = typer.Option(None, min=1.0, help="publish at most this many bars/s "
                                                    "(default: as fast as possible; 1500 with --chaos)")):
    """Replay N days x M symbols through the real broker and worker(s); compare every score with batch."""
    from stream.tools.parity import run_stream_parity
    from stream.tools.parity import CHAOS, JOIN
    if chaos is not None and chaos not in (*CHAOS, JOIN):
        raise typer.BadParameter(f"--chaos {chaos!r}: expected one of {', '.join((*CHAOS, JOIN))}")
    if (chaos or group) and not symbol_workers:
        raise typer.BadParameter("--chaos and --group need the split mode (--symbol-workers N)")
    if chaos == JOIN and (not group or symbol_workers < 2):
        raise typer.BadParameter("--chaos join needs --group and --symbol-workers >= 2")
    rep = run_stream_parity(days=days, symbols=symbols, data=data, registry=registry, bootstrap=bootstrap,
                            symbol_workers=symbol_workers, partitions=partitions, chaos=chaos, rate=rate,
                            group=group)
    print(json.dumps(rep, indent=None if as_json else 1))
    if rep["n_missing"] or rep["n_duplicate"] or rep["n_conflicting"] or rep["max_abs_diff"] > 1e-6:
        raise SystemExit(1)


def _date(value: str | None, option: str = "--score-from") -> str | None:
    if value is None:
        return None
    from stream.io.codecs import parse_ts
    try:
        parse_ts(value)
    except ValueError:
        raise TechnicError(f"{option} {value!r}: not a date (YYYY-MM-DD or an ISO datetime)") from None
    return value


def _registry(path: Path | None) -> str:
    """The registry root; a path that does not exist at all is a typo (an empty registry is fine:
    the worker then waits for a promotion)."""
    if path is not None and not Path(path).exists():
        raise TechnicError(f"--registry {path}: no such directory")
    return str(path) if path else os.environ.get("TECHNIC_REGISTRY", "registry")


def _universe(path: Path | None):
    """Allowed symbols from a text file (one per line) or a CSV with a symbol column."""
    if path is None:
        return None
    try:
        text = Path(path).read_text()
    except UnicodeDecodeError:
        raise TechnicError(f"--universe {path}: not a text file") from None
    except OSError as e:
        raise TechnicError(f"--universe {path}: {e.strerror}") from None
    if path.suffix == ".csv":
        import pandas as pd
        df = pd.read_csv(path, dtype=str)
        col = next((c for c in df.columns if c.lower() in ("symbol", "ticker symbol", "ticker", "name")), None)
        if col is None:
            raise TechnicError(f"--universe {path}: no symbol column (symbol, Ticker symbol, ticker or Name)")
        return frozenset(df[col].dropna().str.strip())
    syms = frozenset(x.strip() for x in text.splitlines() if x.strip() and not x.startswith("#"))
    if not syms:
        raise TechnicError(f"--universe {path}: no symbols")
    return syms


def _sectors(securities: Path | None):
    from technic.data import load_securities, sector_map
    if securities is not None and not Path(securities).is_file():
        raise TechnicError(f"--securities {securities}: no such file")
    if securities is None:
        try:
            from technic.paths import data_dir, dev_files
            securities = dev_files(data_dir()).get("securities")
        except TechnicError:
            return None
    return sector_map(load_securities(securities)) if securities else None


def main(argv: list[str] | None = None) -> None:
    from aiokafka.errors import KafkaConnectionError

    from technic.commands.runner import run_app  # one-line errors, non-negative numbers, SIGTERM/SIGHUP
    from stream.service.logs import setup_logging
    setup_logging(as_json=False)
    # short-lived commands (tail, publish, broker, parity) report an unreachable cluster as one error
    # line; the worker logs aiokafka's own errors again, rate-limited (stream.service.logs)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    run_app(app, argv, prog_name="technic-stream",
            environment_errors={KafkaConnectionError: "cannot reach the Kafka cluster (--bootstrap / "
                                                      "$TECHNIC_BOOTSTRAP)"})


if __name__ == "__main__":  # pragma: no cover
    main()
