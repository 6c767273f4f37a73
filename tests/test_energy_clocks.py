"""Clock control against the fake NVML: validation and snapping, dry-run sets nothing, and every
restore path (normal exit, exception, permission error, SIGINT, SIGTERM, interpreter exit)."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fake_nvml import (NVML_ERROR_NO_PERMISSION, NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_UNKNOWN,
                       FakeGpu, FakeNvml, read_record)
from pytest_disagg.energy.clocks import (ClockController, ClockError, ClockPermissionError,
                                         ClockRestoreError, ClockSupportError, StageClocks, parse_mode,
                                         snap, stage_settings)
from pytest_disagg.energy.restore import RestoreGuard

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent

SETS = {"nvmlDeviceSetGpuLockedClocks", "nvmlDeviceSetMemoryLockedClocks"}
RESETS = {"nvmlDeviceResetGpuLockedClocks", "nvmlDeviceResetMemoryLockedClocks"}


def sigint_handler_unchanged():
    return signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)


# -- validation ------------------------------------------------------------------------------
def test_snap_nearest_exact_and_range():
    sup = [1000, 1010, 1100]
    assert snap(1005, sup) == 1000                      # tie: the lower one
    assert snap(1090, sup) == 1100
    assert snap(1010, sup, policy="exact") == 1010
    with pytest.raises(ClockError, match="not supported.*nearest supported"):
        snap(1005, sup, policy="exact")
    with pytest.raises(ClockError, match="outside the supported range 1000–1100 MHz"):
        snap(100, sup)
    with pytest.raises(ValueError, match="snap policy"):
        snap(1000, sup, policy="round")


def test_plan_snaps_sm_against_the_locked_memory_clock():
    gpu = FakeGpu(mem_clocks=(1593, 2619), sm_clocks={1593: (600, 900, 1200), 2619: (700, 1000, 1400)})
    ctl = ClockController("dry-run", nvml=FakeNvml([gpu]), exit_guard=False)
    (plan,) = ctl.plan({0: StageClocks(sm_mhz=880, mem_mhz=1600)})
    assert plan.target == StageClocks(sm_mhz=900, mem_mhz=1593)
    assert plan.before_sm_mhz == 1980 and plan.before_mem_mhz == 2619
    assert any("snapped to 900" in n for n in plan.notes)
    (default_mem,) = ctl.plan({0: StageClocks(sm_mhz=880)})   # no memory lock: highest memory clock
    assert default_mem.target.sm_mhz == 1000
    with pytest.raises(ClockError, match="outside the supported range 600–1200"):
        ctl.plan({0: StageClocks(sm_mhz=1400, mem_mhz=1593)})
    ctl.close()


def test_bad_requests_are_clear_errors():
    with pytest.raises(ClockError, match="positive int"):
        StageClocks(sm_mhz=-5)
    with pytest.raises(ClockError, match="positive int"):
        StageClocks(sm_mhz=1.5e3)
    with pytest.raises(ValueError, match="off, dry-run, apply"):
        parse_mode("on")
    ctl = ClockController("dry-run", nvml=FakeNvml(1), exit_guard=False)
    with pytest.raises(ValueError, match="not present: NVML sees 1"):
        ctl.plan({3: StageClocks(sm_mhz=1000)})
    with pytest.raises(ClockError, match="StageClocks"):
        ctl.plan({0: 1000})
    ctl.close()


def test_gpu_without_supported_clock_lists_cannot_be_validated():
    fake = FakeNvml(1)
    fake.fail("nvmlDeviceGetSupportedMemoryClocks", NVML_ERROR_NOT_SUPPORTED)
    with pytest.raises(ClockSupportError, match="does not report its supported clocks"):
        ClockController("dry-run", nvml=fake, exit_guard=False).plan({0: StageClocks(sm_mhz=1000)})


def test_stage_settings_refuses_two_clocks_for_one_gpu():
    assert stage_settings([0], StageClocks(sm_mhz=900), [1], StageClocks(sm_mhz=1200)) == {
        0: StageClocks(sm_mhz=900), 1: StageClocks(sm_mhz=1200)}
    assert stage_settings([0], StageClocks(sm_mhz=900), [0], StageClocks(sm_mhz=900)) == {
        0: StageClocks(sm_mhz=900)}
    with pytest.raises(ClockError, match="GPU 0 serves both prefill and decode"):
        stage_settings([0], StageClocks(sm_mhz=900), [0], StageClocks(sm_mhz=1200))


# -- modes -----------------------------------------------------------------------------------
def test_off_touches_nothing_not_even_nvml():
    fake = FakeNvml(1)
    ctl = ClockController("off", nvml=fake)
    with ctl.locked({0: StageClocks(sm_mhz=12345)}) as plans:
        assert plans[0].applied is False and plans[0].mode == "off"
    ctl.close()
    assert fake.inits == 0 and fake.calls == []


def test_dry_run_validates_logs_and_sets_nothing(caplog):
    fake = FakeNvml(2)
    before = sigint_handler_unchanged()
    ctl = ClockController("dry-run", nvml=fake)
    with caplog.at_level(logging.INFO, logger="pytest_disagg.energy.clocks"):
        with ctl.locked({0: StageClocks(sm_mhz=1001), 1: StageClocks(sm_mhz=360)}) as plans:
            assert sigint_handler_unchanged() == before         # nothing to guard
            assert fake.gpus[0].sm_locked is None
    ctl.close()
    assert [p.target.sm_mhz for p in plans] == [1005, 360]
    assert not any(p.applied for p in plans)
    assert fake.calls == []
    assert "dry-run: would lock GPU 0 at SM 1005 MHz (requested SM 1001 MHz)" in caplog.text
    with pytest.raises(ClockError):                              # still validates
        with ctl.locked({0: StageClocks(sm_mhz=99)}):
            pass


def test_dry_run_cannot_set_even_if_asked():
    ctl = ClockController("dry-run", nvml=FakeNvml(1), exit_guard=False)
    ctl.plan({0: StageClocks(sm_mhz=1000)})
    with pytest.raises(PermissionError, match="read-only"):
        ctl._session.nvml.nvmlDeviceSetGpuLockedClocks(ctl._handles[0], 1000, 1000)


# -- restore paths, in process ---------------------------------------------------------------
def test_apply_locks_inside_and_restores_on_normal_exit():
    fake = FakeNvml(2)
    before = sigint_handler_unchanged()
    ctl = ClockController("apply", nvml=fake)
    with ctl.locked({0: StageClocks(sm_mhz=1200, mem_mhz=2619), 1: StageClocks(sm_mhz=900)}) as plans:
        assert all(p.applied for p in plans)
        assert fake.gpus[0].sm_locked == (1200, 1200) and fake.gpus[0].mem_locked == (2619, 2619)
        assert fake.gpus[1].sm_locked == (900, 900)
        assert sigint_handler_unchanged() != before             # guard armed
        assert len(ctl.pending_restore) == 3
    assert not fake.locked(0) and not fake.locked(1)
    assert ctl.pending_restore == ()
    assert sigint_handler_unchanged() == before                 # guard disarmed
    assert [c[0] for c in fake.calls] == [
        "nvmlDeviceSetMemoryLockedClocks", "nvmlDeviceSetGpuLockedClocks", "nvmlDeviceSetGpuLockedClocks",
        "nvmlDeviceResetGpuLockedClocks", "nvmlDeviceResetGpuLockedClocks", "nvmlDeviceResetMemoryLockedClocks"]
    ctl.close()


def test_apply_restores_when_the_block_raises():
    fake = FakeNvml(1)
    before = sigint_handler_unchanged()
    ctl = ClockController("apply", nvml=fake)
    with pytest.raises(RuntimeError, match="benchmark failed"):
        with ctl.locked({0: StageClocks(sm_mhz=1200)}):
            raise RuntimeError("benchmark failed")
    assert not fake.locked(0) and ctl.pending_restore == ()
    assert sigint_handler_unchanged() == before


def test_permission_error_is_clear_and_undoes_what_was_set():
    fake = FakeNvml(2)
    fake.fail("nvmlDeviceSetGpuLockedClocks", NVML_ERROR_NO_PERMISSION, gpu=1)
    before = sigint_handler_unchanged()
    ctl = ClockController("apply", nvml=fake)
    with pytest.raises(ClockPermissionError) as info:
        with ctl.locked({0: StageClocks(sm_mhz=1200), 1: StageClocks(sm_mhz=900)}):
            pytest.fail("the block must not run")
    msg = str(info.value)
    assert "NVML_ERROR_NO_PERMISSION" in msg and "root" in msg and "--disagg-dvfs=dry-run" in msg
    assert [c[:2] for c in fake.calls] == [("nvmlDeviceSetGpuLockedClocks", 0),
                                           ("nvmlDeviceResetGpuLockedClocks", 0)]
    assert not fake.locked(0) and ctl.pending_restore == ()
    assert sigint_handler_unchanged() == before


def test_memory_lock_not_supported_is_reported_and_undone():
    fake = FakeNvml(1)
    fake.fail("nvmlDeviceSetMemoryLockedClocks", NVML_ERROR_NOT_SUPPORTED)
    ctl = ClockController("apply", nvml=fake, exit_guard=False)
    with pytest.raises(ClockSupportError, match="cannot lock its memory clock"):
        with ctl.locked({0: StageClocks(sm_mhz=1200, mem_mhz=2619)}):
            pass
    assert fake.set_calls() == [] and not fake.locked(0)


@pytest.mark.parametrize("exit_guard, tries_at_exit", [(False, 1), (True, 2)])
def test_reset_failure_is_raised_and_retried_by_close(exit_guard, tries_at_exit):
    fake = FakeNvml(1)
    fake.fail("nvmlDeviceResetGpuLockedClocks", NVML_ERROR_UNKNOWN, times=tries_at_exit)
    ctl = ClockController("apply", nvml=fake, exit_guard=exit_guard)
    with pytest.raises(ClockRestoreError, match="GPU 0 sm clocks not reset"):
        with ctl.locked({0: StageClocks(sm_mhz=1200)}):
            pass
    assert fake.locked(0) and ctl.pending_restore == ((0, "sm"),)
    ctl.close()                                                  # the next try succeeds
    assert not fake.locked(0) and ctl.pending_restore == ()


def test_guard_holds_a_signal_that_arrives_during_restore_and_chains_after():
    delivered, order = [], []
    guard = RestoreGuard(lambda: (order.append("cleanup"), guard._on_signal(signal.SIGUSR1, None)),
                         signals=(signal.SIGUSR1,), kill=lambda pid, sig: delivered.append(sig))
    guard.arm()
    guard.run_cleanup()
    assert order == ["cleanup"] and delivered == []              # held while cleaning up
    guard.disarm()
    assert delivered == [signal.SIGUSR1]                         # then delivered
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_guard_leaves_a_later_handler_in_place():
    guard = RestoreGuard(lambda: None, signals=(signal.SIGUSR2,), kill=lambda pid, sig: None)
    original = signal.getsignal(signal.SIGUSR2)
    guard.arm()
    later = lambda s, f: None  # noqa: E731
    signal.signal(signal.SIGUSR2, later)
    guard.disarm()
    assert signal.getsignal(signal.SIGUSR2) is later
    signal.signal(signal.SIGUSR2, original)


# -- restore paths across a real process exit ------------------------------------------------
CHILD = textwrap.dedent("""
    import atexit, os, signal, sys, time
    from fake_nvml import FakeNvml
    from pytest_disagg.energy.clocks import ClockController, StageClocks

    record, how = sys.argv[1], sys.argv[2]
    fake = FakeNvml(2, record_path=record)
    if how == "sigterm-chained":
        signal.signal(signal.SIGTERM, lambda s, f: fake._record("previous-handler", s))
    ctl = ClockController("apply", nvml=fake)
    atexit.register(lambda: fake._record("atexit-last", [list(p) for p in ctl.pending_restore]))
    settings = {0: StageClocks(sm_mhz=1200), 1: StageClocks(sm_mhz=900)}
    if how == "atexit":
        cm = ctl.locked(settings)
        cm.__enter__()
        fake._record("inside")
        sys.exit(0)                  # never leaves the block: only atexit can restore
    try:
        with ctl.locked(settings):
            fake._record("inside")
            if how == "sigint":
                signal.raise_signal(signal.SIGINT)
            elif how in ("sigterm", "sigterm-chained"):
                os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(50):      # the handler runs between bytecodes; never reached
                time.sleep(0.01)
            fake._record("block-finished")
    except KeyboardInterrupt:
        fake._record("keyboard-interrupt", [list(p) for p in ctl.pending_restore])
        sys.exit(130)
    fake._record("after-block", signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL)
