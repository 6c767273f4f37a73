"""Fuzzing what turns server output into numbers: ``/metrics`` text (promparse), the JSON of a
stream chunk (``decode_json``) and the token counting of a chunk and of a whole answer
(``tokens_in``, ``settle``). Any input gives a parsed value or a clear error, quickly, and never
a wrong number.

The SSE framing itself is fuzzed in test_load_sse.py (any bytes, any split); not repeated here.
"""
from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pytest_disagg import promparse
from pytest_disagg.load.client import RequestRecord, settle, tokens_in
from pytest_disagg.load.sse import MalformedChunk, decode_json

# A deadline here is the "never a hang" half of the contract: inputs are small, so anything slow
# is pathological (backtracking, a loop that does not advance).
FUZZ = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


# --- /metrics ---------------------------------------------------------------------------------

_FLOAT = re.compile(r"^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[Nn][Aa][Nn]|[Ii][Nn][Ff](?:[Ii][Nn][Ii][Tt][Yy])?)$",
                    re.ASCII)
_NAME = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,12}", fullmatch=True)
_LABEL_NAME = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,6}", fullmatch=True).filter(lambda s: not s.startswith("__"))
_LABEL_VALUE = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)
_VALUE = st.one_of(st.integers(0, 2**53), st.floats(allow_nan=False, allow_infinity=False, width=64),
                   st.sampled_from([math.inf, -math.inf]))


