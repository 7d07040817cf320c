"""The public face of the demand-response module: every write, and the reads others share.

Other modules, the views, the admin, the tasks, the OpenADR VEN and the tests use only the names
below (`from demand_response import services`; `services.<name>`). Each subject has its file:

- `devices.py`: flexible devices, checked against the sensors module;
- `flexibility.py`: what each device can shed now or over a window, and the commitment that
  covers a target from it;
- `invitations.py`: invitations from the grid, their answers and expiry, and what the OpenADR
  VEN has yet to relay;
- `policy.py`: the auto-response policy and its periodic run;
- `events.py`: events, from scheduling (the overlap rule) through dispatch to completion or
  cancellation, and the scheduler's tick;
- `measurement.py`: the baseline method of a programme and an event's delivery measurement;
- `summary.py`: the counts of the platform overview, and the lists the pages show;
- `demo.py`: the demo building's devices, a completed event and a pending invitation, made
  by the subjects above.

Two private files serve them: `_common.py` (the refusals, the database alias, the checks and
helpers every subject uses) and `_announce.py` (the `dr_events` messages). The files depend on
each other one way only: devices, flexibility, measurement <- events <- invitations <- policy.
Which devices an event takes (the overlap rule) is stated once, on the model:
`EventDevice.objects.overlapping` (and `holding_at` for now).

State changes are compare-and-swap updates (`filter(pk=..., status=old).update(status=new)`):
a transition happens once however many schedulers, workers or operators race for it, and each
one sends `dr_events` after its transaction commits. See docs/demand-response.md.
"""

from __future__ import annotations

from demand_response.models import OPEN_EVENT
from demand_response.services._common import Conflict, DRError, as_operator
from demand_response.services.demo import demo_load
from demand_response.services.devices import (
    device_check_references,
    device_create,
    device_delete,
    device_update,
)
from demand_response.services.events import (
    event_activate,
    event_cancel,
    event_complete,
    event_create,
    events_tick,
)
from demand_response.services.flexibility import DeviceFlexibility, Flexibility, flexibility_compute
from demand_response.services.invitations import (
    invitation_accept,
    invitation_create,
    invitation_decline,
    invitation_mark_reported,
    invitations_expire,
    invitations_unreported,
)
from demand_response.services.measurement import event_measure, programme_baseline
from demand_response.services.policy import (
    Decision,
    auto_response_run,
    policy_evaluate,
    policy_get,
    policy_update,
)
from demand_response.services.summary import event_get, events_list, invitations_list, overview

__all__ = [
    "OPEN_EVENT",
    "Conflict",
    "DRError",
    "Decision",
    "DeviceFlexibility",
    "Flexibility",
    "as_operator",
    "auto_response_run",
    "demo_load",
    "device_check_references",
    "device_create",
    "device_delete",
    "device_update",
    "event_activate",
    "event_cancel",
    "event_complete",
    "event_create",
    "event_get",
    "event_measure",
    "events_list",
    "events_tick",
    "flexibility_compute",
    "invitation_accept",
    "invitation_create",
    "invitation_decline",
    "invitation_mark_reported",
    "invitations_expire",
    "invitations_list",
    "invitations_unreported",
    "overview",
    "policy_evaluate",
    "policy_get",
    "policy_update",
    "programme_baseline",
]
