"""djworker's benchmarks: run on demand, never in the test suite (see docs/benchmarks.md)."""
