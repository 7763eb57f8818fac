"""DKIM (RFC 6376, RFC 8463 ed25519-sha256, RFC 8301 algorithm rules): signing and
verification as pure functions over an injected resolver, results as values.

Modules: ``canon`` (header and body canonicalization, the body hashed in one pass),
``tags`` (the tag=value lists of signatures and key records), ``record`` (the key
record published in DNS), ``signature`` (the DKIM-Signature field), ``sign`` (the
signer), ``verify`` (the verifier), ``keys`` (the private keys in the data dir),
``hook`` (signing in the ingest stage).
"""
