"""``pytest-disagg baselines {list,show,diff,history,refresh}`` on a temporary baselines directory."""
from __future__ import annotations

import numpy as np
import pytest

from pytest_disagg import verdicts
from pytest_disagg.baseline import document
from pytest_disagg.baseline.fingerprint import Fingerprint
from pytest_disagg.baseline.store import BaselineStore
from pytest_disagg.cli import main

OLD = {"gpu": [], "gpu_count": 0, "driver": None, "cpu": "Test CPU", "vllm": "0.31.0", "torch": "2.8.0"}
NEW = {**OLD, "vllm": "0.32.0"}


def save(store, machine, benchmark, tpot_scale, created, *, candidate=False, seed=0):
    rng = np.random.default_rng(seed)
    doc = document.build(benchmark=benchmark, fingerprint=Fingerprint(machine, {"workload": "w"}),
                         samples={"tpot_ms": (rng.lognormal(2.0, 0.05, 200) * tpot_scale).tolist()},
                         scalars={"output_throughput": 40.0 / tpot_scale}, config={"medium": benchmark},
                         workload={"requests": 200}, commit="0123456789abcdef", created=created)
    return store.save_candidate(doc) if candidate else store.save(doc)


@pytest.fixture
def tree(tmp_path):
    store = BaselineStore(tmp_path / "b")
    save(store, OLD, "t::tpot[nixl-cpu-pc0]", 1.0, "2025-01-01T00:00:00+00:00", seed=1)
    save(store, OLD, "t::tpot[colocated-pc0]", 0.9, "2025-01-01T00:00:01+00:00", seed=2)
    save(store, NEW, "t::tpot[nixl-cpu-pc0]", 1.15, "2025-02-01T00:00:00+00:00", seed=3)
    save(store, NEW, "t::tpot[colocated-pc0]", 0.9, "2025-02-01T00:00:01+00:00", seed=4)
    save(store, NEW, "t::fresh", 1.0, "2025-02-02T00:00:00+00:00", candidate=True, seed=5)
    old_hash = Fingerprint(OLD).machine_hash
    new_hash = Fingerprint(NEW).machine_hash
    return store, old_hash, new_hash


def cli(capsys, store, *args):
    code = main(["baselines", args[0], "--dir", str(store.root), *args[1:]])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_fingerprints_benchmarks_and_candidates(capsys, tree):
    store, old, new = tree
    code, out, _ = cli(capsys, store, "list")
    assert code == 0
    for text in (old, new, "t::tpot[nixl-cpu-pc0]", "t::fresh", "candidate", "vLLM 0.32.0", "0123456789"):
        assert text in out
    code, out, _ = cli(capsys, store, "list", "*colocated*")
    assert code == 0 and "nixl" not in out and "colocated" in out


def test_list_reports_unreadable_files_and_exits_2(capsys, tree):
    store, old, _ = tree
    (store.root / old / "broken.json").write_text('{"schema_version": 1')
    code, out, err = cli(capsys, store, "list")
    assert code == verdicts.EXIT_BAD_INPUT == 2 and "broken.json" in out and "UNREADABLE" in out and "unreadable file" in err


def test_show_a_fingerprint_and_a_benchmark(capsys, tree):
    store, old, _ = tree
    code, out, _ = cli(capsys, store, "show", old[:6])
    assert code == 0 and "vllm" in out and "0.31.0" in out and "t::tpot[colocated-pc0]" in out
    code, out, _ = cli(capsys, store, "show", old, "*nixl*")
    assert code == 0
    for text in ("tpot_ms", "samples", "output_throughput", "scalar", "machine:", "workload:", "requests"):
        assert text in out


@pytest.mark.parametrize("args, message", [
    (("show", "ffffffff"), "unknown fingerprint 'ffffffff'; known:"),
    (("show", "ab"), "at least 4 characters"),
    (("history", "nope_ms"), "no baseline or results file has metric 'nope_ms'; metrics stored: output_throughput, tpot_ms"),
])
def test_unknown_ids_are_clear_errors(capsys, tree, args, message):
    store, _, _ = tree
    code, out, err = cli(capsys, store, *args)
    assert code == 2 and message in err and not out


def test_show_unknown_benchmark_lists_the_known_ones(capsys, tree):
    store, old, _ = tree
    code, _, err = cli(capsys, store, "show", old, "t::nothing")
    assert code == 2 and "no benchmark matching 't::nothing'" in err and "t::tpot[nixl-cpu-pc0]" in err
    code, _, err = cli(capsys, store, "show", old, "t::tpot*")
    assert code == 2 and "matches several" in err


