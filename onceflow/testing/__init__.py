"""Test tooling: workloads and their oracles, topic drains and output checks, the job
harness and the kill-and-recover scenario. Used by the tests, the verifier, the
benchmarks and the data-tool commands; never by a job."""

__all__: list[str] = []
