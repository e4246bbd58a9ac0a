"""vision_benchmarks."""
