#!/usr/bin/env python3
"""Writes synthetic items.parquet, events.parquet and verdicts.parquet for the notebooks.

Usage: python notebooks/make_sample.py OUT_DIR [--items N] [--seed S] [--weeks W]

The files follow docs/analytics-tables.md column for column and type for type (Datetime µs
UTC, List(String), UInt32, UInt64, Int32, nullable columns), so the notebooks can be tried
before `ledger export parquet` exists, and a quick look needs no ledger. The data is made up
but shaped like a real review board: three models with different calibration (one well
calibrated, one overconfident, one underconfident), three kinds each with its own queue, an
escalation queue, reviewers of different strictness and speed, items that need two or three approvals
(so some items carry two verdicts, and some of those disagree), change requests, escalations,
expiries, automatic approvals, withdrawals, items still open at the end, and one slice
(cirrus / refund_decision) whose override rate rises in the last 7 days so the drift test has
something to flag. Each item is simulated as a list of events, cut at the export time, and its
row in items.parquet is folded from the events that are left, so the three files agree.
It is for trying the notebooks only: no test reads its numbers.
"""

from __future__ import annotations

import argparse
import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl

UTC = timezone.utc
# A fixed export time, so that the same seed gives the same files.
END = datetime(2025, 6, 27, 18, 0, tzinfo=UTC)  # a Friday evening

# model -> (versions, calibration shift: true acceptance = stated confidence + shift)
MODELS = {
    "atlas": (["1.4", "1.5"], 0.0),
    "borealis": (["2.0"], -0.15),
    "cirrus": (["0.9"], 0.08),
}
# kind -> (queue, submitting agent, share of overrides that are rejections)
KINDS = {
    "support_reply": ("support", "agent.support-bot", 0.25),
    "lead_score": ("sales", "agent.lead-scorer", 0.45),
    "refund_decision": ("finance", "agent.refunds", 0.6),
}
ESCALATION_QUEUE = "escalations"
# queue -> reviewers as (name, strictness added to the override odds, activity weight)
REVIEWERS = {
    "support": [("alice", 0.0, 3), ("bob", 0.05, 2), ("carol", -0.03, 2), ("dan", 0.1, 1), ("erin", 0.0, 1)],
    "sales": [("frank", 0.0, 2), ("grace", -0.05, 2), ("heidi", 0.08, 1)],
    "finance": [("ivan", 0.03, 2), ("judy", 0.0, 2), ("mallory", 0.12, 1)],
    ESCALATION_QUEUE: [("niaj", 0.0, 1), ("olivia", 0.02, 1)],
}
# queue -> median seconds to the first claim (lognormal)
CLAIM_MEDIAN_S = {"support": 15 * 60, "sales": 50 * 60, "finance": 2 * 3600, ESCALATION_QUEUE: 3 * 3600}
REJECT_REASONS = ["factually wrong", "policy violation", "wrong tone", "missing information", "duplicate"]
SYSTEM = "system"
EXPIRY_AFTER = timedelta(hours=24)


@dataclass
class Step:
    at: datetime
    event_type: str
    actor: str
    queue_after: str | None = None  # set by ItemEscalated
    outcome: str | None = None  # set by ItemDecided
    edit_magnitude: float | None = None
    reject_reason: str | None = None


@dataclass
class Item:
    item_id: str
    kind: str
    model: str
    model_version: str
    confidence: float | None
    risk: str
    priority: int
    submitted_by: str
    queue: str
    required_approvals: int
    sampled: bool
    steps: list[Step] = field(default_factory=list)


def lognormal_s(rng: random.Random, median_s: float, sigma: float = 0.9) -> float:
    return median_s * math.exp(rng.gauss(0.0, sigma))


def submission_time(rng: random.Random, start: datetime, days: int) -> datetime:
    """A time in [start, END), mostly on working hours (UTC) and weekdays."""
    while True:
        day = start + timedelta(days=rng.randrange(days + 1))
        if day.weekday() >= 5 and rng.random() < 0.7:
            continue
        hour = rng.gauss(13.0, 3.2) if rng.random() < 0.9 else rng.uniform(0, 24)
        if not 0 <= hour < 24:
            continue
        at = day.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(hours=hour)
        if at < END:
            return at


def pick_reviewer(rng: random.Random, queue: str, exclude: set[str]) -> tuple[str, float]:
    pool = [(name, strict, weight) for name, strict, weight in REVIEWERS[queue] if name not in exclude]
    if not pool:  # a small queue whose reviewers have all looked: borrow from any team
        pool = [(n, s, w) for team in REVIEWERS.values() for n, s, w in team if n not in exclude]
    name, strict, _ = rng.choices(pool, weights=[w for *_, w in pool])[0]
    return name, strict


