"""ARC (RFC 8617): chain validation and sealing, over the DKIM package's
canonicalization, key records and crypto.  ``chain`` holds both; results are values."""
