"""Test support that ships with the package but is used only by tests and benchmarks.

``synthetic``: results documents made by the suite's own writers from invented records (the
report's tests); ``fakeserver``: an OpenAI-compatible streaming server with no model behind it
(the load generator's tests and ``benchmarks/client_overhead.py``); ``faults``: test-only mediums
whose proxy breaks or delays the hand-off (the fault property, the gate and A/B power benchmarks). Nothing in the production
modules imports from here.
"""
