"""pimsync's benchmark suite: `make bench` (see BENCHMARKS.md). Benchmarks are not tests."""
