"""DANE for SMTP (RFC 7672): TLSA lookups through a validating resolver
(:mod:`.lookup`) and the certificate check against the records (:mod:`.tlsa`)."""
