"""The task hub on Azure Storage, laid out as the Durable Task Framework's Azure Storage provider does.

Import the submodules directly (`from durafunc.storage.taskhub import TaskHub`); this package does not import them
eagerly, so that `storage.schema` and `storage.names` stay cheap to import (the Azure SDKs take ~0.5 s).
"""
