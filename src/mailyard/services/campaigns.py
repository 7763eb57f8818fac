"""Campaigns: what ``mailyard campaign`` and ``/api/v1/campaigns`` do, in one place.

Create and edit (drafts only), list and show; the life cycle moves (schedule,
unschedule, pause, resume, cancel), each a compare-and-set in the store so two
processes never both win; the pre-flight check (the rendered sample message through
:func:`mailyard.bulk.templates.check.check_message`, plus the From domain's SPF, DKIM and
DMARC looked up live); a preview for a chosen contact; a test message; the report.

Nothing here sends mail: :meth:`Campaigns.test_message` returns the message
(:class:`OutgoingMail`) and the adapter hands it to ingest (:func:`submit_mail`), the
one way into the queue.  The sending of a scheduled campaign is the campaign runner's.

Every method is blocking (SQLite, and the DNS check runs its own event loop); the
HTTP service calls them on its thread pool.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from typing import TYPE_CHECKING, Any

from mailyard.bulk.campaigns.compose import Composed, SendSettings, build_one
from mailyard.bulk.campaigns.input import (
    AB_KEY,
    CampaignInput,
    InvalidCampaign,
    apply_input,
    check_name,
    format_local,
    format_utc,
    parse_send_at,
)
from mailyard.bulk.campaigns.model import Campaign, CampaignSpec, CampaignState, can_move
from mailyard.bulk.campaigns.sender import AbSpecError
from mailyard.bulk.campaigns.store import CampaignConflict, CampaignStore
from mailyard.bulk.model import Contact, MembershipStatus
from mailyard.bulk.report import CampaignReport
from mailyard.bulk.templates.check import CheckReport, Finding, Severity, check_message
from mailyard.bulk.templates.mime import check_address
from mailyard.bulk.templates.render import (
    CompiledTemplate,
    RenderFailure,
    TemplateSource,
    TemplateSyntaxProblem,
)
from mailyard.bulk.tracking import CampaignLinks, CampaignTracker, TokenSigner
from mailyard.services.errors import InvalidInput, ServiceError, error
from mailyard.services.report_pages import campaign_report

if TYPE_CHECKING:
    from mailyard.services.campaign_auth import AlignmentCheck
    from mailyard.services.contacts import Contacts

__all__ = ["CampaignCheck", "Campaigns", "CheckFailed", "OutgoingMail", "Preview",
           "submit_mail"]

#: The contact a check or preview renders for when the campaign's lists have no
#: confirmed member yet (id 0 names no contact, so its links lead nowhere).
PLACEHOLDER = Contact(0, "recipient@example.com", "Example Recipient")
TEST_PREFIX = "[Test] "

#: The From domain to its SPF/DKIM/DMARC alignment (looks the DNS up; blocking).
AlignmentChecker = Callable[[str], "AlignmentCheck"]


@dataclass(frozen=True)
class CampaignCheck:
    campaign_id: int
    sample: str  # the address the sample message was rendered for
    report: CheckReport

    @property
    def ok(self) -> bool:
        return self.report.ok

    def to_dict(self) -> dict[str, Any]:
        return {"campaign": self.campaign_id, "sample": self.sample, **self.report.to_dict(),
                "errors": len(self.report.errors), "warnings": len(self.report.warnings)}


class CheckFailed(InvalidInput):
    """``schedule`` refused: the check found errors (``check`` holds them)."""

    def __init__(self, check: CampaignCheck) -> None:
        errors = check.report.errors
        super().__init__("campaign_check_failed",
                         f"the check found {len(errors)} error(s): "
                         + "; ".join(f.message for f in errors[:3])
                         + (" ..." if len(errors) > 3 else "")
                         + " (fix them, or schedule with force)")
        self.check = check


@dataclass(frozen=True)
class Preview:
    campaign_id: int
    address: str
    subject: str
    html: str | None
    text: str
    message: bytes

    def to_dict(self) -> dict[str, Any]:
        return {"campaign": self.campaign_id, "address": self.address,
                "subject": self.subject, "html": self.html, "text": self.text,
                "message": self.message.decode("utf-8", "replace")}


@dataclass(frozen=True)
class OutgoingMail:
    """A message for ingest: the envelope and the bytes."""

    sender: str
    recipient: str
    content: bytes
    pool: str = ""
    smtputf8: bool = False


@dataclass
class Scheduled:
    campaign: Campaign
    check: CampaignCheck | None = None  # None when scheduled without a check (force)


@dataclass
class _Sample:
    contact: Contact
    chosen: bool  # named by the caller or a real member (not the placeholder)
    findings: list[Finding] = field(default_factory=list)


class Campaigns:
    def __init__(self, store: CampaignStore, contacts: Contacts, settings: SendSettings,
                 alignment: AlignmentChecker | None = None,
                 clock: Callable[[], float] = time.time, *,
                 pools: frozenset[str] = frozenset()) -> None:
        """``settings``: those the campaign engine builds its messages with;
        ``pools``: the configured delivery pools a campaign may name."""
        self.store = store
        self.contacts = contacts
        self.settings = settings
        self.pools = pools
        self.alignment = alignment
        self.clock = clock

    # --- reading ---------------------------------------------------------------------
    def get(self, ref: str | int) -> Campaign:
        """By id (a number) or by name."""
        text = str(ref).strip()
        found = None
        if text.isdigit() and len(text) < 19:
            found = self.store.get_campaign(int(text))
        if found is None and isinstance(ref, str) and len(text) <= 200:
            found = self.store.get_campaign_by_name(text)
        if found is None:
            raise error("no_such_campaign", f"no campaign {text[:80]!r}")
        return found

    def list(self, state: CampaignState | None = None) -> list[Campaign]:
        return self.store.campaigns(state=state)

    def describe(self, campaign: Campaign) -> dict[str, Any]:
        """The campaign as the API and ``show --json`` give it."""
        data = campaign.to_dict()
        data["send_at_utc"] = format_utc(campaign.send_at) if campaign.send_at else None
        data["send_at_local"] = (format_local(campaign.send_at, campaign.spec.timezone)
                                 if campaign.send_at else None)
        return data

    # --- writing ---------------------------------------------------------------------
    def create(self, inp: CampaignInput) -> Campaign:
        try:
            name = check_name(inp.name or "")
            spec = apply_input(CampaignSpec(), inp)
        except InvalidCampaign as exc:
            raise error("invalid_campaign", str(exc)) from None
        self._validate(spec)
        try:
            return self.store.add_campaign(name, spec, self.clock())
        except CampaignConflict:
            raise error("campaign_exists", f"a campaign named {name!r} exists") from None

    def edit(self, ref: str | int, inp: CampaignInput) -> Campaign:
        campaign = self.get(ref)
        if inp.name is not None and inp.name.strip() != campaign.name:
            raise error("invalid_campaign", "a campaign's name cannot be changed")
        if campaign.state is not CampaignState.DRAFT:
            raise _state(campaign, "edited", "only a draft can be edited (unschedule it first)")
        try:
            spec = apply_input(campaign.spec, inp)
        except InvalidCampaign as exc:
            raise error("invalid_campaign", str(exc)) from None
        self._validate(spec)
        try:
            return self.store.update_spec(campaign.id, spec, self.clock())
        except CampaignConflict:
            raise _changed(campaign.id) from None

    def _validate(self, spec: CampaignSpec) -> None:
        """What needs the stores: lists, pool, templates."""
        for name in spec.lists:
            self.contacts.get_list(name)
        if spec.pool and spec.pool not in self.pools:
            known = ", ".join(sorted(self.pools)) or "none configured"
            raise error("invalid_campaign", f"no delivery pool {spec.pool!r} "
                        f"([[delivery.pools]]: {known})")
        if spec.from_address:
            try:
                check_address(spec.from_address)
            except ValueError as exc:
                raise error("invalid_campaign", str(exc)) from None
        for subject in [spec.subject, *_ab_subjects(spec)]:
            if spec.html or spec.text:
                self._template(spec, subject)

    @staticmethod
    def _template(spec: CampaignSpec, subject: str) -> CompiledTemplate:
        try:
            return CompiledTemplate(TemplateSource(subject, spec.html or None,
                                                   spec.text or None))
        except TemplateSyntaxProblem as exc:
            raise error("invalid_template", str(exc)) from None

    # --- the life cycle --------------------------------------------------------------
    def schedule(self, ref: str | int, at: str = "now", timezone: str | None = None, *,
                 force: bool = False) -> Scheduled:
        """Draft -> scheduled at ``at`` (``now`` or a local date and time in ``timezone``,
        default the campaign's).  Refused (:class:`CheckFailed`) when the check finds
        errors, unless ``force``."""
        campaign = self.get(ref)
        if campaign.state is not CampaignState.DRAFT:
            raise _state(campaign, "scheduled", "only a draft can be scheduled")
        try:
            send_at = parse_send_at(at, timezone or campaign.spec.timezone, self.clock())
        except InvalidCampaign as exc:
            raise error("invalid_schedule", str(exc)) from None
        checked = self.check(campaign.id)
        if not checked.ok and not force:
            raise CheckFailed(checked)
        moved = self._move(campaign, CampaignState.SCHEDULED, send_at=send_at)
        return Scheduled(moved, checked)

    def unschedule(self, ref: str | int) -> Campaign:
        return self._move(self.get(ref), CampaignState.DRAFT,
                          only=CampaignState.SCHEDULED, verb="unscheduled")

    def pause(self, ref: str | int) -> Campaign:
        return self._move(self.get(ref), CampaignState.PAUSED,
                          only=CampaignState.SENDING, verb="paused")

    def resume(self, ref: str | int) -> Campaign:
        return self._move(self.get(ref), CampaignState.SENDING,
                          only=CampaignState.PAUSED, verb="resumed")

    def cancel(self, ref: str | int) -> Campaign:
        return self._move(self.get(ref), CampaignState.CANCELLED, verb="cancelled")

    def _move(self, campaign: Campaign, to: CampaignState, *,
              only: CampaignState | None = None, verb: str = "",
              send_at: float | None = None) -> Campaign:
        if (only is not None and campaign.state is not only) or \
                not can_move(campaign.state, to):
            need = f"only a {only.value} campaign can be {verb}" if only else \
                f"a {campaign.state.value} campaign cannot be {verb or to.value}"
            raise _state(campaign, verb or to.value, need)
        try:
            return self.store.move(campaign.id, campaign.state, to, self.clock(),
                                   send_at=send_at)
        except CampaignConflict:
            raise _changed(campaign.id) from None

    # --- check, preview, test --------------------------------------------------------
    def check(self, ref: str | int, contact: str | None = None) -> CampaignCheck:
        campaign = self.get(ref)
        spec = campaign.spec
        found = _spec_findings(spec, self.settings.public_url, self.pools)
        for name in spec.lists:
            try:
                self.contacts.get_list(name)
            except ServiceError as exc:  # deleted since the campaign was written
                found.append(Finding(Severity.ERROR, "no-such-list", str(exc)))
        sample = self._sample(campaign, contact)
        found += sample.findings
        data = b""
        if spec.from_address and (spec.html or spec.text):
            built = self._build(campaign, sample.contact)
            if isinstance(built, RenderFailure):
                severity = Severity.ERROR if sample.chosen else Severity.WARNING
                found.append(Finding(severity, "render-failed",
                                     f"the template fails for {sample.contact.address}: "
                                     f"{built}"))
            else:
                data = built.message.data
            for n in range(len(_ab_subjects(spec))):
                variant = self._build(campaign, sample.contact, variant=n)
                if isinstance(variant, RenderFailure):
                    found.append(Finding(Severity.ERROR, "ab-subject-failed",
                                         f"A/B subject {n + 1} fails for "
                                         f"{sample.contact.address}: {variant}"))
        alignment = None
        if spec.from_address and self.alignment is not None:
            result = self.alignment(spec.from_address.rpartition("@")[2])
            alignment = result.alignment
            found += result.findings
        if data:
            found += check_message(data, unsubscribe_url=self._tracker(campaign)
                                   .unsubscribe_url(sample.contact.id),
                                   alignment=alignment).findings
        elif self.alignment is None:
            found.append(Finding(Severity.WARNING, "alignment-not-checked",
                                 "SPF, DKIM and DMARC alignment were not checked"))
        return CampaignCheck(campaign.id, sample.contact.address, CheckReport(tuple(found)))

    def preview(self, ref: str | int, contact: str | None = None) -> Preview:
        """The message for ``contact`` (default: the first confirmed member), links as
        written (not rewritten for tracking)."""
        campaign = self.get(ref)
        sample = self._sample(campaign, contact)
        built = self._render(campaign, sample.contact).message
        parsed = message_from_bytes(built.data, policy=default)
        assert isinstance(parsed, EmailMessage)
        html = parsed.get_body(("html",))
        text = parsed.get_body(("plain",))
        return Preview(campaign.id, sample.contact.address, str(parsed["Subject"] or ""),
                       html.get_content() if isinstance(html, EmailMessage) else None,
                       text.get_content() if isinstance(text, EmailMessage) else "",
                       built.data)

    def test_message(self, ref: str | int, to: str, contact: str | None = None
                     ) -> OutgoingMail:
        """One message to ``to`` with the name and attributes of ``contact`` (default:
        the first confirmed member), the subject marked ``[Test]``; its unsubscribe,
        tracking and bounce tokens name contact 0 (nobody), so the test recipient can
        unsubscribe no one and counts for no one."""
        campaign = self.get(ref)
        recipient = self.contacts.address(to)
        sample = self._sample(campaign, contact).contact
        marked = replace(campaign, spec=replace(campaign.spec,
                                                subject=TEST_PREFIX + campaign.spec.subject))
        built = self._render(marked, Contact(0, recipient, sample.name, sample.attributes))
        sender = built.sender
        return OutgoingMail(sender, recipient, built.message.data, campaign.spec.pool,
                            built.message.smtputf8 or not (sender + recipient).isascii())

    def _render(self, campaign: Campaign, contact: Contact) -> Composed:
        spec = campaign.spec
        if not spec.from_address:
            raise error("invalid_campaign", "the campaign has no From address")
        if not (spec.html or spec.text):
            raise error("invalid_campaign", "the campaign has neither an HTML nor a text body")
        built = self._build(campaign, contact)
        if isinstance(built, RenderFailure):
            raise error("render_failed", f"the template fails for {contact.address}: {built}")
        return built

    def _sample(self, campaign: Campaign, address: str | None) -> _Sample:
        if address:
            return _Sample(self.contacts.get(address), True)
        for name in campaign.spec.lists:
            try:
                members = self.contacts.members(name, status=MembershipStatus.CONFIRMED,
                                                limit=1)
            except ServiceError:  # the list is gone: check reports it
                continue
            if members:
                found = self.contacts.store.get_contact(members[0][1].address)
                if found is not None:
                    return _Sample(found, True)
        return _Sample(PLACEHOLDER, False, [Finding(
            Severity.WARNING, "no-sample-contact",
            f"no confirmed member to render for; rendered for {PLACEHOLDER.address} "
            "without attributes")])

    def _tracker(self, campaign: Campaign) -> CampaignTracker:
        return CampaignTracker(self.settings.public_url, campaign.id,
                               TokenSigner(self.settings.tracking_key), CampaignLinks(()))

    def _build(self, campaign: Campaign, contact: Contact, *, variant: int | None = None
               ) -> Composed | RenderFailure:
        """The message as the campaign engine builds it (bulk.md), links as written."""
        try:
            return build_one(self.store, campaign, contact, self.settings, variant=variant,
                             now=self.clock(), sample=True)
        except TemplateSyntaxProblem as exc:
            raise error("invalid_template", str(exc)) from None
        except AbSpecError as exc:
            raise error("invalid_campaign", str(exc)) from None

    # --- report ----------------------------------------------------------------------
    def report(self, ref: str | int) -> CampaignReport:
        return campaign_report(self.store, self.get(ref).id)


def _ab_subjects(spec: CampaignSpec) -> list[str]:
    ab = spec.extra.get(AB_KEY)
    if isinstance(ab, dict) and isinstance(ab.get("subjects"), list):
        return [s for s in ab["subjects"] if isinstance(s, str)]
    return []


def _spec_findings(spec: CampaignSpec, public_url: str, pools: frozenset[str]
                   ) -> list[Finding]:
    found: list[Finding] = []
    if not spec.from_address:
        found.append(Finding(Severity.ERROR, "no-from-address", "the campaign has no From "
                             "address"))
    if not spec.lists:
        found.append(Finding(Severity.ERROR, "no-lists", "the campaign names no list"))
    if not (spec.html or spec.text):
        found.append(Finding(Severity.ERROR, "no-body", "the campaign has neither an HTML "
                             "nor a text body"))
    elif not spec.text:
        found.append(Finding(Severity.WARNING, "text-from-html", "no text body written: the "
                             "text part is made from the HTML"))
    if spec.pool and spec.pool not in pools:
        found.append(Finding(Severity.ERROR, "no-such-pool", f"no delivery pool "
                             f"{spec.pool!r} in the configuration"))
    if not spec.pool:
        found.append(Finding(Severity.WARNING, "no-pool", "no dedicated pool: the campaign "
                             "shares the default delivery lane with personal mail"))
    if not public_url.startswith("https://"):
        found.append(Finding(Severity.ERROR, "public-url-not-https",
                             f"the public URL {public_url} is not https: "
                             "one-click unsubscribe (RFC 8058) needs an https link "
                             "(set http.public_url)"))
    return found


def _state(campaign: Campaign, verb: str, need: str) -> Exception:
    return error("campaign_state", f"campaign {campaign.id} is {campaign.state.value} and "
                 f"cannot be {verb}: {need}")


def _changed(campaign_id: int) -> Exception:
    return error("campaign_state", f"campaign {campaign_id} changed state meanwhile; "
                 "look again and retry")


async def submit_mail(ingest: Any, mail: OutgoingMail, *, client_ip: str = "127.0.0.1"
                      ) -> str:
    """Hand ``mail`` to ingest (``QueueIngest``); the queue id."""
    from dataclasses import replace

    from mailyard.envelope import made_here
    from mailyard.ingest.api import Origin, Submission

    envelope = replace(made_here(mail.sender, [mail.recipient], mail.content,
                                 smtputf8=mail.smtputf8), client_ip=client_ip)
    qid: str = await ingest.submit(Submission(Origin.CAMPAIGN, envelope, pool=mail.pool),
                                   mail.content)
    return qid
