"""Baselines and the regression gate: fingerprint, store (JSON + file lock), statistical gate.

Library only (pytest lives in ``pytest_plugin.py``, the console script in ``cli.py``). One job
per module:

- ``fingerprint``: machine fields (hardware/software) vs subject fields (model, medium, workload);
- ``document``: a baseline file's content, built from a run and validated when read;
- ``store``: ``baselines/<machine_hash>/<benchmark>.json``, atomic and locked writes, candidates;
- ``gate``: verdicts (words of ``pytest_disagg.verdicts``, CIs from ``pytest_disagg.stats``) and the failure table;
- (direction, unit and default tolerance of a metric: the table in ``pytest_disagg.metrics``);
- ``checker``: one run against its baseline (compare, candidate, mismatch, refresh);
- ``settings``: the gate's options, validated; ``views``: list/show/diff/history rows;
- ``jsonfmt``: diff-friendly JSON text.
"""
from .checker import CheckResult, run_check
from .document import SCHEMA_VERSION, BaselineError
from .fingerprint import Fingerprint, collect, machine_info, with_extra
from .gate import Verdict, compare, compare_metrics, compare_scalar, format_table
from .settings import Settings
from .store import BaselineExists, BaselineStore

__all__ = [
    "BaselineError", "BaselineExists", "BaselineStore", "CheckResult", "Fingerprint", "SCHEMA_VERSION",
    "Settings", "Verdict", "collect", "compare", "compare_metrics", "compare_scalar", "format_table",
    "machine_info", "run_check", "with_extra",
]
