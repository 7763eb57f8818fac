"""``/api/v1/campaigns``: campaigns, their life cycle, check and report (scope
``campaigns``), thin adapters over :class:`mailyard.services.campaigns.Campaigns`.

A move the campaign's state does not allow is 409 ``campaign_state``; a schedule the
check refuses is 422 ``campaign_check_failed`` with the findings in the problem
document; the report is :meth:`CampaignReport.to_dict`, the same numbers as
``mailyard campaign report --json``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from mailyard.apikeys.api import Scope
from mailyard.bulk.campaigns.input import MAX_TEMPLATE, InvalidCampaign, input_from_mapping
from mailyard.bulk.campaigns.model import CampaignState
from mailyard.http.auth import context, require
from mailyard.http.context import HttpContext
from mailyard.http.problems import Problem, documented
from mailyard.services.campaigns import Campaigns, CheckFailed
from mailyard.services.errors import error

router = APIRouter(prefix="/api/v1/campaigns", tags=["campaigns"],
                   dependencies=[Depends(require(Scope.CAMPAIGNS))],
                   responses=documented(401, 403, 404, 409, 413, 422))
CampaignId = Annotated[int, Path(ge=1, le=(1 << 63) - 1, description="the campaign's id")]
Line = Annotated[str, Field(max_length=998)]


class AbSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subjects: list[Line] = Field(min_length=2, max_length=10)
    sample_percent: float = Field(20, ge=1, le=90)
    wait_hours: float = Field(4, gt=0, le=720)
    metric: Literal["opens", "clicks"] = "opens"


class CampaignSettings(BaseModel):
    """A campaign's settings; in a PATCH only the fields given change."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: str | None = Field(None, alias="from", max_length=600,
                              examples=["Example News <news@example.org>"])
    from_name: str | None = Field(None, max_length=256)
    reply_to: str | None = Field(None, max_length=320)
    subject: Line | None = Field(None, examples=["Hello {{ name }}"])
    html: str | None = Field(None, max_length=MAX_TEMPLATE, description="Jinja2 template")
    text: str | None = Field(None, max_length=MAX_TEMPLATE,
                             description="Jinja2 template; made from the HTML when empty")
    lists: list[Annotated[str, Field(max_length=64)]] | None = Field(None, max_length=50)
    segment: str | None = Field(None, max_length=4096,
                                examples=['plan = "pro" and opened within 30 days'])
    tracking: bool | None = None
    pool: str | None = Field(None, max_length=64)
    rate_per_minute: int | None = Field(None, ge=0, le=1_000_000)
    domain_caps: dict[str, int] | None = Field(None, examples=[{"gmail.com": 300}])
    timezone: str | None = Field(None, max_length=64, examples=["Europe/Berlin"])
    tags: list[Annotated[str, Field(max_length=64)]] | None = Field(None, max_length=20)
    ab: AbSettings | Annotated[dict[str, Any], Field(max_length=0)] | None = Field(
        None, description="an A/B test of subject lines; {} switches it off")


class CampaignIn(CampaignSettings):
    name: str = Field(min_length=1, max_length=100, examples=["December news"])


class ScheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    at: str = Field("now", max_length=64, examples=["2026-12-24 09:00", "now"])
    timezone: str | None = Field(None, max_length=64, examples=["Europe/Berlin"],
                                 description="the time zone of `at` (default: the "
                                             "campaign's)")
    force: bool = Field(False, description="schedule despite errors found by the check")


class TestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str = Field(max_length=320)
    contact: str | None = Field(None, max_length=320, description="render for this contact")


def _service(request: Request) -> Campaigns:
    campaigns = context(request).campaigns
    if campaigns is None:  # pragma: no cover - every worker builds one
        raise Problem("internal_error")
    return campaigns


def _input(body: CampaignSettings) -> Any:
    data = body.model_dump(exclude_unset=True, by_alias=True)
    if isinstance(body.ab, AbSettings):
        data["ab"] = body.ab.model_dump()
    try:
        return input_from_mapping(data)
    except InvalidCampaign as exc:
        raise error("invalid_campaign", str(exc)) from None


