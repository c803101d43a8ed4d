"""Incremental feature engine: one symbol per call vs all symbols per call, before vs after, in one run.

Usage::

    .venv/bin/python bench/incremental.py [--baseline REV] [--symbols N] [--timestamps 200]
                                          [--single-symbols 10] [--repeats 2]

``before`` is the engine of the commit ``--baseline`` (default: the merge base of HEAD and
``main``, i.e. where the branch started), ``after`` the working tree. The baseline's
``technic/`` package is extracted with ``git archive`` into a temporary folder and both are
measured the same way, each in its own subprocess with its tree first on ``sys.path``,
alternating ``--repeats`` times (the best of the repeats is kept: the machine is shared).

Measured on the dev data (bars cleaned, fundamentals with the default 90-day lag, sectors),
after a warm-up of ``max lookback`` timestamps so every window is full:

* one symbol per call, ``update_ts(t, [s], bar)``: the per-symbol stage's cost per bar;
* the same plus ``cross_section([s], ...)``: what ``bench/features.py`` reported as
  "single symbol per call" before;
* all symbols of a timestamp per call (k = the universe at those timestamps, ~485 of 505):
  ``process_timestamp`` (time-series + market + cross-sectional stages) and ``update_ts`` alone;
* serialized state bytes per symbol (``get_state``) and the first call's time (JIT compile
  or cache load for the compiled engine).

Time per bar is the median over calls (one call = one bar, or one timestamp divided by its
bars), so that another process's burst on the shared machine does not move it; the means are
kept in the JSON's ``runs``.

Writes bench/results/incremental.json and incremental.md. Timing is never a test.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------
# measurement (runs in a subprocess, with the measured tree first on sys.path)
# ---------------------------------------------------------------------------
def measure(n_symbols: int | None, n_timestamps: int, n_single: int) -> dict:
    import numpy as np

    import technic
    from technic.data import clean_bars, load_bars, load_fundamentals, load_securities
    from technic.data.securities import sector_map
    from technic.features import registry as R
    from technic.features.incremental import FeatureEngine
    from technic.features.parity import feed_side_inputs
    from technic.paths import data_dir, dev_files

    files = dev_files(data_dir())
    bars, _ = clean_bars(load_bars(files["bars"], symbols=n_symbols))
    bars = bars.sort_values(["date", "symbol"], kind="mergesort").reset_index(drop=True)
    fund = load_fundamentals(files["fundamentals"])
    sectors = sector_map(load_securities(files["securities"]))
    lookback = max(d["lookback"] for d in R.describe())
    dates = bars["date"].to_numpy()
    syms = bars["symbol"].to_numpy(dtype=object)
    cols = {f: bars[f].to_numpy(np.float64) for f in R.BAR_FIELDS}
    cut = np.flatnonzero(dates[1:] != dates[:-1]) + 1
    slices = list(zip(np.r_[0, cut], np.r_[cut, len(bars)]))
    n_ts = min(n_timestamps, len(slices) - lookback)
    warm, timed = slices[:lookback], slices[lookback:lookback + n_ts]
    res = {"technic_file": technic.__file__, "rows": len(bars), "symbols": int(len(set(syms))),
           "max_lookback": lookback, "timed_timestamps": len(timed)}

    def batch(a, z, mask=None):
        m = slice(a, z) if mask is None else np.flatnonzero(mask[a:z]) + a
        return dates[a], list(syms[m]), {f: v[m] for f, v in cols.items()}

    def per_bar_us(fn, calls) -> tuple[float, float]:
        """(median over calls, mean) of the time per bar of ``fn(*args)``, in us."""
        per_bar, total, n = [], 0.0, 0
        for args, k in calls:
            t = time.perf_counter()
            fn(*args)
            dt = time.perf_counter() - t
            per_bar.append(dt / k)
            total, n = total + dt, n + k
        return float(np.median(per_bar)) * 1e6, total / n * 1e6

    # all symbols of a timestamp per call ------------------------------------------------
    eng = FeatureEngine(sectors=sectors, capacity=res["symbols"])
    feed_side_inputs(eng, fund)
    t = time.perf_counter()
    eng.process_timestamp(*batch(*warm[0]))
    res["first_call_s"] = time.perf_counter() - t
    for a, z in warm[1:]:
        eng.process_timestamp(*batch(a, z))
    calls = [(batch(a, z), z - a) for a, z in timed]
    half = len(calls) // 2  # first half: whole stages; second half: the time-series stage alone
    res["vectorized_k"] = int(np.mean([k for _, k in calls]))
    res["vectorized_us_per_bar"], res["vectorized_us_per_bar_mean"] = per_bar_us(eng.process_timestamp, calls[:half])
    res["vectorized_update_ts_us_per_bar"], res["vectorized_update_ts_us_per_bar_mean"] = per_bar_us(
        eng.update_ts, calls[half:])
    sizes = [eng.state_nbytes(s) for s in eng.slots]
    res["state_bytes_per_symbol"] = int(max(sizes))
    del eng

    # one symbol per call ------------------------------------------------------------------
    pick = sorted(set(syms))[:n_single]
    mask = np.isin(syms, pick)
    one = FeatureEngine(sectors=sectors, capacity=len(pick))
    feed_side_inputs(one, fund[fund["symbol"].isin(pick)])
    for a, z in warm:
        if mask[a:z].any():
            one.process_timestamp(*batch(a, z, mask))
    calls = [((dates[i], [syms[i]], {f: v[i:i + 1] for f, v in cols.items()}), 1)
             for a, z in timed for i in range(a, z) if mask[i]]
    half = len(calls) // 2  # first half: update_ts alone; second half: + cross_section([s])
    res["single_calls"] = len(calls)
    res["single_update_ts_us"], res["single_update_ts_us_mean"] = per_bar_us(one.update_ts, calls[:half])
    res["single_update_ts_cross_section_us"], res["single_update_ts_cross_section_us_mean"] = per_bar_us(
        lambda d, s, b: one.cross_section(s, one.update_ts(d, s, b)), calls[half:])
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in res.items()}


# ---------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------
def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def _extract(rev: str, dest: Path) -> None:
    """The ``technic/`` package of commit ``rev`` into ``dest``."""
    tar = subprocess.run(["git", "archive", "--format=tar", rev, "technic"], cwd=ROOT, check=True,
                         capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        tf.extractall(dest, filter="data")


def _run(code_root: Path, args) -> dict:
    env = dict(os.environ, PYTHONPATH=str(code_root), TECHNIC_DATA_DIR=str(args.data_dir))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", "--timestamps", str(args.timestamps),
           "--single-symbols", str(args.single_symbols)]
    if args.symbols:
        cmd += ["--symbols", str(args.symbols)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, cwd=code_root).stdout
    res = json.loads(out.strip().splitlines()[-1])
    if not Path(res["technic_file"]).resolve().is_relative_to(code_root.resolve()):
        raise RuntimeError(f"measured {res['technic_file']}, not the tree under {code_root}")
    return res


def _numba_version() -> str:
    try:
        import numba
        return numba.__version__
    except ImportError:  # pragma: no cover - numba is a dependency of the compiled engine
        return "absent"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", default=None, help="commit of 'before' (default: merge-base HEAD main)")
    ap.add_argument("--symbols", type=int, default=None, help="first N symbols (default: all)")
    ap.add_argument("--timestamps", type=int, default=200, help="timed timestamps after the warm-up")
    ap.add_argument("--single-symbols", type=int, default=10, help="symbols timed one per call")
    ap.add_argument("--repeats", type=int, default=2, help="alternating before/after runs; best kept")
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure:  # subprocess mode: the measured tree is first on PYTHONPATH
        print(json.dumps(measure(args.symbols, args.timestamps, args.single_symbols)))
        return {}

    sys.path.insert(0, str(ROOT))
    from bench.common import environment, write_results
    from technic.paths import data_dir
    args.data_dir = data_dir()
    base = args.baseline or _git("merge-base", "HEAD", "main")
    base_id, head_id = _git("rev-parse", base), _git("rev-parse", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--", "technic"))
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        _extract(base_id, Path(tmp))
        for r in range(args.repeats):
            for label, root in (("before", Path(tmp)), ("after", ROOT)):
                t = time.perf_counter()
                runs[label].append(_run(root, args))
                print(f"[{r + 1}/{args.repeats}] {label}: {time.perf_counter() - t:.0f}s "
                      f"single {runs[label][-1]['single_update_ts_us']:.1f} us, "
                      f"vectorized {runs[label][-1]['vectorized_us_per_bar']:.2f} us/bar", flush=True)

    keys = ["single_update_ts_us", "single_update_ts_cross_section_us", "vectorized_us_per_bar",
            "vectorized_update_ts_us_per_bar"]
    keys += [k + "_mean" for k in keys]
    best = {label: {k: min(r[k] for r in rs) for k in keys} | {k: rs[0][k] for k in rs[0] if k not in keys}
            for label, rs in runs.items()}
    b, a = best["before"], best["after"]
    k = a["vectorized_k"]
    rows = [
        {"measure": "one symbol per call: update_ts (the per-symbol stage)", "unit": "us/bar",
         "before": b["single_update_ts_us"], "after": a["single_update_ts_us"], "target": "< 1000 us"},
        {"measure": "one symbol per call: update_ts + cross_section([s]) (bench/features.py's definition)",
         "unit": "us/bar", "before": b["single_update_ts_cross_section_us"],
         "after": a["single_update_ts_cross_section_us"], "target": ""},
        {"measure": f"all symbols per call (k={k}): process_timestamp", "unit": "us/bar",
         "before": b["vectorized_us_per_bar"], "after": a["vectorized_us_per_bar"], "target": "not slower"},
        {"measure": f"all symbols per call (k={k}): update_ts alone", "unit": "us/bar",
         "before": b["vectorized_update_ts_us_per_bar"], "after": a["vectorized_update_ts_us_per_bar"],
         "target": "not slower"},
    ]
    for r in rows:
        r["speed-up"] = r["before"] / r["after"]
        r["before"], r["after"] = round(r["before"], 2), round(r["after"], 2)
        r["speed-up"] = round(r["speed-up"], 1)
    rows.append({"measure": f"one symbol per call vs all {k} per call (update_ts, per bar)", "unit": "x",
                 "before": round(b["single_update_ts_us"] / b["vectorized_update_ts_us_per_bar"], 1),
                 "after": round(a["single_update_ts_us"] / a["vectorized_update_ts_us_per_bar"], 1),
                 "target": "", "speed-up": ""})
    rows.append({"measure": "state bytes per symbol (get_state)", "unit": "bytes",
                 "before": b["state_bytes_per_symbol"], "after": a["state_bytes_per_symbol"],
                 "target": "< 200 KB", "speed-up": ""})
    rows.append({"measure": "first call (compiled engine: JIT compile or cache load)", "unit": "s",
                 "before": round(b["first_call_s"], 3), "after": round(a["first_call_s"], 3),
                 "target": "", "speed-up": ""})
    cmd = "python bench/incremental.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    meta = {"command": cmd, "before_commit": base_id, "after_commit": head_id + (" + uncommitted changes" if dirty else ""),
            "how": "baseline technic/ extracted with git archive; each side measured in its own subprocess, "
                   f"alternating, best of {args.repeats}; time per bar = median over calls (robust to the "
                   "shared machine's other load; the means are in runs)",
            "rows": a["rows"], "symbols": a["symbols"], "max_lookback": a["max_lookback"],
            "timed_timestamps": a["timed_timestamps"], "single_symbol_calls": a["single_calls"],
            "runs": {label: [{k: v for k, v in r.items() if k in keys} for r in rs] for label, rs in runs.items()},
            "numba": _numba_version(), **environment()}
    jp, mp = write_results("incremental", rows, meta)
    print(f"wrote {jp} and {mp}")
    return {"rows": rows, "meta": meta}


if __name__ == "__main__":
    main()
