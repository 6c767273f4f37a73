"""The SSE parser: known streams, the WHATWG edge cases, and fuzzing (any bytes -> events or SSEError;
any split of a stream -> the same events)."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_disagg.load.sse import DONE, MalformedChunk, SSEError, SSEEvent, SSEParser, decode_json

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse_all(chunks, max_event_bytes=1 << 20) -> list[SSEEvent]:
    parser = SSEParser(max_event_bytes)
    events = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events + parser.close()


def outcome(chunks, max_event_bytes=1 << 20):
    """Events, or the fact that the stream is an error (the two outcomes the contract allows)."""
    try:
        return ("events", parse_all(chunks, max_event_bytes))
    except SSEError:
        return ("error", None)


def openai_stream(texts: list[str], newline: bytes = b"\n") -> bytes:
    nl2 = newline * 2
    out = b""
    for t in texts:
        out += b"data: " + json.dumps({"choices": [{"index": 0, "text": t}]}).encode() + nl2
    return out + b"data: " + json.dumps({"choices": [], "usage": {"completion_tokens": len(texts)}}).encode() + nl2 \
        + b"data: [DONE]" + nl2


def test_openai_stream_in_one_piece():
    events = parse_all([openai_stream(["a", "b"])])
    assert [json.loads(e.data)["choices"] for e in events[:2]] == [[{"index": 0, "text": "a"}],
                                                                   [{"index": 0, "text": "b"}]]
    assert events[-1].data == DONE and len(events) == 4


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_line_endings_are_equivalent(newline):
    assert parse_all([openai_stream(["x", "y"], newline)]) == parse_all([openai_stream(["x", "y"])])


def test_crlf_split_between_cr_and_lf_is_one_line_end():
    # "\r" at the end of one read and "\n" at the start of the next must not make an empty line.
    events = parse_all([b"data: a\r", b"\ndata: b\r\n\r\n"])
    assert events == [SSEEvent(b"a\nb")]


def test_comments_fields_and_multiline_data():
    stream = b": ping\n\nevent: update\nid: 7\nretry: 1500\ndata: one\ndata:two\nunknown: x\n\ndata\n\n"
    parser = SSEParser()
    events = parser.feed(stream)
    assert events == [SSEEvent(b"one\ntwo", "update", "7"), SSEEvent(b"", "message", "7")]
    assert parser.retry_ms == 1500


def test_block_without_data_dispatches_nothing():
    assert parse_all([b"event: x\nid: 3\n\n: only a comment\n\n"]) == []


def test_stream_ending_mid_line_is_an_error():
    parser = SSEParser()
    assert parser.feed(b'data: {"choices": [') == []
    with pytest.raises(SSEError, match="middle of a line"):
        parser.close()


def test_last_event_without_blank_line_is_kept():
    assert parse_all([b"data: [DONE]\n"]) == [SSEEvent(DONE)]


def test_oversized_event_is_an_error_not_a_hang():
    parser = SSEParser(max_event_bytes=64)
    with pytest.raises(SSEError, match="larger than 64 bytes"):
        for _ in range(10):
            parser.feed(b"data: " + b"x" * 20)


def test_feed_after_close_is_an_error():
    parser = SSEParser()
    parser.close()
    with pytest.raises(SSEError):
        parser.feed(b"data: x\n\n")


def test_feed_data_gives_the_payloads_of_feed():
    stream = openai_stream(["p", "q"]) + b"event: e\ndata: z\n\n"
    a, b = SSEParser(), SSEParser()
    assert b.feed_data(stream) == [e.data for e in a.feed(stream)]


@pytest.mark.parametrize("payload, message", [
    (b'{"choices": [', "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"a": 1} trailing', "data after its JSON object"),
    (b"\xff\xfe", "not UTF-8"),
    (b"", "not a JSON object"),
])
def test_decode_json_errors_say_what_is_wrong(payload, message):
    with pytest.raises(MalformedChunk, match=message):
        decode_json(payload)


def test_decode_json_agrees_with_json_loads():
    raw = b' {"a": [1, 2.5, "\\u00e9", null, true], "b": {"c": "d"}} \n'
    assert decode_json(raw) == json.loads(raw)


# --- fuzzing ---------------------------------------------------------------------------------

@FUZZ
@given(st.binary(max_size=400), st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_any_bytes_give_events_or_a_clear_error(data, cuts):
    result = outcome([data])
    if result[0] == "events":
        assert all(isinstance(e, SSEEvent) and isinstance(e.data, bytes) for e in result[1])
    # Splitting the same bytes anywhere gives the same outcome.
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0] + points, points + [len(data)])]
    assert outcome(pieces) == result


_line_text = st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=30)


@st.composite
def event_streams(draw):
    """Well-formed streams: data/event/id/comment lines, random line endings, OpenAI JSON events."""
    newline = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    out = b""
    for _ in range(draw(st.integers(0, 6))):
        lines = []
        if draw(st.booleans()):
            lines.append(b":" + draw(_line_text).encode())
        if draw(st.booleans()):
            lines.append(b"event: " + draw(_line_text).encode())
        for _ in range(draw(st.integers(1, 3))):
            lines.append(b"data: " + draw(_line_text).encode())
        out += newline.join(lines) + newline * 2
    return out + b"data: [DONE]" + newline * 2


@FUZZ
@given(event_streams(), st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_any_split_of_a_valid_stream_gives_the_same_events(stream, cuts):
    whole = parse_all([stream])
    assert whole[-1].data == DONE
    points = sorted({min(c, len(stream)) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0] + points, points + [len(stream)])]
    assert parse_all(pieces) == whole
    assert parse_all([stream[i:i + 1] for i in range(len(stream))]) == whole   # byte by byte


@FUZZ
@given(st.lists(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3), max_size=5))
def test_json_events_round_trip(objects):
    stream = b"".join(b"data: " + json.dumps(o).encode() + b"\n\n" for o in objects)
    assert [decode_json(e.data) for e in parse_all([stream])] == objects


@FUZZ
@given(event_streams(), st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_feed_data_fast_path_gives_the_payloads_of_feed(stream, cuts):
    points = sorted({min(c, len(stream)) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0] + points, points + [len(stream)])]
    slow, fast = SSEParser(), SSEParser()
    expected = [e.data for piece in pieces for e in slow.feed(piece)]
    assert [p for piece in pieces for p in fast.feed_data(piece)] == expected
