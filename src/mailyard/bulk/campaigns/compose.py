"""One campaign message: the template rendered for a contact, with the fields every
campaign message carries.

* envelope sender: the VERP address of (campaign, contact) (:mod:`mailyard.feedback.verp`);
* ``List-Unsubscribe``: the https one-click link (``/u/<token>``; left out when the
  public URL is plain http, since RFC 8058 requires https) and
  ``mailto:<unsubscribe_prefix>+<the envelope sender's token>@<bounce domain>``, with
  ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058);
* ``List-Id: <list>.<bounce domain>`` (the first of the campaign's lists the contact is
  confirmed in), ``Feedback-ID: <campaign>:<list>:campaign:<host name>``;
* the Message-ID of :func:`mailyard.bulk.campaigns.sender.message_id` (the same after
  any restart);
* tracked links and the open pixel when the campaign tracks.  New links are collected
  in :class:`~mailyard.bulk.tracking.CampaignLinks`; the caller stores them
  (:meth:`CampaignMailer.new_links`) before it queues the messages that carry them.

DKIM signing is not done here: ingest signs what enters with origin ``CAMPAIGN``, or
checks and keeps the signature a render process made (:mod:`.renderpool`,
``Composed.dkim``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mailyard.bulk.campaigns.model import Campaign
from mailyard.bulk.campaigns.sender import AbTest, message_id
from mailyard.bulk.campaigns.store import CampaignStore
from mailyard.bulk.model import Contact
from mailyard.bulk.templates.mime import BuiltMessage, ListHeaders, Mailbox, compose
from mailyard.bulk.templates.mime import Envelope as MimeEnvelope
from mailyard.bulk.templates.render import (
    CompiledTemplate,
    ContactFields,
    RenderFailure,
    TemplateSource,
    Tracking,
)
from mailyard.bulk.tracking import CampaignLinks, CampaignTracker, TokenSigner
from mailyard.feedback.verp import DELIMITER, CampaignRecipient, encode_token, token_address

if TYPE_CHECKING:
    from mailyard.config import Config


@dataclass(frozen=True)
class SendSettings:
    """The server-wide values a campaign message is made with."""

    public_url: str
    bounce_domain: str
    hostname: str
    verp_key: bytes
    tracking_key: bytes
    id_salt: bytes
    bounce_prefix: str = "bounces"
    unsubscribe_prefix: str = "unsubscribe"


@dataclass(frozen=True)
class Composed:
    sender: str  # the VERP envelope sender
    message: BuiltMessage
    dkim: bytes = b""  # DKIM-Signature fields made over ``message`` (a render process's)


class CampaignMailer:
    """Composes the messages of one campaign (templates compiled once, per subject)."""

    def __init__(self, campaign: Campaign, settings: SendSettings,
                 links: Sequence[str] = ()) -> None:
        self.campaign = campaign
        self.settings = settings
        spec = campaign.spec
        self.test = AbTest.from_extra(spec.extra)
        self.links = CampaignLinks(links)
        self.stored_links = len(links)
        self.tracker = CampaignTracker(settings.public_url, campaign.id,
                                       TokenSigner(settings.tracking_key), self.links)
        self._templates: dict[int | None, CompiledTemplate] = {}
        self.from_box = Mailbox(spec.from_address, spec.from_name)
        self.reply_to = Mailbox(spec.reply_to) if spec.reply_to else None

    def subject(self, variant: int | None) -> str:
        if variant is not None and self.test is not None:
            return self.test.subjects[variant]
        return self.campaign.spec.subject

    def template(self, variant: int | None) -> CompiledTemplate:
        """Raises TemplateSyntaxProblem (the campaign cannot be sent at all)."""
        found = self._templates.get(variant)
        if found is None:
            spec = self.campaign.spec
            found = self._templates[variant] = CompiledTemplate(TemplateSource(
                self.subject(variant), spec.html or None, spec.text or None))
        return found

    def compose(self, contact_id: int, address: str, name: str,
                attributes: Mapping[str, Any], list_name: str, variant: int | None,
                now: float, *, sample: bool = False) -> Composed | RenderFailure:
        """``sample``: a preview or test send, with links as written and a Message-ID
        of its own (so it never stands in for the contact's real message)."""
        s = self.settings
        target = CampaignRecipient(self.campaign.id, contact_id)
        token = encode_token(target, s.verp_key)  # once, for the sender and the mailto
        sender = token_address(token, s.bounce_domain, prefix=s.bounce_prefix)
        unsubscribe_url = self.tracker.unsubscribe_url(contact_id)
        lists = ListHeaders(
            # RFC 8058 one-click needs https: over plain http only the mailto is given.
            unsubscribe_url=unsubscribe_url if unsubscribe_url.startswith("https:") else None,
            unsubscribe_mailto=(f"mailto:{s.unsubscribe_prefix}{DELIMITER}{token}"
                                f"@{s.bounce_domain}"),
            list_id=f"{list_name}.{s.bounce_domain}" if list_name else None,
            feedback_id=f"{self.campaign.id}:{list_name}:campaign:{s.hostname}")
        domain = self.from_box.address.rpartition("@")[2] or s.hostname
        stable_id = None if sample else message_id(self.campaign.id, contact_id, domain,
                                                   s.id_salt)
        envelope = MimeEnvelope(self.from_box, now, stable_id, self.reply_to, lists)
        tracked = self.campaign.spec.tracking and not sample
        tracking = self._tracking(contact_id) if tracked else None
        built = compose(self.template(variant), ContactFields(address, name, attributes),
                        envelope, unsubscribe_url=unsubscribe_url,
                        tracking=tracking)
        if isinstance(built, RenderFailure):
            return built
        return Composed(sender, built)

    def _tracking(self, contact_id: int) -> Tracking:
        """The contact's tracking hooks; our own links (the unsubscribe page, unique
        per contact) are left as they are, not counted as clicks nor stored."""
        own = self.tracker.public_url + "/"
        click = self.tracker.clicks(contact_id)

        def rewrite(url: str) -> str:
            return url if url.startswith(own) else click(url)
        return Tracking(links=rewrite, open_pixel_url=self.tracker.open_url(contact_id))

    def new_links(self) -> tuple[int, tuple[str, ...]]:
        """Links met since the last call: (index of the first, urls), to store before
        the messages that carry them are queued."""
        first = self.stored_links
        urls = self.links.since(first)
        self.stored_links = first + len(urls)
        return first, urls


def send_settings(config: Config) -> SendSettings:
    """The settings of this server (loads, or creates, the server secret)."""
    from mailyard.bulk.tracking import tracking_key
    from mailyard.daemon.secret import derive_key, load_server_secret
    from mailyard.feedback.verp import verp_key
    from mailyard.services.setup import bounce_domain, public_url

    secret = load_server_secret(config.data_path)
    return SendSettings(public_url(config), bounce_domain(config), config.hostname,
                        verp_key(secret), tracking_key(secret),
                        derive_key(secret, "campaign message id"),
                        config.bulk.bounce_prefix, config.bulk.unsubscribe_prefix)


def build_one(campaigns: CampaignStore, campaign: Campaign, contact: Contact,
              settings: SendSettings, *, list_name: str | None = None,
              variant: int | None = None, now: float | None = None,
              sample: bool = False) -> Composed | RenderFailure:
    """The message ``contact`` gets (or would get) from ``campaign``, as the engine
    makes it.  Links met for the first time are stored with the campaign (links are
    append-only, so this changes no token's meaning); a ``sample`` (a check, preview
    or test send) keeps its links as written, so stores none.
    Raises TemplateSyntaxProblem and AbSpecError."""
    mailer = CampaignMailer(campaign, settings, campaigns.links(campaign.id))
    name = list_name if list_name is not None else (
        campaign.spec.lists[0] if campaign.spec.lists else "")
    built = mailer.compose(contact.id, contact.address, contact.name, contact.attributes,
                           name, variant, time.time() if now is None else now,
                           sample=sample)
    first, urls = mailer.new_links()
    if urls:
        campaigns.add_links(campaign.id, first, urls)
    return built
