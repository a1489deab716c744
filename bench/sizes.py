"""The size of each workload, shared by the durafunc side (bench/__main__.py) and the peer (bench/dbos_peer.py)."""

SIZES = {   # workload -> (full, quick)
    "sequential": (200, 50), "fan-out/fan-in": (1000, 200), "starts": (500, 100), "external events": (500, 100),
    "hello cities": (1000, 100), "fan-out 10k": (10000, 1000), "waiting": (1000, 100), "latency": (40, 10),
}
