"""Forward time of the sequence models for one timestamp (505 windows), per preset and thread count.

Inference cost depends on the network's sizes, not on its trained weights, so the nets are built
with the presets' sizes and random weights (``technic.models.deep._net``; 40 input features,
2 output heads) and timed through ``DeepModel._predict`` (inference mode, deterministic algorithms,
as the Scorer calls it). Also times the Transformer's full-sequence forward against the
last-position forward it uses (``last_token_layer``) in the same run.
Writes bench/results/deep_inference.{json,md}.

    python bench/deep_inference.py [--windows 505] [--repeats 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import environment, write_results  # noqa: E402


def _median_ms(fn, repeats: int) -> tuple[float, float]:
    fn()
    a = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        a.append(time.perf_counter() - t)
    a = np.asarray(a) * 1e3
    return round(float(np.median(a)), 2), round(float(np.percentile(a, 99)), 2)


def main(argv=None) -> dict:
    import torch

    from technic.models.deep import DEEP_NAMES, PRESETS, DeepModel, _net

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--windows", type=int, default=505)
    ap.add_argument("--features", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    rows = []
    for preset in ("small", "seed"):
        cfg = {**PRESETS[preset], "dropout": 0.0}
        S = np.random.default_rng(0).standard_normal((args.windows, cfg["seq_len"], args.features)).astype(np.float32)
        for kind in DEEP_NAMES:
            net = _net(kind, args.features, 2, cfg).eval()
            for threads in (1, 2):
                p50, p99 = _median_ms(lambda: DeepModel._predict(net, S, n_threads=threads), args.repeats)
                rows.append({"preset": preset, "model": kind, "threads": threads, "p50_ms": p50, "p99_ms": p99})
            if kind == "transformer":
                x = torch.from_numpy(S)
                with torch.inference_mode():
                    full = _median_ms(lambda: net.head(net.enc(net.inp(x) + net.pos)[:, -1]), args.repeats)
                rows[-1]["full_sequence_forward_p50_ms"] = full[0]
    meta = {"command": "python bench/deep_inference.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "windows": args.windows, "features": args.features,
            "note": "random weights (cost depends on sizes only); small = hidden 32, 1 layer; seed = LSTM 128 x 2, "
                    "Transformer d_model 128, 8 heads, 3 layers; seq_len 20",
            "environment": environment()}
    write_results("deep_inference", rows, meta)
    for r in rows:
        print(r)
    return {"rows": rows, "meta": meta}


if __name__ == "__main__":
    main()
