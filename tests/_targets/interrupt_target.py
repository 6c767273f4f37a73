"""Run only by tests/test_interrupt.py in a child pytest: a request long enough to interrupt."""
import json
import os
import pathlib
import time
import urllib.request


def test_long_streaming_request(disagg_deployment):
    body = {
        "model": disagg_deployment.model_name, "prompt": list(range(5, 69)), "max_tokens": 1900,
        "ignore_eos": True, "stream": True, "temperature": 0,
    }
    req = urllib.request.Request(disagg_deployment.url + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as resp:
        resp.readline()
        pathlib.Path(os.environ["DISAGG_STREAMING_MARKER"]).write_text("streaming")
        # Read slowly (~20 s for the whole stream): the Ctrl-C must come mid-request even when the
        # parent is slow to send it (in CI the tokens once all came before it, and it hit teardown).
        while resp.read(256):
            time.sleep(0.01)
