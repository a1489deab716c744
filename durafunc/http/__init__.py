"""aiohttp servers: user HTTP functions, the Durable HTTP API and the admin endpoints."""
