"""Run only by tests/test_server_death.py in a child pytest: the decode server is killed with
SIGKILL in the middle of a request; the next test must get a fresh deployment."""
import json
import os
import pathlib
import signal
import urllib.request


def _stream(deployment, max_tokens):
    body = {"model": deployment.model_name, "prompt": list(range(5, 40)), "max_tokens": max_tokens,
            "ignore_eos": True, "stream": True, "temperature": 0}
    req = urllib.request.Request(deployment.url + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    return urllib.request.urlopen(req, timeout=300)


def _note(deployment):
    with open(os.environ["DISAGG_PIDS_FILE"], "a") as fh:
        fh.write(f"{deployment.decode[0].pid}\n")


def test_decode_killed_mid_request(disagg_deployment):
    _note(disagg_deployment)
    with _stream(disagg_deployment, 1500) as resp:
        resp.readline()
        os.kill(disagg_deployment.decode[0].pid, signal.SIGKILL)
        while resp.read(256):
            pass


def test_next_test_gets_a_fresh_deployment(disagg_deployment):
    _note(disagg_deployment)
    with _stream(disagg_deployment, 8) as resp:
        text = resp.read().decode()
    assert "[DONE]" in text
