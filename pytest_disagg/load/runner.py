"""Run a workload against a deployment: warm up, scrape, send on schedule, scrape, join, collect.

Why the order matters: the "before" scrape is taken after the warm-up so that the server-metric
deltas (KV bytes, prefix-cache hits, queue time...) cover exactly the measured requests; the
proxy's stage records are fetched once at the end and joined on the ``X-Request-Id`` each
request carried (ids carry a per-run token, so records of earlier runs never match).

The runner needs only what the Deployment contract promises (ARCHITECTURE.md): ``url``,
``model_name`` and ``servers`` with ``role`` and ``metrics_url()``. It never raises because a
request failed — failures are data in the :class:`RunResult`; it raises only for a bad spec or
target, before anything is sent. Ctrl-C cancels in-flight requests and closes every connection
(the session is a context manager; asyncio.run cancels the tasks).
"""
from __future__ import annotations

import asyncio
import time
import uuid
from typing import Callable, Iterable, Protocol, Sequence, runtime_checkable

import aiohttp

from .. import progress as _progress
from .. import promparse
from .arrivals import ramp_offsets
from .client import ClientOptions, RequestRecord, StreamClient
from .result import RunResult
from .workload import RequestSpec, WorkloadSpec, build_requests

SCRAPE_TIMEOUT_S = 10.0
LAG_PROBE_S = 0.01          # the event-loop lag probe sleeps this long and records how late it woke
RECORDS_PATH = "/disagg/records"


@runtime_checkable
class ServerLike(Protocol):
    role: str

    def metrics_url(self) -> str: ...


@runtime_checkable
class TargetLike(Protocol):
    """What the runner needs of a deployment (``pytest_disagg.deploy.Deployment`` is one)."""

    url: str
    model_name: str
    servers: Sequence[ServerLike]


class TargetError(TypeError):
    """A target without what the runner needs."""


def check_target(target) -> None:
    missing = [a for a in ("url", "model_name", "servers") if not hasattr(target, a)]
    if missing:
        raise TargetError(f"{type(target).__name__} is not a run target: missing {missing} "
                          "(needs url, model_name and servers with role and metrics_url())")
    for s in target.servers:
        if not hasattr(s, "role") or not callable(getattr(s, "metrics_url", None)):
            raise TargetError(f"server {s!r} needs a role and a metrics_url() method")


def progress_wanted(progress: bool | None) -> bool:
    """Auto: whenever :func:`pytest_disagg.progress.current` writes somewhere (pytest's terminal,
    or a terminal on stderr outside pytest); False: never."""
    if progress is not None:
        return progress
    return _progress.current().enabled


def run_workload(target, spec: WorkloadSpec, *, progress: bool | None = None, vocab_size: int | None = None,
                 avoid_ids: Sequence[int] = (), options: ClientOptions | None = None,
                 requests: list[RequestSpec] | None = None, use_uvloop: bool = True) -> RunResult:
    """Blocking entry point: run ``spec`` against ``target`` on a fresh event loop (uvloop when
    installed and ``use_uvloop``; see :func:`arun_workload` for the rest)."""
    coro = arun_workload(target, spec, progress=progress, vocab_size=vocab_size, avoid_ids=avoid_ids,
                         options=options, requests=requests)
    if use_uvloop:
        try:
            import uvloop   # optional dependency: the fast extra
        except ImportError:
            pass
        else:
            return uvloop.run(coro)
    return asyncio.run(coro)


