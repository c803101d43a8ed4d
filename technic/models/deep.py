"""LSTM and Transformer sequence models (torch, imported lazily; CPU, deterministic).

Inputs are per-symbol sequences of per-date normalized feature vectors (the rank-gauss
``Xn`` of ``models.preprocess``; a missing value becomes 0 = the cross-sectional centre, and
the windows are left-padded with zeros): ``build_sequences`` makes, for each requested row
(date t, symbol s), the (seq_len, p) window of s's rows at dates <= t, oldest first, current
row last. A window never mixes symbols (it is cut from one symbol's rows only).

Training: Adam on MSE against the (per-date rank-gauss) target(s); the output head has one unit
per target column: the multi-horizon head (``y`` of shape (n, H): the horizon being modelled
first, the other horizons as auxiliary targets) shares one encoder across horizons, and a
missing target (e.g. the 10-day label near the end of the data while the 5-day one exists) is
masked out of the loss instead of dropping the row. Early stopping on
an inner, time-ordered validation slice (``inner_time_split``: the last dates after a gap >=
the label horizon). Fixed seeds, ``torch.use_deterministic_algorithms(True)``, 2 threads.
Saved as state_dict (``.pt``, loaded with ``weights_only=True``) + config JSON.

Presets: ``PRESETS["small"]`` (default, CPU: hidden 32, 1 layer, seq_len 20, up to 150,000
training windows x 8 epochs: a few minutes per model on the full dev data on 2 cores, see
``bench/training_time.py``) and ``PRESETS["seed"]`` (the seed's sizes: LSTM hidden 128 x 2 layers; Transformer d_model 128,
8 heads, 3 layers).
"""

from __future__ import annotations

import io
import json

import numpy as np

from technic.validation import inner_time_split

DEEP_NAMES = ("lstm", "transformer")
PRESETS = {
    "small": dict(seq_len=20, hidden=32, layers=1, heads=4, epochs=8, batch=512, lr=2e-3, max_rows=150_000,
                  patience=2, dropout=0.0),
    "seed": dict(seq_len=20, hidden=128, layers=2, heads=8, epochs=20, batch=512, lr=1e-3, max_rows=200000,
                 patience=3, dropout=0.1, transformer_layers=3),
}