""")


def run_child(tmp_path, how):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    record = tmp_path / "calls.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
    proc = subprocess.run([sys.executable, str(script), str(record), how], env=env,
                          capture_output=True, text=True, timeout=60)
    return proc, read_record(record)


def names(calls):
    return [c[0] for c in calls]


def assert_locked_then_reset(calls):
    n = names(calls)
    assert n[:2] == ["nvmlDeviceSetGpuLockedClocks"] * 2 and n[2] == "inside"
    resets = [c for c in calls[3:] if c[0] in RESETS]
    assert sorted(c[1] for c in resets) == [0, 1]
    assert not any(c[0] in SETS for c in calls[3:])


def test_sigint_while_locked_restores_then_raises_keyboard_interrupt(tmp_path):
    proc, calls = run_child(tmp_path, "sigint")
    assert proc.returncode == 130, proc.stderr
    assert_locked_then_reset(calls)
    assert names(calls)[-2:] == ["keyboard-interrupt", "atexit-last"]
    assert calls[-2][1] == [] and calls[-1][1] == []     # nothing pending when Python saw Ctrl-C
    assert "block-finished" not in names(calls)


def test_sigterm_while_locked_restores_then_terminates(tmp_path):
    proc, calls = run_child(tmp_path, "sigterm")
    assert proc.returncode == -signal.SIGTERM, proc.stderr
    assert_locked_then_reset(calls)
    assert names(calls)[-2:] == ["nvmlDeviceResetGpuLockedClocks"] * 2  # the default action ran next


def test_sigterm_chains_to_the_previous_handler(tmp_path):
    proc, calls = run_child(tmp_path, "sigterm-chained")
    assert proc.returncode == 0, proc.stderr
    assert_locked_then_reset(calls)
    n = names(calls)
    assert n.index("previous-handler") > max(i for i, x in enumerate(n) if x in RESETS)
    after = calls[n.index("after-block")]
    assert after[1] is True                              # the previous handler is back in place


def test_interpreter_exit_restores_via_atexit(tmp_path):
    proc, calls = run_child(tmp_path, "atexit")
    assert proc.returncode == 0, proc.stderr
    assert_locked_then_reset(calls)
    assert names(calls)[-1] == "atexit-last" and calls[-1][1] == []
