#!/usr/bin/env python3
"""Independent reader and verifier for the ledger's on-disk log (format version 1).

Written from docs/ledger-format.md alone, with the Python 3.11 standard library only.

    read_ledger.py DATA_DIR           verify; print one JSON summary object
    read_ledger.py --dump DATA_DIR    print every event as one JSON line
    read_ledger.py --self-test        check the spec's worked example and a set of
                                      hand-built logs (intact, damaged, crash tails)

Exit status: 0 intact (a crash tail is only a note), 1 damaged, 2 usage or I/O error.

What is checked ("What a verifier checks" in the spec, same numbering), stopping at the first
failure:
  1. segment file names `segment-<20 digits>.log`; header magic "LEDGSEG1"; the header's first
     position equals the name's number and continues where the previous segment ended (the first
     segment starts at 0); the header's "chain before" equals the chain hash so far (zero at 0);
  2. every record starts with "LREC", carries the next expected position, and declares a payload
     length of at most 16,781,312 bytes;
  3. event hash == SHA-256(payload);
  4. chain hash == SHA-256(previous chain hash || u64 position || event hash);
  5. each payload decodes exactly: format byte 1, stream / type / actor 1..1024 bytes of UTF-8,
     data at most 16 MiB of UTF-8 that parses as JSON (RFC 8259: NaN / Infinity are rejected),
     no byte after the data;
  6. per stream: versions 0, 1, 2, ... in global order, and previous hash == the event hash of
     the stream's previous event (zero for version 0);
  7. no event id appears twice.

The end of the LAST segment ("Preallocated space" and "The tail after a crash" in the spec):
  * Preallocated space: a run of zero bytes that starts exactly at a record boundary and reaches
    the end of the last segment is the end of the log. Nothing is reported ("incomplete_tail"
    stays null). In any other segment it is damage.
  * Torn tail: take the first record of the last segment that does not verify (checks 2 to 7; a
    header cut short counts as not verifying). It ends the log, reported in "incomplete_tail"
    instead of as damage, when
      (a) the file ends inside that record (the header is cut short, or offset + 80 + declared
          payload length runs past the end of the file) and its header, as far as present,
          starts with "LREC" (or as much of it as there is) and, if the 8-byte position field is
          present, holds the expected position; or
      (b) the file ends in a (non-empty) run of zero bytes that begins before the end of that
          record (its offset + 80 + declared payload length; past the end of the file when the
          length field itself is missing), so that the record's own last byte is zero.
    Anything else that does not verify is damage.
  * Torn segment: a last segment, named where the next segment is expected, that is shorter than
    its 48-byte header and starts with as much of "LEDGSEG1" as it has, or that is all zero
    bytes (of any length, including none), held no record: "incomplete_tail" note, not damage.
"""

import argparse
import hashlib
import json
import os
import struct
import sys
import uuid

# ---------------------------------------------------------------------------------------------
# Layout constants (all integers big-endian).
# ---------------------------------------------------------------------------------------------

SEGMENT_MAGIC = b"LEDGSEG1"
RECORD_MAGIC = b"LREC"
# Segment header: magic (8), first position u64, chain before (32).
SEG_HEADER = struct.Struct(">8sQ32s")
# Record header: magic (4), payload length u32, position u64, event hash (32), chain hash (32).
REC_HEADER = struct.Struct(">4sIQ32s32s")
POS_U64 = struct.Struct(">Q")

SEGMENT_PREFIX, SEGMENT_SUFFIX, SEGMENT_DIGITS = "segment-", ".log", 20
U64_MAX = (1 << 64) - 1
PAYLOAD_FORMAT = 1
ZERO32 = bytes(32)
ZERO16 = bytes(16)

MAX_NAME = 1024                  # stream names, types and actors: 1..1024 bytes
MAX_DATA = 16 * 1024 * 1024      # data: at most 16 MiB (read as 16 * 2**20 bytes)
# Check 2: a record's declared payload length is at most 16 MiB of data plus 4096 bytes for the
# other fields (16,781,312). (No payload that decodes is longer than 16,780,399 bytes; anything
# between the two fails check 5 instead.)
MAX_PAYLOAD = MAX_DATA + 4096

