"""The platform's shared core: what the modules (sensors, demand_response, ingestion) import.

Nothing here imports a module, the live feed or the wiring around it (energy_dashboard's other
files); import-linter checks it (pyproject.toml). See docs/architecture.md, "Layout".
"""
