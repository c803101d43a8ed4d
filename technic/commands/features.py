"""`technic features ...` and `technic data quality`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import TechnicError
from .progress import progress_bar


#: help texts of the options every command that takes --fundamentals shares
SPLITS_HELP = ("stock splits file date,symbol,ratio (ratio = new shares per old share); without it, "
               "splits are detected from the fundamentals' share counts")
PRICE_BASIS_HELP = "price basis of the bars: 'adjusted' (split-adjusted, default) or 'raw' (needs --splits)"


def load_fundamentals_for(fundamentals, splits=None, price_basis: str = "adjusted", lag_days: int = 90):
    """The fundamentals file with share counts and EPS on the bars' price basis (``splits``:
    a splits file, or None to detect splits); None when no file is given."""
    from ..data import load_fundamentals
    if not fundamentals:
        if splits:
            raise TechnicError("--splits needs --fundamentals (splits adjust the fundamentals' share counts)")
        return None
    return load_fundamentals(fundamentals, lag_days=lag_days, splits=splits or None, price_basis=price_basis)


def load_inputs(bars: Path, fundamentals=None, securities=None, alt=None, symbols=None, lag_days: int = 90,
                start=None, end=None, splits=None, price_basis: str = "adjusted"):
    """Load and clean the input files named on the command line. Fundamentals come with share
    counts and EPS on ``price_basis``, from the ``splits`` file or detected splits."""
    from ..data import clean_bars, load_alt, load_bars, load_securities
    f = load_fundamentals_for(fundamentals, splits, price_basis, lag_days)
    b = load_bars(bars, symbols=symbols or None, start=start, end=end)
    b, _ = clean_bars(b)
    if b.empty:
        raise TechnicError(f"{bars}: no bars left after selection/cleaning")
    s = load_securities(securities) if securities else None
    a = load_alt(alt) if alt else None
    return b, f, s, a


def list_features(as_json: bool) -> None:
    from ..features.registry import describe
    rows = describe()
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    from rich.console import Console
    from rich.table import Table
    t = Table(title=f"{len(rows)} features")
    for col in ("name", "category", "lookback", "description"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["name"], r["category"], str(r["lookback"]), r["description"])
    Console().print(t)


def compute(bars, out, fundamentals, securities, alt, symbols, lag_days, splits=None, price_basis="adjusted") -> None:
    from ..features.batch import compute_features, ts_program
    b, f, s, a = load_inputs(bars, fundamentals, securities, alt, symbols, lag_days,
                             splits=splits, price_basis=price_basis)
    prog = ts_program()
    with progress_bar(len(prog.nodes), "features (batch)") as tick:
        frame = compute_features(b, f, s, a, progress=tick)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.reset_index().to_parquet(out, index=False)
    print(f"wrote {out}: {frame.shape[0]} rows x {frame.shape[1]} features", file=sys.stderr)


def parity(bars, symbols, fundamentals, securities, alt, rtol, as_json, splits=None, price_basis="adjusted") -> None:
    from ..features.batch import compute_features
    from ..features.parity import compare, incremental_features
    b, f, s, a = load_inputs(bars, fundamentals, securities, alt, symbols, splits=splits, price_basis=price_basis)
    batch = compute_features(b, f, s, a)
    with progress_bar(len(b), "bars (incremental)") as tick:
        incr = incremental_features(b, f, s, a, progress=tick)
    rep = compare(batch, incr, rtol)
    if as_json:
        print(json.dumps(rep, indent=1))
    else:
        print(f"{rep['symbols']} symbols, {rep['rows']} bars, {rep['features']} features: "
              f"{rep['n_mismatch']} mismatches of {rep['n_values']} values "
              f"(max abs err {rep['max_abs_err']:.3g}, max rel err {rep['max_rel_err']:.3g}, rtol {rtol:g})")
    if rep["n_mismatch"]:
        raise SystemExit(1)


def quality(bars, as_json, fundamentals=None, splits=None, price_basis="adjusted") -> None:
    """Bars report and/or the fundamentals' split report (splits applied, unexplained jumps)."""
    from ..data import load_bars, quality_report
    if not bars and not fundamentals:
        raise TechnicError("give --bars and/or --fundamentals")
    f = load_fundamentals_for(fundamentals, splits, price_basis)
    rep = quality_report(load_bars(bars)) if bars else None
    split_rep = f.attrs["split_report"] if f is not None else None
    if as_json:
        out = rep.to_dict() if rep is not None else {}
        if split_rep is not None:
            out["splits"] = split_rep.to_dict()
        print(json.dumps(out, indent=1, default=str))
        return
    print("\n\n".join(r.summary() for r in (rep, split_rep) if r is not None))
