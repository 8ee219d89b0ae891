#!/usr/bin/env python3
"""Verifies an approval-ledger compliance bundle offline, without the ledger's code.

Usage: python3 tools/verify_bundle.py BUNDLE.json [--key VERIFIER_KEY]
Prints "ok: ..." (exit 0) or "NOT VERIFIED: <what>" (exit 1). Needs the `cryptography` package.

Checks, stopping at the first failure: (1) the verifier key (C2SP signed-note form; without
--key, the bundle's own, with a warning); (2) the checkpoint note's Ed25519 signature by it;
(3) the signed C2SP tlog-checkpoint against the tree size and root shown; (4) each event's
SHA-256, leaf hash and RFC 9162 inclusion proof up to the signed root; (5) the fields shown
beside each event's canonical bytes against the bytes; (6) the summary against the events.
"""

import argparse
import base64
import hashlib
import io
import json
import re
import sys
import uuid
from datetime import datetime, timezone

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT = "approval-ledger-bundle/1"
NAME = re.compile(r"[^\s+]+")  # a key name: non-empty, no spaces, no '+'
TIME = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?Z", re.ASCII)

class Fail(Exception):
    """What did not verify (printed after "NOT VERIFIED: ")."""

def need(condition, problem):
    if not condition:
        raise Fail(problem)

def sha256(*parts):
    return hashlib.sha256(b"".join(parts)).digest()

def b64(text, what):
    try:
        return base64.b64decode(text, validate=True)
    except (TypeError, ValueError):
        raise Fail(f"{what} is not base64") from None

def same(a, b):
    """JSON values equal, type for type (true is not 1, 1 is not 1.0)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)

def open_checkpoint(key, checkpoint):
    """Steps 1-3: the signed origin, tree size and root, once the note's signature verifies."""
    name, _, rest = key.strip().partition("+")
    key_id, _, key64 = rest.partition("+")
    public = b64(key64, "verifier key: the key")
    need(NAME.fullmatch(name) and re.fullmatch("[0-9a-fA-F]{8}", key_id) and len(public) == 33
         and public[0] == 1, "verifier key: not <name>+<key id>+<base64 of 0x01 || Ed25519 key>")
    key_id = bytes.fromhex(key_id)  # the first 4 bytes of SHA-256(name, newline, key)
    need(sha256(name.encode(), b"\n", public)[:4] == key_id, "verifier key: wrong key id")
    # The note: text, a blank line, then lines "— <name> <base64 of key id || signature>".
    note = checkpoint.get("note")
    need(isinstance(note, str) and "\n\n" in note and note.endswith("\n"),
         "checkpoint: the note is not a signed note")
    split = note.rfind("\n\n")
    text, signed = note[: split + 1], False
    for line in note[split + 2 : -1].split("\n"):
        need(line.startswith("\u2014 "), f"checkpoint: not a signature line: {line!r}")
        signer, _, signature = line[2:].partition(" ")
        signature = b64(signature, "checkpoint: a signature")
        if signer == name and signature[:4] == key_id:
            try:
                Ed25519PublicKey.from_public_bytes(public[1:]).verify(signature[4:], text.encode())
            except InvalidSignature:
                raise Fail(f"checkpoint: the signature by {name} does not verify") from None
            signed = True
    need(signed, f"checkpoint: the note carries no signature by the key {key.strip()}")
    # The text: origin, tree size, base64 root hash, then optional non-empty extension lines.
    lines = text[:-1].split("\n")
    need(len(lines) >= 3 and all(lines), "checkpoint: the note's text is not a checkpoint")
    need(lines[0] == name, f"checkpoint: the origin {lines[0]!r} is not the key's name {name!r}")
    need(re.fullmatch(r"0|[1-9][0-9]{0,19}", lines[1], re.ASCII) and int(lines[1]) < 2**64,
         "checkpoint: the tree size is not a decimal number")
    tree_size, root = int(lines[1]), b64(lines[2], "checkpoint: the root hash")
    need(len(root) == 32, "checkpoint: the root hash is not 32 bytes")
    need(same(checkpoint.get("tree_size"), tree_size) and checkpoint.get("root_hash") == root.hex(),
         "checkpoint: the tree_size and root_hash shown are not the ones signed")
    return lines[0], tree_size, root

