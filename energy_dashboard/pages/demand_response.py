"""The demand-response page: invitations to answer, the events' timeline, each device's
flexibility now, and each event's report (baseline against metered load, delivery against the
commitment, the baseline method).

Answers go through `demand_response.services`, the same calls and rules as the API's accept
and decline; the outcome is a message on the page the browser is sent back to (plain forms,
so that the page works without JavaScript). Viewers see no form, and a POST of theirs is
refused (403) and changes nothing.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_POST, require_safe

from demand_response import services as dr
from energy_dashboard.core import roles
from energy_dashboard.core.web import page_view, render_page

# What the page says about each baseline method (docs/dr-baselines.md has the whole story).
BASELINE_METHODS = {
    "caiso_10of10": {
        "label": "CAISO 10 of 10",
        "summary": "The average of the 10 most recent eligible weekdays (4 of 4 weekend or holiday "
        "days for a weekend event), at the event's clock times, adjusted by the ratio of the "
        "event day's load before the event to the same hours on those days (capped at ±20 %).",
    },
    "high_4of5": {
        "label": "PJM High 4 of 5",
        "summary": "Of the 5 most recent eligible weekdays (3 weekend or holiday days for a weekend "
        "event), the 4 (or 2) with the highest load in the event window, averaged, plus the "
        "difference between the event day's load before the event and those days' (in kW).",
    },
}
# The recent events and answered invitations the page lists (the API pages through them all).
RECENT_EVENTS = 30
RECENT_ANSWERS = 10
# A decline's reason is free text; this bounds what a form may send.
REASON_MAX_CHARS = 500


def baseline_method(code: str) -> dict[str, str]:
    """The label and one-paragraph summary of a baseline method (its code when unknown)."""
    return {"code": code, **BASELINE_METHODS.get(code, {"label": code, "summary": ""})}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _event_row(event: Any) -> dict[str, Any]:
    return {
        "id": event.pk,
        "name": event.name or f"event {event.pk}",
        "status": event.status,
        "start": _iso(event.start),
        "end": _iso(event.end),
        "target_kw": event.target_kw,
        "dispatched_kw": event.dispatched_kw,
        "measured_kw": event.measured_kw,
    }


def _refused(request: HttpRequest) -> HttpResponse:
    return render_page(
        request,
        "pages/error.html",
        title="Not allowed",
        section="demand_response",
        context={
            "heading": "Not allowed",
            "detail": "Only operators answer invitations. Your account is a viewer's; nothing was changed.",
        },
        status=403,
    )


@require_safe
@page_view
def demand_response(request: HttpRequest) -> HttpResponse:
    """Pending invitations (answered here by operators), events, flexibility now."""
    pending = dr.invitations_list(status="pending")
    answered = sorted(
        (i for i in dr.invitations_list(limit=RECENT_ANSWERS + len(pending)) if i.status != "pending"),
        key=lambda i: (i.answered_at is not None, i.answered_at),
        reverse=True,
    )
    events = dr.events_list(limit=RECENT_EVENTS)
    flexibility = dr.flexibility_compute().as_dict()
    return render_page(
        request,
        "pages/demand_response.html",
        title="Demand response",
        section="demand_response",
        script="demand_response",
        live=True,
        page={
            "events": [_event_row(e) for e in events],
            "invitations": [
                {"id": i.pk, "start": _iso(i.start), "end": _iso(i.end), "reduction_kw": i.reduction_kw}
                for i in pending
            ],
        },
        context={
            "pending": pending,
            "answered": answered[:RECENT_ANSWERS],
            "events": events,
            "flexibility": flexibility,
            "reason_max": REASON_MAX_CHARS,
        },
    )


def _answer(request: HttpRequest, invitation_id: int, accept: bool) -> HttpResponse:
    if not roles.can_operate(request.user):
        return _refused(request)
    reason = request.POST.get("reason", "").strip()
    back = HttpResponseRedirect(reverse("page-demand-response") + f"#invitation-{invitation_id}")
    if len(reason) > REASON_MAX_CHARS:
        messages.error(
            request, f"Invitation {invitation_id}: the reason is longer than {REASON_MAX_CHARS} characters."
        )
        return back
    who = dr.as_operator(request.user)
    try:
        if accept:
            done = dr.invitation_accept(invitation=invitation_id, answered_by=who, reason=reason)
        else:
            done = dr.invitation_decline(invitation=invitation_id, answered_by=who, reason=reason)
    except dr.DRError as exc:  # Conflict included: answered meanwhile, deadline passed
        verb = "accepted" if accept else "declined"
        messages.error(request, f"Invitation {invitation_id} was not {verb}: {exc}")
        return back
    if accept:
        messages.success(
            request,
            f"Invitation {done.pk} accepted: {done.committed_kw:.1f} of {done.reduction_kw:.1f} kW committed "
            f"({done.reason}).",
        )
    else:
        messages.success(request, f"Invitation {done.pk} declined: {done.reason}.")
    return back


@require_POST
@page_view
def invitation_accept(request: HttpRequest, invitation_id: int) -> HttpResponse:
    """An operator accepts (an optional reason); the service commits the devices."""
    return _answer(request, invitation_id, accept=True)


@require_POST
@page_view
def invitation_decline(request: HttpRequest, invitation_id: int) -> HttpResponse:
    """An operator declines, with a reason (the service refuses an empty one)."""
    return _answer(request, invitation_id, accept=False)


def _report(event: Any) -> dict[str, Any]:
    """The event's stored measurement, shaped for the page (ok False with a reason when none)."""
    performance = event.performance
    if performance is None:
        return {"ok": False, "reason": f"not measured yet: the event is {event.status}", "intervals": []}
    report = dict(performance)
    report.setdefault("intervals", [])
    share = report.get("share_of_commitment")
    report["share_pct"] = None if share is None else share * 100
    return report


@require_safe
@page_view
def event_report(request: HttpRequest, event_id: int) -> HttpResponse:
    """One event: its devices' parts, baseline and metered load, delivery against commitment."""
    event = dr.event_get(event_id=event_id)
    if event is None:
        raise Http404(f"No event {event_id}.")
    report = _report(event)
    return render_page(
        request,
        "pages/demand_response_event.html",
        title=f"Event {event.pk}",
        section="demand_response",
        script="demand_response",
        live=True,
        page={
            "event": _event_row(event),
            "intervals": report["intervals"],
            "committedKw": event.target_kw,
        },
        context={
            "event": event,
            "report": report,
            "method": baseline_method(report.get("method") or event.baseline_method),
            "dispatches": list(event.dispatches.all()),
        },
    )
