"""The order events of examples/orders.py and what the example must commit for them."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

from onceflow.operators.dedup.core import DedupCore
from onceflow.operators.state import KeyedMemoryStore
from onceflow.operators.versioned.core import APPLIED, NEWER_WINS, REPEAT, ChangeEvent, simulate

STATUSES = ("created", "paid", "packed", "shipped", "delivered")


def order_lines(seed: int = 7, orders: int = 200) -> list[bytes]:
    """Order events in arrival order: each order's versions shuffled, 20% sent twice,
    conflicting rewrites of a version, and lines that are not events."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for o in range(orders):
        versions = list(range(1, 6))
        rng.shuffle(versions)
        for v in versions:
            events.append(
                {
                    "event_id": f"e-{o:04d}-{v}",
                    "order_id": f"o-{o:04d}",
                    "version": v,
                    "status": STATUSES[v - 1],
                    "amount": round(10 + o * 0.25, 2),
                }
            )
    rng.shuffle(events)
    lines = [json.dumps(e).encode() for e in events]
    for e in rng.sample(events, len(events) // 5):
        lines.insert(rng.randrange(len(lines) + 1), json.dumps(e).encode())
    for o in rng.sample(range(orders), 10):
        conflict = {"event_id": f"x-{o}", "order_id": f"o-{o:04d}", "version": 5}
        conflict |= {"status": "lost", "amount": 1.0}
        lines.append(json.dumps(conflict).encode())
    for junk in (b"not json", b'{"order_id": "o-0001"}', b"\xff\xfe", b"[]", b'{"event_id": 7}'):
        lines.insert(rng.randrange(len(lines) + 1), junk)
    return lines


def oracle(lines: list[bytes]) -> tuple[list[tuple[str, int]], Counter[str], int]:
    """What the example must commit: applied (order, version) in order, the outcome
    kinds of rejected changes, and the number of dead letters."""
    dedup, seen = DedupCore(None), KeyedMemoryStore[int]()
    changes, dead = [], 0
    for line in lines:
        try:
            doc = json.loads(line)
            event = (str(doc["event_id"]), str(doc["order_id"]), int(doc["version"]))
            status, amount = str(doc["status"]).upper(), round(float(doc["amount"]) * 100)
        except (ValueError, TypeError, KeyError):
            dead += 1
            continue
        if dedup.process(seen.for_key(event[0]), 0):
            payload = {"order_id": event[1], "version": event[2], "status": status}
            payload["amount_cents"] = amount
            changes.append(ChangeEvent(event[1], event[2], payload=payload))
    run = simulate(changes, NEWER_WINS)
    applied = [(o.event.key, o.event.version) for o in run.outcomes if o.kind == APPLIED]
    rejected = Counter(o.kind for o in run.outcomes if o.kind not in (APPLIED, REPEAT))
    return applied, rejected, dead


def committed_statuses(values: list[bytes | None]) -> Counter[tuple[str, int]]:
    """(order, version) of each record of the example's status topic."""
    docs = [json.loads(value or b"null") for value in values]
    return Counter((doc["order_id"], doc["version"]) for doc in docs)
