"""The benchmarks (bench/README.md), a package run from the repository root: `python -m bench.run`."""
