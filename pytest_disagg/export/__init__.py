"""Results in the forms other benchmark tools read.

- ``adapter``: the one reader of results JSON (old and new shapes) → :class:`Figure` s;
- ``benchjson``: pytest-benchmark JSON (``pytest-benchmark compare``, github-action-benchmark,
  Bencher), how units and higher-is-better figures are written is explained there;
- ``benchstats``: that format's ``stats`` block from samples (pytest-benchmark's own ``Stats``) or, flagged, from
  a summary;
- ``series``: a metric's history across results files as a tidy CSV and as Apache Otava's input;
- ``cli``: ``pytest-disagg export``; ``pytest_plugin``: ``--disagg-benchmark-json`` during a run.
"""
from .adapter import ExportError, Figure, ResultsFile, from_document, read
from .benchjson import document as pytest_benchmark_document
from .series import write_csv, write_otava

FORMATS = ("pytest-benchmark", "otava", "csv")

__all__ = ["ExportError", "FORMATS", "Figure", "ResultsFile", "from_document", "pytest_benchmark_document", "read",
           "write_csv", "write_otava"]
