"""Benchmarks: ``psdkit bench alignment`` (strategies x seeds on the analytic world)."""
