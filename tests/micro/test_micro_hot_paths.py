"""Micro-benchmarks of the suite's own hot paths, with pytest-benchmark's ``benchmark`` fixture:
``pytest -m micro`` (add ``--benchmark-json=PATH`` to keep the figures; ``--benchmark-disable``
runs each once, as a plain test). Each benchmark also checks what the code returned, so a
benchmark that got fast by doing nothing fails."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pytest_disagg import promparse, verdicts
from pytest_disagg.baseline import gate
from pytest_disagg.load.sse import DONE, SSEParser, decode_json
from pytest_disagg.testing import synthetic
from pytest_disagg.results import SessionResults

pytestmark = pytest.mark.micro

READ = 1460    # one TCP segment's payload: reads cut events anywhere


def parse_stream(stream: bytes, read: int) -> list[str]:
    """What the client does per streamed answer: feed reads, decode each chunk, keep the text."""
    parser = SSEParser()
    texts = []
    for start in range(0, len(stream), read):
        for payload in parser.feed_data(stream[start:start + read]):
            if payload != DONE:
                texts.append(decode_json(payload)["choices"][0]["text"])
    parser.close()
    return texts


def test_sse_parser_whole_events(benchmark, sse_stream):
    """Every read one whole event (the parser's fast path): one 256-token answer."""
    sse_stream, expected = sse_stream
    events = [sse_stream[i:j] for i, j in _event_bounds(sse_stream)]

    def run():
        parser = SSEParser()
        return [decode_json(p)["choices"][0]["text"] for e in events for p in parser.feed_data(e) if p != DONE]

    texts = benchmark(run)
    assert texts == expected


def test_sse_parser_split_reads(benchmark, sse_stream):
    """Reads of one TCP segment, cutting events and lines anywhere (the slow path)."""
    sse_stream, expected = sse_stream
    texts = benchmark(parse_stream, sse_stream, READ)
    assert texts == expected


def test_metrics_delta(benchmark, metrics_pages):
    """Parse the /metrics page before and after a run and take the per-series delta."""
    before_text, after_text = metrics_pages

    def run():
        return promparse.delta(promparse.parse(before_text), promparse.parse(after_text))

    delta = benchmark(run)
    assert delta.key_figures()["prompt_tokens"] == pytest.approx(2 * (340.0 - 100.0))
    assert not delta.resets


def test_gate_compare(benchmark):
    """The bootstrap CI of the ratio of medians for one metric, 400 requests a side."""
    rng = np.random.default_rng(0)
    base = rng.lognormal(np.log(40.0), 0.25, 400)
    cur = rng.lognormal(np.log(40.0 * 1.3), 0.25, 400)
    verdict = benchmark(gate.compare, base, cur, "lower", 0.1, metric="ttft_ms", unit="ms")
    assert verdict.verdict == verdicts.REGRESSED and verdict.ratio == pytest.approx(1.3, rel=0.1)


def test_results_json_write(benchmark, tmp_path):
    """The atomic write of a full session's results document (every run with its samples)."""
    doc = synthetic.full()
    path = tmp_path / "results.json"
    writer = SessionResults()
    benchmark(writer.write, path, doc)
    assert json.loads(path.read_text())["runs"][0]["samples"] == doc["runs"][0]["samples"]


def _event_bounds(stream: bytes):
    start = 0
    while start < len(stream):
        end = stream.index(b"\n\n", start) + 2
        yield start, end
        start = end
