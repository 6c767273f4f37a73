#!/bin/bash
# The "fixed" layout's interpreter: the collector's own Python (DISAGG_LAYOUT_PYTHON, set by collect.py)
# with address-space randomization off for it and everything it starts.
exec setarch "$(uname -m)" -R "${DISAGG_LAYOUT_PYTHON:?set by collect.py}" "$@"
