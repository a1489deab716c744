"""The chaos checker of issue 11 and what feeds it: a fault proxy, real hosts, seeded scenarios (README: Chaos tests)."""
