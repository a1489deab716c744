"""durafunc: a local, Azure Functions-compatible host and CLI for Durable Functions apps, on Azurite."""
__version__ = "0.1.0"
