"""`technic ...`: the research command line. Parses options and calls library code.

User errors (``TechnicError``, bad option values, unknown names, unreadable files) print one
line naming the option/file/row and exit with status 2, never a traceback; SIGTERM/SIGHUP stop
a command like Ctrl-C (``technic.commands.runner``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .commands.features import PRICE_BASIS_HELP, SPLITS_HELP
from .commands.runner import non_negative_numbers, run_app  # noqa: F401 (run_app re-exported)
from .errors import TechnicError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Technic: equity alpha research and streaming scorer.")
features_app = typer.Typer(no_args_is_help=True, help="Feature registry: list, compute, parity.")
data_app = typer.Typer(no_args_is_help=True, help="Data files: quality report.")
app.add_typer(features_app, name="features")
app.add_typer(data_app, name="data")


def default_data_dir() -> Path:
    """The shipped dev data: $TECHNIC_DATA_DIR, else ../shared/data next to the checkout."""
    from .paths import data_dir
    return data_dir()


# ---------------------------------------------------------------------------
# features
# ---------------------------------------------------------------------------
@features_app.command("list")
def features_list(as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table")):
    """Every feature: name, category, lookback, description."""
    from .commands import features as cmd
    cmd.list_features(as_json)


@features_app.command("compute")
def features_compute(
    bars: Path = typer.Option(..., help="bars file (csv, csv.gz or parquet)"),
    out: Path = typer.Option(..., help="output parquet file"),
    fundamentals: Optional[Path] = typer.Option(None, help="fundamentals file"),
    securities: Optional[Path] = typer.Option(None, help="securities file (GICS sectors)"),
    alt: Optional[Path] = typer.Option(None, help="alternative data, long format date,symbol,field,value"),
    symbols: Optional[int] = typer.Option(None, help="keep only N symbols"),
    lag_days: int = typer.Option(90, help="fundamentals reporting lag when the file has no publish date"),
    splits: Optional[Path] = typer.Option(None, help=SPLITS_HELP),
    price_basis: str = typer.Option("adjusted", help=PRICE_BASIS_HELP),
):
    """Compute every feature with the batch evaluator and write a parquet file."""
    from .commands import features as cmd
    cmd.compute(bars, out, fundamentals, securities, alt, symbols, lag_days, splits, price_basis)


@features_app.command("parity")
def features_parity(
    bars: Path = typer.Option(..., help="bars file"),
    symbols: Optional[int] = typer.Option(50, help="number of symbols (0 = all)"),
    fundamentals: Optional[Path] = typer.Option(None),
    securities: Optional[Path] = typer.Option(None),
    alt: Optional[Path] = typer.Option(None),
    rtol: float = typer.Option(1e-9, help="relative tolerance"),
    as_json: bool = typer.Option(False, "--json", help="print the JSON report"),
    splits: Optional[Path] = typer.Option(None, help=SPLITS_HELP),
    price_basis: str = typer.Option("adjusted", help=PRICE_BASIS_HELP),
):
    """Feed the data bar by bar through the incremental evaluator and compare with batch."""
    from .commands import features as cmd
    cmd.parity(bars, symbols, fundamentals, securities, alt, rtol, as_json, splits, price_basis)


@data_app.command("quality")
def data_quality(bars: Optional[Path] = typer.Option(None, help="bars file"),
                 fundamentals: Optional[Path] = typer.Option(None, help="fundamentals file: report the stock "
                                                             "splits applied and the unexplained share-count jumps"),
                 splits: Optional[Path] = typer.Option(None, help=SPLITS_HELP),
                 price_basis: str = typer.Option("adjusted", help=PRICE_BASIS_HELP),
                 as_json: bool = typer.Option(False, "--json")):
    """Data-quality report of a bars file (NaN, bad prices, jumps, stale rows, gaps) and/or of the
    fundamentals' share counts (splits applied, unexplained jumps)."""
    from .commands import features as cmd
    cmd.quality(bars, as_json, fundamentals, splits, price_basis)


def _register_optional() -> None:
    """Sub-commands that live in their own modules (research, retrain, hpo, variants) or packages."""
    import importlib
    import importlib.util
    from importlib.metadata import entry_points
    for name in ("research", "retrain", "hpo", "variants"):
        mod = f"technic.commands.{name}"
        if importlib.util.find_spec(mod) is not None:  # import errors inside a module are real errors
            importlib.import_module(mod).register(app)
    # commands contributed by other installed packages (the stream's `demo` and `online-eval`):
    # technic/ never imports stream/, the stream package registers itself (pyproject entry point)
    for ep in sorted(entry_points(group="technic.commands"), key=lambda e: e.name):
        ep.load()(app)


_register_optional()
non_negative_numbers(app)  # CLI policy (technic.commands.runner): numeric options are never negative


def main(argv: list[str] | None = None) -> None:
    run_app(app, argv, prog_name="technic")


if __name__ == "__main__":  # pragma: no cover
    main()
