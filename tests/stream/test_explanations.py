"""``--explain deferred``: scores first without contributions, then one explanation record per score
on ``technic.explanations`` with exactly the contributions the inline mode puts in the score record.
Both stages that score (the one-process pipeline and the split scoring stage)."""

import pytest

from stream.io.codecs import encode, validate
from stream.stages.models import ModelSource
from stream.stages.pipeline import PipelineConfig, ScoringPipeline
from stream.stages.records import check_explain
from stream.stages.scoring import ScoringConfig, ScoringStage
from stream.stages.symbol import SymbolStage
from stream.tools.publisher import bar_records, fundamental_records

from .test_pipeline import LinearScorer, data  # noqa: F401 (fixture)

N_SYMBOLS, N_DAYS = 8, 40


def _small(data):  # noqa: F811
    bars, fund, secs = data
    syms = sorted(bars["symbol"].unique())[:N_SYMBOLS]
    days = sorted(bars["date"].unique())[:N_DAYS]
    return bars[bars["symbol"].isin(syms) & bars["date"].isin(days)].reset_index(drop=True), fund, secs


def _one_process(data, explain):  # noqa: F811
    bars, fund, secs = _small(data)
    p = ScoringPipeline(ModelSource(None, scorer=LinearScorer()), sectors=secs,
                        config=PipelineConfig(grace_s=1e9, top_k=3, explain=explain))
    scores, expl = [], []
    for i, (_, k, v) in enumerate(fundamental_records(fund)):
        p.on_fundamental(v, offset=i, key=k)
    for i, (_, k, v) in enumerate(bar_records(bars)):
        scores += p.on_bar(v, "technic.bars", 0, i, key=k)
        scores += p.poll()
        expl += p.explanations()        # what a worker does after sending the scores
    scores += p.flush()
    expl += p.explanations()
    return scores, expl


def _split(data, explain):  # noqa: F811
    bars, fund, secs = _small(data)
    sym = SymbolStage(secs, n_partitions=1)
    for i, (_, k, v) in enumerate(fundamental_records(fund)):
        sym.on_fundamental(v, partition=0, offset=i, key=k)
    sc = ScoringStage(ModelSource(None, scorer=LinearScorer()), sectors=secs,
                      config=ScoringConfig(grace_s=1e9, stall_s=1e9, top_k=3, explain=explain))
    scores, expl = [], []
    for i, (_, k, v) in enumerate(bar_records(bars)):
        for o in sym.on_bar(v, partition=0, offset=i, key=k) + sym.watermarks([0]):
            scores += sc.on_record(encode(o.value))
        scores += sc.poll()
        expl += sc.explanations()
    scores += sc.flush()
    expl += sc.explanations()
    return scores, expl


def _by_key(outs, kind):
    return {o.value["key"]: o.value for o in outs if o.kind == kind}


@pytest.mark.parametrize("run", [_one_process, _split], ids=["one-process", "split"])
def test_deferred_explanations_equal_the_inline_contributions(data, run):  # noqa: F811
    inline, none = run(data, "inline")
    assert none == []                                    # inline mode defers nothing
    scores, expl = run(data, "deferred")
    s_in, s_def, ex = _by_key(inline, "scores"), _by_key(scores, "scores"), _by_key(expl, "explanations")
    assert len(s_in) > 100 and s_in.keys() == s_def.keys() == ex.keys()
    assert len(expl) == len(ex)                           # one explanation per score, no copies
    for key, v in s_in.items():
        d = s_def[key]
        assert d["top_contributions"] == [] and d["explanation"] == "deferred"
        strip = ("top_contributions", "explanation", "emit_time")
        assert {k: x for k, x in d.items() if k not in strip} == {k: x for k, x in v.items() if k not in strip}
        assert ex[key]["top_contributions"] == v["top_contributions"] and len(v["top_contributions"]) == 3
        assert ex[key]["symbol"] == v["symbol"] and ex[key]["ts"] == v["ts"]
    for rec in list(s_def.values())[:50]:
        validate("scores", rec)
    for rec in list(ex.values())[:50]:
        validate("explanations", rec)


def test_top_k_zero_defers_nothing_and_unknown_mode_is_refused(data):  # noqa: F811
    bars, fund, secs = _small(data)
    p = ScoringPipeline(ModelSource(None, scorer=LinearScorer()), sectors=secs,
                        config=PipelineConfig(grace_s=1e9, top_k=0, explain="deferred"))
    outs = [o for i, (_, k, v) in enumerate(bar_records(bars)) for o in p.on_bar(v, "technic.bars", 0, i, key=k)]
    outs += p.flush()
    assert p.explanations() == [] and all("explanation" not in o.value for o in outs if o.kind == "scores")
    with pytest.raises(ValueError, match="explain must be one of"):
        check_explain("later")