def check_inclusion(leaf, fn, tree_size, proof, root):
    """Step 4: RFC 9162 section 2.1.3.2: `proof` leads from leaf number `fn` to `root`."""
    need(len(proof) <= 64, "the inclusion proof has more than 64 hashes")
    sn, r = tree_size - 1, leaf
    for p in proof:
        need(sn != 0, "the inclusion proof is too long")
        if fn % 2 == 1 or fn == sn:
            r = sha256(b"\x01", p, r)
            while fn != 0 and fn % 2 == 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = sha256(b"\x01", r, p)
        fn, sn = fn >> 1, sn >> 1
    need(sn == 0, "the inclusion proof is too short")
    need(r == root, "the inclusion proof does not lead to the checkpoint's root")

def decode_payload(payload):
    """Step 5: canonical bytes' fields (docs/ledger-format.md), and their time in µs."""
    reader = io.BytesIO(payload)

    def take(n):
        need(len(chunk := reader.read(n)) == n, "canonical bytes: truncated")
        return chunk
    def num(n, signed=False):  # integers are big-endian
        return int.from_bytes(take(n), "big", signed=signed)
    def text(length_size):  # a length, then UTF-8
        return take(num(length_size)).decode("utf-8")
    def uuid_or_none(raw):  # 16 zero bytes: none
        return str(uuid.UUID(bytes=raw)) if any(raw) else None
    need(take(1) == b"\x01", "canonical bytes: unknown format")
    fields = {"id": str(uuid.UUID(bytes=take(16))), "stream": text(2), "version": num(8),
              "type": text(2), "schema_version": num(4)}
    micros = num(8, signed=True)
    fields.update(actor=text(2), causation_id=uuid_or_none(take(16)),
                  correlation_id=uuid_or_none(take(16)))
    take(32)  # the previous event hash in the stream: not shown in a bundle
    fields["data"] = json.loads(text(4))
    need(reader.read() == b"", "canonical bytes: trailing bytes")
    return fields, micros

def check_event(entry, tree_size, root):
    """Steps 4 and 5 for one bundle entry: its fields, decoded from its canonical bytes."""
    event_hash = sha256(canonical := b64(entry.get("canonical"), "the canonical bytes"))
    need(entry.get("event_hash") == event_hash.hex(), "event_hash is not the SHA-256 of the bytes")
    leaf = sha256(b"\x00", event_hash)
    need(entry.get("leaf_hash") == leaf.hex(), "leaf_hash is not SHA-256(0x00 || event hash)")
    position, proof = entry.get("position"), entry.get("inclusion_proof")
    need(type(position) is int and 0 <= position < tree_size,
         f"position {position!r} is not in the tree of {tree_size} leaves")
    need(isinstance(proof, list) and all(re.fullmatch("[0-9a-fA-F]{64}", str(p)) for p in proof),
         "the inclusion proof is not a list of hashes (64 hex digits)")
    check_inclusion(leaf, position, tree_size, [bytes.fromhex(p) for p in proof], root)
    try:
        fields, micros = decode_payload(canonical)
    except ValueError as error:  # not UTF-8, or data not JSON
        raise Fail(f"the canonical bytes do not decode: {error}") from None
    for name, value in fields.items():
        need(same(entry.get(name), value), f"the {name} shown is not the one the bytes hold")
    # recorded_at: the RFC 3339 text shown, in nanoseconds, against the bytes' microseconds.
    match = TIME.fullmatch(str(entry.get("recorded_at")))
    need(match, "recorded_at is not an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SS[.fff]Z)")
    *date_time, fraction = match.groups()
    seconds = int(datetime(*map(int, date_time), tzinfo=timezone.utc).timestamp())
    nanos = seconds * 10**9 + int((fraction or "0").ljust(9, "0"))
    need(nanos == micros * 1000, "the recorded_at shown is not the one the bytes hold")
    return dict(fields, position=position)

def summarize(events):
    """Step 6: what the events say: an item's decision, a range's decisions."""
    item = dict(item_id=None, queue=None, kind=None, submitted_by=None, ai_output=None,
                outcome=None, decided_by=[], decided_at=None, final_output=None, withdrawn=False)
    decisions, has_ai = [], False  # has_ai: an `output` given, even null (as the ledger counts)
    for event in events:
        data = event["data"] if isinstance(event["data"], dict) else {}
        text = {key: value for key, value in data.items() if isinstance(value, str)}
        if event["type"] == "ItemSubmitted":
            item.update({k: text.get(k) for k in ("item_id", "queue", "kind", "submitted_by")})
        if event["type"] in ("ItemSubmitted", "OutputRevised"):
            item["ai_output"], has_ai = data.get("output"), "output" in data
        elif event["type"] == "ItemWithdrawn":
            item["withdrawn"] = True
        elif event["type"] == "ItemDecided":
            names = data.get("decided_by") if isinstance(data.get("decided_by"), list) else []
            item.update(outcome=text.get("outcome"), decided_at=text.get("decided_at"),
                        decided_by=[name for name in names if isinstance(name, str)],
                        final_output=data.get("final_output"))
            decisions.append({"item_id": event["stream"].removeprefix("item-"),
                              "position": event["position"],
                              **{k: data.get(k) for k in ("outcome", "decided_by", "decided_at")}})
    final = item["final_output"]
    item["edited"] = has_ai and final is not None and not same(item["ai_output"], final)
    return item, decisions

