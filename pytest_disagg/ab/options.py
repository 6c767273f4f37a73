"""``--disagg-ab*`` values → one validated ``ABOptions`` (or None when A/B is off).

Same rules as ``pytest_disagg.options``: every error names the option and what is allowed; the
plugin turns it into a usage error. Probing the interpreter is ``probe``'s job, not this module's.
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass

from ..devices import policy
from ..options import OptionError, parse_positive
from ..optionspec import Option

FRESH = ("auto", "yes", "no")
DEFAULT_FRESH = "yes"
DEFAULT_MAX_ROUNDS = 12
MIN_ROUNDS = 10          # the first look: the smallest exact signed-rank p is 2 / 2^rounds (0.0078 at 8, 0.0020 at 10)
ROUND_STEP = 2           # rounds added per look while a metric is undecided
DEFAULT_RUNS_PER_ROUND = 1

OPTIONS = (
    Option("--disagg-ab", "disagg_ab", "A/B: side B's Python interpreter (a venv with other vLLM/NIXL/LMCache), "
           "or 'same' for this one (with --disagg-ab-env / --disagg-ab-server-args)", metavar="PYTHON|same",
           group="disagg-ab"),
    Option("--disagg-ab-env", "disagg_ab_env", "A/B: environment of side B's servers, K=V,K2=V2", metavar="K=V,...",
           group="disagg-ab"),
    Option("--disagg-ab-server-args", "disagg_ab_server_args", "A/B: extra vLLM server arguments of side B "
           "(one shell-quoted string, e.g. '--max-num-seqs 64')", metavar="'ARGS'", group="disagg-ab"),
    Option("--disagg-ab-max-rounds", "disagg_ab_max_rounds", f"A/B: most rounds per side while a verdict is "
           f"undecided (at least {MIN_ROUNDS})", str(DEFAULT_MAX_ROUNDS), metavar="N", group="disagg-ab"),
    Option("--disagg-ab-fresh", "disagg_ab_fresh", "A/B: fresh deployments every round: yes (default: two "
           "deployments of the same software differ by up to ~20 percent in median TTFT, measured, and only fresh "
           "ones make that noise instead of a verdict), no (both sides stay up), or auto (the device's policy: "
           "yes on CPU, where starts land 4-8 percent apart, no on GPUs, where no start-to-start offset above ~0.5 "
           "percent was seen)", DEFAULT_FRESH, metavar="{auto,yes,no}", group="disagg-ab"),
    Option("--disagg-ab-runs-per-round", "disagg_ab_runs_per_round", "A/B: runs of each side per round on the "
           "round's deployments (A B B A ...; the round's figure pools them): more runs average the host's moment "
           "at the price of time, fresh starts stay one per side and round", str(DEFAULT_RUNS_PER_ROUND),
           metavar="N", group="disagg-ab"),
)


def looks_for(max_rounds: int, min_rounds: int = MIN_ROUNDS, step: int = ROUND_STEP) -> tuple[int, ...]:
    """The looks of a budget of ``max_rounds``: min, min+step, ..., max (just max below min)."""
    out = list(range(min_rounds, max_rounds + 1, step))
    if not out or out[-1] != max_rounds:
        out.append(max_rounds)
    return tuple(out)


@dataclass(frozen=True)
class ABOptions:
    python: str | None                   # side B's interpreter; None: this one
    env: tuple[tuple[str, str], ...]     # side B's extra server environment
    server_args: tuple[str, ...]         # side B's extra server arguments
    max_rounds: int
    fresh: str                           # "auto" | "yes" | "no"
    min_rounds: int = MIN_ROUNDS
    step: int = ROUND_STEP
    runs_per_round: int = DEFAULT_RUNS_PER_ROUND

    def looks(self) -> tuple[int, ...]:
        """Round counts at which the verdicts are computed: min, min+step, ..., max."""
        return looks_for(self.max_rounds, self.min_rounds, self.step)

    def fresh_for(self, device: str) -> bool:
        """auto: the device's policy (``devices.py``: fresh on the CPU box, kept up on GPUs)."""
        return self.fresh == "yes" or (self.fresh == "auto" and policy(device).ab_fresh)

    def describe(self) -> dict:
        return {"python": self.python, "env": dict(self.env), "server_args": list(self.server_args),
                "max_rounds": self.max_rounds, "min_rounds": self.min_rounds, "step": self.step,
                "fresh": self.fresh, "runs_per_round": self.runs_per_round, "looks": list(self.looks())}


