"""The task hub on Azure Storage, laid out as the Durable Task Framework's Azure Storage provider does."""