# Fixed-size runs of the payload, between the variable-length strings.
P_FORMAT_ID = struct.Struct(">B16s")           # format, event id
P_U16 = struct.Struct(">H")                    # a string's length
P_VERSION = struct.Struct(">Q")                # version
P_SCHEMA_TIME = struct.Struct(">Iq")           # schema version, recorded time (signed)
P_TAIL = struct.Struct(">16s16s32sI")          # causation, correlation, previous hash, D

# Python 3.11 refuses to convert integers of more than 4300 digits; JSON has no such limit.
if hasattr(sys, "set_int_max_str_digits"):
    sys.set_int_max_str_digits(0)


class Damage(Exception):
    """The log does not verify at this place (the first bad position)."""

    def __init__(self, segment, offset, position, reason):
        super().__init__(reason)
        self.segment, self.offset, self.position, self.reason = segment, offset, position, reason

    def as_json(self):
        return {"segment": self.segment, "offset": self.offset,
                "position": self.position, "reason": self.reason}


class PayloadError(Exception):
    """A payload that does not decode; turned into Damage by the caller."""


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def _text(mv, start, end, what):
    try:
        return str(mv[start:end], "utf-8")
    except UnicodeDecodeError as e:
        raise PayloadError(f"{what} is not valid UTF-8 ({e.reason} at byte {e.start})") from None


def decode_payload(mv):
    """Decode one payload (a memoryview). Returns a dict; raises PayloadError."""
    n = len(mv)
    p = 0

    def need(k, what):
        if p + k > n:
            raise PayloadError(f"payload ends inside {what} (needs {p + k} bytes, has {n})")

    def short_string(what):
        nonlocal p
        need(2, f"the length of {what}")
        (length,) = P_U16.unpack_from(mv, p)
        p += 2
        if not 1 <= length <= MAX_NAME:
            raise PayloadError(f"{what} is {length} bytes (must be 1..{MAX_NAME})")
        need(length, what)
        s = _text(mv, p, p + length, what)
        p += length
        return s

    need(P_FORMAT_ID.size, "format and event id")
    fmt, event_id = P_FORMAT_ID.unpack_from(mv, p)
    p += P_FORMAT_ID.size
    if fmt != PAYLOAD_FORMAT:
        raise PayloadError(f"payload format is {fmt}, not {PAYLOAD_FORMAT}")
    stream = short_string("stream name")
    need(8, "version")
    (version,) = P_VERSION.unpack_from(mv, p)
    p += 8
    event_type = short_string("event type")
    need(P_SCHEMA_TIME.size, "schema version and recorded time")
    schema, recorded = P_SCHEMA_TIME.unpack_from(mv, p)
    p += P_SCHEMA_TIME.size
    actor = short_string("actor")
    need(P_TAIL.size, "causation id, correlation id, previous hash and data length")
    causation, correlation, prev_hash, dlen = P_TAIL.unpack_from(mv, p)
    p += P_TAIL.size
    if dlen > MAX_DATA:
        raise PayloadError(f"data is {dlen} bytes (at most {MAX_DATA})")
    need(dlen, "data")
    if p + dlen != n:
        raise PayloadError(f"{n - p - dlen} trailing bytes after the data")
    data_text = _text(mv, p, n, "data")
    try:
        data = json.loads(data_text, parse_constant=_reject_constant)
    except RecursionError:
        raise PayloadError("data nests too deeply for this reader to parse") from None
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        raise PayloadError(f"data is not JSON ({e})") from None
    return {"id": event_id, "stream": stream, "version": version, "type": event_type,
            "schema_version": schema, "recorded_at_micros": recorded, "actor": actor,
            "causation_id": causation, "correlation_id": correlation, "prev_hash": prev_hash,
            "data_text": data_text, "data": data}


# ---------------------------------------------------------------------------------------------
# The verifier: fed segments in order, yields verified events, raises Damage.
# ---------------------------------------------------------------------------------------------

def parse_segment_name(name):
    """The first position encoded in a segment file name, or None if not a segment name."""
    if not (name.startswith(SEGMENT_PREFIX) and name.endswith(SEGMENT_SUFFIX)):
        return None
    digits = name[len(SEGMENT_PREFIX):-len(SEGMENT_SUFFIX)]
    if len(digits) != SEGMENT_DIGITS or not (digits.isascii() and digits.isdigit()):
        return None
    return int(digits)


