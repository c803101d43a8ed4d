"""Deep sequence models: windows never mix symbols; deterministic; state_dict round trip identical."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from technic.models.deep import DeepModel, build_sequences  # noqa: E402


def test_build_sequences_never_mix_symbols_and_pad_at_start():
    dates = np.repeat(np.arange(6), 2)
    syms = np.tile(np.array(["A", "B"]), 6)                  # (date, symbol) order
    X = np.column_stack([dates.astype(float), (syms == "B").astype(float)]) + 1.0
    X[3, 0] = np.nan                                          # B at date 1 missing -> 0
    S = build_sequences(X, syms, np.arange(len(X)), seq_len=3)
    for i in range(len(X)):
        w = S[i]
        got = w[w[:, 1] != 0, 1] if syms[i] == "B" else None
        d = dates[i]
        expect_rows = [r for r in range(len(X)) if syms[r] == syms[i] and d - 2 <= dates[r] <= d]
        np.testing.assert_array_equal(w[3 - len(expect_rows):],
                                      np.nan_to_num(X[expect_rows].astype(np.float32)))   # oldest first, own symbol
        assert (w[: 3 - len(expect_rows)] == 0).all()
        if got is not None:
            assert (got == 2.0).all()                          # only B's rows


@pytest.mark.parametrize("kind", ["lstm", "transformer"])
def test_fit_is_deterministic_and_state_dict_round_trips(kind):
    rng = np.random.default_rng(0)
    n, L, p = 800, 5, 4
    S = rng.normal(size=(n, L, p)).astype(np.float32)
    y = S[:, -1, 0] * 0.5 + S[:, -2, 1] * 0.3 + rng.normal(scale=0.5, size=n)
    dates = np.repeat(np.arange("2020-01-01", "2020-05-10", dtype="datetime64[D]")[:80], 10)
    kw = dict(seq_len=L, hidden=8, layers=1, heads=2, epochs=2, batch=128, max_rows=800)
    a = DeepModel(kind, gap_days=2, **kw).fit(S, y, dates)
    b = DeepModel(kind, gap_days=2, **kw).fit(S, y, dates)
    pa, pb = a.predict(S), b.predict(S)
    np.testing.assert_array_equal(pa, pb)
    files = a.to_files(f"m_{kind}")
    assert set(files) == {f"m_{kind}.pt", f"m_{kind}_config.json"}
    c = DeepModel.from_files(files.__getitem__, f"m_{kind}")
    np.testing.assert_array_equal(c.predict(S), pa)
    assert np.corrcoef(pa, y)[0, 1] > 0.1                      # learned something on an easy signal


def test_walk_forward_with_lstm_and_stack_runs():
    from pathlib import Path

    from technic.data import clean_bars, load_bars, load_securities
    from technic.features.batch import compute_features
    from technic.labels import make_labels
    from technic.research import BacktestConfig, walk_forward
    fix = Path(__file__).parent / "fixtures"
    bars, _ = clean_bars(load_bars(fix / "bars_40x2y.csv.gz"))
    feats = compute_features(bars, None, load_securities(fix / "securities_40.csv"))
    cfg = BacktestConfig(horizons=(5,), models=("lgbm", "lstm", "stack"), test_days=250, min_train_days=300,
                         k_features=6, max_train_rows=3000, n_estimators=10, shap_rows=50, null=False,
                         n_threads=1, win_prob=False, stack_folds=2, selector_params={"sample_rows": 1500, "mi_rows": 400},
                         model_params={"lgbm": {"min_data_in_leaf": 100}},
                         deep_params={"seq_len": 5, "hidden": 8, "epochs": 2, "max_rows": 1500})
    res = walk_forward(feats, make_labels(bars, cfg.label_horizons), cfg)
    m = res["predictions"][5]
    assert m["lstm"].notna().all() and m["stack"].notna().all() and m["blend"].notna().all()
