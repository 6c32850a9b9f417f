"""Benchmarks: scripts that print ratios measured side by side in one run (`python bench/<name>.py --help`)."""