def simulate(rng: random.Random, start: datetime, days: int) -> Item:
    model = rng.choice(list(MODELS))
    versions, shift = MODELS[model]
    kind = rng.choices(list(KINDS), weights=[5, 3, 2])[0]
    queue, agent, reject_share = KINDS[kind]
    submitted_at = submission_time(rng, start, days)
    version = versions[-1] if len(versions) == 1 or submitted_at > start + timedelta(days=days / 2) else versions[0]
    # lead_score from borealis states no confidence.
    confidence = None if (model == "borealis" and kind == "lead_score") else round(min(0.999, rng.betavariate(5, 1.8)), 3)
    risk = rng.choices(["low", "normal", "high"], weights=[25, 60, 15])[0]
    required = 2 if risk == "high" or rng.random() < 0.1 else 1
    if risk == "high" and kind == "refund_decision" and rng.random() < 0.3:
        required = 3
    item = Item(
        item_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        kind=kind,
        model=model,
        model_version=version,
        confidence=confidence,
        risk=risk,
        priority=rng.choices([0, 1, 2, 3], weights=[50, 30, 15, 5])[0],
        submitted_by=agent,
        queue=queue,
        required_approvals=required,
        sampled=False,
    )
    steps = item.steps
    steps.append(Step(submitted_at, "ItemSubmitted", agent))

    # How likely a careful human finds the output wrong (the latent truth), with drift.
    accept = (confidence if confidence is not None else 0.75) + shift
    if model == "cirrus" and kind == "refund_decision" and submitted_at > END - timedelta(days=7):
        accept -= 0.4
    bad = rng.random() > min(0.98, max(0.02, accept))

    fate = rng.random()
    if fate < 0.03:  # withdrawn before anyone looked
        steps.append(Step(submitted_at + timedelta(seconds=lognormal_s(rng, 1800)), "ItemWithdrawn", agent))
        return item
    if kind == "support_reply" and confidence is not None and confidence >= 0.9 and risk != "high" and fate < 0.6:
        # approved automatically by a review policy, unless the slice was sampled for review
        if rng.random() < 0.2:
            item.sampled = True
        else:
            at = submitted_at + timedelta(seconds=1)
            steps.append(Step(at, "ItemDecided", SYSTEM, outcome="auto_approved"))
            return item

    t = submitted_at + timedelta(seconds=lognormal_s(rng, CLAIM_MEDIAN_S[queue]))
    if fate > 0.96:  # nobody decides in time: it expires
        if rng.random() < 0.5:
            reviewer, _ = pick_reviewer(rng, queue, set())
            steps.append(Step(t, "ItemClaimed", reviewer))
            steps.append(Step(t + timedelta(minutes=30), "ClaimExpired", SYSTEM))
        at = submitted_at + EXPIRY_AFTER
        steps.append(Step(at, "ItemExpired", SYSTEM))
        outcome = "approved_on_expiry" if risk == "low" else "rejected_on_expiry"
        steps.append(Step(at, "ItemDecided", SYSTEM, outcome=outcome))
        return item

    seen: set[str] = set()
    reviewer, strict = pick_reviewer(rng, queue, seen)
    steps.append(Step(t, "ItemClaimed", reviewer))
    t += timedelta(seconds=lognormal_s(rng, 420, 0.7))
    if rng.random() < 0.08:  # changes requested, then revised by the agent
        steps.append(Step(t, "ChangesRequested", reviewer))
        t += timedelta(seconds=lognormal_s(rng, 900))
        steps.append(Step(t, "OutputRevised", agent))
        bad = bad and rng.random() < 0.4
        t += timedelta(seconds=lognormal_s(rng, 600))
        steps.append(Step(t, "ItemClaimed", reviewer))
        t += timedelta(seconds=lognormal_s(rng, 300, 0.7))
    if rng.random() < 0.05:  # escalated: another team decides
        steps.append(Step(t, "ItemEscalated", reviewer, queue_after=ESCALATION_QUEUE))
        queue = ESCALATION_QUEUE
        t += timedelta(seconds=lognormal_s(rng, CLAIM_MEDIAN_S[queue]))
        seen.add(reviewer)
        reviewer, strict = pick_reviewer(rng, queue, seen)
        steps.append(Step(t, "ItemClaimed", reviewer))
        t += timedelta(seconds=lognormal_s(rng, 600, 0.7))
    if rng.random() < 0.04:
        steps.append(Step(t, "CommentAdded", reviewer))

    def judge(strictness: float) -> str:
        p_override = (0.85 if bad else 0.06) + strictness
        if rng.random() >= p_override:
            return "accept"
        return "reject" if rng.random() < reject_share else "edit"

    approvals = 0
    while True:
        judgment = judge(strict)
        seen.add(reviewer)
        if judgment == "reject":
            steps.append(Step(t, "OutputRejected", reviewer, reject_reason=rng.choice(REJECT_REASONS)))
            steps.append(Step(t, "ItemDecided", reviewer, outcome="rejected"))
            return item
        if judgment == "edit":
            magnitude = round(min(1.0, rng.betavariate(1.5, 5)), 4)
            steps.append(Step(t, "OutputEdited", reviewer, edit_magnitude=magnitude))
            approvals = 1
            if approvals >= required:
                steps.append(Step(t, "ItemDecided", reviewer, outcome="edited_and_approved"))
                return item
            # other reviewers approve the edited content (not verdicts on the AI's output), or
            # one rejects it (an override verdict of their own)
            while approvals < required:
                t += timedelta(seconds=lognormal_s(rng, CLAIM_MEDIAN_S[queue]))
                other, _ = pick_reviewer(rng, queue, seen)
                seen.add(other)
                steps.append(Step(t, "ItemClaimed", other))
                t += timedelta(seconds=lognormal_s(rng, 240, 0.7))
                if bad and rng.random() < 0.3:
                    steps.append(Step(t, "OutputRejected", other, reject_reason=rng.choice(REJECT_REASONS)))
                    steps.append(Step(t, "ItemDecided", other, outcome="rejected"))
                    return item
                steps.append(Step(t, "OutputApproved", other))
                approvals += 1
            steps.append(Step(t, "ItemDecided", other, outcome="edited_and_approved"))
            return item
        steps.append(Step(t, "OutputApproved", reviewer))
        approvals += 1
        if approvals >= required:
            steps.append(Step(t, "ItemDecided", reviewer, outcome="approved"))
            return item
        t += timedelta(seconds=lognormal_s(rng, CLAIM_MEDIAN_S[queue]))
        reviewer, strict = pick_reviewer(rng, queue, seen)
        steps.append(Step(t, "ItemClaimed", reviewer))
        t += timedelta(seconds=lognormal_s(rng, 420, 0.7))


