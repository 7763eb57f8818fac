"""The user directory: local domains, users, aliases and their passwords."""
