"""Load for scripts/callgrind-http.sh: claims then approves items over HTTP/1.1 keep-alive.

Usage: callgrind-http.py ADDRESS FILLED_DIR FIRST COUNT CONNECTIONS
FILLED_DIR is a data directory written by `ledger bench http-fill`, with its report beside it as
FILLED_DIR.json; items FIRST .. FIRST+COUNT of its `bench-item-ids` are decided, spread over
CONNECTIONS threads, each with one connection and one reviewer's token. Any answer that is not
2xx stops the run with an error: the instruction count of a failing run would mean nothing.
"""

import http.client
import json
import sys
import threading
import uuid

address, filled, first, count, connections = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
tokens = json.load(open(filled + ".json"))["reviewer_tokens"]
raw = open(filled + "/bench-item-ids", "rb").read()
ids = [str(uuid.UUID(bytes=raw[i * 16:(i + 1) * 16])) for i in range(first, first + count)]
host, port = address.split(":")
failures = []


def decide(worker):
    connection = http.client.HTTPConnection(host, int(port))
    headers = {"Authorization": "Bearer " + tokens[worker % len(tokens)], "Content-Length": "0"}
    try:
        for index in range(worker, count, connections):
            for action in ("claim", "approve"):
                connection.request("POST", f"/v1/items/{ids[index]}/{action}", headers=headers)
                answer = connection.getresponse()
                answer.read()
                if not 200 <= answer.status < 300:
                    raise RuntimeError(f"{action} {ids[index]} answered {answer.status}")
    except Exception as error:  # reported below, after every thread stopped
        failures.append(error)


threads = [threading.Thread(target=decide, args=(worker,)) for worker in range(connections)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
if failures:
    sys.exit(f"the load failed: {failures[0]}")
