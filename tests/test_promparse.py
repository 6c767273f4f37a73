"""/metrics scrapes: parsing vLLM-style text, per-series deltas, resets, missing metrics, bad text."""
from __future__ import annotations

import pytest

from pytest_disagg import promparse

BEFORE = """\
# HELP vllm:nixl_xfer_time_seconds Histogram of transfer duration for NIXL KV Cache transfers.
# TYPE vllm:nixl_xfer_time_seconds histogram
vllm:nixl_xfer_time_seconds_bucket{engine="0",le="0.001",model_name="m"} 1.0
vllm:nixl_xfer_time_seconds_bucket{engine="0",le="+Inf",model_name="m"} 4.0
vllm:nixl_xfer_time_seconds_count{engine="0",model_name="m"} 4.0
vllm:nixl_xfer_time_seconds_sum{engine="0",model_name="m"} 0.02
# HELP vllm:prefix_cache_queries_total Prefix cache queries.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 100.0
# HELP vllm:prefix_cache_hits_total Prefix cache hits.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 40.0
# HELP vllm:num_requests_running Running requests.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
# HELP vllm:prompt_tokens_by_source_total Prompt tokens by source.
# TYPE vllm:prompt_tokens_by_source_total counter
vllm:prompt_tokens_by_source_total{engine="0",model_name="m",source="local_compute"} 500.0
vllm:prompt_tokens_by_source_total{engine="0",model_name="m",source="external_kv_transfer"} 200.0
"""

AFTER = BEFORE.replace("_count{engine=\"0\",model_name=\"m\"} 4.0", "_count{engine=\"0\",model_name=\"m\"} 10.0") \
    .replace("_sum{engine=\"0\",model_name=\"m\"} 0.02", "_sum{engine=\"0\",model_name=\"m\"} 0.05") \
    .replace("queries_total{engine=\"0\",model_name=\"m\"} 100.0", "queries_total{engine=\"0\",model_name=\"m\"} 160.0") \
    .replace("running{engine=\"0\",model_name=\"m\"} 3.0", "running{engine=\"0\",model_name=\"m\"} 0.0") \
    .replace('source="external_kv_transfer"} 200.0', 'source="external_kv_transfer"} 456.0') + """\
# HELP vllm:num_preemptions_total Preemptions.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="m"} 2.0
"""


def test_deltas_of_counters_and_histogram_sums_by_series():
    d = promparse.delta(promparse.parse(BEFORE), promparse.parse(AFTER))
    key = d.key_figures()
    assert key["kv_transfer_seconds"] == pytest.approx(0.03) and key["kv_transfers"] == 6
    assert key["prefix_cache_queries"] == 60 and key["prefix_cache_hits"] == 0
    assert key["preemptions"] == 2            # a series new in the second scrape counts from 0
    assert "kv_bytes" not in key              # not exported by this server: absent, not 0
    series = 'vllm:prompt_tokens_by_source_total{engine="0",model_name="m",source="external_kv_transfer"}'
    assert d.series[series] == 256
    assert d.totals["vllm:prompt_tokens_by_source_total"] == 256
    assert d.gauges['vllm:num_requests_running{engine="0",model_name="m"}'] == 0.0
    assert not any(k.endswith(("_bucket", "_created")) or "_bucket{" in k for k in d.series)
    assert d.resets == ()


def test_a_counter_that_went_down_is_a_reset_and_counts_from_zero():
    restarted = BEFORE.replace("hits_total{engine=\"0\",model_name=\"m\"} 40.0", "hits_total{engine=\"0\",model_name=\"m\"} 5.0")
    d = promparse.delta(promparse.parse(BEFORE), promparse.parse(restarted))
    assert d.totals["vllm:prefix_cache_hits_total"] == 5
    assert d.resets == ('vllm:prefix_cache_hits_total{engine="0",model_name="m"}',)
    assert d.to_json()["resets"] == list(d.resets)


def test_sum_series_filters_by_labels():
    scrape = promparse.parse(AFTER)
    assert promparse.sum_series(scrape, "vllm:prompt_tokens_by_source_total") == 956
    assert promparse.sum_series(scrape, "vllm:prompt_tokens_by_source_total", source="local_compute") == 500
    assert promparse.sum_series(scrape, "vllm:nope_total") == 0


def test_series_key_is_stable_in_label_order():
    assert promparse.series_key("x", {"b": "2", "a": "1"}) == promparse.series_key("x", {"a": "1", "b": "2"}) \
        == 'x{a="1",b="2"}'


def test_text_that_is_not_prometheus_is_a_clear_error():
    with pytest.raises(promparse.ScrapeError, match="http://s/metrics: not Prometheus"):
        promparse.parse("<html>502 Bad Gateway</html>\n", "http://s/metrics")
