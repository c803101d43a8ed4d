"""Replay producer: bars (and fundamentals, alt data) onto the input topics.

Bars go out in event-time order (date, then symbol), keyed by symbol, each with
a per-symbol sequence number (its position in that symbol's history), so a
re-published file carries the same sequence numbers and the worker skips the
repeats. Fundamentals and alt rows are published first: their effect is
point-in-time anyway (``available_from`` / date), and the worker needs them
before the bars they apply to.

Delivery: an idempotent producer with ``acks=all``; records are sent in
windows and a window counts as delivered only when every send in it is
acknowledged. If the producer fails (broker restart, fatal sequence error) it
is recreated and the publisher resends from the start of the unacknowledged
window: duplicates are harmless by design.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from technic.features import registry as R

from stream.io.codecs import encode
from stream.io.kafka import new_producer
from stream.io.topics_config import topic_name

log = logging.getLogger("technic.publisher")
Record = tuple[str, bytes, bytes]  # topic, key, value


def _date_str(d) -> str:
    ts = pd.Timestamp(d)
    return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def bar_records(bars: pd.DataFrame) -> Iterator[Record]:
    """Canonical bars -> (topic, key, value) in (date, symbol) order with per-symbol seq."""
    b = bars.sort_values(["date", "symbol"], kind="mergesort").reset_index(drop=True)
    seq = b.groupby("symbol", sort=False).cumcount().to_numpy()
    topic = topic_name("bars")
    dates = [_date_str(d) for d in b["date"].to_numpy()] if len(b) < 1000 else None
    if dates is None:  # vectorized formatting for big files
        d = b["date"]
        midnight = (d == d.dt.normalize()).all()
        dates = d.dt.strftime("%Y-%m-%d" if midnight else "%Y-%m-%dT%H:%M:%SZ").tolist()
    cols = {k: b[k].to_numpy(np.float64) for k in ("open", "high", "low", "close", "volume")}
    syms = b["symbol"].tolist()
    for i, sym in enumerate(syms):
        rec = {"symbol": sym, "ts": dates[i], "seq": int(seq[i])}
        for k, v in cols.items():
            x = v[i]
            rec[k] = None if x != x else float(x)
        yield topic, sym.encode(), encode(rec)


def fundamental_records(fund: pd.DataFrame | None) -> Iterator[Record]:
    if fund is None or fund.empty:
        return
    topic = topic_name("fundamentals")
    fields = [f for f in R.FUNDAMENTAL_INPUTS if f in fund.columns]
    for i, row in enumerate(fund.sort_values(["available_from", "symbol"]).itertuples(index=False)):
        r = row._asdict()
        rec = {"symbol": r["symbol"], "period_end": _date_str(r["period_end"]),
               "available_from": _date_str(r["available_from"]), "seq": i,
               "fields": {f: (None if pd.isna(r[f]) else float(r[f])) for f in fields}}
        yield topic, r["symbol"].encode(), encode(rec)


def alt_records(alt: pd.DataFrame | None) -> Iterator[Record]:
    if alt is None or alt.empty:
        return
    topic = topic_name("alt")
    for i, (d, sym, field, value) in enumerate(alt.sort_values(["date", "symbol"])[["date", "symbol", "field", "value"]]
                                               .itertuples(index=False)):
        if value == value:
            yield topic, sym.encode(), encode({"symbol": sym, "ts": _date_str(d), "field": field,
                                               "value": float(value), "seq": i})


async def publish(bootstrap: str, records: Iterable[Record], *, rate: float | None = None,
                  window: int = 5000, progress: Callable[[int], None] | None = None,
                  max_retries: int = 20) -> dict:
    """Send records in order; resend the unacknowledged window after a producer failure."""
    records = list(records)
    stats = {"sent": 0, "retries": 0, "seconds": 0.0}
    t0 = time.time()
    producer = await _producer(bootstrap)
    i = 0
    try:
        while i < len(records):
            chunk = records[i:i + window]
            try:
                futs = [await producer.send(t, key=k, value=v) for t, k, v in chunk]
                await asyncio.gather(*futs)
            except KafkaError as e:
                stats["retries"] += 1
                if stats["retries"] > max_retries:
                    raise
                log.warning("producer failed (%s); recreating it and resending from record %d", e, i)
                await _close(producer)
                await asyncio.sleep(min(5.0, 0.5 * stats["retries"]))
                producer = await _producer(bootstrap)
                continue
            i += len(chunk)
            stats["sent"] = i
            if progress:
                progress(len(chunk))
            if rate:
                ahead = i / rate - (time.time() - t0)
                if ahead > 0:
                    await asyncio.sleep(ahead)
    finally:
        await _close(producer)
    stats["seconds"] = round(time.time() - t0, 3)
    return stats


async def _producer(bootstrap: str) -> AIOKafkaProducer:
    for attempt in range(60):
        p = new_producer(bootstrap, request_timeout_ms=15000)
        try:
            await p.start()
            return p
        except KafkaError as e:
            await _close(p)
            log.warning("cannot connect producer (%s), retrying", e)
            await asyncio.sleep(0.5)
    raise ConnectionError(f"cannot connect a producer to {bootstrap}")


async def _close(p: AIOKafkaProducer) -> None:
    try:
        await p.stop()
    except Exception:  # closing a broken producer must not mask the original error
        pass
