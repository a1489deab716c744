import asyncio

from azure.data.tables.aio import TableServiceClient


def test_azurite_fixture_answers(connection_string, hub_name):
    async def go():
        async with TableServiceClient.from_connection_string(connection_string) as svc:
            await svc.create_table(hub_name + "Probe")
            names = [t.name async for t in svc.list_tables()]
            await svc.delete_table(hub_name + "Probe")
            return names

    assert hub_name + "Probe" in asyncio.run(go())


def test_hub_names_are_unique(hub_name):
    import re
    assert re.fullmatch(r"T[0-9a-f]{16}", hub_name)
