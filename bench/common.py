"""Shared helper of the benchmarks: write results as JSON + a markdown table.

``write_results(name, rows, meta)`` writes ``bench/results/<name>.json``
(``{"name", "meta", "rows"}``) and ``bench/results/<name>.md`` (the meta as a
bullet list, then one table with the union of the rows' keys as columns) and
returns both paths.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def environment() -> dict:
    """Where the numbers were measured (add it to ``meta``)."""
    import numpy as np
    import pandas as pd
    try:
        import os
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        import os
        cpus = os.cpu_count()
    return {"python": sys.version.split()[0], "numpy": np.__version__, "pandas": pd.__version__,
            "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": cpus, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _fmt(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        return f"{v:,.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v).replace("|", "\\|")


def to_markdown(name: str, rows: list[dict], meta: dict) -> str:
    lines = [f"# {name}", ""]
    lines += [f"- **{k}**: {_fmt(v) if not isinstance(v, (dict, list)) else json.dumps(v)}" for k, v in meta.items()]
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    if rows:
        lines += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_results(name: str, rows: list[dict], meta: dict, out_dir: Path | str | None = None) -> tuple[Path, Path]:
    """Write ``<name>.json`` and ``<name>.md`` under ``bench/results`` (or ``out_dir``)."""
    d = Path(out_dir) if out_dir is not None else RESULTS
    d.mkdir(parents=True, exist_ok=True)
    jp, mp = d / f"{name}.json", d / f"{name}.md"
    jp.write_text(json.dumps({"name": name, "meta": meta, "rows": rows}, indent=2, default=str) + "\n")
    mp.write_text(to_markdown(name, rows, meta))
    return jp, mp
