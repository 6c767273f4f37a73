"""The study's benchmarks; a package so that, installed as ``pytest_disagg.suite`` (see
``pytest_disagg/shipped.py``), ``pytest --pyargs pytest_disagg.suite`` finds them."""
