"""The live feed: the platform's WebSocket at /api/v1/ws, fed by the event bus alone (ADR 0010).

`receivers` turns the bus's topics (energy_dashboard/core/events.py) into messages and publishes them
on Redis pub/sub (`groups`); in each daphne process one `hub` reads them and hands them to its
`consumers`, which write them through the `transport` (auth stack, bounded outbox, flow control,
frames built once). `routing` is what the ASGI application mounts.

It imports no module (sensors, demand_response, ingestion) and no module imports it:
import-linter checks both (pyproject.toml).
"""
