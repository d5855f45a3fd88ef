"""Claiming runs: which runnable runs a worker may take, within queue limits.

Queues without limits are claimed in one statement (row locks that skip locked
rows on PostgreSQL, so concurrent workers take different runs). A queue with
limits is claimed under a lock on its row in ``kernos_queues``: the claimer
counts what runs (per queue, per concurrency key) and what started within the
rate period, then takes only what fits. Every move into ``running`` of such a
queue goes through that lock, so the counts cannot be raced.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import orjson

from kernos.records import QueueSpec, Run
from kernos.store._tx import Tx

__all__ = ["claim"]

_CANDIDATES_PER_SLOT = 8  # look past runs whose concurrency key is saturated


def _json(values: Sequence[str]) -> str:
    return orjson.dumps(list(values)).decode()


def claim(
    tx: Tx,
    owner: str,
    *,
    limit: int,
    lease_s: float,
    workflows: Sequence[str],
    queues: Mapping[str, int] | None,
) -> list[Run]:
    """Claim up to ``limit`` runs; see :meth:`Store.claim`."""
    specs = {row["name"]: QueueSpec.from_row(row) for row in tx.all("list_queue_specs", {})}
    limited = sorted(name for name, spec in specs.items() if spec.limited)
    wanted = None if queues is None else sorted(name for name, n in queues.items() if n > 0)
    if wanted == []:
        return []
    base = {
        "owner": owner,
        "now": tx.now,
        "expires": tx.now + lease_s,
        "workflows": _json(workflows),
        "queues": None if wanted is None else _json(wanted),
        "limited": _json(limited),
    }
    taken: dict[str, int] = {}
    if queues is None or all(n >= limit for n in queues.values()):
        rows = tx.all("claim_resumable", {**base, "limit": limit})
        if len(rows) < limit:
            rows += tx.all("claim_unlimited", {**base, "limit": limit - len(rows)})
        for row in rows:
            taken[row["queue"]] = taken.get(row["queue"], 0) + 1
    else:
        # The worker's room in some queue (its worker_concurrency) is below the
        # limit: claim queue by queue, so that room bounds every way in.
        rows = []
        for name in wanted or ():
            room = min(queues[name], limit - len(rows))
            if room <= 0:
                continue
            one = {**base, "queues": _json([name])}
            got = tx.all("claim_resumable", {**one, "limit": room})
            if len(got) < room:
                got += tx.all("claim_unlimited", {**one, "limit": room - len(got)})
            taken[name] = len(got)
            rows += got
    for name in limited:
        room = limit - len(rows)
        if queues is not None:
            room = min(room, queues.get(name, 0) - taken.get(name, 0))
        if room <= 0:
            continue
        rows += _claim_limited(tx, specs[name], room, base)
    runs = [Run.from_row(row, tx.decode) for row in rows]
    for run in runs:
        tx.event(
            run.run_id,
            "run.started",
            {"owner": owner, "epoch": run.lease_epoch, "execution": run.executions},
        )
    return runs


def _claim_limited(tx: Tx, spec: QueueSpec, room: int, base: dict[str, object]) -> list[object]:
    queue = {"queue": spec.name}
    tx.execute("lock_queue", queue)
    if spec.concurrency is not None:
        room = min(room, spec.concurrency - tx.one("running_in_queue", queue)["n"])
    starts_left = None
    if spec.rate_limit is not None and spec.rate_period is not None:
        since = tx.now - spec.rate_period
        started = tx.one("started_since", {**queue, "since": since})["n"]
        starts_left = spec.rate_limit - started
    if room <= 0:
        return []
    running_by_key: dict[str, int] = {}
    if spec.key_concurrency is not None:
        running_by_key = {
            row["concurrency_key"]: row["n"] for row in tx.all("running_by_key", queue)
        }
    candidates = tx.all(
        "claim_candidates",
        {
            **queue,
            "now": tx.now,
            "workflows": base["workflows"],
            "limit": room * _CANDIDATES_PER_SLOT + 16,
        },
    )
    chosen: list[str] = []
    for row in candidates:
        if len(chosen) >= room:
            break
        first_start = row["started_at"] is None
        if first_start and starts_left is not None and starts_left <= 0:
            continue
        key = row["concurrency_key"]
        if spec.key_concurrency is not None and key is not None:
            if running_by_key.get(key, 0) >= spec.key_concurrency:
                continue
            running_by_key[key] = running_by_key.get(key, 0) + 1
        if first_start and starts_left is not None:
            starts_left -= 1
        chosen.append(row["run_id"])
    if not chosen:
        return []
    return list(tx.all("claim_chosen", {**base, "run_ids": _json(chosen)}))
