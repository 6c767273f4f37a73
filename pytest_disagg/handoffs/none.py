"""``none``: colocated engines, no hand-off; the proxy sends each request to one backend."""
from __future__ import annotations

import asyncio

from .base import Handoff, Upstreams


class NoHandoff(Handoff):
    name = "none"
    disaggregated = False

    def __init__(self, prefill: list[str], decode: list[str]):
        super().__init__(prefill, decode)
        if not decode:
            raise ValueError("mode 'none' needs at least one --backend")

    async def transition(self, proxy: Upstreams, path: str, body: dict, record, t_start: int) -> dict:
        return body

    async def before_decode(self, proxy: Upstreams) -> None:
        if proxy.extra_delay_s:          # test-only delay: before the one stage there is
            await asyncio.sleep(proxy.extra_delay_s)
