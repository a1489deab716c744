"""Storage connection strings: `A=b;C=d` parsing and `UseDevelopmentStorage=true` (the well-known Azurite one)."""
from __future__ import annotations

AZURITE_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEVELOPMENT_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    f"AccountKey={AZURITE_ACCOUNT_KEY};"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


def parse_connection_string(value: str) -> dict[str, str]:
    """Split `A=b;C=d` into a dict with lower-cased keys (values keep '=' padding)."""
    out: dict[str, str] = {}
    for part in value.split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip().lower()] = v.strip()
    return out


def expand_connection_string(value: str | None) -> str | None:
    """`UseDevelopmentStorage=true` (with an optional `DevelopmentStorageProxyUri`) -> the explicit Azurite
    connection string; anything else unchanged."""
    if value is None:
        return None
    parts = parse_connection_string(value)
    if parts.get("usedevelopmentstorage", "").lower() == "true":
        proxy = parts.get("developmentstorageproxyuri")
        return DEVELOPMENT_STORAGE.replace("http://127.0.0.1", proxy.rstrip("/")) if proxy else DEVELOPMENT_STORAGE
    return value
