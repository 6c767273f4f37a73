"""pytest's children: each started under a small supervisor (``supervisor.py``) so it dies with
pytest, its log tails (``logs.py``), its tree and CPU affinity read from ``/proc`` (``affinity.py``).

Below every module that starts a process (deploy's servers, the vLLM and KV-sizing probes of
``mediums`` and ``kvspec``): none of those import each other to start one.
"""
