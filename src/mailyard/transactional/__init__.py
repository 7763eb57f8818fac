"""Transactional mail over the API: idempotency keys and stored message templates."""
