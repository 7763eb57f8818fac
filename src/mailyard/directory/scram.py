"""SCRAM-SHA-256 credentials as the directory stores them.

The credential type, the derivation and SASLprep belong to the protocol-neutral SASL
package (:mod:`mailyard.sasl.scram`); the directory computes what it stores with them
when a password is set.  This module keeps the names the directory and its tests use.
"""

from __future__ import annotations

from mailyard.sasl.scram import (
    SCRAM_ITERATIONS,
    SCRAM_SALT_BYTES,
    SaslprepError,
    ScramCredentials,
    derive_credentials,
    new_credentials,
    salted_password,
    saslprep,
)

__all__ = ["SCRAM_ITERATIONS", "SCRAM_SALT_BYTES", "SaslprepError", "ScramCredentials",
           "derive_credentials", "new_credentials", "salted_password", "saslprep"]