def fold(item: Item) -> tuple[dict, list[dict], list[dict]]:
    """The item's row, its events and its verdicts, from its steps before END."""
    steps = [s for s in item.steps if s.at <= END]
    queue = item.queue
    status = "open"
    outcome = None
    first_claimed_at = decided_at = None
    approvers: list[str] = []
    rejecter = None
    edited = False
    edit_magnitude = None
    reject_reason = None
    revisions, change_requests, escalations = 1, 0, 0
    events: list[dict] = []
    verdicts: dict[str, dict] = {}
    for step in steps:
        events.append(
            {"stream": f"item-{item.item_id}", "item_id": item.item_id, "event_type": step.event_type,
             "actor": step.actor, "at": step.at, "queue": queue, "kind": item.kind}
        )
        verdict = None
        if step.event_type == "ItemClaimed":
            status = "claimed"
            first_claimed_at = first_claimed_at or step.at
        elif step.event_type == "ClaimExpired":
            status = "open"
        elif step.event_type == "ChangesRequested":
            status = "changes_requested"
            change_requests += 1
        elif step.event_type == "OutputRevised":
            status = "open"
            revisions += 1
            approvers = []
        elif step.event_type == "ItemEscalated":
            status = "open"
            escalations += 1
            queue = step.queue_after
        elif step.event_type == "OutputApproved":
            approvers.append(step.actor)
            verdict = None if edited else "accept"
        elif step.event_type == "OutputEdited":
            edited = True
            approvers = [step.actor]
            edit_magnitude = step.edit_magnitude
            verdict = "override"
        elif step.event_type == "OutputRejected":
            rejecter = step.actor
            reject_reason = step.reject_reason
            verdict = "override"
        elif step.event_type == "ItemWithdrawn":
            status = "withdrawn"
        elif step.event_type == "ItemDecided":
            status = "decided"
            outcome = step.outcome
            decided_at = step.at
        if verdict and step.actor not in verdicts:  # the first verdict of each reviewer
            verdicts[step.actor] = {"item_id": item.item_id, "reviewer": step.actor, "verdict": verdict, "at": step.at}
    human = outcome in ("approved", "edited_and_approved", "rejected")
    submitted_at = steps[0].at
    row = {
        "item_id": item.item_id,
        "queue": queue,
        "kind": item.kind,
        "model": item.model,
        "model_version": item.model_version,
        "confidence": item.confidence,
        "risk": item.risk,
        "priority": item.priority,
        "submitted_by": item.submitted_by,
        "status": status,
        "outcome": outcome,
        "human_decided": human,
        "overridden": (outcome in ("edited_and_approved", "rejected")) if human else None,
        "auto_approved": outcome == "auto_approved",

        "reviewers": ([rejecter] if outcome == "rejected" else approvers) if human else [],
        "reject_reason": reject_reason if outcome == "rejected" else None,
        "edit_magnitude": edit_magnitude if edited else None,
        "revisions": revisions,
        "change_requests": change_requests,
        "escalations": escalations,
        "approvals": len(approvers),
        "required_approvals": item.required_approvals,
        "submitted_at": submitted_at,
        "first_claimed_at": first_claimed_at,
        "decided_at": decided_at,
        "time_to_claim_s": (first_claimed_at - submitted_at).total_seconds() if first_claimed_at else None,
        "time_to_decision_s": (decided_at - submitted_at).total_seconds() if decided_at else None,
        "expired": outcome in ("approved_on_expiry", "rejected_on_expiry"),
        "withdrawn": status == "withdrawn",
    }
    common = {"queue": queue, "kind": item.kind, "model": item.model, "model_version": item.model_version}
    return row, events, [{**v, **common} for v in verdicts.values()]