@router.get("")
def list_campaigns(request: Request, state: CampaignState | None = None
                   ) -> list[dict[str, Any]]:
    campaigns = _service(request)
    return [campaigns.describe(c) for c in campaigns.list(state)]


@router.post("", status_code=201)
def create_campaign(request: Request, body: CampaignIn) -> dict[str, Any]:
    campaigns = _service(request)
    return campaigns.describe(campaigns.create(_input(body)))


@router.get("/{campaign_id}")
def get_campaign(request: Request, campaign_id: CampaignId) -> dict[str, Any]:
    campaigns = _service(request)
    return campaigns.describe(campaigns.get(campaign_id))


@router.patch("/{campaign_id}")
def edit_campaign(request: Request, campaign_id: CampaignId, body: CampaignSettings
                  ) -> dict[str, Any]:
    """Only a draft can be changed (409 otherwise)."""
    campaigns = _service(request)
    return campaigns.describe(campaigns.edit(campaign_id, _input(body)))


@router.post("/{campaign_id}/schedule")
def schedule_campaign(request: Request, campaign_id: CampaignId, body: ScheduleIn
                      ) -> dict[str, Any]:
    """Check, then schedule; 422 ``campaign_check_failed`` (with ``findings``) when the
    check finds errors and ``force`` is false."""
    campaigns = _service(request)
    try:
        done = campaigns.schedule(campaign_id, body.at, body.timezone, force=body.force)
    except CheckFailed as exc:
        raise Problem("campaign_check_failed", str(exc), status=422,
                      title="The campaign check found errors",
                      extra={"findings": [f.to_dict() for f in exc.check.report.findings]}
                      ) from None
    return {"campaign": campaigns.describe(done.campaign),
            "check": done.check.to_dict() if done.check else None}


def _move(name: str) -> Any:
    def move(request: Request, campaign_id: CampaignId) -> dict[str, Any]:
        campaigns = _service(request)
        return campaigns.describe(getattr(campaigns, name)(campaign_id))
    move.__name__ = f"{name}_campaign"
    move.__doc__ = {"unschedule": "Scheduled -> draft.", "pause": "Sending -> paused.",
                    "resume": "Paused -> sending.",
                    "cancel": "Draft, scheduled, sending or paused -> cancelled."}[name]
    return move


for _name in ("unschedule", "pause", "resume", "cancel"):
    router.add_api_route(f"/{{campaign_id}}/{_name}", _move(_name), methods=["POST"],
                         name=f"{_name}_campaign")


@router.get("/{campaign_id}/check")
def check_campaign(request: Request, campaign_id: CampaignId,
                   contact: Annotated[str | None, Query(max_length=320)] = None
                   ) -> dict[str, Any]:
    """Errors and warnings of the sample message and the From domain's DNS."""
    return _service(request).check(campaign_id, contact).to_dict()


@router.get("/{campaign_id}/preview")
def preview_campaign(request: Request, campaign_id: CampaignId,
                     contact: Annotated[str | None, Query(max_length=320)] = None
                     ) -> dict[str, Any]:
    return _service(request).preview(campaign_id, contact).to_dict()


@router.post("/{campaign_id}/test", status_code=202)
async def test_campaign(request: Request, campaign_id: CampaignId, body: TestIn
                        ) -> dict[str, Any]:
    """Queue one test message (subject marked [Test]); 202 once it is in the queue."""
    ctx: HttpContext = context(request)
    mail = await run_in_threadpool(_service(request).test_message, campaign_id, body.to,
                                   body.contact)
    if ctx.campaign_mailer is None:  # pragma: no cover - every worker builds one
        raise Problem("internal_error")
    from mailyard.ingest.api import IngestRefused

    try:
        qid = await ctx.campaign_mailer(mail)
    except IngestRefused as exc:
        raise Problem("message_refused", str(exc.reply), status=422,
                      title="The message was refused") from None
    return {"queue_id": qid, "recipient": mail.recipient}


@router.get("/{campaign_id}/report")
def campaign_report(request: Request, campaign_id: CampaignId) -> dict[str, Any]:
    """The same numbers as ``mailyard campaign report --json`` and the HTML page."""
    return _service(request).report(campaign_id).to_dict()
