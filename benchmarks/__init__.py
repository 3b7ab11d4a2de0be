"""Speed and accuracy benchmarks (run as modules: ``python -m benchmarks.<name>``; not tests)."""