def _fmt(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Exposition:
    """A fuzzed /metrics page in the format prometheus_client (so vLLM) writes: its series (key,
    whether promparse differences it) and its text for any values of those series."""

    def __init__(self, lines: list, series: dict[str, bool]):
        self.lines, self.series = lines, series

    def text(self, values: dict[str, float]) -> str:
        return "".join((line if isinstance(line, str) else f"{line[0]} {_fmt(values[line[1]])}") + "\n"
                       for line in self.lines)


@st.composite
def exposition_shapes(draw) -> Exposition:
    names = draw(st.lists(_NAME.filter(lambda n: not n.endswith(("_total", "_created", "_bucket", "_count", "_sum"))),
                          min_size=1, max_size=4, unique=True))
    lines: list = []
    series: dict[str, bool] = {}
    for name in names:
        kind = draw(st.sampled_from(["counter", "gauge", "histogram", "summary"]))
        label_sets = draw(st.lists(st.dictionaries(_LABEL_NAME.filter(lambda s: s not in ("le", "quantile")),
                                                   _LABEL_VALUE, max_size=2),
                                   min_size=1, max_size=2, unique_by=lambda d: tuple(sorted(d.items()))))
        family = name + "_total" if kind == "counter" else name
        lines += [f"# HELP {family} fuzzed {kind}", f"# TYPE {family} {kind}"]
        for labels in label_sets:
            def sample(sample_name, extra=None, keep=True, differenced=kind != "gauge"):
                all_labels = {**labels, **(extra or {})}
                inner = ",".join(f'{k}="{_escape(v)}"' for k, v in all_labels.items())
                key = promparse.series_key(sample_name, all_labels)
                if keep:
                    series[key] = differenced
                    lines.append((f"{sample_name}{{{inner}}}" if inner else sample_name, key))
                else:
                    lines.append(f"{sample_name}{{{inner}}} 1.0")
            if kind in ("counter", "gauge"):
                sample(family)
            else:
                if kind == "histogram":
                    sample(name + "_bucket", {"le": "+Inf"}, keep=False)
                else:
                    sample(name, {"quantile": "0.5"}, differenced=False)
                sample(name + "_count")
                sample(name + "_sum")
        if kind in ("counter", "histogram", "summary") and draw(st.booleans()):
            lines += [f"# HELP {name}_created created", f"# TYPE {name}_created gauge", f"{name}_created 1.7e9"]
    return Exposition(lines, series)


@st.composite
def expositions(draw, values=_VALUE):
    """(text, {series key: (value, differenced)})."""
    shape = draw(exposition_shapes())
    vals = {k: float(draw(values, label=k)) for k in shape.series}
    return shape.text(vals), {k: (vals[k], d) for k, d in shape.series.items()}


@FUZZ
@given(expositions())
def test_valid_metrics_text_parses_to_exactly_its_numbers(text_and_truth):
    text, truth = text_and_truth
    scrape = promparse.parse(text)
    got = {**{k: (v, True) for k, v in scrape.counters.items()}, **{k: (v, False) for k, v in scrape.gauges.items()}}
    assert set(got) == set(truth)
    for key, (value, differenced) in truth.items():
        assert got[key][0] == value, key   # bit for bit: the text carries repr(float)
        if "quantile=" not in key:         # see test_summary_quantiles_are_point_values
            assert got[key][1] == differenced, key


def test_summary_quantiles_are_point_values():
    text = ('# HELP lat latency\n# TYPE lat summary\nlat{quantile="0.5"} 0.25\nlat_count 4\nlat_sum 1.0\n')
    later = text.replace("0.25", "0.5").replace("lat_count 4", "lat_count 8").replace("lat_sum 1.0", "lat_sum 3.0")
    d = promparse.delta(promparse.parse(text), promparse.parse(later))
    assert d.series == {"lat_count": 4.0, "lat_sum": 2.0}
    assert d.gauges == {'lat{quantile="0.5"}': 0.5}


@FUZZ
@given(exposition_shapes(), st.data())
def test_deltas_are_exact_differences_and_resets_are_named(shape, data):
    before = {k: float(data.draw(st.integers(0, 2**40), label=f"before {k}")) for k in shape.series}
    after = {k: float(data.draw(st.integers(0, 2**40), label=f"after {k}")) for k in shape.series}
    b, a = promparse.parse(shape.text(before)), promparse.parse(shape.text(after))
    d = promparse.delta(b, a)
    assert set(d.series) == set(a.counters)
    for key in a.counters:
        if after[key] >= before[key]:
            assert d.series[key] == after[key] - before[key] and key not in d.resets
        else:   # went down: the server restarted; the delta counts from 0
            assert d.series[key] == after[key] and key in d.resets
    for key, differenced in shape.series.items():
        if not differenced and "quantile=" not in key:
            assert d.gauges[key] == after[key]
    for name, total in d.totals.items():
        assert total == sum(v for k, v in d.series.items() if a.names[k][0] == name)


_metricish = st.lists(st.sampled_from(list('# HELPTYPE counter gauge histogram summary untyped {}="\\,\n\t.eE+-0123456789abxNnIif_:'
                                          ) + ["_total", "_count", "_sum", "_bucket", "le=", "+Inf", "NaN", "\n# TYPE x counter\n"]),
                      max_size=80).map("".join)


@FUZZ
@given(st.one_of(st.text(max_size=300), _metricish,
                 expositions().flatmap(lambda t: st.tuples(st.just(t[0]), st.integers(0, len(t[0])), st.text(max_size=5)))
                 .map(lambda t: t[0][: t[1]] + t[2] + t[0][t[1]:])))
@example("x 1 2 3 4\n")
@example('x{a="unterminated} 1\n')
@example("# TYPE x counter\nx_total NaN\n")
def test_any_text_is_a_scrape_or_a_scrape_error(text):
    try:
        scrape = promparse.parse(text, "http://fuzz/metrics")
    except promparse.ScrapeError as exc:
        assert str(exc).startswith("http://fuzz/metrics: not Prometheus text exposition")
        return
    # Never a wrong number: every value is an ASCII float literal written in the text.
    literals = {float(tok) for tok in re.split(r"[\s{}]+", text) if _FLOAT.match(tok)}
    for key, value in {**scrape.counters, **scrape.gauges}.items():
        assert value in literals or (math.isnan(value) and any(math.isnan(x) for x in literals)), (key, value)
    assert set(scrape.names) == set(scrape.counters) | set(scrape.gauges)


def test_non_ascii_digits_are_not_numbers():
    """float() reads any Unicode decimal digits; the exposition format does not."""
    for text in ("x \u0661\u0662\n", 'x{a="1"} \u0661\n', "x 1 \u0661\u0662\n"):
        with pytest.raises(promparse.ScrapeError, match="not an ASCII number"):
            promparse.parse(text)
    assert promparse.parse('x{a="\u0661}"} 12\n').gauges == {'x{a="\u0661}"}': 12.0}   # labels may be any text


# --- stream chunks: JSON ----------------------------------------------------------------------

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                     max_leaves=12)


