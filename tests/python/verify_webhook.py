#!/usr/bin/env python3
"""Verifies captured ledger callbacks with the published Standard Webhooks library.

Reads JSON from standard input:
    {"secret": "whsec_...", "deliveries": [{"name": ..., "headers": {...}, "body": "..."}]}
and prints one JSON object naming each delivery's outcome: "verified", or "rejected: <why>" as
`standardwebhooks.Webhook(secret).verify(body, headers)` said it. The library, not this script,
decides: it checks the signature over "{webhook-id}.{webhook-timestamp}.{body}" and refuses
timestamps more than five minutes from now (a replayed delivery).
"""

import json
import sys

from standardwebhooks import Webhook, WebhookVerificationError


def main() -> int:
    request = json.load(sys.stdin)
    webhook = Webhook(request["secret"])
    outcomes = {}
    for delivery in request["deliveries"]:
        try:
            webhook.verify(delivery["body"], delivery["headers"])
            outcomes[delivery["name"]] = "verified"
        except WebhookVerificationError as error:
            outcomes[delivery["name"]] = f"rejected: {error}"
    json.dump(outcomes, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