async def arun_workload(target, spec: WorkloadSpec, *, progress: bool | None = None, vocab_size: int | None = None,
                        avoid_ids: Sequence[int] = (), options: ClientOptions | None = None,
                        requests: list[RequestSpec] | None = None) -> RunResult:
    """The async run. ``vocab_size`` defaults to ``target.model.vocab_size``; ``requests``
    overrides :func:`build_requests` (e.g. prompts made elsewhere)."""
    check_target(target)
    if requests is None:
        if vocab_size is None:
            vocab_size = getattr(getattr(target, "model", None), "vocab_size", None)
            if vocab_size is None:
                raise TargetError("vocab_size not given and the target has no model.vocab_size")
        requests = build_requests(spec, vocab_size, avoid_ids)
    if options is None:
        options = ClientOptions(endpoint=spec.endpoint, request_timeout_s=spec.request_timeout_s)
    run_token = uuid.uuid4().hex[:12]
    client = StreamClient(target.url, target.model_name, options)
    try:
        async with aiohttp.ClientSession(trust_env=False) as session:
            jobs = [(req, f"{run_token}-{req.request_id}", client.body(req)) for req in requests]
            warm = [j for j in jobs if j[0].warmup]
            measured = [j for j in jobs if not j[0].warmup]
            warm_records = [client.record(req, rid) for req, rid, _ in warm]
            await asyncio.gather(*(client.send(req, rid, body, record=rec)
                                   for (req, rid, body), rec in zip(warm, warm_records)))
            before = await _scrape_all(session, target.servers)
            records, t0, wall_s, truncated, loop_lag = await _measured_phase(client, spec, measured,
                                                                              progress_wanted(progress))
            after = await _scrape_all(session, target.servers)
            joined = await _join_proxy_records(session, target.url, records + warm_records)
    finally:
        client.close()   # also on Ctrl-C: no connection outlives the run
    return RunResult(
        workload=spec, records=warm_records + records, t0_ns=t0, wall_s=wall_s,
        server_metrics_delta=_deltas(target.servers, before, after), proxy_records=joined, truncated=truncated,
        loop_lag_ms=loop_lag,
        target={"url": target.url, "model": target.model_name, "endpoint": options.endpoint,
                "servers": [{"role": s.role, "metrics_url": s.metrics_url()} for s in target.servers]},
    )


async def _measured_phase(client: StreamClient, spec: WorkloadSpec, jobs: list, show_progress: bool):
    """Send the measured requests on their schedule (or closed loop) within ``max_wall_s``,
    probing the event loop's own lag meanwhile (a descheduled client shows there)."""
    records = [client.record(req, rid) for req, rid, _ in jobs]
    bar = _progress.current().run(spec.describe(), len(jobs)) if show_progress else None
    tasks: list[asyncio.Task] = []

    def start(i: int, scheduled: int | None) -> asyncio.Task:
        req, rid, body = jobs[i]
        task = asyncio.ensure_future(client.send(req, rid, body, scheduled, records[i]))
        if bar is not None:
            task.add_done_callback(lambda _t: bar.advance())
        tasks.append(task)
        return task

    loop_lag: list[float] = []
    lag_probe = asyncio.ensure_future(_lag_probe(loop_lag))
    t0 = time.perf_counter_ns()
    deadline = t0 + int(spec.max_wall_s * 1e9)
    truncated = None
    try:
        if spec.arrival.closed_loop:
            truncated = await _closed_loop(start, len(jobs), spec, t0, deadline)
        else:
            truncated = await _open_loop(start, [req.offset_s for req, _, _ in jobs], t0, deadline)
        if tasks:
            remaining = max(0.0, (deadline - time.perf_counter_ns()) / 1e9)
            _, pending = await asyncio.wait(tasks, timeout=remaining)
            if pending:
                truncated = truncated or f"max_wall_s={spec.max_wall_s:g} reached with {len(pending)} requests in flight"
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
    finally:
        lag_probe.cancel()
        await asyncio.gather(lag_probe, return_exceptions=True)
        if bar is not None:
            bar.close()
    ends = [r.end_ns for r in records if r.end_ns]
    wall_s = (max(ends) - t0) / 1e9 if ends else 0.0
    return records, t0, wall_s, truncated, loop_lag


async def _lag_probe(out: list[float]) -> None:
    """Sleep ``LAG_PROBE_S`` again and again; append how many ms late each wake-up came."""
    while True:
        t = time.perf_counter_ns()
        await asyncio.sleep(LAG_PROBE_S)
        out.append(max(0.0, (time.perf_counter_ns() - t) / 1e6 - LAG_PROBE_S * 1e3))


