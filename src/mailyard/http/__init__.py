"""The HTTP service: the JSON API under ``/api/v1`` and the public pages (subscribe,
confirm).  Routes are thin adapters over :mod:`mailyard.services`."""
