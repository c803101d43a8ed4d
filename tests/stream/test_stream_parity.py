"""Parity through the real broker and a real worker process (issue: >= 60 days x >= 100 symbols).

Runs `technic-stream parity` logic against the session's embedded broker: the
last 60 trading days of 100 symbols of the shipped data, a quick model trained
on the two years before, every streamed score compared with the batch path.
"""

import pytest

from technic.errors import TechnicError


@pytest.mark.broker
def test_stream_parity_60_days_100_symbols(broker, tmp_path):
    from stream.tools.parity import run_stream_parity
    from technic.paths import data_dir
    try:
        data_dir()
    except TechnicError:
        pytest.skip("shipped dev data not found (set TECHNIC_DATA_DIR)")
    rep = run_stream_parity(days=60, symbols=100, bootstrap=broker.bootstrap, workdir=tmp_path)
    assert rep["days"] == 60 and rep["symbols"] == 100
    assert rep["n_expected"] >= 6000
    assert rep["n_missing"] == 0, rep
    assert rep["n_unexpected"] == 0
    assert rep["n_duplicate"] == 0 and rep["n_reemitted"] == 0 and rep["n_conflicting"] == 0
    assert rep["max_abs_diff"] <= 1e-6
