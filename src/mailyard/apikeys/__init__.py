"""API keys of the HTTP service: what a key is, how it is stored, how it is checked."""
