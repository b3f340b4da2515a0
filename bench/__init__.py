"""Benchmarks that start their own processes on loopback and print ratios to floors measured in
the same run. Entry point: ``python -m bench NAME [--quick]``; results land in bench/results/.
"""