def zero_run_start(buf):
    """Where the run of zero bytes that ends `buf` begins (len(buf) if its last byte is not zero,
    0 if it is all zero). Scans backwards in chunks, so a long preallocated run costs one pass."""
    end = len(buf)
    chunk = 1 << 16
    while end > 0:
        start = max(0, end - chunk)
        kept = len(buf[start:end].rstrip(b"\0"))
        if kept:
            return start + kept
        end = start
    return 0


class Unverified(Exception):
    """A record that does not verify (checks 2 to 7, or cut short). `end` is where the record
    ends by its header: offset + 80 + declared payload length (offset + 80 without a length)."""

    def __init__(self, reason, end):
        super().__init__(reason)
        self.reason, self.end = reason, end


class Verifier:
    def __init__(self):
        self.next_position = 0        # position the next record must carry
        self.chain = ZERO32           # chain hash of the last verified record
        self.streams = {}             # stream name -> [next version, last event hash]
        self.ids = set()              # every event id seen (16-byte keys)
        self.events = 0
        self.segments_read = 0
        self.tail = None              # description of a crash tail, if one ended the log

    def run(self, segments):
        """segments: list of (file name, loader) sorted by name number; loader() -> bytes.
        Yields one dict per verified event, in global order."""
        for index, (name, loader) in enumerate(segments):
            is_last = index == len(segments) - 1
            yield from self.segment(name, loader(), is_last)

    def segment(self, name, buf, is_last):
        mv = memoryview(buf)
        n = len(buf)
        pos = self.next_position
        self.segments_read += 1

        # --- check 1: the name, the header and the continuation -------------------------
        named = parse_segment_name(name)
        if named is None:
            raise Damage(name, 0, pos, "not a segment file name")
        if named != pos:
            what = "does not start at 0" if pos == 0 else f"should continue at {pos}"
            raise Damage(name, 0, pos, f"segment named for position {named}, but the log {what}")
        zstart = zero_run_start(buf)  # the trailing run of zero bytes begins here (n: none)

        # A torn segment: a crash while creating the last segment (it held no record).
        if is_last:
            if zstart == 0:
                why = "empty" if n == 0 else "all zero bytes"
            elif n < SEG_HEADER.size and buf[:len(SEGMENT_MAGIC)] == SEGMENT_MAGIC[:n]:
                why = f"shorter than its {SEG_HEADER.size}-byte header"
            else:
                why = None
            if why is not None:
                self.tail = f"{name}: {n} bytes (position {pos}) ignored as a torn segment: {why}"
                return

        if n < SEG_HEADER.size:
            raise Damage(name, 0, pos, f"segment header cut short ({n} of {SEG_HEADER.size} bytes)")
        magic, first, chain_before = SEG_HEADER.unpack_from(mv, 0)
        if magic != SEGMENT_MAGIC:
            raise Damage(name, 0, pos, f"bad segment magic {magic!r}")
        if first != named:
            raise Damage(name, 0, pos, f"header says first position {first}, name says {named}")
        if chain_before != self.chain:
            raise Damage(name, 0, pos, f"header chain before {chain_before.hex()} != chain "
                                       f"hash of the previous record {self.chain.hex()}")

        off = SEG_HEADER.size
        while off < n:
            rem = n - off
            pos = self.next_position

            # Zero bytes from this record boundary to the end of the file.
            if zstart <= off:
                if is_last:
                    return  # preallocated space: the end of the log; nothing to report
                raise Damage(name, off, pos,
                             f"{rem} zero bytes where a record should start (not the last segment)")

            try:
                ev, end = self.record(mv, off, n)
            except Unverified as u:
                why = self.torn(mv, off, n, pos, u, zstart) if is_last else None
                if why is None:
                    raise Damage(name, off, pos, u.reason) from None
                self.tail = (f"{name}: {rem} bytes from offset {off} (position {pos}) "
                             f"ignored as an incomplete tail: {why}")
                return
            yield ev
            off = end

    @staticmethod
    def torn(mv, off, n, pos, u, zstart):
        """Whether the first record of the last segment that does not verify (at `off`) is a
        torn tail ("The tail after a crash"); a description of why, or None (damage)."""
        # (a) the file ends inside the record, whose header (as far as present) starts with
        #     "LREC" and, if its position field is present, holds the expected position.
        if u.end > n:
            have = n - off
            k = min(len(RECORD_MAGIC), have)
            if mv[off:off + k] == RECORD_MAGIC[:k]:
                if have < 16:
                    return (f"record cut short inside its {REC_HEADER.size}-byte header "
                            f"({have} bytes present)")
                if POS_U64.unpack_from(mv, off + 8)[0] == pos:
                    if have < REC_HEADER.size:
                        return (f"record cut short inside its {REC_HEADER.size}-byte header "
                                f"({have} bytes present)")
                    return (f"record cut short: payload of {u.end - off - REC_HEADER.size} "
                            f"bytes, only {have - REC_HEADER.size} present")
        # (b) the file ends in a run of zero bytes that begins inside the record, before its end
        # (so the record's own last byte is zero, which a real record's never is).
        if zstart < n and zstart < u.end:
            return (f"{u.reason}, and the file ends in {n - zstart} zero bytes from offset "
                    f"{zstart}, inside the record (which ends at {u.end})")
        return None

    def record(self, mv, off, n):
        """Verify the record at `off` (checks 2 to 7) and commit it. Returns (event, end) or
        raises Unverified."""
        pos = self.next_position
        have = n - off

        # --- check 2: magic, position and length (and the header being all there) --------
        if have < REC_HEADER.size:
            k = min(len(RECORD_MAGIC), have)
            end = off + REC_HEADER.size
            if have >= 8:
                end += struct.unpack_from(">I", mv, off + 4)[0]
            if mv[off:off + k] != RECORD_MAGIC[:k]:
                raise Unverified(f"bad record magic {bytes(mv[off:off + k])!r}", end)
            if have >= 16 and POS_U64.unpack_from(mv, off + 8)[0] != pos:
                rpos = POS_U64.unpack_from(mv, off + 8)[0]
                raise Unverified(f"record carries position {rpos}, expected {pos}", end)
            raise Unverified(f"segment ends inside a record header ({have} of "
                             f"{REC_HEADER.size} bytes)", end)
        magic, plen, rpos, ev_hash, ch_hash = REC_HEADER.unpack_from(mv, off)
        start = off + REC_HEADER.size
        end = start + plen
        if magic != RECORD_MAGIC:
            raise Unverified(f"bad record magic {magic!r}", end)
        if rpos != pos:
            raise Unverified(f"record carries position {rpos}, expected {pos}", end)
        if plen > MAX_PAYLOAD:
            raise Unverified(f"payload length {plen} exceeds the limit {MAX_PAYLOAD}", end)
        if end > n:
            raise Unverified(f"payload of {plen} bytes runs past the end of the segment "
                             f"(only {n - start} present)", end)
        payload = mv[start:end]

        # --- check 3: event hash ----------------------------------------------------------
        if hashlib.sha256(payload).digest() != ev_hash:
            raise Unverified("event hash != SHA-256(payload)", end)

        # --- check 4: chain hash ----------------------------------------------------------
        expect_chain = hashlib.sha256(self.chain + POS_U64.pack(pos) + ev_hash).digest()
        if ch_hash != expect_chain:
            raise Unverified(f"chain hash {ch_hash.hex()} != expected {expect_chain.hex()}", end)

        # --- check 5: the payload decodes exactly -----------------------------------------
        try:
            ev = decode_payload(payload)
        except PayloadError as e:
            raise Unverified(str(e), end) from None

        # --- check 6: stream versions and previous-hash links -----------------------------
        state = self.streams.get(ev["stream"])
        want_version, want_prev = (0, ZERO32) if state is None else state
        if ev["version"] != want_version:
            raise Unverified(f"stream {ev['stream']!r}: version {ev['version']}, "
                             f"expected {want_version}", end)
        if ev["prev_hash"] != want_prev:
            raise Unverified(f"stream {ev['stream']!r} version {want_version}: previous hash "
                             f"{ev['prev_hash'].hex()} != {want_prev.hex()}", end)

        # --- check 7: unique ids ----------------------------------------------------------
        if ev["id"] in self.ids:
            raise Unverified(f"event id {uuid.UUID(bytes=ev['id'])} appears twice", end)

        # All good: commit this record's state.
        self.ids.add(ev["id"])
        self.streams[ev["stream"]] = [want_version + 1, ev_hash]
        self.chain = ch_hash
        self.next_position = pos + 1
        self.events += 1
        ev["position"], ev["hash"], ev["chain_hash"] = pos, ev_hash, ch_hash
        return ev, end


