def main(request: dict) -> str:
    """A stand-in for asking a real system about a job."""
    return "done" if request["check"] >= request["done_after"] else "running"
