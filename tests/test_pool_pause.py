"""Other live CPU deployments are paused (SIGSTOP, whole trees) while one starts or is measured,
and continued after: an idle nixl-cpu pair spins both cores of a small box (NIXL's progress thread
polls with a zero timeout; ``benchmarks/idle_spinners.py`` measures what it costs). No vLLM here:
process trees like vLLM's stand in for the servers."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from pytest_disagg.children import processes
from pytest_disagg.deploy import DeploymentConfig, DeploymentPool
from pytest_disagg.deploy.pool import _Running
from pytest_disagg.mediums import MediumRegistry

TARGETS = Path(__file__).parent / "_targets"


@pytest.fixture(autouse=True)
def runtime_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DISAGG_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setattr(processes, "_session", processes._Session())


def start_tree(tmp_path, name: str) -> processes.Child:
    log = tmp_path / f"{name}.log"
    child = processes.start(name, [sys.executable, str(TARGETS / "process_tree.py")], env=dict(os.environ),
                            log_path=log, grace_s=5)
    deadline = time.monotonic() + 60
    while "tree up" not in log.read_text():
        assert time.monotonic() < deadline, "the process tree did not come up"
        time.sleep(0.05)
    return child


def states(child) -> set[str]:
    proc = psutil.Process(child.pid)
    out = set()
    for p in [proc, *proc.children(recursive=True)]:
        try:
            out.add(p.status())
        except psutil.NoSuchProcess:
            continue
    return out


def wait_for_states(child, predicate, what: str) -> set[str]:
    deadline = time.monotonic() + 10
    while not predicate(s := states(child)):
        assert time.monotonic() < deadline, f"{what}: states {s}"
        time.sleep(0.05)
    return s


def test_a_tree_is_stopped_whole_and_continued_whole(tmp_path):
    child = start_tree(tmp_path, "tree")
    try:
        pids = processes.signal_trees([child], signal.SIGSTOP)
        assert pids[0] == child.pid and len(pids) >= 3           # the command, its multiprocessing child, ...
        wait_for_states(child, lambda s: s == {psutil.STATUS_STOPPED}, "every process stopped")
        processes.signal_pids(pids, signal.SIGCONT)
        wait_for_states(child, lambda s: psutil.STATUS_STOPPED not in s, "every process continued")
    finally:
        processes.stop(child)


def test_a_paused_tree_still_ends_on_sigterm(tmp_path):
    """The supervisor continues what it ends: without that, SIGTERM would wait in a stopped process
    and only the SIGKILL after the grace period would end it (status -9 instead of -15)."""
    child = start_tree(tmp_path, "tree")
    processes.signal_trees([child], signal.SIGSTOP)
    wait_for_states(child, lambda s: s == {psutil.STATUS_STOPPED}, "stopped")
    assert processes.stop(child) == -signal.SIGTERM


def fake_live(pool: DeploymentPool, config: DeploymentConfig, child) -> None:
    pool._live[config.digest()] = _Running(SimpleNamespace(config=config, key=config.key()), [child])


def test_the_pool_pauses_the_other_cpu_deployments_and_continues_them(tmp_path):
    pool = DeploymentPool(MediumRegistry(), logs_dir=None)
    a, b = DeploymentConfig(medium="nixl-cpu"), DeploymentConfig(medium="colocated")
    gpu = DeploymentConfig(medium="nixl-gpu", device="cuda", gpus=(0,))
    trees = {c.medium: start_tree(tmp_path, c.medium) for c in (a, b, gpu)}
    try:
        for config in (a, b, gpu):
            fake_live(pool, config, trees[config.medium])
        with pool.others_paused(SimpleNamespace(config=b)) as paused:
            assert paused and set(paused) <= {p.pid for p in psutil.Process(trees["nixl-cpu"].pid).children(recursive=True)} | {trees["nixl-cpu"].pid}
            wait_for_states(trees["nixl-cpu"], lambda s: s == {psutil.STATUS_STOPPED}, "the other CPU deployment stopped")
            assert psutil.STATUS_STOPPED not in states(trees["colocated"])       # the one measured runs
            assert psutil.STATUS_STOPPED not in states(trees["nixl-gpu"])        # GPU deployments are left alone
        wait_for_states(trees["nixl-cpu"], lambda s: psutil.STATUS_STOPPED not in s, "continued after the block")
        with pytest.raises(KeyboardInterrupt):            # Ctrl-C in the block: continued all the same
            with pool.others_paused():
                wait_for_states(trees["colocated"], lambda s: s == {psutil.STATUS_STOPPED}, "a start pauses all")
                raise KeyboardInterrupt
        for name in ("nixl-cpu", "colocated"):
            wait_for_states(trees[name], lambda s: psutil.STATUS_STOPPED not in s, f"{name} continued after Ctrl-C")
    finally:
        pool.close()
    assert all(not t.alive() for t in trees.values())


def test_pausing_is_off_when_asked(tmp_path):
    child = start_tree(tmp_path, "tree")
    off = DeploymentPool(MediumRegistry(), logs_dir=None, pause_idle=False)
    try:
        fake_live(off, DeploymentConfig(medium="nixl-cpu"), child)
        with off.others_paused() as paused:
            assert paused == [] and psutil.STATUS_STOPPED not in states(child)
        assert off.pause_unused() == [] and psutil.STATUS_STOPPED not in states(child)
    finally:
        off.close()


def test_nested_blocks_continue_only_at_the_outermost_and_a_stop_inside_one_is_clean(tmp_path):
    """A start inside a block that keeps two deployments up (the equality property getting its
    reference) pauses everything and continues only what it paused itself; a deployment stopped
    inside a block (evicted) ends on its SIGTERM and is not signalled again."""
    pool = DeploymentPool(MediumRegistry(), logs_dir=None)
    a, b, c = (DeploymentConfig(medium=m) for m in ("nixl-cpu", "disk", "colocated"))
    trees = {x.medium: start_tree(tmp_path, x.medium) for x in (a, b, c)}
    try:
        for config in (a, b, c):
            fake_live(pool, config, trees[config.medium])
        with pool.others_paused(SimpleNamespace(config=b), SimpleNamespace(config=c)):
            with pool.others_paused():
                for name in trees:
                    wait_for_states(trees[name], lambda s: s == {psutil.STATUS_STOPPED}, f"{name} stopped")
            wait_for_states(trees["disk"], lambda s: psutil.STATUS_STOPPED not in s, "a kept one continues")
            wait_for_states(trees["colocated"], lambda s: psutil.STATUS_STOPPED not in s, "a kept one continues")
            assert states(trees["nixl-cpu"]) == {psutil.STATUS_STOPPED}       # still paused by the outer block
            pool.release(a)
            assert trees["nixl-cpu"].poll() == -signal.SIGTERM
        assert pool._paused == {}
    finally:
        pool.close()


def test_an_extra_slot_is_given_back_however_the_block_ends():
    pool = DeploymentPool(MediumRegistry(), logs_dir=None, max_live=1)
    try:
        with pool.extra_slot():
            assert pool.max_live == 2
        with pytest.raises(RuntimeError):
            with pool.extra_slot():
                raise RuntimeError("a property failed")
        assert pool.max_live == 1
    finally:
        pool.close()


def test_unused_deployments_wait_stopped_until_a_test_gets_them(tmp_path):
    """Before each test every live CPU deployment is stopped; ``get`` continues the one it hands
    out, a block that drives another continues that one, and the rest stay stopped."""
    pool = DeploymentPool(MediumRegistry(), logs_dir=None, max_live=3)
    a, b, c = (DeploymentConfig(medium=m) for m in ("nixl-cpu", "disk", "colocated"))
    trees = {x.medium: start_tree(tmp_path, x.medium) for x in (a, b, c)}
    try:
        for config in (a, b, c):
            fake_live(pool, config, trees[config.medium])
        stopped = pool.pause_unused()
        assert set(stopped) >= {t.pid for t in trees.values()}
        for name in trees:
            wait_for_states(trees[name], lambda s: s == {psutil.STATUS_STOPPED}, f"{name} stopped before the test")
        assert pool.pause_unused() == []                        # already stopped: not signalled twice
        assert pool.get(a).config is a                          # the test's deployment: continued
        wait_for_states(trees["nixl-cpu"], lambda s: psutil.STATUS_STOPPED not in s, "got: continued")
        with pool.others_paused(SimpleNamespace(config=b)):     # a block driving b (and a: others paused)
            wait_for_states(trees["disk"], lambda s: psutil.STATUS_STOPPED not in s, "kept by the block")
            wait_for_states(trees["nixl-cpu"], lambda s: s == {psutil.STATUS_STOPPED}, "paused by the block")
        wait_for_states(trees["nixl-cpu"], lambda s: psutil.STATUS_STOPPED not in s, "continued after the block")
        assert states(trees["colocated"]) == {psutil.STATUS_STOPPED}   # unused all along: still stopped
        pool.release(c)                                              # a stopped one ends on its SIGTERM
        assert trees["colocated"].poll() == -signal.SIGTERM
    finally:
        pool.close()
    assert all(not t.alive() for t in trees.values())


def test_ctrl_c_while_the_servers_stop_still_stops_them_and_ends_as_interrupted():
    """A Ctrl-C that lands in the session's teardown (pressed twice, or once, late): the pool is
    closed all the same, and pytest exits 2 rather than dying of SIGINT with a traceback."""
    from pytest_disagg.plugin import _close_pool

    class Pool:
        calls = 0

        def close(self):
            Pool.calls += 1
            if Pool.calls == 1:
                raise KeyboardInterrupt

    session = SimpleNamespace(exitstatus=pytest.ExitCode.OK)
    _close_pool(session, Pool())
    assert Pool.calls == 2 and session.exitstatus == pytest.ExitCode.INTERRUPTED