def check_diff(diff, before, after):
    """edit_diff (a unified diff of the outputs as JSON with 2-space indents and sorted keys),
    applied to the AI's output, must give the final output: whatever made it, it tells true."""
    pretty = lambda value: json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)
    old, new, out, at = pretty(before).split("\n"), pretty(after).split("\n"), [], 0
    lines = diff.split("\n")
    need(lines[:2] == ["--- ai_output", "+++ final_output"] and lines[-1] == "",
         "summary: decision edit_diff: not a unified diff of ai_output and final_output")
    for line in lines[2:-1]:
        if line.startswith("@@ "):
            start = int(re.match(r"@@ -(\d+)", line).group(1)) - 1
            need(start >= at, "summary: decision edit_diff: hunks out of order")
            out, at = out + old[at:start], start
        elif line[:1] in (" ", "-"):
            need(at < len(old) and old[at] == line[1:], "summary: decision edit_diff: does not "
                 "apply to ai_output")
            out, at = out + ([line[1:]] if line[0] == " " else []), at + 1
        else:
            need(line[:1] == "+", "summary: decision edit_diff: not a unified diff")
            out.append(line[1:])
    need(out + old[at:] == new, "summary: decision edit_diff: does not turn ai_output into "
         "final_output")

def verify(bundle, key):
    """All six steps: the number of events, the tree size and the origin."""
    need(bundle.get("format") == FORMAT, f"not a bundle of format {FORMAT}")
    origin, tree_size, root = open_checkpoint(key, bundle.get("checkpoint"))
    events = []
    for index, entry in enumerate(bundle.get("events")):
        try:
            events.append(check_event(entry, tree_size, root))
        except (Fail, AttributeError, TypeError, ValueError) as problem:
            where = entry.get("position") if isinstance(entry, dict) else None
            raise Fail(f"event {index} (position {where}): {problem}") from None
    item, decisions = summarize(events)
    summary = bundle.get("summary")
    if summary.get("scope") == "item":
        shown = dict(summary.get("decision"))
        diff = shown.pop("edit_diff", 0)  # (0: neither a diff nor null)
        need(shown.keys() == item.keys(), "summary: the decision's keys are not a decision's")
        wrong = sorted(key for key in item if not same(shown[key], item[key]))
        need(not wrong, f"summary: decision {', '.join(wrong)}: not what the events say")
        need(isinstance(diff, str) if item["edited"] else diff is None,
             "summary: decision edit_diff: not null exactly when the output was not edited")
        if item["edited"]:
            check_diff(diff, item["ai_output"], item["final_output"])
    else:
        need(summary.get("scope") == "range", f"summary: unknown scope {summary.get('scope')!r}")
        need(all(isinstance(summary.get(k), str) for k in ("from", "to")), "summary: no from/to")
        need(same(summary.get("events"), len(events)), "summary: events: not the number of events")
        need(same(summary.get("decisions"), decisions), "summary: decisions: not the events'")
    return len(events), tree_size, origin

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundle", help="the bundle (JSON) that `ledger audit export` wrote")
    parser.add_argument("--key", help="the verifier key the ledger's operator published")
    args = parser.parse_args()
    try:
        with open(args.bundle, encoding="utf-8") as file:
            bundle = json.load(file)
        key = args.key if args.key is not None else bundle.get("verifier_key")
        need(isinstance(key, str), "the bundle has no verifier_key and no --key was given")
        count, tree_size, origin = verify(bundle, key)
    except (Fail, OSError, AttributeError, TypeError, ValueError) as problem:
        print(f"NOT VERIFIED: {problem}")
        return 1
    print(f"ok: {count} events, each proven in the checkpoint of tree size {tree_size} of {origin}")
    if args.key is None:
        print(f"WARNING: checked with the key the bundle carries ({key.strip()}); compare it "
              "with the key the ledger's operator published, or pass --key")
    return 0

if __name__ == "__main__":
    sys.exit(main())