def parse_env(value: str | None) -> tuple[tuple[str, str], ...]:
    if value is None or not value.strip():
        return ()
    out = []
    for item in value.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep or not key.strip() or any(c.isspace() for c in key.strip()):
            raise OptionError(f"--disagg-ab-env={value!r}: {item.strip()!r} is not K=V; give K=V,K2=V2")
        out.append((key.strip(), val))
    keys = [k for k, _ in out]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise OptionError(f"--disagg-ab-env={value!r}: {dupes[0]} is set twice; each variable once")
    return tuple(out)


def parse_server_args(value: str | None) -> tuple[str, ...]:
    if value is None or not value.strip():
        return ()
    try:
        args = tuple(shlex.split(value))
    except ValueError as exc:
        raise OptionError(f"--disagg-ab-server-args={value!r}: not a shell-quoted argument list ({exc})") from None
    if not args[0].startswith("-"):
        raise OptionError(f"--disagg-ab-server-args={value!r}: must start with an option (e.g. --max-num-seqs 64), "
                          f"got {args[0]!r}")
    return args


def parse_python(value: str) -> str | None:
    value = value.strip()
    if value == "same":
        return None
    if not value:
        raise OptionError("--disagg-ab='': give a Python interpreter (e.g. /opt/venv-b/bin/python) or 'same'")
    if not os.path.exists(value):
        raise OptionError(f"--disagg-ab={value!r}: no such file; give side B's Python interpreter or 'same'")
    if os.path.isdir(value) or not os.access(value, os.X_OK):
        raise OptionError(f"--disagg-ab={value!r}: not an executable file; give side B's Python interpreter "
                          f"(e.g. {os.path.join(value, 'bin', 'python') if os.path.isdir(value) else value})")
    return os.path.abspath(value)


def parse_fresh(value: str | None) -> str:
    value = (value or DEFAULT_FRESH).strip()
    if value not in FRESH:
        raise OptionError(f"--disagg-ab-fresh={value!r}: allowed values are {', '.join(FRESH)}")
    return value


def build_ab_options(raw: dict) -> ABOptions | None:
    """``raw`` maps option names without ``--disagg-`` (``ab``, ``ab_env`` ...) to strings or None."""
    side_b = raw.get("ab")
    others = [k for k in ("ab_env", "ab_server_args") if raw.get(k)]
    if side_b is None or not str(side_b).strip() and not others:
        if others:
            flag = "--disagg-" + others[0].replace("_", "-")
            raise OptionError(f"{flag} needs --disagg-ab (side B's interpreter, or 'same' for this one)")
        return None
    python = parse_python(str(side_b))
    env = parse_env(raw.get("ab_env"))
    args = parse_server_args(raw.get("ab_server_args"))
    if python is None and not env and not args:
        raise OptionError("--disagg-ab=same: side B would equal side A; give --disagg-ab-env or "
                          "--disagg-ab-server-args (an A/A check: use --disagg-ab-env=AB_SIDE=B)")
    max_rounds = parse_positive(raw.get("ab_max_rounds") or DEFAULT_MAX_ROUNDS, "--disagg-ab-max-rounds", int)
    if max_rounds < MIN_ROUNDS:
        raise OptionError(f"--disagg-ab-max-rounds={max_rounds}: at least {MIN_ROUNDS} (the first look; with fewer "
                          f"rounds per side no verdict but 'undecided' is possible)")
    runs = parse_positive(raw.get("ab_runs_per_round") or DEFAULT_RUNS_PER_ROUND, "--disagg-ab-runs-per-round", int)
    return ABOptions(python=python, env=env, server_args=args, max_rounds=max_rounds,
                     fresh=parse_fresh(raw.get("ab_fresh")), runs_per_round=runs)
