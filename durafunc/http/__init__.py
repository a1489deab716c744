"""aiohttp: the servers (user HTTP functions, the Durable HTTP API, the admin endpoints) and the client of
context.call_http (call_http.py)."""