def build_sequences(X: np.ndarray, symbols: np.ndarray, rows: np.ndarray, seq_len: int) -> np.ndarray:
    """(len(rows), seq_len, p) float32 windows; ``X`` rows must be sorted by (date, symbol)
    or (symbol, date) — only the per-symbol date order matters (rows are taken in array order).
    """
    X = np.nan_to_num(np.asarray(X, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    symbols = np.asarray(symbols)
    order = np.lexsort((np.arange(len(symbols)), symbols))      # by symbol, then original (date) order
    pos_in_sorted = np.empty(len(order), dtype=np.int64)
    pos_in_sorted[order] = np.arange(len(order))
    sym_sorted = symbols[order]
    start = np.r_[0, np.flatnonzero(sym_sorted[1:] != sym_sorted[:-1]) + 1]
    first = np.repeat(start, np.diff(np.r_[start, len(order)]))  # first sorted position of each symbol
    Xs = X[order]
    p = np.asarray(rows)
    ends = pos_in_sorted[p]
    out = np.zeros((len(p), seq_len, X.shape[1]), dtype=np.float32)
    for k in range(seq_len):                                     # k = steps back from the current row
        src = ends - k
        ok = src >= first[ends]
        out[ok, seq_len - 1 - k] = Xs[src[ok]]
    return out


def _torch(n_threads: int | None = None):
    import torch
    if n_threads is not None and torch.get_num_threads() != n_threads:
        torch.set_num_threads(n_threads)
    torch.use_deterministic_algorithms(True)
    return torch


def _net(kind: str, n_in: int, n_out: int, cfg: dict):
    torch = _torch()
    nn = torch.nn

    class LSTMNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(n_in, cfg["hidden"], cfg["layers"], batch_first=True,
                               dropout=cfg["dropout"] if cfg["layers"] > 1 else 0.0)
            self.head = nn.Linear(cfg["hidden"], n_out)

        def forward(self, x):
            y, _ = self.rnn(x)
            return self.head(y[:, -1])

    class TransformerNet(nn.Module):
        def __init__(self):
            super().__init__()
            d = cfg["hidden"]
            self.inp = nn.Linear(n_in, d)
            self.pos = nn.Parameter(torch.zeros(1, cfg["seq_len"], d))
            layer = nn.TransformerEncoderLayer(d, cfg["heads"], dim_feedforward=2 * d, dropout=cfg["dropout"],
                                               batch_first=True)
            self.enc = nn.TransformerEncoder(layer, cfg.get("transformer_layers", cfg["layers"]),
                                             enable_nested_tensor=False)
            self.head = nn.Linear(d, n_out)

        def forward(self, x):
            h = self.inp(x) + self.pos
            layers = self.enc.layers
            for layer in layers[:-1]:
                h = layer(h)
            return self.head(last_token_layer(layers[-1], h))

    return {"lstm": LSTMNet, "transformer": TransformerNet}[kind]()


def last_token_layer(layer, h):
    """``layer(h)[:, -1]`` of a post-norm ``nn.TransformerEncoderLayer`` computing only the last
    position: its query attends over every position, and the feed-forward block runs on one token
    per window instead of seq_len. The same function in training and serving; ~seq_len times less
    work in the last layer (the model reads only the last position's output)."""
    q = h[:, -1:, :]
    a = layer.self_attn(q, h, h, need_weights=False)[0]
    z = layer.norm1(q + layer.dropout1(a))
    z = layer.norm2(z + layer._ff_block(z))
    return z[:, 0]


class DeepModel:
    """Sequence regressor: ``fit(S, y, dates)`` with S (n, seq_len, p), y (n,) or (n, n_out)."""

    suffix = ".pt"

    def __init__(self, kind: str = "lstm", preset: str = "small", gap_days: int = 10, valid_frac: float = 0.2,
                 seed: int = 0, n_threads: int = 2, **overrides):
        if kind not in DEEP_NAMES:
            raise ValueError(f"kind must be one of {DEEP_NAMES}, got {kind!r}")
        self.kind = kind
        self.preset = preset
        self.gap_days = gap_days
        self.valid_frac = valid_frac
        self.seed = seed
        self.n_threads = n_threads
        self.overrides = overrides

    @property
    def config(self) -> dict:
        return {**PRESETS[self.preset], **self.overrides}

    def fit(self, S, y, dates=None):
        torch = _torch(self.n_threads)
        cfg = self.config
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        S = np.asarray(S, dtype=np.float32)
        y = np.asarray(y, dtype=np.float32)
        y = y[:, None] if y.ndim == 1 else y
        idx = np.flatnonzero(np.isfinite(y[:, 0]))               # the modelled target must exist
        mask = np.isfinite(y).astype(np.float32)                  # auxiliary targets may be missing
        y = np.nan_to_num(y, nan=0.0)
        if len(idx) > cfg["max_rows"]:
            idx = np.sort(rng.choice(idx, cfg["max_rows"], replace=False))
        fit_idx, val_idx = idx, None
        if dates is not None:
            try:
                f, v = inner_time_split(np.asarray(dates)[idx], self.valid_frac, self.gap_days)
                fit_idx, val_idx = idx[f], idx[v]
            except ValueError:
                pass
        self.n_in_, self.n_out_ = S.shape[2], y.shape[1]
        net = _net(self.kind, self.n_in_, self.n_out_, cfg)
        opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
        Xf, Yf, Mf = (torch.from_numpy(a[fit_idx]) for a in (S, y, mask))
        best, best_state, bad, self.history_ = np.inf, None, 0, []
        for epoch in range(cfg["epochs"]):
            net.train()
            perm = torch.from_numpy(rng.permutation(len(Xf)))
            for b in range(0, len(perm), cfg["batch"]):
                j = perm[b:b + cfg["batch"]]
                opt.zero_grad()
                loss = torch.sum((net(Xf[j]) - Yf[j]) ** 2 * Mf[j]) / torch.clamp(torch.sum(Mf[j]), min=1.0)
                loss.backward()
                opt.step()
            if val_idx is None:
                continue
            err = (self._predict(net, S[val_idx])[:, 0] - y[val_idx, 0]) ** 2   # stop on the modelled head
            vl = float(np.mean(err))
            self.history_.append(vl)
            if vl < best - 1e-6:
                best, bad = vl, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            else:
                bad += 1
                if bad >= cfg["patience"]:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        self.net_ = net
        self.best_iteration_ = int(np.argmin(self.history_) + 1) if self.history_ else cfg["epochs"]
        return self

    @staticmethod
    def _predict(net, S, batch: int = 4096, n_threads: int | None = None) -> np.ndarray:
        torch = _torch(n_threads)
        net.eval()
        out = []
        with torch.inference_mode():
            for b in range(0, len(S), batch):
                out.append(net(torch.from_numpy(np.asarray(S[b:b + batch], dtype=np.float32))).numpy())
        return np.concatenate(out) if out else np.zeros((0, 1), np.float32)

    @property
    def seq_len(self) -> int:
        return int(self.config["seq_len"])

    def predict(self, S, head: int = 0) -> np.ndarray:
        return self._predict(self.net_, S, n_threads=self.n_threads)[:, head].astype(np.float64)

    def predict_all(self, S) -> np.ndarray:
        return self._predict(self.net_, S, n_threads=self.n_threads).astype(np.float64)

    def to_files(self, prefix: str) -> dict[str, bytes]:
        torch = _torch()
        buf = io.BytesIO()
        torch.save(self.net_.state_dict(), buf)
        conf = {"kind": self.kind, "preset": self.preset, "config": self.config, "n_in": self.n_in_,
                "n_out": self.n_out_, "seed": self.seed}
        return {f"{prefix}.pt": buf.getvalue(), f"{prefix}_config.json": json.dumps(conf).encode()}

    @classmethod
    def from_files(cls, read, prefix: str, n_threads: int = 2) -> "DeepModel":
        torch = _torch()
        conf = json.loads(read(f"{prefix}_config.json"))
        m = cls(conf["kind"], conf["preset"], seed=conf["seed"], n_threads=n_threads, **conf["config"])
        m.n_in_, m.n_out_ = conf["n_in"], conf["n_out"]
        m.net_ = _net(m.kind, m.n_in_, m.n_out_, m.config)
        m.net_.load_state_dict(torch.load(io.BytesIO(read(f"{prefix}.pt")), weights_only=True))
        m.net_.eval()
        return m
