"""Thread confinement: threads pinned outside a server's cores are moved back; floating threads stay."""
from __future__ import annotations

import pytest

from pytest_disagg.children import affinity


def fake_proc(tmp_path, tree: dict[int, list[int]], tasks: dict[int, list[int]]):
    for pid, tids in tasks.items():
        for tid in tids:
            d = tmp_path / str(pid) / "task" / str(tid)
            d.mkdir(parents=True)
            (d / "children").write_text(" ".join(map(str, tree.get(pid, []))) if tid == pid else "")
    return tmp_path


def test_parse_cores():
    assert affinity.parse_cores("0-2,5") == {0, 1, 2, 5} and affinity.parse_cores("1") == {1}
    with pytest.raises(ValueError, match="backwards"):
        affinity.parse_cores("3-1")
    with pytest.raises(ValueError, match="no cores"):
        affinity.parse_cores(" , ")


def test_confine_moves_only_pinned_strays(tmp_path):
    proc = fake_proc(tmp_path, {10: [11], 11: [12]}, {10: [10, 13], 11: [11], 12: [12, 14, 15]})
    aff = {0: {0, 1}, 10: {0, 1}, 13: {0, 1}, 11: {0, 1}, 12: {1}, 14: {0}, 15: {0}}
    moved_to = {}
    got = affinity.confine(10, {0}, getaff=lambda t: aff[t], setaff=lambda t, c: moved_to.__setitem__(t, c), proc=proc)
    assert affinity.process_tree(10, proc) == [10, 11, 12]
    assert moved_to == {12: {0}}                   # vLLM's NIXL pin on core 1; floating threads stay
    assert got == [{"pid": 12, "tid": 12, "from": [1], "to": [0]}]


def test_vanished_threads_are_skipped(tmp_path):
    proc = fake_proc(tmp_path, {}, {20: [20, 21]})

    def getaff(t):
        if t == 21:
            raise ProcessLookupError
        return {1} if t else {0, 1}
    assert affinity.confine(20, {0}, getaff=getaff, setaff=lambda t, c: None, proc=proc) == [
        {"pid": 20, "tid": 20, "from": [1], "to": [0]}]


def write_ticks(proc, pid: int, tid: int, ticks: int) -> None:
    # /proc/<pid>/task/<tid>/stat: utime and stime are fields 14 and 15 (11 and 12 after the comm)
    fields = ["S", "1"] + ["0"] * 9 + [str(ticks), "0"] + ["0"] * 30
    (proc / str(pid) / "task" / str(tid) / "stat").write_text(f"{tid} (VLLM::Worker) " + " ".join(fields))


def test_cpu_ticks_cover_every_thread_of_the_tree_and_busy_cores_counts_the_window(tmp_path):
    proc = fake_proc(tmp_path, {30: [31]}, {30: [30], 31: [31, 32]})
    for pid, tid, ticks in ((30, 30, 1000), (31, 31, 1000), (31, 32, 1000)):
        write_ticks(proc, pid, tid, ticks)
    before = affinity.cpu_ticks([30], proc)
    assert before == {(30, 30): 1000, (31, 31): 1000, (31, 32): 1000}
    write_ticks(proc, 31, 32, 1000 + 97)           # NIXL's progress thread: 97 % of a core
    write_ticks(proc, 31, 31, 1000 + 2)
    after = affinity.cpu_ticks([30], proc)
    after[(31, 99)] = 50                           # a thread born in the window is not counted
    assert affinity.busy_cores(before, after, 1.0, hz=100) == pytest.approx(0.99)
