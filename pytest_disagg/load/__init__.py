"""The load generator: workloads, arrivals, the streaming client, the runner and its result.

Usable without pytest::

    from pytest_disagg.load import WorkloadSpec, poisson, fixed, run_workload
    spec = WorkloadSpec(arrival=poisson(4.0), num_requests=200, prompt=fixed(256), output=fixed(64))
    run = run_workload(deployment, spec)
    run.check_failures()          # > 1 % failed: raises with the first failures
    run.samples()["ttft_ms"], run.scalars()["output_throughput"], run.to_json()
"""
from .arrivals import Arrival, ArrivalError, all_at_once, concurrency, constant, gamma, poisson, trace
from .client import ClientOptions, RequestRecord, StreamClient
from .result import RunResult, TooManyFailures
from .runner import TargetError, TargetLike, arun_workload, run_workload
from .sse import MalformedChunk, SSEError, SSEEvent, SSEParser
from .workload import (SLO, Lengths, PrefixSharing, RequestSpec, WorkloadError, WorkloadSpec, build_requests, fixed,
                       lognormal, sweep, uniform)

__all__ = [
    "Arrival", "ArrivalError", "ClientOptions", "Lengths", "MalformedChunk", "PrefixSharing", "RequestRecord",
    "RequestSpec", "RunResult", "SLO", "SSEError", "SSEEvent", "SSEParser", "StreamClient", "TargetError",
    "TargetLike", "TooManyFailures", "WorkloadError", "WorkloadSpec", "all_at_once", "arun_workload",
    "build_requests", "concurrency", "constant", "fixed", "gamma", "lognormal", "poisson", "run_workload",
    "sweep", "trace", "uniform",
]
