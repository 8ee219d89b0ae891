"""Schemathesis hooks for the API fuzz run (loaded through SCHEMATHESIS_HOOKS by fuzz_api.py).

- Item ids and principal names in paths are random strings as generated, which only ever find
  404s; so most requests get a real id or name instead (those the driver seeded), and reach the
  handlers' deeper answers: 403, 409, 422 and the successes.
- The decision long-poll waits up to 120 s as documented; a fuzz run cannot afford that per
  request, so a wait longer than a second is cut to a second (malformed waits are left alone,
  to be answered 400).
- Every request sent is counted, for the figures the driver prints.
"""

import atexit
import os
import random
import re
import threading

import schemathesis

ITEMS = [item for item in os.environ.get("LEDGER_FUZZ_ITEMS", "").split(",") if item]
NAMES = [name for name in os.environ.get("LEDGER_FUZZ_NAMES", "").split(",") if name]
COUNT_FILE = os.environ.get("LEDGER_FUZZ_COUNT_FILE")
WAIT = re.compile(r"^\s*(\d+)\s*(ms|s|m)?\s*$")

_lock = threading.Lock()
_requests = 0


def _short_wait(value):
    match = WAIT.match(value) if isinstance(value, str) else None
    if not match:
        return value
    amount, unit = int(match.group(1)), match.group(2) or "s"
    seconds = {"ms": amount / 1000, "s": amount, "m": amount * 60}[unit]
    return value if seconds <= 1 else "1s"


@schemathesis.hook
def before_call(context, case, kwargs):
    global _requests
    with _lock:
        _requests += 1
    parameters = case.path_parameters or {}
    if "id" in parameters and ITEMS and random.random() < 0.75:
        parameters["id"] = random.choice(ITEMS)
    if "name" in parameters and NAMES and random.random() < 0.6:
        parameters["name"] = random.choice(NAMES)
    if case.query and "wait" in case.query:
        case.query["wait"] = _short_wait(case.query["wait"])


@atexit.register
def _write_count():
    if COUNT_FILE:
        with open(COUNT_FILE, "w") as out:
            out.write(str(_requests))
