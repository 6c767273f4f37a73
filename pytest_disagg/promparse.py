"""Scrapes of a server's ``/metrics`` and what changed between two of them.

Why deltas: vLLM's counters (KV bytes moved, NIXL transfer time, prefix-cache queries and hits,
queue time, preemptions) count from server start, and a deployment serves many runs; only the
difference between a scrape before and one after a run belongs to that run. Counters and the
``_sum``/``_count`` of histograms and summaries are differenced per series (name + labels);
gauges are kept as their value after the run; histogram buckets and ``_created`` timestamps are
dropped (the sums and counts are what the suite reports). A series that went down was reset
(the server restarted): its delta is then its value after, and the series is listed in
``resets`` so nobody mistakes it for a clean figure. Missing metrics are simply absent — a
vLLM build without NIXL has no ``vllm:nixl_*`` series, and that is not an error.

Parsing is prometheus_client's (``text_string_to_metric_families``); a scrape that does not
parse raises :class:`ScrapeError` naming the URL.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

# Figures a run summary names directly: friendly name -> sample name (summed over labels).
KEY_METRICS = {
    "kv_transfer_seconds": "vllm:nixl_xfer_time_seconds_sum",
    "kv_transfers": "vllm:nixl_xfer_time_seconds_count",
    "kv_bytes": "vllm:nixl_bytes_transferred_sum",
    "prefix_cache_queries": "vllm:prefix_cache_queries_total",
    "prefix_cache_hits": "vllm:prefix_cache_hits_total",
    "external_prefix_cache_queries": "vllm:external_prefix_cache_queries_total",
    "external_prefix_cache_hits": "vllm:external_prefix_cache_hits_total",
    "queue_time_seconds": "vllm:request_queue_time_seconds_sum",
    "queued_requests": "vllm:request_queue_time_seconds_count",
    "preemptions": "vllm:num_preemptions_total",
    "prompt_tokens": "vllm:prompt_tokens_total",
    "generation_tokens": "vllm:generation_tokens_total",
}
_DIFFERENCED = ("counter", "histogram", "summary")


class ScrapeError(ValueError):
    """A ``/metrics`` text that prometheus_client cannot parse."""


def series_key(name: str, labels: dict[str, str]) -> str:
    """``name{a="x",b="y"}`` with labels sorted: one stable string per series."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{labels[k]}"' for k in sorted(labels))
    return f"{name}{{{inner}}}"


@dataclass(frozen=True)
class Scrape:
    """One parsed scrape: ``counters`` are differenced later, ``gauges`` are point values."""

    counters: dict[str, float] = field(default_factory=dict)
    gauges: dict[str, float] = field(default_factory=dict)
    names: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)  # key -> (sample name, labels)


def _check_values_ascii(text: str, source: str) -> None:
    """Refuse a sample whose value or timestamp is not ASCII: prometheus_client takes values
    through Python's float(), which reads any Unicode decimal digits ('١٢' is 12.0), and the
    exposition format allows only ASCII numbers there."""
    for number, line in enumerate(text.split("\n"), 1):   # not splitlines(): "\x85" is no line end here
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        tail = stripped[stripped.rfind("}") + 1:] if "}" in stripped else stripped.partition(" ")[2]
        if not tail.isascii():
            raise ScrapeError(f"{source}: not Prometheus text exposition (line {number}: a sample value that is "
                              f"not an ASCII number: {tail.strip()!r})")


def parse(text: str, source: str = "/metrics") -> Scrape:
    """Parse Prometheus text exposition into a :class:`Scrape`."""
    _check_values_ascii(text, source)
    counters: dict[str, float] = {}
    gauges: dict[str, float] = {}
    names: dict[str, tuple[str, dict[str, str]]] = {}
    try:
        for family in text_string_to_metric_families(text):
            differenced = family.type in _DIFFERENCED
            for s in family.samples:
                if s.name.endswith(("_created", "_bucket")):
                    continue
                key = series_key(s.name, s.labels)
                names[key] = (s.name, dict(s.labels))
                # A summary's quantiles are point values; only its _sum and _count accumulate.
                point = family.type == "summary" and "quantile" in s.labels
                (counters if differenced and not point else gauges)[key] = float(s.value)
    except (ValueError, TypeError, IndexError) as exc:
        raise ScrapeError(f"{source}: not Prometheus text exposition ({exc})") from None
    return Scrape(counters, gauges, names)


@dataclass(frozen=True)
class MetricsDelta:
    """What changed on one server during a run."""

    series: dict[str, float]            # series key -> after − before (counters, sums, counts)
    gauges: dict[str, float]            # series key -> value after the run
    totals: dict[str, float]            # sample name -> delta summed over its label sets
    resets: tuple[str, ...] = ()        # series that went down (server restarted)

    def key_figures(self) -> dict[str, float]:
        """The figures of :data:`KEY_METRICS` that this server exports."""
        return {friendly: self.totals[name] for friendly, name in KEY_METRICS.items() if name in self.totals}

    def to_json(self) -> dict:
        return {"key": self.key_figures(), "totals": self.totals, "series": self.series, "gauges": self.gauges,
                "resets": list(self.resets)}


def delta(before: Scrape, after: Scrape) -> MetricsDelta:
    """Per-series differences; a series new in ``after`` counts from 0."""
    series: dict[str, float] = {}
    totals: dict[str, float] = {}
    resets = []
    for key, value in after.counters.items():
        old = before.counters.get(key, 0.0)
        d = value - old
        if d < 0:
            resets.append(key)
            d = value
        series[key] = d
        name = after.names[key][0]
        totals[name] = totals.get(name, 0.0) + d
    return MetricsDelta(series, dict(after.gauges), totals, tuple(sorted(resets)))


def sum_series(scrape: Scrape, name: str, **labels: str) -> float:
    """Sum of a sample over the series whose labels include ``labels`` (0 when absent)."""
    total = 0.0
    for key, (sample, have) in scrape.names.items():
        if sample != name or any(have.get(k) != v for k, v in labels.items()):
            continue
        total += scrape.counters.get(key, scrape.gauges.get(key, 0.0))
    return total


__all__ = ["KEY_METRICS", "MetricsDelta", "Scrape", "ScrapeError", "delta", "parse", "series_key", "sum_series"]
