"""``kv_params`` (NixlConnector and the like): prefill with ``max_tokens=1`` and
``kv_transfer_params={"do_remote_decode": true, ...}``; the decode request carries the
``kv_transfer_params`` that prefill returned, and decode pulls the KV."""
from __future__ import annotations

from .base import PrefillFirst, StageError, Upstreams

REMOTE_DECODE_PARAMS = {
    "do_remote_decode": True,
    "do_remote_prefill": False,
    "remote_engine_id": None,
    "remote_block_ids": None,
    "remote_host": None,
    "remote_port": None,
}


class KvParams(PrefillFirst):
    name = "kv_params"

    def __init__(self, prefill: list[str], decode: list[str]):
        super().__init__(prefill, decode)
        self._previous_kv: dict | None = None

    def prepare(self, pre: dict) -> None:
        pre["kv_transfer_params"] = dict(REMOTE_DECODE_PARAMS)

    async def hand_over(self, proxy: Upstreams, answer: dict, body: dict, decode_body: dict, record) -> None:
        kv = answer.get("kv_transfer_params")
        if not isinstance(kv, dict):
            raise StageError("handoff", 502, "prefill answered without kv_transfer_params")
        decode_body["kv_transfer_params"] = self._maybe_corrupt(kv, proxy.fault)

    def _maybe_corrupt(self, kv: dict, fault: str) -> dict:
        """Test-only fault: hand decode the previous request's KV (a broken hand-off)."""
        if fault != "swap-kv-params":
            return kv
        previous, self._previous_kv = self._previous_kv, kv
        return previous if previous is not None else kv
