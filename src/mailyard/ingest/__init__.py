"""The front door of the queue: every message enters through :mod:`mailyard.ingest`."""
