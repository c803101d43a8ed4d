"""The `technic` commands that need the stream: `demo` and `online-eval`.

``technic/`` never imports ``stream/``: the ``technic`` CLI loads these through the
``technic.commands`` entry point (pyproject) when the stream package is installed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    """Add `demo` and `online-eval` to the `technic` app."""
    @app.command("demo")
    def demo(
        days: int = typer.Option(250, help="replay N trading days after the model's training period (0 = all of "
                                           "them; the embedded broker keeps everything in RAM and rewrites it every "
                                           "second, so full replays are slow)"),
        symbols: Optional[int] = typer.Option(None, min=1, help="limit to the first N symbols"),
        data: Optional[Path] = typer.Option(None, help="data directory (default: shipped dev data)"),
        workdir: Path = typer.Option(Path(".technic"), help="working directory (registry, broker data)"),
        batch_only: bool = typer.Option(False, "--batch-only",
                                        help="skip the stream; print the batch feature/label summary"),
        rate: Optional[float] = typer.Option(None, min=1.0, help="publish at most this many bars per second "
                                             "(default: as fast as the broker takes them)"),
    ):
        """The main job: train if needed, start the embedded broker and the worker, replay, show live scores."""
        from technic.commands.demo import batch_summary
        from technic.paths import data_dir, require_dev_files
        data = data or data_dir()
        require_dev_files(data)
        if batch_only:
            batch_summary(days=days or None, symbols=symbols or 50, data=data)
            return
        from stream.tools.demo import run_demo
        run_demo(days=days or None, symbols=symbols, data=data, workdir=workdir, rate=rate)

    @app.command("online-eval")
    def online_eval_cmd(
        bars: Path = typer.Option(..., help="bars file (csv, csv.gz or parquet)"),
        fundamentals: Optional[Path] = typer.Option(None, help="fundamentals file"),
        securities: Optional[Path] = typer.Option(None, help="securities file (sectors)"),
        symbols: Optional[int] = typer.Option(None, help="keep only N symbols"),
        split_date: str = typer.Option("2016-01-01", help="train before, stream from this date"),
        registry: Optional[Path] = typer.Option(None, help="registry to train into (default: a temporary one)"),
        version: Optional[str] = typer.Option(None, help="score with this registry version instead of training"),
        horizon: list[int] = typer.Option([5, 10], help="horizons (repeatable)"),
        warmup: int = typer.Option(2000, help="labelled rows before the online score departs from the batch"),
        lr: float = typer.Option(0.005, help="SGD learning rate of the online learners"),
        out: Path = typer.Option(Path("online_eval.json"), help="output JSON"),
    ):
        """Train before --split-date, replay the rest in-process with the online layer, compare RankIC."""
        from stream.online.evaluate import format_table, online_eval
        from stream.online.layer import OnlineConfig
        from technic.commands.features import load_inputs
        b, f, s, _ = load_inputs(bars, fundamentals, securities, None, symbols)
        cfg = OnlineConfig(horizons=tuple(horizon), warmup=warmup, lr=lr)

        def progress(i, n):
            if i % 20000 == 0:
                print(f"replay: {i}/{n} bars", file=sys.stderr, flush=True)
        doc = online_eval(b, f, s, split_date=split_date, registry=registry, version=version, config=cfg,
                          progress=progress)
        out.write_text(json.dumps(doc, indent=1, default=float))
        print(format_table(doc))
        print(f"wrote {out}", file=sys.stderr)
