"""The Plusofon API stand-in (`server`) and the helpers that start Redis, the simulator,
workers and Flower as real processes for the demo, the tests and the benchmarks (`stack`).

Imports nothing of the rest of the project: it stands in for the API, it does not use it.
"""