DT = pl.Datetime("us", "UTC")
ITEMS_SCHEMA = {
    "item_id": pl.String, "queue": pl.String, "kind": pl.String, "model": pl.String,
    "model_version": pl.String, "confidence": pl.Float64, "risk": pl.String, "priority": pl.Int32,
    "submitted_by": pl.String, "status": pl.String, "outcome": pl.String,
    "human_decided": pl.Boolean, "overridden": pl.Boolean, "auto_approved": pl.Boolean,
    "reviewers": pl.List(pl.String), "reject_reason": pl.String,
    "edit_magnitude": pl.Float64, "revisions": pl.UInt32, "change_requests": pl.UInt32,
    "escalations": pl.UInt32, "approvals": pl.UInt32, "required_approvals": pl.UInt32,
    "submitted_at": DT, "first_claimed_at": DT, "decided_at": DT,
    "time_to_claim_s": pl.Float64, "time_to_decision_s": pl.Float64,
    "expired": pl.Boolean, "withdrawn": pl.Boolean,
}
EVENTS_SCHEMA = {
    "position": pl.UInt64, "stream": pl.String, "item_id": pl.String, "event_type": pl.String,
    "actor": pl.String, "at": DT, "queue": pl.String, "kind": pl.String,
}
VERDICTS_SCHEMA = {
    "item_id": pl.String, "reviewer": pl.String, "verdict": pl.String, "at": DT,
    "queue": pl.String, "kind": pl.String, "model": pl.String, "model_version": pl.String,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--weeks", type=int, default=6)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    days = args.weeks * 7
    start = (END - timedelta(days=days)).replace(hour=0, minute=0)

    rows, events, verdicts = [], [], []
    for _ in range(args.items):
        row, item_events, item_verdicts = fold(simulate(rng, start, days))
        rows.append(row)
        events.extend(item_events)
        verdicts.extend(item_verdicts)
    # The audit log's checkpoints: not item events (item_id, queue and kind are null).
    at = start
    while at <= END:
        events.append({"stream": "audit-checkpoints", "item_id": None, "event_type": "CheckpointSigned",
                       "actor": SYSTEM, "at": at, "queue": None, "kind": None})
        at += timedelta(hours=1)
    events.sort(key=lambda e: e["at"])  # stable: an item's events keep their order
    for position, event in enumerate(events):
        event["position"] = position

    args.out_dir.mkdir(parents=True, exist_ok=True)
    tables = {
        "items": pl.DataFrame(rows, schema=ITEMS_SCHEMA).sort("submitted_at"),
        "events": pl.DataFrame(events, schema=EVENTS_SCHEMA),
        "verdicts": pl.DataFrame(verdicts, schema=VERDICTS_SCHEMA).sort("at"),
    }
    for name, table in tables.items():
        path = args.out_dir / f"{name}.parquet"
        table.write_parquet(path)
        print(f"{path}: {table.height} rows")
    items = tables["items"]
    several = tables["verdicts"].group_by("item_id").agg(pl.len().alias("n"), pl.col("verdict").n_unique().alias("kinds"))
    several = several.filter(pl.col("n") >= 2)
    print(
        f"{items.filter(pl.col('human_decided')).height} decided by humans, "
        f"{several.height} with two verdicts or more ({several.filter(pl.col('kinds') > 1).height} disagreeing)"
    )


if __name__ == "__main__":
    main()
