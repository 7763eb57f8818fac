"""SMTP TLS Reporting (RFC 8460): what delivery records of every outbound TLS
session (:mod:`.store`), the result types (:mod:`.results`), and the daily reports
(:mod:`.report`, sent by :mod:`.sender`)."""
