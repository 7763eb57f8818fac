"""Building the contact and API-key services over the embedded storage, for the CLI
and the HTTP workers alike (the composition, in one place)."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mailyard.config import Config, parse_hostport
from mailyard.services.apikeys import ApiKeys
from mailyard.services.contacts import Contacts, Settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from mailyard.bulk.campaigns.sqlite import SqliteCampaignStore
    from mailyard.bulk.campaigns.store import CampaignStore
    from mailyard.directory.sqlite import SqliteDirectory
    from mailyard.feedback.addresses import FeedbackAddresses
    from mailyard.ingest.api import Ingest
    from mailyard.services.campaigns import Campaigns
    from mailyard.services.messages import TransactionalMail
    from mailyard.services.report_pages import CampaignReports
    from mailyard.services.templates import MessageTemplates

BULK_DB = "bulk.db"
APIKEYS_DB = "apikeys.db"
TRANSACTIONAL_DB = "transactional.db"
DIRECTORY_DB = "directory.db"


def public_url(config: Config) -> str:
    """``http.public_url``, else the first HTTPS listener, else the first HTTP one."""
    if config.http.public_url:
        return config.http.public_url.rstrip("/")
    for scheme in ("https", "http"):
        for address in getattr(config.listen, scheme):
            host, port = parse_hostport(address)
            if host in ("0.0.0.0", "::"):  # every interface: the name others know us by
                host = config.hostname
            host = f"[{host}]" if ":" in host else host
            return f"{scheme}://{host}:{port}"
    return f"https://{config.hostname}"


def confirmation_sender(config: Config) -> str:
    if config.bulk.sender:
        return config.bulk.sender
    return f"postmaster@{config.local_domains[0] if config.local_domains else config.hostname}"


def bounce_domain(config: Config) -> str:
    if config.bulk.bounce_domain:
        return config.bulk.bounce_domain.lower()
    return config.local_domains[0] if config.local_domains else config.hostname


def feedback_addresses(config: Config) -> FeedbackAddresses:
    """The bounce, unsubscribe and complaint addresses (``[bulk]``); the VERP key is
    read from the server secret when a token is first verified."""
    from mailyard.daemon.secret import load_server_secret
    from mailyard.feedback.addresses import FeedbackAddresses
    from mailyard.feedback.verp import verp_key

    bulk = config.bulk
    return FeedbackAddresses(
        bounce_domain(config), lambda: verp_key(load_server_secret(config.data_path)),
        bounce_prefix=bulk.bounce_prefix, unsubscribe_prefix=bulk.unsubscribe_prefix,
        complaint_address=bulk.complaint_address)


def open_directory(config: Config) -> SqliteDirectory:
    """Domains, accounts and aliases (``data_dir/directory.db``)."""
    from mailyard.directory.sqlite import SqliteDirectory

    return SqliteDirectory(config.data_path / DIRECTORY_DB, config)


def open_contacts(config: Config) -> Contacts:
    from mailyard.bulk.sqlite import SqliteContactStore
    from mailyard.daemon.secret import derive_key, load_server_secret

    secret = load_server_secret(config.data_path)
    digest_key = derive_key(secret, "suppression digest")

    def digest(address: str) -> str:
        return hmac.digest(digest_key, address.encode("utf-8"), "sha256").hex()

    store = SqliteContactStore(config.data_path / BULK_DB, digest)
    settings = Settings(sender=confirmation_sender(config), public_url=public_url(config),
                        confirm_key=derive_key(secret, "confirmation link"),
                        confirm_ttl=config.bulk.confirm_ttl, hostname=config.hostname)
    return Contacts(store, settings)


def open_campaign_store(contacts: Contacts) -> SqliteCampaignStore:
    """The campaign store, in the same database as ``contacts``."""
    from mailyard.bulk.campaigns.sqlite import SqliteCampaignStore
    from mailyard.bulk.sqlite import SqliteContactStore

    store = contacts.store
    assert isinstance(store, SqliteContactStore)
    return SqliteCampaignStore(store.db)


def open_campaign_reports(config: Config, store: CampaignStore) -> CampaignReports:
    """Reports and the signed links to their page, keyed from the server secret."""
    from mailyard.daemon.secret import derive_key, load_server_secret
    from mailyard.services.report_pages import CampaignReports

    secret = load_server_secret(config.data_path)
    return CampaignReports(store, derive_key(secret, "report link"), public_url(config))


def open_apikeys(config: Config) -> ApiKeys:
    from mailyard.apikeys.sqlite import SqliteKeyStore

    return ApiKeys(SqliteKeyStore(config.data_path / APIKEYS_DB))


def open_campaigns(config: Config, contacts: Contacts | None = None, *,
                   dns_servers: Sequence[str] | None = None) -> Campaigns:
    """The campaign service over ``contacts`` (opened when not given); its check looks
    the From domain up through ``dns_servers`` (default ``delivery.dns_servers``, else
    the system resolver), a fresh resolver per check so it works on any thread."""
    import asyncio

    from mailyard.bulk.campaigns.compose import send_settings
    from mailyard.dmarc.orgdomain import load_public_suffixes
    from mailyard.dns.dnspython import DnsPythonResolver
    from mailyard.services.campaign_auth import AlignmentCheck, DnsAlignment
    from mailyard.services.campaigns import Campaigns
    from mailyard.services.dkim import DkimKeys

    contacts = contacts or open_contacts(config)
    settings = send_settings(config)
    servers = list(dns_servers if dns_servers is not None else config.delivery.dns_servers)

    def local_domains() -> list[str]:
        from mailyard.services.accounts import Accounts

        accounts = Accounts.for_config(config, open_directory(config))
        return [d.name for d in accounts.list_domains()]

    def alignment(domain: str) -> AlignmentCheck:
        checker = DnsAlignment(
            DnsPythonResolver(servers, config.delivery.dns_timeout),
            DkimKeys.for_config(config, local_domains), hostname=config.hostname,
            bounce_domain=settings.bounce_domain,
            suffixes=lambda: load_public_suffixes(config.dmarc.public_suffix_list))
        return asyncio.run(checker.check(domain))

    return Campaigns(open_campaign_store(contacts), contacts, settings, alignment,
                     pools=frozenset(p.name for p in config.delivery.pools))
def open_templates(config: Config) -> MessageTemplates:
    """The stored templates of transactional mail (``data_dir/transactional.db``)."""
    from mailyard.services.templates import MessageTemplates
    from mailyard.transactional.sqlite import SqliteTransactionalStore

    return MessageTemplates(SqliteTransactionalStore(config.data_path / TRANSACTIONAL_DB))


def open_messages(config: Config, contacts: Contacts, ingest: Ingest,
                  notify: Callable[[str], None]) -> TransactionalMail:
    """Transactional mail (``POST /api/v1/messages``) for an HTTP worker."""
    from mailyard.daemon.secret import derive_key, load_server_secret
    from mailyard.feedback.verp import verp_key
    from mailyard.sending.limiter import SendLimiter
    from mailyard.sending.store import SqliteSendCounters, sending_db_path
    from mailyard.services.messages import TransactionalMail
    from mailyard.transactional.sqlite import SqliteTransactionalStore

    secret = load_server_secret(config.data_path)
    directory = open_directory(config)
    limiter = SendLimiter(SqliteSendCounters(sending_db_path(config.data_path)),
                          config.sending)
    return TransactionalMail(
        SqliteTransactionalStore(config.data_path / TRANSACTIONAL_DB), contacts.store,
        directory.is_local_domain, ingest, notify, derive_key(secret, "idempotency"),
        verp_key(secret), bounce_domain(config), config.bulk.bounce_prefix,
        limiter=limiter, max_recipients=config.http.max_recipients)
