"""External benchmarks used as evaluators (torch-free)."""