def test_diff_shows_the_changed_fields_and_judges_b_against_a(capsys, tree):
    store, old, new = tree
    code, out, _ = cli(capsys, store, "diff", old, new, "--tolerance", "latency=5%,throughput=10%")
    assert code == 1                                    # a row says regressed: --fail-on's default
    assert "vllm" in out and "0.31.0" in out and "0.32.0" in out
    nixl_tpot = next(line for line in out.splitlines() if "nixl-cpu" in line and "tpot_ms" in line)
    colo_tpot = next(line for line in out.splitlines() if "colocated" in line and "tpot_ms" in line)
    assert "regressed" in nixl_tpot and "+15" in nixl_tpot
    assert "regressed" not in colo_tpot
    assert "only under" not in out                      # candidates are not part of a diff


def test_history_over_versions_sorted_by_time_with_the_changed_field(capsys, tree):
    store, old, new = tree
    code, out, _ = cli(capsys, store, "history", "tpot_ms", "*nixl-cpu*")
    assert code == 0
    lines = [line for line in out.splitlines() if "nixl-cpu" in line]
    assert len(lines) == 2 and old in lines[0] and new in lines[1]
    assert "0.31.0" in lines[0] and "0.32.0" in lines[1] and "vllm" in out.splitlines()[0]
    assert "+15" in lines[1] and "torch" not in out.splitlines()[0]   # only the fields that changed
    code, out, _ = cli(capsys, store, "history", "output_throughput", "--stat", "value")
    assert code == 0 and out.count("t::tpot") == 4


def test_refresh_promotes_candidates_by_pattern(capsys, tree):
    store, _, new = tree
    code, out, _ = cli(capsys, store, "refresh", "t::nothing*")
    assert code == 2 and "no candidates matching t::nothing*" in out
    code, out, _ = cli(capsys, store, "refresh", "--dry-run")
    assert code == 0 and "would promote" in out and not (store.root / new / "t.fresh.json").exists()
    code, out, _ = cli(capsys, store, "refresh", "t::fresh")
    assert code == 0 and "promoted" in out and (store.root / new / "t.fresh.json").exists()
    assert not list(store.entries(candidates=True))
    code, out, _ = cli(capsys, store, "refresh")
    assert code == 0 and "no candidates" in out


def test_the_top_level_parser_needs_a_command(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2 and "baselines" in capsys.readouterr().err


def test_patterns_take_brackets_literally(capsys, tree):
    store, old, _ = tree
    code, out, _ = cli(capsys, store, "show", old, "t::tpot[nixl-cpu-pc0]")
    assert code == 0 and "t::tpot[nixl-cpu-pc0] (baseline)" in out
    code, out, _ = cli(capsys, store, "history", "tpot_ms", "*[colocated-pc?]")
    assert code == 0 and out.count("colocated") == 2 and "nixl" not in out


def test_diff_fails_on_regressed_by_default_and_as_told(capsys, tree):
    store, old, new = tree

    def diff(*args):
        return main(["baselines", "diff", old, new, *args, "--dir", str(store.root),
                     "--tolerance", "latency=5%,throughput=10%"])

    assert diff() == verdicts.EXIT_FAILED == 1       # the exit rule `pytest-disagg compare` shares
    assert "2 row(s) say regressed (--fail-on regressed" in capsys.readouterr().err
    assert diff("--fail-on", "none") == 0
    assert diff("*colocated*") == 0                  # those rows are not regressed
    capsys.readouterr()
    assert diff("*colocated*", "--fail-on", "regressed,same,undecided,improved") == 1
    assert "row(s) say same" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:        # argparse: a usage error
        diff("--fail-on", "fast")
    assert exited.value.code == 2 and "'fast' is not a verdict" in capsys.readouterr().err


def test_fail_on_words():
    assert verdicts.parse_fail_on(None) == {"regressed"}
    assert verdicts.parse_fail_on("none") == frozenset()
    assert verdicts.parse_fail_on("regression, inconclusive") == {"regressed", "undecided"}   # older spellings
    with pytest.raises(verdicts.VerdictError, match="--fail-on='worse': 'worse' is not a verdict; give words of "
                                                    "regressed, invalid"):
        verdicts.parse_fail_on("worse")
