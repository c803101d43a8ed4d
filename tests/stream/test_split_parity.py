"""Split mode through the real broker: 3 per-symbol worker processes + 1 scoring worker, 6 partitions,
static assignment; every score against the batch path; and with one per-symbol worker SIGKILLed
mid-replay and restarted from its snapshot; and with the scoring worker SIGKILLed mid-replay and restarted
from its own snapshot (re-emitted scores identical)."""

import pytest

from technic.errors import TechnicError


def _run(broker, tmp_path, **kw):
    from stream.tools.parity import run_stream_parity
    from technic.paths import data_dir
    try:
        data_dir()
    except TechnicError:
        pytest.skip("shipped dev data not found (set TECHNIC_DATA_DIR)")
    return run_stream_parity(days=60, symbols=100, bootstrap=broker.bootstrap, workdir=tmp_path,
                             symbol_workers=3, partitions=6, **kw)


def _exact(rep, reemitted_ok=False):
    assert rep["n_scores"] >= 6000 and rep["n_missing"] == 0, rep
    assert rep["n_unexpected"] == 0 and rep["n_duplicate"] == 0 and rep["n_conflicting"] == 0
    assert reemitted_ok or rep["n_reemitted"] == 0   # only a restarted scoring worker scores anything twice
    assert rep["max_abs_diff"] <= 1e-6


@pytest.mark.broker
def test_split_parity_3_symbol_workers(broker, tmp_path):
    _exact(_run(broker, tmp_path))


@pytest.mark.broker
@pytest.mark.slow
def test_split_parity_with_a_symbol_worker_killed_and_restored(broker, tmp_path):
    rep = _run(broker, tmp_path, chaos="kill")
    _exact(rep)
    assert rep["restarts"] == 1 and len(rep["restore_s"]) == 1
    assert rep["restored_from"]   # it restored snapshots, not the whole log


@pytest.mark.broker
@pytest.mark.slow
def test_split_parity_with_the_scoring_worker_killed_and_restored(broker, tmp_path):
    rep = _run(broker, tmp_path, chaos="kill-scoring")
    _exact(rep, reemitted_ok=True)
    assert rep["killed"] == "scoring" and rep["restarts"] == 1 and len(rep["restore_s"]) == 1
    assert rep["restored_from"]   # it restored its snapshot and read the features topic from its offset
