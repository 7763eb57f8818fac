"""Bulk mail: contacts, lists, memberships with consent, the suppression list (and,
later, segments, templates, campaigns, tracking).  Domain logic and storage, no HTTP."""
