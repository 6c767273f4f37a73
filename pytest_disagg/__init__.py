"""pytest-disagg: real prefill/decode deployments per KV transfer medium, measured and gated."""
__version__ = "0.1.0"
