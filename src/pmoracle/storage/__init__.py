"""Durable node state on SQLite: the slashing-protection store and the archive of signed reports. I/O."""
