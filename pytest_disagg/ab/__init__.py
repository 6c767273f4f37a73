"""A/B in one session: every selected deployment runs as side A (this interpreter, this config)
and side B (another interpreter, environment or server arguments); a benchmark's workload runs in
interleaved rounds and each metric gets a verdict (``decide``). Options in ``options``, the probe
of side B's interpreter in ``probe``, the rounds on real deployments in ``runner``."""