# ---------------------------------------------------------------------------------------------
# The data directory.
# ---------------------------------------------------------------------------------------------

def list_segments(data_dir):
    """(name, loader) for every segment file, in increasing order of the number in its name.
    Files whose names are not `segment-<20 digits>.log` are not part of the log (spec)."""
    found = []
    with os.scandir(data_dir) as it:
        for entry in it:
            first = parse_segment_name(entry.name)
            if first is not None:
                found.append((first, entry.name))
    found.sort()

    def loader(path):
        def load():
            with open(path, "rb") as f:
                return f.read()
        return load

    return [(name, loader(os.path.join(data_dir, name))) for _, name in found]


def uuid_or_null(b):
    return None if b == ZERO16 else str(uuid.UUID(bytes=b))


def dump_line(ev):
    """One event as a JSON line (UTF-8 bytes). `data` is spliced in as the stored JSON text, so
    numbers keep their exact spelling; the only edits keep the JSON value the same while keeping
    it on one line: CR/LF can only be whitespace between tokens in valid JSON (inside strings
    they must be escaped), and U+0085/U+2028/U+2029 can only occur inside strings."""
    head = json.dumps({
        "position": ev["position"], "stream": ev["stream"], "version": ev["version"],
        "id": str(uuid.UUID(bytes=ev["id"])), "type": ev["type"],
        "schema_version": ev["schema_version"], "recorded_at_micros": ev["recorded_at_micros"],
        "actor": ev["actor"], "causation_id": uuid_or_null(ev["causation_id"]),
        "correlation_id": uuid_or_null(ev["correlation_id"]),
        "prev_hash": ev["prev_hash"].hex(), "hash": ev["hash"].hex(),
        "chain_hash": ev["chain_hash"].hex(),
    })
    data = ev["data_text"]
    if "\n" in data or "\r" in data:
        data = data.replace("\r", " ").replace("\n", " ")
    if "\x85" in data or "\u2028" in data or "\u2029" in data:
        data = data.replace("\x85", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return (head[:-1] + ', "data": ' + data.strip() + "}\n").encode("utf-8")


def summary(verifier, n_segments, damage):
    return {"ok": damage is None, "events": verifier.events, "streams": len(verifier.streams),
            "segments": n_segments, "head_chain_hash": verifier.chain.hex(),
            "incomplete_tail": verifier.tail,
            "damage": None if damage is None else damage.as_json()}


def verify_segments(segments, dump_to=None):
    """Verify a list of (name, loader). Returns (summary dict, exit code)."""
    v = Verifier()
    damage = None
    try:
        for ev in v.run(segments):
            if dump_to is not None:
                dump_to(dump_line(ev))
    except Damage as d:
        damage = d
    return summary(v, len(segments), damage), (0 if damage is None else 1)


# ---------------------------------------------------------------------------------------------
# Test helpers: build payloads, records and segments from fields (used by --self-test).
# ---------------------------------------------------------------------------------------------

def build_payload(id, stream, version, type, schema_version, recorded_at_micros, actor,
                  causation_id=None, correlation_id=None, prev_hash=ZERO32, data="{}",
                  fmt=PAYLOAD_FORMAT, trailing=b""):
    """The canonical payload bytes. ids: uuid.UUID / str / None; strings: str or raw bytes."""
    def u(x):
        if x is None:
            return ZERO16
        return x.bytes if isinstance(x, uuid.UUID) else uuid.UUID(x).bytes

    def s(x, width):
        b = x if isinstance(x, bytes) else x.encode("utf-8")
        return struct.pack(">" + width, len(b)) + b

    return b"".join([
        struct.pack(">B", fmt), u(id), s(stream, "H"), struct.pack(">Q", version),
        s(type, "H"), struct.pack(">Iq", schema_version, recorded_at_micros), s(actor, "H"),
        u(causation_id), u(correlation_id), prev_hash, s(data, "I"), trailing])


def build_log(payloads, starts=(0,)):
    """Segments [(name, bytes)] holding `payloads` at positions 0..; `starts` lists the first
    position of each segment. Hashes and chain are computed correctly."""
    segs, chain = [], ZERO32
    bounds = list(starts) + [len(payloads)]
    for first, stop in zip(bounds, bounds[1:]):
        parts = [SEG_HEADER.pack(SEGMENT_MAGIC, first, chain)]
        for pos in range(first, stop):
            p = payloads[pos]
            h = hashlib.sha256(p).digest()
            chain = hashlib.sha256(chain + POS_U64.pack(pos) + h).digest()
            parts.append(REC_HEADER.pack(RECORD_MAGIC, len(p), pos, h, chain) + p)
        segs.append((f"{SEGMENT_PREFIX}{first:020d}{SEGMENT_SUFFIX}", b"".join(parts)))
    return segs


def build_events(specs):
    """specs: list of (stream, data) -> payloads with correct versions and previous hashes."""
    out, streams = [], {}
    for i, (stream, data) in enumerate(specs):
        version, prev = streams.get(stream, (0, ZERO32))
        p = build_payload(uuid.UUID(int=0x1000 + i), stream, version, "Thing", 1,
                          1764000000000000 + i, "alice", None,
                          uuid.UUID(int=42) if i % 2 else None, prev, data)
        streams[stream] = (version + 1, hashlib.sha256(p).digest())
        out.append(p)
    return out


def in_memory(segs):
    return [(name, (lambda b=b: b)) for name, b in segs]


def self_test():
    failures = []

    def check(label, cond, detail=""):
        print(("ok   " if cond else "FAIL ") + label + (f": {detail}" if detail and not cond else ""))
        if not cond:
            failures.append(label)

    # --- the worked example at the end of the spec ---------------------------------------
    p = build_payload(id="01234567-89ab-cdef-0123-456789abcdef", stream="item-1", version=2,
                      type="OutputApproved", schema_version=1,
                      recorded_at_micros=1764000000123456, actor="alice", causation_id=None,
                      correlation_id="00000000-0000-0000-0000-00000000002a",
                      prev_hash=b"\x07" * 32, data='{"reviewer":"alice","score":0.25}')
    h = hashlib.sha256(p).hexdigest()
    check("worked example: payload is 169 bytes", len(p) == 169, f"got {len(p)}")
    check("worked example: event hash", h ==
          "86293bdc9f8e3965519cf0427ef62c580d5c38b01a4cc41c3c84e594c333cbf6", f"got {h}")
    try:
        ev = decode_payload(memoryview(p))
        check("worked example: decodes back", ev["stream"] == "item-1" and ev["version"] == 2
              and ev["data"] == {"reviewer": "alice", "score": 0.25}
              and uuid_or_null(ev["correlation_id"]) == "00000000-0000-0000-0000-00000000002a")
    except PayloadError as e:
        check("worked example: decodes back", False, str(e))

    # --- hand-built logs ------------------------------------------------------------------
    specs = [("item-1", '{"a":1}'), ("item-2", '{"b":[1,2]}'), ("item-1", '{"c":"\u00e9"}'),
             ("item-3", '"x"'), ("item-2", "{\n  \"d\": 1e400\n}"), ("item-1", "null")]
    payloads = build_events(specs)
    good = build_log(payloads, starts=(0, 2, 5))

    def run(segs):
        return verify_segments(in_memory(segs))

    s, code = run(good)
    check("intact log verifies", code == 0 and s["events"] == 6 and s["streams"] == 3
          and s["segments"] == 3 and s["incomplete_tail"] is None, s)
    check("head chain hash is the last record's",
          s["head_chain_hash"] == good[-1][1][-len(payloads[-1]) - 32:-len(payloads[-1])].hex())
    lines = []
    verify_segments(in_memory(good), dump_to=lines.append)
    try:
        dumped = [json.loads(x) for x in lines]
        check("dump gives one JSON line per event", len(dumped) == 6
              and dumped[4]["data"] == {"d": float("inf")} and dumped[2]["data"] == {"c": "é"}
              and dumped[1]["correlation_id"] == "00000000-0000-0000-0000-00000000002a"
              and dumped[0]["causation_id"] is None and dumped[2]["version"] == 1
              and dumped[2]["prev_hash"] == dumped[0]["hash"])
    except ValueError as e:
        check("dump gives one JSON line per event", False, str(e))
    check("empty log (no segments) is intact", run([])[1] == 0)
    empty_last = good + [(f"segment-{6:020d}.log",
                          SEG_HEADER.pack(SEGMENT_MAGIC, 6, bytes.fromhex(s["head_chain_hash"])))]
    check("a last segment holding only its header is intact", run(empty_last)[0]["ok"])

    def modified(seg_index, fn):
        segs = list(good)
        name, b = segs[seg_index]
        segs[seg_index] = (name, fn(bytearray(b)))
        return [(n, bytes(b)) for n, b in segs]

    def damaged_at(label, segs, position, reason_part=""):
        s, code = run(segs)
        d = s["damage"]
        check(label, code == 1 and d is not None and d["position"] == position
              and reason_part in d["reason"], s)

    def flip(i):
        def f(b):
            b[i] ^= 0x01
            return b
        return f

    last_len = len(good[-1][1])
    rec0 = REC_HEADER.size + len(payloads[0])
    damaged_at("flipped payload byte", modified(0, flip(48 + 80 + 5)), 0, "event hash")
    damaged_at("flipped chain hash", modified(1, flip(48 + 60)), 2, "chain hash")
    damaged_at("flipped record magic", modified(1, flip(48)), 2, "magic")
    damaged_at("flipped position", modified(2, flip(48 + 15)), 5, "position")
    damaged_at("flipped segment magic", modified(1, flip(0)), 2, "segment magic")
    damaged_at("wrong chain before", modified(2, flip(20)), 5, "chain before")
    damaged_at("header first position disagrees with name", modified(1, flip(15)), 2, "name says")
    damaged_at("missing segment", [good[0], good[2]], 2, "continue at 2")
    damaged_at("log not starting at 0", good[1:], 0, "does not start at 0")
    damaged_at("missing record (gap)", modified(0, lambda b: b[:48 + rec0]), 1, "continue at 1")
    damaged_at("zero bytes in a non-last segment", modified(0, lambda b: b + bytes(10)), 2, "zero")
    damaged_at("cut short in a non-last segment", modified(0, lambda b: b[:-3]), 1, "runs past")
    damaged_at("flipped last byte of the final record",
               modified(2, flip(last_len - 1)), 5, "event hash")

    def tail_ok(label, segs, events, why):
        s, code = run(segs)
        check(label, code == 0 and s["events"] == events and s["incomplete_tail"] is not None
              and why in s["incomplete_tail"], s)

    def intact(label, segs, events):
        s, code = run(segs)
        check(label, code == 0 and s["events"] == events and s["incomplete_tail"] is None
              and s["damage"] is None, s)

    # Preallocated space: zeros from a record boundary to the end of the LAST segment.
    intact("zero bytes after the last record (preallocated space)",
           modified(2, lambda b: b + bytes(4096)), 6)
    intact("a last segment holding only its header, then zeros",
           empty_last[:-1] + [(empty_last[-1][0], empty_last[-1][1] + bytes(100))], 6)
    intact("a one-segment log: header then zeros",
           [(good[0][0], good[0][1][:48] + bytes(1000))], 0)

    # Torn tails: the first record of the last segment that does not verify.
    tail_ok("last record cut short in its payload", modified(2, lambda b: b[:-1]), 5, "cut short")
    tail_ok("last record cut short in its header", modified(2, lambda b: b[:-len(payloads[5]) - 30]),
            5, "header")
    tail_ok("last record cut short before its position field",
            modified(2, lambda b: b[:-len(payloads[5]) - 70]), 5, "header")
    tail_ok("final record zeroed from inside its payload",
            modified(2, lambda b: b[:-3] + bytes(3)), 5, "zero bytes")
    tail_ok("final record zeroed from inside its payload, then more zeros",
            modified(2, lambda b: b[:-3] + bytes(3 + 4096)), 5, "zero bytes")
    damaged_at("a record with a bad hash that ends in a non-zero byte, then zeros: damage",
               modified(2, lambda b: flip(last_len - 3)(b) + bytes(4096)), 5, "event hash")
    tail_ok("cut short in its payload, then zeros where the rest should be",
            modified(2, lambda b: b[:-2] + bytes(1)), 5, "cut short")
    tail_ok("partial header then end", modified(2, lambda b: b + b"LRE"), 6, "header")
    tail_ok("partial header then zeros (its zero position field is wrong: rule (b) applies)",
            modified(2, lambda b: b + b"LREC" + bytes(20)), 6, "zero bytes")
    tail_ok("a torn segment: only part of its header (LEDGSEG1 and 3 zero bytes)",
            good + [(f"segment-{6:020d}.log", SEGMENT_MAGIC + bytes(3))], 6, "torn segment")
    tail_ok("a torn segment: empty", good + [(f"segment-{6:020d}.log", b"")], 6, "torn segment")
    tail_ok("a torn segment: all zero bytes",
            good + [(f"segment-{6:020d}.log", bytes(4096))], 6, "torn segment")

    # ... and what is not one.
    damaged_at("garbage after the last record", modified(2, lambda b: b + b"garbage"), 6, "magic")
    damaged_at("a cut-short record whose position field is wrong",
               modified(2, lambda b: flip(last_len - len(payloads[5]) - 80 + 15)(b)[:-1]),
               5, "position")
    damaged_at("zeros inside the final record, then a non-zero byte at the very end",
               modified(2, lambda b: b[:-10] + bytes(9) + b[-1:]), 5, "event hash")
    damaged_at("zeros after the last record, then a non-zero byte at the very end",
               modified(2, lambda b: b + bytes(100) + b"}"), 6, "magic")
    damaged_at("a bad record, a good one, then zeros",
               [good[0], (good[1][0], bytes(flip(48 + 80 + 5)(bytearray(good[1][1]))) + bytes(64))],
               2, "event hash")
    damaged_at("zero bytes in a non-last segment (after a record)",
               modified(1, lambda b: b + bytes(4096)), 5, "zero")
    damaged_at("a torn segment that is not the last one",
               good + [(f"segment-{6:020d}.log", SEGMENT_MAGIC[:5]),
                       (f"segment-{7:020d}.log", b"")], 6, "cut short")
    damaged_at("a torn segment where the next segment is not expected",
               good + [(f"segment-{7:020d}.log", SEGMENT_MAGIC[:4])], 6, "should continue at 6")
    damaged_at("a short last segment that is not a start of LEDGSEG1",
               good + [(f"segment-{6:020d}.log", b"LEDGSEGX")], 6, "cut short")

    # Payload-level damage (hashes recomputed so only the payload's contents are wrong).
    def with_payload(pos, payload):
        ps = list(payloads)
        ps[pos] = payload
        return build_log(ps, starts=(0, 2, 5))

    base = dict(id=uuid.UUID(int=0x1003), stream="item-3", version=0, type="Thing",
                schema_version=1, recorded_at_micros=1, actor="alice", data='"x"')
    damaged_at("trailing bytes in payload", with_payload(3, build_payload(**base, trailing=b"\0")),
               3, "trailing")
    damaged_at("payload format 2", with_payload(3, build_payload(**dict(base, fmt=2))), 3, "format")
    damaged_at("actor not UTF-8", with_payload(3, build_payload(**dict(base, actor=b"\xff"))),
               3, "UTF-8")
    damaged_at("empty stream name", with_payload(3, build_payload(**dict(base, stream=b""))),
               3, "1..1024")
    damaged_at("data not JSON", with_payload(3, build_payload(**dict(base, data="{"))), 3, "JSON")
    damaged_at("data NaN", with_payload(3, build_payload(**dict(base, data="NaN"))), 3, "JSON")
    damaged_at("duplicate id", with_payload(3, build_payload(**dict(base, id=uuid.UUID(int=0x1000)))),
               3, "twice")
    damaged_at("version skipped", with_payload(3, build_payload(**dict(base, version=1))),
               3, "version")
    damaged_at("previous hash broken",
               with_payload(3, build_payload(**dict(base, prev_hash=b"\1" * 32))), 3, "previous hash")

    print("self-test " + ("passed" if not failures else f"FAILED ({len(failures)})"))
    return 0 if not failures else 1


# ---------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description="Verify (or dump) a ledger data directory.")
    ap.add_argument("data_dir", nargs="?", help="the ledger's data directory")
    ap.add_argument("--dump", action="store_true", help="print every event as a JSON line")
    ap.add_argument("--self-test", action="store_true", help="check the spec's worked example")
    args = ap.parse_args(argv)
    if args.self_test:
        return self_test()
    if args.data_dir is None:
        ap.error("DATA_DIR is required")  # exits 2

    out = sys.stdout.buffer
    try:
        segments = list_segments(args.data_dir)
        s, code = verify_segments(segments, dump_to=out.write if args.dump else None)
    except BrokenPipeError:
        # The reader of --dump went away (e.g. `| head`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 2
    except OSError as e:
        print(f"read_ledger: {e}", file=sys.stderr)
        return 2
    if args.dump:
        if s["incomplete_tail"]:
            print(f"read_ledger: note: {s['incomplete_tail']}", file=sys.stderr)
        if s["damage"]:
            print(f"read_ledger: damage: {json.dumps(s['damage'])}", file=sys.stderr)
    else:
        out.write((json.dumps(s) + "\n").encode("utf-8"))
    out.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
