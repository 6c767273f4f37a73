"""Which of some processes are still alive, and where they listen (tests of teardown and of the
loopback rule; needs psutil, a test extra)."""
from __future__ import annotations

import ipaddress
from typing import Iterable


def alive(pids: Iterable[int]) -> list[str]:
    """``"pid: command line"`` of each process that still runs (zombies do not count)."""
    import psutil   # optional dependency: the test extra

    out = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{pid}: {' '.join(p.cmdline())[:160]}")
        except psutil.NoSuchProcess:
            pass
    return out


def is_loopback(ip: str) -> bool:
    """127.0.0.0/8 or ::1, an IPv4-mapped IPv6 address included."""
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def listening(pids: Iterable[int], tree: bool = False) -> list[tuple[int, str, str, int]]:
    """(pid, name, ip, port) of every listening inet socket of these processes (``tree``: and of
    their descendants); processes gone meanwhile are skipped."""
    import psutil   # optional dependency: the test extra

    out = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)] if tree else [root]
        except psutil.Error:
            continue
        for p in procs:
            try:
                out += [(p.pid, p.name(), c.laddr.ip, c.laddr.port) for c in p.net_connections(kind="inet")
                        if c.status == psutil.CONN_LISTEN]
            except psutil.Error:
                pass
    return out