def _same(a, b) -> bool:
    """Equality that treats NaN as equal to NaN and tells 0.0 from -0.0."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True) and type(a) is type(b)


@FUZZ
@given(st.one_of(
    st.binary(max_size=200),
    _json.map(lambda v: json.dumps(v).encode()),
    st.tuples(st.dictionaries(st.text(max_size=5), _json, max_size=4), st.sampled_from(["", " ", "\n", " x", "}", ","]),
              st.sampled_from(["", " ", "\t", "\ufeff"]))
    .map(lambda t: (t[2] + json.dumps(t[0]) + t[1]).encode()),
))
@example(b'{"a": 1e400}')
@example(b'{"a": NaN, "b": -Infinity}')
@example(b"[" * 100_000)
@example(b'{"a": ' + b"1" * 5000 + b"}")
def test_any_chunk_is_a_json_object_or_a_malformed_chunk(payload):
    try:
        got = decode_json(payload)
    except MalformedChunk:
        got = MalformedChunk
    try:
        want = json.loads(payload.decode("utf-8"))
        if not isinstance(want, dict):
            want = MalformedChunk
    except (ValueError, RecursionError):   # not UTF-8, not JSON, too deep, too many digits
        want = MalformedChunk
    if want is MalformedChunk or got is MalformedChunk:
        assert got is want
    else:
        assert _same(got, want)


# --- stream chunks: token counts --------------------------------------------------------------

@FUZZ
@given(_json, st.booleans())
@example({"token_ids": [1, 2, 3], "logprobs": {"tokens": ["a"]}}, False)
@example({"delta": {"role": "assistant", "content": ""}}, True)
@example({"delta": "x"}, True)
def test_tokens_in_any_choice_is_a_count_or_none(choice, chat):
    n = tokens_in(choice, chat)
    assert n is None or (isinstance(n, int) and not isinstance(n, bool) and n >= -1)
    if not isinstance(choice, dict):
        assert n is None
    elif isinstance(choice.get("token_ids"), list):
        assert n == len(choice["token_ids"])   # listed ids are counted exactly


def _record(expected: int, chunks: int) -> RequestRecord:
    return RequestRecord("r", prompt_tokens=7, expected_output_tokens=expected, chunk_ns=list(range(1, chunks + 1)),
                         status="pending")


@FUZZ
@given(st.integers(1, 20), st.lists(st.sampled_from([-1, 1, 1, 2, 3]), max_size=12),
       st.one_of(st.none(), _json, st.fixed_dictionaries({}, optional={
           "completion_tokens": st.one_of(st.integers(-2, 30), st.booleans(), st.floats(0, 30), st.text(max_size=2)),
           "prompt_tokens": st.one_of(st.integers(-2, 30), st.booleans(), st.none())})))
def test_settle_never_accepts_a_wrong_output_length(expected, counts, usage):
    rec = _record(expected, len(counts))
    settle(rec, list(counts), usage)
    assert rec.status in ("ok", "failed")
    if rec.status == "failed":
        assert rec.stage == "response" and rec.error
        return
    reported = usage.get("completion_tokens") if isinstance(usage, dict) else None
    assert rec.output_tokens == expected
    assert rec.chunk_ns, "a request without a token chunk cannot be ok"
    if -1 not in counts:
        assert sum(counts) == expected and rec.chunk_tokens == counts
    if reported is not None:
        assert type(reported) is int and reported == expected
    else:
        assert -1 not in counts   # without usage only listed token ids can give a length
    prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    assert rec.prompt_tokens == (prompt if type(prompt) is int and prompt >= 0 else 7)
