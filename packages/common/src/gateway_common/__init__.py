"""The contract between the gateway services: stream names, entry schema, settings, logging."""
