import pytest

from pytest_disagg.load import WorkloadSpec, fixed, poisson


@pytest.mark.latency
def test_short_chat(disagg_deployment, disagg_bench):      # once per selected deployment
    spec = WorkloadSpec(arrival=poisson(4.0), num_requests=16, prompt=fixed(64), output=fixed(16))
    run, entry = disagg_bench.run(disagg_deployment, spec, benchmark="short-chat", load="4 req/s")
    assert run.n_ok == 16                                  # figures: results JSON + baseline gate
