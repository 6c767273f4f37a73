"""``storage`` (ExampleConnector, LMCache tiers): prefill with ``max_tokens=1`` stores the KV;
decode gets the same prompt and loads the KV instead of computing it. Where the store lands after
prefill answers (LMCache's remote tiers), ``--store-barrier`` makes decode wait for it
(``handoffs.storebarrier``); that wait is part of the hand-off time."""
from __future__ import annotations

from . import storebarrier
from .base import PrefillFirst, StageError, Upstreams


def _token_ids(body: dict) -> list[int] | None:
    """The prompt as token ids, when the request gives it so (completions with ids)."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], list):
        prompt = prompt[0]
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return prompt
    return None


class Storage(PrefillFirst):
    name = "storage"
    takes = {"store_barrier": "--store-barrier is"}
    stats_keys = ("store_barrier",)

    def __init__(self, prefill: list[str], decode: list[str],
                 store_barrier: storebarrier.StoreBarrier | None = None):
        super().__init__(prefill, decode)
        self.barrier = store_barrier

    @classmethod
    def add_arguments(cls, parser) -> None:
        sb = parser.add_argument_group("storage barrier", "wait for asynchronous stores before decode (LMCache tiers)")
        sb.add_argument("--store-barrier", default=None, metavar="fs:DIR|redis:HOST:PORT",
                        help="count stored chunks there and hold decode until this request's have landed")
        sb.add_argument("--store-chunk-tokens", type=int, default=256,
                        help="tokens per stored chunk (LMCache chunk_size)")
        sb.add_argument("--store-quiet-s", type=float, default=storebarrier.QUIET_S,
                        help="end a wait once nothing was written for this long (chunks already held, or dropped)")
        sb.add_argument("--store-timeout-s", type=float, default=storebarrier.TIMEOUT_S,
                        help="end a wait after this long")

    @classmethod
    def options_from_args(cls, args) -> dict:
        barrier = None
        if args.store_barrier is not None:
            barrier = storebarrier.StoreBarrier(storebarrier.parse_spec(args.store_barrier), args.store_chunk_tokens,
                                                quiet_s=args.store_quiet_s, timeout_s=args.store_timeout_s)
        return {"store_barrier": barrier}

    async def start(self) -> None:
        if self.barrier is not None:
            await self.barrier.start()

    async def close(self) -> None:
        if self.barrier is not None:
            await self.barrier.close()

    def stats(self) -> dict:
        return {"store_barrier": dict(self.barrier.outcomes) if self.barrier is not None else None}

    async def hand_over(self, proxy: Upstreams, answer: dict, body: dict, decode_body: dict, record) -> None:
        if self.barrier is None:
            return
        usage = answer.get("usage") if isinstance(answer.get("usage"), dict) else {}
        prompt_tokens = usage.get("prompt_tokens")
        if not isinstance(prompt_tokens, int):
            raise StageError("handoff", 502, "prefill answered without usage.prompt_tokens: the store barrier "
                             "cannot tell how many chunks to wait for")
        target = self.barrier.expect(prompt_tokens, _token_ids(body))
        try:
            record.store_barrier, _ = await self.barrier.wait(target)
        except Exception as exc:   # the store itself unreachable (Redis gone, directory removed)
            raise StageError("handoff", 502, f"store barrier could not read the store: "
                             f"{type(exc).__name__}: {exc}") from None
