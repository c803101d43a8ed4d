"""Where things live: the shipped dev data and the working directory."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import TechnicError

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """Dev data: $TECHNIC_DATA_DIR, else ``../shared/data`` beside the checkout or the cwd."""
    env = os.environ.get("TECHNIC_DATA_DIR")
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared" / "data", Path.cwd().parent / "shared" / "data", Path.cwd() / "data"]
    for c in candidates:
        if (c / "all_stocks_5yr.csv.gz").exists():
            return c
    raise TechnicError("cannot find the dev data (all_stocks_5yr.csv.gz): set TECHNIC_DATA_DIR or pass --data")


def dev_files(data: Path) -> dict[str, Path]:
    """Paths of the three shipped files inside a data directory (missing ones omitted)."""
    names = {"bars": "all_stocks_5yr.csv.gz", "fundamentals": "fundamentals.csv.gz", "securities": "securities.csv"}
    return {k: data / v for k, v in names.items() if (data / v).exists()}


def require_dev_files(data: Path, option: str = "--data") -> dict[str, Path]:
    """``dev_files`` of a directory that must hold the bars file (else one clear error)."""
    files = dev_files(Path(data))
    if "bars" not in files:
        raise TechnicError(f"{option} {data}: no all_stocks_5yr.csv.gz there (the shipped dev data directory)")
    return files
