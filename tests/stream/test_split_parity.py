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


def _run_small(broker, tmp_path, **kw):
    from stream.tools.parity import run_stream_parity
    from technic.paths import data_dir
    try:
        data_dir()
    except TechnicError:
        pytest.skip("shipped dev data not found (set TECHNIC_DATA_DIR)")
    return run_stream_parity(days=30, symbols=60, bootstrap=broker.bootstrap, workdir=tmp_path, partitions=6, **kw)


def _exact(rep, reemitted_ok=False, n_min=6000):
    assert rep["n_scores"] >= n_min and rep["n_missing"] == 0, rep
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


@pytest.mark.broker
def test_split_parity_with_a_consumer_group(broker, tmp_path):
    """--group: the per-symbol worker takes its partitions from a consumer group (one member here)."""
    rep = _run_small(broker, tmp_path, group=True, symbol_workers=1)
    _exact(rep, n_min=1800)


@pytest.mark.broker
@pytest.mark.slow
def test_split_parity_when_a_group_member_joins_mid_replay(broker, tmp_path):
    """A second member joins: the first writes the snapshots of the partitions it gives up, the newcomer
    restores them and goes on from their offsets; every score still equals the batch path."""
    rep = _run_small(broker, tmp_path, group=True, symbol_workers=2, chaos="join", rate=600.0)
    _exact(rep, n_min=1800)
    parts = rep["partitions_after_join"]
    assert sorted(parts["symbol0"] + parts["symbol1"]) == list(range(6)) and parts["symbol1"]
    assert rep["restored_from"]   # the newcomer restored the snapshots written on revocation


@pytest.mark.broker
def test_a_per_symbol_worker_started_with_nice_runs_at_lower_priority(broker, tmp_path):
    """``--nice N`` (the split topology's ``symbol_nice``): the worker process itself runs N steps nicer."""
    import os

    from stream.tools.split_run import SplitTopology
    env = dict(os.environ, TECHNIC_TOPIC_PREFIX="nicetest.", TECHNIC_PARTITIONS="2")
    (tmp_path / "registry").mkdir()   # the per-symbol stage reads no model
    topo = SplitTopology(broker.bootstrap, tmp_path / "registry", tmp_path, env, 1, symbol_nice=3)
    assert topo._cmd("symbol", 1, 0)[-2:] == ["--nice", "3"] and "--nice" not in topo._cmd("scoring", 2)
    topo._spawn("symbol0", "symbol", 0)
    try:
        from stream.io.children import wait_http
        wait_http(f"http://127.0.0.1:{topo.ports['symbol0']}/health", 120, topo.procs["symbol0"])
        assert os.getpriority(os.PRIO_PROCESS, topo.procs["symbol0"].pid) == os.getpriority(os.PRIO_PROCESS, 0) + 3
    finally:
        topo.stop()
