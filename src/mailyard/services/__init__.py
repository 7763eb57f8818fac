"""The operations an operator or an API client performs, in one place.

``cli/`` and the HTTP API are thin adapters over these: they parse their input, call a
service, and render its result (``to_dict()`` for JSON) or its error
(:class:`~mailyard.services.errors.ServiceError`, with a stable ``code``).  Services
print nothing and read no terminal.
"""