async def _open_loop(start: Callable, offsets: list[float | None], t0: int, deadline: int) -> str | None:
    """Send each request at ``t0 + offset``; everything already due goes in one batch."""
    due = [t0 + int(o * 1e9) for o in offsets]
    i, n = 0, len(due)
    while i < n:
        now = time.perf_counter_ns()
        if now >= deadline:
            return f"max_wall_s reached after sending {i} of {n} requests"
        if due[i] > now:
            await asyncio.sleep(min(due[i], deadline) / 1e9 - now / 1e9)
            continue
        while i < n and due[i] <= now:
            start(i, due[i])
            i += 1
        await asyncio.sleep(0)   # let the new requests go out before looking at the clock again
    return None


async def _closed_loop(start: Callable, n: int, spec: WorkloadSpec, t0: int, deadline: int) -> str | None:
    """``concurrency`` workers; each sends its next request when its previous one ends."""
    counter = iter(range(n))
    stopped: list[str] = []

    async def worker(delay_s: float) -> None:
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        for i in counter:
            if time.perf_counter_ns() >= deadline:
                stopped.append(f"max_wall_s reached after sending {i} of {n} requests")
                return
            await start(i, time.perf_counter_ns())

    workers = [asyncio.ensure_future(worker(float(d))) for d in ramp_offsets(spec.arrival)[:n]]
    pending: set = set()
    try:
        if workers:
            _, pending = await asyncio.wait(workers, timeout=max(0.0, (deadline - time.perf_counter_ns()) / 1e9))
    finally:
        for w in workers:
            w.cancel()   # a worker cancelled while awaiting its request cancels the request too
        await asyncio.gather(*workers, return_exceptions=True)
    if pending:
        return f"max_wall_s={spec.max_wall_s:g} reached with requests in flight"
    return stopped[0] if stopped else None


# --- server metrics and proxy records -------------------------------------------------------

def _server_key(server) -> str:
    return f"{server.role}@{server.metrics_url()}"


async def _scrape(session: aiohttp.ClientSession, url: str) -> promparse.Scrape | str:
    """A parsed scrape, or the reason there is none (a run never fails for a missing scrape)."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S)) as resp:
            if resp.status != 200:
                return f"HTTP {resp.status} from {url}"
            text = await resp.text(errors="replace")
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        return f"{url}: {type(exc).__name__}: {exc}"
    try:
        return promparse.parse(text, url)
    except promparse.ScrapeError as exc:
        return str(exc)


async def _scrape_all(session: aiohttp.ClientSession, servers: Iterable) -> list:
    servers = list(servers)
    return list(await asyncio.gather(*(_scrape(session, s.metrics_url()) for s in servers)))


def _deltas(servers, before: list, after: list) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for server, b, a in zip(servers, before, after):
        entry: dict = {"role": server.role, "metrics_url": server.metrics_url()}
        if isinstance(b, str) or isinstance(a, str):
            entry["error"] = b if isinstance(b, str) else a
        else:
            entry.update(promparse.delta(b, a).to_json())
        out[_server_key(server)] = entry
    return out


async def _join_proxy_records(session: aiohttp.ClientSession, url: str, records: list[RequestRecord]) -> bool:
    """Attach the proxy's stage record to each request; False when there is no such endpoint."""
    try:
        async with session.get(url.rstrip("/") + RECORDS_PATH,
                               timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S * 3)) as resp:
            if resp.status != 200:
                return False
            data = await resp.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError):
        return False
    if not isinstance(data, list):
        return False
    by_id = {d.get("request_id"): d for d in data if isinstance(d, dict)}
    found = False
    for rec in records:
        proxy = by_id.get(rec.request_id)
        if proxy is not None:
            rec.proxy = {k: v for k, v in proxy.items() if k != "request_id"}
            found = True
    return found


__all__ = ["ServerLike", "TargetError", "TargetLike", "arun_workload", "check_target", "progress_wanted",
           "run_workload"]
