"""Schemathesis hooks for the API fuzz run (loaded through SCHEMATHESIS_HOOKS by fuzz_api.py).

- Item ids and principal names in paths are random strings as generated, which only ever find
  404s; so most requests get a real id or name instead (those the driver seeded), and reach the
  handlers' deeper answers: 403, 409, 422 and the successes.
- The decision long-poll waits up to 120 s as documented; a fuzz run cannot afford that per
  request, so a wait longer than a second is cut to a second (malformed waits are left alone,
  to be answered 400).
- Schemathesis draws numbers near the documented bounds; a tenth of the bodies get one integer
  field set to an extreme value instead (the ends of i64 and u64), the values that overflow a
  handler's arithmetic (issue 9: a lease of 9223372036854775807 seconds panicked). The answer
  must still be a documented 4xx (or a success), never a dropped connection or a 5xx.
- A generated `callback_url` would make the server look its host up and, once the item is
  decided, POST to it: traffic leaving this machine. Every callback URL is pointed at the discard
  port of 127.0.0.1 instead (the server runs with `--callback-allow 127.0.0.1/32`), keeping the
  generated path and query, so the server's own URL checks still see odd paths.
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
# A generator of its own: Hypothesis seeds the global `random` afresh for every test case, so
# that draws from it repeat (and a 75% chance came out the same way every time).
CHOICES = random.Random(int(os.environ.get("LEDGER_FUZZ_SEED", "0")))
EXTREMES = [2**63 - 1, -(2**63), 2**64 - 1, 2**63, -(2**64)]
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


def _on_loopback(url):
    """The URL with its scheme and host replaced by http://127.0.0.1:9 (nothing listens there)."""
    match = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*(.*)$", url, re.S)
    rest = match.group(1) if match else ""
    return "http://127.0.0.1:9" + (rest if rest.startswith(("/", "?", "#")) else "/")


@schemathesis.hook
def before_call(context, case, kwargs):
    global _requests
    with _lock:
        _requests += 1
    parameters = case.path_parameters or {}
    if "id" in parameters and ITEMS and CHOICES.random() < 0.75:
        parameters["id"] = CHOICES.choice(ITEMS)
    if "name" in parameters and NAMES and CHOICES.random() < 0.6:
        parameters["name"] = CHOICES.choice(NAMES)
    if isinstance(case.body, dict) and CHOICES.random() < 0.1:
        numbers = [key for key, value in case.body.items() if isinstance(value, int) and not isinstance(value, bool)]
        if numbers:
            case.body[CHOICES.choice(numbers)] = CHOICES.choice(EXTREMES)
    if isinstance(case.body, dict) and isinstance(case.body.get("callback_url"), str):
        case.body["callback_url"] = _on_loopback(case.body["callback_url"])
    if case.query and "wait" in case.query:
        case.query["wait"] = _short_wait(case.query["wait"])


@atexit.register
def _write_count():
    if COUNT_FILE:
        with open(COUNT_FILE, "w") as out:
            out.write(str(_requests))
