"""Catch-up: replay the input log into the pipeline before going live.

State is a pure fold of the input topics, so recovery is a replay:

1. **Catch-up.** Before Faust starts, the worker reads the fundamentals and
   alt topics, then the bars topic, from the beginning to their current end
   with a plain (group-less) consumer, feeding the same ``ScoringPipeline``.
   Scores are suppressed up to the timestamp before the last one already on
   the scores topic (that one is re-emitted whole: a crash may have cut it);
   dead letters already on the dead-letter topic are not repeated.
2. **Live.** Either the direct ingest service (``stream.service.direct``, default:
   one group-less consumer continuing exactly where the catch-up stopped) or
   the Faust agents (``--ingest faust``: from the group's committed offsets).
   Every record at or below the offset the worker already handled (the
   catch-up, or Faust's known restart off-by-ones, faust-streaming #48/#606)
   is skipped and counted; a forward jump in offsets raises an alert.

Results are therefore the same after a crash, a graceful restart or a forced
redelivery, on any broker, without transactions.
"""

from __future__ import annotations

import time

import orjson

from stream.io.codecs import parse_ts
from stream.io.topic_reader import read_to_end
from stream.io.topics_config import topic_name
from stream.service.router import Router, process_batch


async def catch_up(bootstrap: str, router: Router, send) -> dict:
    """Replay the input topics into the pipeline (see module docstring); return counts."""
    t0 = time.time()
    last_score = {"ts": None}

    async def on_scores(msgs):
        for m in msgs:
            try:
                ts = parse_ts(orjson.loads(m.value)["ts"])
            except Exception:  # a foreign record on the scores topic: ignore it
                continue
            if last_score["ts"] is None or ts > last_score["ts"]:
                last_score["ts"] = ts

    async def on_dead(msgs):
        for m in msgs:
            try:
                v = orjson.loads(m.value)
                key = (v["source_topic"], v["partition"])
                off = v["offset"] if v["offset"] is not None else -1
                router.dlq_seen[key] = max(router.dlq_seen.get(key, -1), off)
            except Exception:
                continue

    await read_to_end(bootstrap, topic_name("scores"), on_scores)
    await read_to_end(bootstrap, topic_name("deadletter"), on_dead)
    p = router.pipeline
    if last_score["ts"] is not None:
        from technic.features.incremental import to_ns
        p.suppress_until = max(p.suppress_until, to_ns(last_score["ts"].replace(tzinfo=None)) - 1)
        router.alerts_until = last_score["ts"]
    counts = {"scores_emitted": 0}

    async def feed(msgs):
        outs = await process_batch(router, ((m.topic, m.partition, m.offset, m.key, m.value) for m in msgs),
                                   send, keep=router.keep)
        counts["scores_emitted"] += sum(o.kind == "scores" for o in outs)

    for kind in ("fundamentals", "alt", "bars"):
        counts[kind] = await read_to_end(bootstrap, topic_name(kind), feed)
    router.alerts_until = None
    router.catchup_done = True
    counts["seconds"] = round(time.time() - t0, 2)
    return counts
