"""The API against its own OpenAPI schema (make test-schema): Schemathesis generates requests
for every operation from /api/v1/schema/ and checks each answer, against the product as
`manage.py run` serves it (the `product` fixture), once as a viewer and once as an operator.

Bounded and repeatable: a fixed seed, SCHEMA_MAX_EXAMPLES cases per operation and phase
(the examples, coverage and fuzzing phases; the stateful phase needs OpenAPI links, which the
schema has none of), two workers (the product's two web workers). Every check runs (`--checks all`; system_tests/schema/
schemathesis.toml says which one is widened and why), and the run fails on any of them: a 5xx,
an undocumented status or Content-Type, a body the schema does not describe, a request the
schema forbids that is accepted.

Nothing is excluded: the schema holds every API operation (POST /auth/token/ included; the
throttle's and the lockout's 429 are documented). What it does not hold is not HTTP API: the
WebSocket (energy_dashboard/live/routing.py, tested in energy_dashboard/tests/live/), the pages, the admin, /health.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from system_tests.conftest import Product

CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = 20261204
MAX_EXAMPLES = int(os.environ.get("SCHEMA_MAX_EXAMPLES", "10"))
# The viewer's run first: it changes nothing, so it sees the demo building as `run` made it;
# the operator's run then creates, changes and deletes (the product is this run's own).
ROLES = ["viewer", "operator"]


def _operation_count(product: Product, token: str) -> int:
    request = urllib.request.Request(
        product.url + "/api/v1/schema/?format=json", headers={"Authorization": f"Token {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        schema = json.loads(response.read())
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return sum(1 for item in schema["paths"].values() for method in item if method in methods)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("role", ROLES)
def test_every_operation_answers_as_the_schema_says(product: Product, role: str, tmp_path: Path) -> None:
    token = product.token(role)
    operations = _operation_count(product, token)
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONFIG),
        "run",
        product.url + "/api/v1/schema/?format=json",
        "--header",
        f"Authorization: Token {token}",
        "--checks",
        "all",
        "--seed",
        str(SEED),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--phases",
        "examples,coverage,fuzzing",
        "--workers",
        "2",  # as many as the product's web workers
        "--request-timeout",
        "30",
        "--no-color",
    ]
    started = time.monotonic()
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=840, check=False)
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    cases = re.search(r"(\d+) generated", output)
    # Shown with -s or -rA (the figures of the run): cases, operations, seconds.
    print(
        f"schemathesis as {role}: {cases.group(1) if cases else '?'} cases over {operations} "
        f"operations in {elapsed:.0f} s (seed {SEED}, {MAX_EXAMPLES} per operation and phase)"
    )
    assert done.returncode == 0, f"schemathesis failed as {role}:\n{output[-20000:]}"
    # Every operation of the schema was tested, none skipped or filtered out.
    assert re.search(rf"Selected: {operations}/{operations}\s+Tested: {operations}\b", output), output[-3000:]
