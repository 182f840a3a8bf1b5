"""The HTTP API's access rules, as the routes in ``functions/api.py`` apply them: who is
calling (``shared.callers``), which jobs that caller may list, and how many it has running.

Listing pages through the Durable instance store by creation time, newest window first, and
stops as soon as ``limit`` visible jobs are found: a caller's `GET /api/jobs?limit=10` never
loads every job of the last month.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

from shared.callers import Caller, NotSignedIn, caller_from_headers
from shared.settings import Settings

# Creation-time windows, newest first: most listings end in the first one.
_WINDOWS = (timedelta(hours=1), timedelta(days=1), timedelta(days=7), timedelta(days=30))
_UNFINISHED = [OrchestrationRuntimeStatus.Pending, OrchestrationRuntimeStatus.Running,
               OrchestrationRuntimeStatus.ContinuedAsNew]

ToStatus = Callable[[Any], dict[str, Any] | None]  # an orchestration status -> job status


def caller_of(req: func.HttpRequest, settings: Settings) -> Caller:
    """The request's caller; raises NotSignedIn (→ 401)."""
    return caller_from_headers(req.headers, settings)


async def visible_jobs(client: df.DurableOrchestrationClient, caller: Caller, limit: int,
                       to_status: ToStatus) -> list[dict[str, Any]]:
    """Up to ``limit`` job statuses the caller may manage, newest first (last 30 days)."""
    now = datetime.now(UTC)
    jobs: list[dict[str, Any]] = []
    newer_than: datetime | None = None  # the upper bound of the next window
    for span in _WINDOWS:
        since = now - span
        page = await client.get_status_by(created_time_from=since, created_time_to=newer_than)
        found = await _job_statuses(client, page, to_status)
        found = [s for s in found if caller.may_manage(s.get("caller"))]
        found.sort(key=lambda j: j.get("created", ""), reverse=True)
        jobs += found
        if len(jobs) >= limit:
            break
        newer_than = since
    return jobs[:limit]


async def active_jobs(client: df.DurableOrchestrationClient, caller: Caller,
                      to_status: ToStatus) -> set[str]:
    """Ids of the caller's own unfinished jobs."""
    since = datetime.now(UTC) - _WINDOWS[-1]
    page = await client.get_status_by(created_time_from=since, runtime_status=_UNFINISHED)
    statuses = await _job_statuses(client, page, to_status)
    return {s["id"] for s in statuses if s.get("caller") == caller.id}


async def _job_statuses(client: df.DurableOrchestrationClient, page: list[Any],
                        to_status: ToStatus) -> list[dict[str, Any]]:
    """The job statuses of a query page. A query returns no inputs, and an orchestration that
    has not run its first episode yet has no custom status either, so whose job it is is only in
    its input: such an instance is read again with its input. Without that, a job just started
    would be missing from its caller's list and would not count against
    MAX_ACTIVE_JOBS_PER_CALLER (two quick POSTs would both pass)."""
    fresh = [st.instance_id for st in page
             if st.custom_status is None and st.instance_id and to_status(st) is None]
    gate = asyncio.Semaphore(8)

    async def reread(instance_id: str) -> Any:
        async with gate:
            return await client.get_status(instance_id, show_input=True)

    again = await asyncio.gather(*(reread(i) for i in fresh))
    statuses = [to_status(st) for st in page if st.instance_id not in fresh]
    statuses += [to_status(st) for st in again if st is not None]
    return [s for s in statuses if s]


__all__ = ["Caller", "NotSignedIn", "active_jobs", "caller_of", "visible_jobs"]
