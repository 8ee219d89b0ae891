//! `GET /openapi.json`: the OpenAPI 3.1 document of the API, built from the operation table below.
//!
//! Written as a table rather than with utoipa's derive macros: the request bodies are small, the
//! domain types live in the pure core (which should not depend on a documentation crate), and a
//! test (`tests/it/api.rs`) checks the table against the router both ways: every documented
//! operation is answered by a route (not 404/405), and every route pattern is documented.
//!
//! The document is complete enough to generate a client from and to check the server against:
//! each operation has its path, query and header parameters with their types and ranges, its
//! request body (required only where the server needs one), and every status it can answer with
//! the body's schema and headers. `scripts/fuzz-api.sh` runs Schemathesis against a live server
//! with every role's token and fails on any answer the document does not describe.
//!
//! How to change it:
//! - a route: one [`Operation`] row in [`operations`] (and its schemas in [`schemas`]);
//! - a status an operation answers with a problem: its `problems` list (the [`PROBLEMS`] table
//!   says what each status means; every operation also gets 405 and 500);
//! - who may call it: its [`Access`] (`Anyone`, or `Bearer` with the roles);
//! - a field of a body: the schema function that builds it (`item`, `submission`, …);
//! - a kind of event on the feed: [`feed_event_kinds`].

use serde_json::{Map, Value, json};

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed.
    Anyone,
    /// `Authorization: Bearer <token>` of a principal with one of these roles (as prose).
    Bearer(&'static str),
}

/// Where a parameter other than a path capture goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum In {
    Query,
    Header,
}

/// A query or header parameter (path parameters come from the path's `{captures}`).
#[derive(Debug, Clone)]
pub struct Parameter {
    pub name: &'static str,
    pub location: In,
    pub description: &'static str,
    pub schema: Value,
}

/// What a successful answer carries.
#[derive(Debug, Clone)]
pub enum Content {
    /// `application/json` of this schema.
    Json(Value),
    /// Text of this media type.
    Text(&'static str),
    /// `text/event-stream`, each event of this schema (its `id`, `event` and `data` fields).
    EventStream(Value),
    /// `application/json` of this schema, or text of this media type when the client's
    /// `Accept` asks for it.
    JsonOrText(Value, &'static str),
}

/// A successful answer: its status, what it is, its body and its response headers.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub description: &'static str,
    pub content: Content,
    /// Response headers (name, schema), each always sent with this answer.
    pub headers: Vec<(&'static str, Value)>,
}

/// One documented operation.
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    /// A stable name for generated clients' methods.
    pub operation_id: &'static str,
    pub summary: &'static str,
    pub access: Access,
    pub parameters: Vec<Parameter>,
    /// The JSON schema of the request body, if it takes one. The body is required when the schema
    /// requires a field; otherwise an empty body stands for `{}`.
    pub request: Option<Value>,
    pub answers: Vec<Answer>,
    /// The problem+json statuses it can answer, besides 405 and 500 (see [`PROBLEMS`]).
    pub problems: &'static [u16],
}

/// Every problem status, with what it means; each answer has the shared `Problem` body.
pub const PROBLEMS: &[(u16, &str)] = &[
    (
        400,
        "Malformed: a body that is not JSON, or a query parameter, header or path segment that does not parse",
    ),
    (401, "No token, or an unknown or revoked one"),
    (
        403,
        "The caller's role (or a reviewer's queues) does not allow this",
    ),
    (
        404,
        "No such item or principal, or one the caller may not know of (another agent's item); or no checkpoint signed yet (`no-checkpoint`)",
    ),
    (
        405,
        "The path does not take this method (for the other methods of this path; `Allow` lists those it takes)",
    ),
    (
        409,
        "Conflict: the item is already decided, claimed by someone else or moved on (`current_version`), or the name is taken",
    ),
    (
        408,
        "The body was not sent within the server's body timeout; nothing was written",
    ),
    (413, "The body is larger than the server accepts (2 MiB)"),
    (
        415,
        "The body is not sent as JSON (`Content-Type: application/json`)",
    ),
    (
        422,
        "Well-formed JSON of the wrong shape (`problem`: `invalid-body`), a domain rule refused it (`rule` names it), or a proof was asked of sizes or positions the tree does not have (`out-of-range`)",
    ),
    (
        500,
        "A fault of the server; the cause is logged, not answered",
    ),
    (
        503,
        "The server cannot serve this now: the log refuses writes (`log-writes-paused`, retryable; `log-poisoned`, until a restart), the store does not answer (`store-unavailable`, retryable), its views did not catch up in time (`projections-behind`, retryable) or stopped following the log (`projections-stopped`)",
    ),
];

/// Every operation of the API.
pub fn operations() -> Vec<Operation> {
    let anyone = Access::Anyone;
    let readers = Access::Bearer("agent (its own items), reviewer (its queues), auditor, admin");
    let reviewer = Access::Bearer("reviewer of the item's queue");
    let submitter = Access::Bearer("the submitting agent");
    let admin = Access::Bearer("admin");
    // A read of one item, and a write to one: the statuses their handlers can answer.
    const READ: &[u16] = &[400, 401, 403, 404, 503];
    const ACT: &[u16] = &[400, 401, 403, 404, 408, 409, 413, 422, 503];
    let item_answer = |status, description| Answer {
        status,
        description,
        content: Content::Json(reference("Item")),
        headers: vec![("ETag", etag())],
    };
    let action =
        |path, operation_id, summary, access, request: Value, status, description| Operation {
            method: "post",
            path,
            operation_id,
            summary,
            access,
            parameters: vec![if_match()],
            request: Some(request),
            answers: vec![item_answer(status, description)],
            problems: ACT,
        };
    let decided = "the item after the command";
    let mut operations = vec![
        Operation {
            method: "get",
            path: "/healthz",
            operation_id: "health",
            summary: "Health: 200 while the log takes writes, 503 with the reason while it refuses them",
            access: anyone,
            parameters: vec![],
            request: None,
            answers: vec![json_answer(200, "the server's state", "Health")],
            problems: &[503],
        },
        Operation {
            method: "get",
            path: "/readyz",
            operation_id: "ready",
            summary: "Readiness: 200 while the log takes writes and the read models follow it, 503 with the reason otherwise",
            access: anyone,
            parameters: vec![],
            request: None,
            answers: vec![json_answer(200, "ready", "Ready")],
            problems: &[503],
        },
        Operation {
            method: "get",
            path: "/metrics",
            operation_id: "metrics",
            summary: "Prometheus metrics (open to anyone only with `serve --metrics-public`)",
            access: Access::Bearer("admin, auditor, or the operator's metrics token"),
            parameters: vec![],
            request: None,
            answers: vec![Answer {
                status: 200,
                description: "the Prometheus text format, version 0.0.4",
                content: Content::Text("text/plain"),
                headers: vec![],
            }],
            problems: &[401, 403],
        },
        Operation {
            method: "get",
            path: "/openapi.json",
            operation_id: "openapi",
            summary: "This document",
            access: anyone,
            parameters: vec![],
            request: None,
            answers: vec![Answer {
                status: 200,
                description: "the OpenAPI 3.1 document",
                content: Content::Json(json!({"type": "object", "required": ["openapi", "paths"]})),
                headers: vec![],
            }],
            problems: &[],
        },
        Operation {
            method: "post",
            path: "/v1/items",
            operation_id: "submitItem",
            summary: "Submit an AI output for review",
            access: Access::Bearer("agent"),
            parameters: vec![Parameter {
                name: "Idempotency-Key",
                location: In::Header,
                description: "Makes a retry answer the first item (200) instead of submitting a second one; unique per agent",
                schema: json!({"type": "string", "pattern": "^[\\x20-\\x7e]*$"}),
            }],
            request: Some(submission()),
            answers: vec![
                Answer {
                    status: 201,
                    description: "the submitted item",
                    content: Content::Json(reference("Item")),
                    headers: vec![
                        ("ETag", etag()),
                        (
                            "Location",
                            json!({"type": "string", "pattern": "^/v1/items/[0-9a-f-]{36}$"}),
                        ),
                    ],
                },
                item_answer(
                    200,
                    "the item a previous request with the same Idempotency-Key submitted",
                ),
            ],
            problems: &[400, 401, 403, 408, 409, 413, 415, 422, 503],
        },
        Operation {
            method: "get",
            path: "/v1/items/{id}",
            operation_id: "getItem",
            summary: "An item, with its version (also its ETag)",
            access: readers,
            parameters: vec![],
            request: None,
            answers: vec![item_answer(200, "the item")],
            problems: READ,
        },
        Operation {
            method: "get",
            path: "/v1/items/{id}/events",
            operation_id: "getItemEvents",
            summary: "The item's audit trail: every event with position, hash and previous hash",
            access: readers,
            parameters: vec![],
            request: None,
            answers: vec![json_answer(
                200,
                "the item's events, oldest first",
                "AuditTrail",
            )],
            problems: READ,
        },
        Operation {
            method: "get",
            path: "/v1/items/{id}/decision",
            operation_id: "waitForDecision",
            summary: "Long-poll until the item is decided, changes are requested or it is withdrawn",
            access: readers,
            parameters: vec![Parameter {
                name: "wait",
                location: In::Query,
                description: "How long to wait for an answer: `30s`, `500ms`, `2m` or a number of seconds; at most 120 s (longer waits are cut to 120 s); no wait when absent",
                schema: json!({"type": "string", "pattern": "^[0-9]{1,15}(ms|s|m)?$"}),
            }],
            request: None,
            answers: vec![
                item_answer(
                    200,
                    "the item, decided, with changes requested, or withdrawn",
                ),
                item_answer(
                    202,
                    "the item as it stands when the wait ended without an answer",
                ),
            ],
            problems: READ,
        },
        action(
            "/v1/items/{id}/claim",
            "claimItem",
            "Claim the item: a lease during which no one else decides it",
            reviewer,
            body(
                json!({"lease_seconds": {"type": "integer", "minimum": 1, "maximum": 86400, "default": 900}}),
                &[],
            ),
            200,
            decided,
        ),
        action(
            "/v1/items/{id}/release",
            "releaseItem",
            "Release one's claim",
            reviewer,
            body(json!({}), &[]),
            200,
            decided,
        ),
        action(
            "/v1/items/{id}/approve",
            "approveItem",
            "Approve the output",
            reviewer,
            body(json!({"seen_output_hash": output_hash()}), &[]),
            200,
            decided,
        ),
        action(
            "/v1/items/{id}/edit",
            "editItem",
            "Edit the output and approve the edit",
            reviewer,
            body(
                json!({"output": any_json_but_null("the edited output"), "note": optional_text(), "seen_output_hash": output_hash()}),
                &["output"],
            ),
            200,
            decided,
        ),
        action(
            "/v1/items/{id}/reject",
            "rejectItem",
            "Reject the output with a reason",
            reviewer,
            body(
                json!({"reason": text(), "seen_output_hash": output_hash()}),
                &["reason"],
            ),
            200,
            decided,
        ),
        action(
            "/v1/items/{id}/request-changes",
            "requestChanges",
            "Send the item back to its submitter with instructions",
            reviewer,
            body(
                json!({"instructions": text(), "seen_output_hash": output_hash()}),
                &["instructions"],
            ),
            200,
            decided,
        ),
        action(
            "/v1/items/{id}/escalate",
            "escalateItem",
            "Move the item to another queue",
            reviewer,
            body(
                json!({"to_queue": name(), "reason": text()}),
                &["to_queue", "reason"],
            ),
            200,
            decided,
        ),
        action(
            "/v1/items/{id}/comments",
            "commentOnItem",
            "Comment on the item (also once it is decided)",
            Access::Bearer("reviewer of the item's queue, the submitting agent, admin"),
            body(json!({"text": text()}), &["text"]),
            201,
            "the item with the comment",
        ),
        action(
            "/v1/items/{id}/revisions",
            "reviseItem",
            "Answer a change request with a new revision of the output",
            submitter,
            body(
                json!({"output": any_json_but_null("the new revision"), "note": optional_text()}),
                &["output"],
            ),
            201,
            "the item with the new revision",
        ),
        action(
            "/v1/items/{id}/withdraw",
            "withdrawItem",
            "Withdraw the item before a decision",
            submitter,
            body(json!({"reason": optional_text()}), &[]),
            200,
            "the withdrawn item",
        ),
        Operation {
            method: "get",
            path: "/v1/queue",
            operation_id: "getQueue",
            summary: "The projected queue: by priority, then due time, then submission",
            access: Access::Bearer("reviewer (its queues), auditor, admin"),
            parameters: vec![
                query(
                    "queue",
                    "Only this queue; a reviewer granted several queues must name one",
                    name(),
                ),
                query(
                    "status",
                    "Only items in this state (default: pending and claimed)",
                    json!({"type": "string", "enum": QUEUE_STATUSES}),
                ),
                query(
                    "assignee",
                    "Only items under a live claim of this reviewer",
                    json!({"type": "string"}),
                ),
                query("kind", "Only items of this kind", json!({"type": "string"})),
                query(
                    "model",
                    "Only items of this model (by name, any version)",
                    json!({"type": "string"}),
                ),
                query(
                    "limit",
                    "Items per page (default 50); values outside 1–500 are cut to that range",
                    json!({"type": "integer", "minimum": 0, "maximum": 18_446_744_073_709_551_615_u64}),
                ),
                query(
                    "cursor",
                    "The `next_cursor` of the previous page",
                    json!({"type": "string"}),
                ),
            ],
            request: None,
            answers: vec![json_answer(200, "one page of the queue", "QueuePage")],
            problems: &[400, 401, 403, 503],
        },
        Operation {
            method: "get",
            path: "/v1/items/{id}/record",
            operation_id: "getItemRecord",
            summary: "The item's decision record: every event with its canonical bytes, the decision, the human's edit as a diff, and inclusion proofs under the latest checkpoint",
            access: Access::Bearer("auditor, admin, or the agent that submitted it"),
            parameters: vec![],
            request: None,
            answers: vec![json_answer(200, "the decision record", "ItemRecord")],
            problems: &[401, 403, 404, 503],
        },
        Operation {
            method: "get",
            path: "/v1/analytics/override-rates",
            operation_id: "getOverrideRates",
            summary: "How often humans override the AI: (edited + rejected) / decided by slice, with 95% Wilson intervals",
            access: Access::Bearer("analyst, auditor, admin"),
            parameters: slice_parameters(),
            request: None,
            answers: vec![json_answer(200, "the override rates", "OverrideRates")],
            problems: &[400, 401, 403, 422, 503],
        },
        Operation {
            method: "get",
            path: "/v1/analytics/calibration",
            operation_id: "getCalibration",
            summary: "How well the AI's stated confidence predicts acceptance: override rate by confidence bucket and the expected calibration error, per slice",
            access: Access::Bearer("analyst, auditor, admin"),
            parameters: {
                let mut parameters = slice_parameters();
                parameters.push(query(
                    "buckets",
                    "Equal-width confidence buckets (default 10; values outside 1–100 are cut to that range)",
                    count(),
                ));
                parameters
            },
            request: None,
            answers: vec![json_answer(200, "the calibration", "Calibration")],
            problems: &[400, 401, 403, 422, 503],
        },
        Operation {
            method: "get",
            path: "/v1/audit/checkpoints",
            operation_id: "listCheckpoints",
            summary: "Signed checkpoints of the log's Merkle tree, oldest first, a page at a time",
            access: Access::Bearer("any principal"),
            parameters: vec![
                query(
                    "after",
                    "Only checkpoints of a larger tree (the previous page's `next_after`)",
                    count(),
                ),
                query(
                    "limit",
                    "Checkpoints per page (default 100); values outside 1–1000 are cut to that range",
                    count(),
                ),
            ],
            request: None,
            answers: vec![json_answer(
                200,
                "one page of checkpoints",
                "CheckpointPage",
            )],
            problems: &[400, 401, 503],
        },
        Operation {
            method: "get",
            path: "/v1/audit/checkpoints/latest",
            operation_id: "getLatestCheckpoint",
            summary: "The latest checkpoint: its C2SP signed note as text (`Accept: text/plain`), or as JSON with its fields",
            access: Access::Bearer("any principal"),
            parameters: vec![],
            request: None,
            answers: vec![Answer {
                status: 200,
                description: "the latest checkpoint",
                content: Content::JsonOrText(reference("Checkpoint"), "text/plain"),
                headers: vec![],
            }],
            problems: &[401, 404, 503],
        },
        Operation {
            method: "get",
            path: "/v1/audit/proofs/inclusion",
            operation_id: "getInclusionProof",
            summary: "The audit path (RFC 6962 §2.1.1) of the event at a position to the root of a tree size",
            access: Access::Bearer("auditor, admin"),
            parameters: vec![
                query(
                    "position",
                    "The event's position (its leaf index); required",
                    count(),
                ),
                query(
                    "tree_size",
                    "The tree the proof leads into (default: the latest checkpoint's size)",
                    count(),
                ),
            ],
            request: None,
            answers: vec![json_answer(200, "the inclusion proof", "InclusionProof")],
            problems: &[400, 401, 403, 404, 422, 503],
        },
        Operation {
            method: "get",
            path: "/v1/audit/proofs/consistency",
            operation_id: "getConsistencyProof",
            summary: "The proof (RFC 6962 §2.1.2) that the tree of `second` events extends the tree of `first`",
            access: Access::Bearer("any principal"),
            parameters: vec![
                query(
                    "first",
                    "The earlier tree size (0 < first <= second); required",
                    count(),
                ),
                query(
                    "second",
                    "The later tree size (default: the latest checkpoint's size)",
                    count(),
                ),
            ],
            request: None,
            answers: vec![json_answer(
                200,
                "the consistency proof",
                "ConsistencyProof",
            )],
            problems: &[400, 401, 404, 422, 503],
        },
        Operation {
            method: "get",
            path: "/v1/queue/events",
            operation_id: "streamQueueChanges",
            summary: "A queue's changes as Server-Sent Events: one `queue` event whenever its open items change",
            access: Access::Bearer("reviewer (its queues), auditor, admin"),
            parameters: vec![query(
                "queue",
                "This queue (default: all for auditors and admins; a reviewer granted several queues must name one)",
                name(),
            )],
            request: None,
            answers: vec![Answer {
                status: 200,
                description: "one `queue` event each time the queue's open items change (at most four a second), with their count and the log position; comments keep the connection alive",
                content: Content::EventStream(json!({
                    "type": "object",
                    "properties": {
                        "event": {"const": "queue"},
                        "data": {
                            "type": "string",
                            "contentMediaType": "application/json",
                            "contentSchema": response_object(json!({"open": count(), "position": count()})),
                        },
                    },
                    "required": ["event", "data"],
                })),
                headers: vec![],
            }],
            problems: &[400, 401, 403],
        },
        Operation {
            method: "get",
            path: "/v1/events",
            operation_id: "streamEvents",
            summary: "The log as Server-Sent Events: every event after a position, then each new one",
            access: Access::Bearer("auditor, admin"),
            parameters: vec![
                query(
                    "after",
                    "Send the events after this position (all of them when absent)",
                    json!({"type": "integer", "minimum": 0, "maximum": 18_446_744_073_709_551_614_u64}),
                ),
                Parameter {
                    name: "Last-Event-ID",
                    location: In::Header,
                    description: "Resume after this position (the `id` of the last event received); wins over `after`",
                    schema: json!({"type": "string", "pattern": "^\\s*[0-9]{1,19}\\s*$"}),
                },
            ],
            request: None,
            answers: vec![Answer {
                status: 200,
                description: "the events, as they are acknowledged; comments keep the connection alive",
                content: Content::EventStream(feed_event()),
                headers: vec![],
            }],
            problems: &[400, 401, 403],
        },
        Operation {
            method: "post",
            path: "/v1/principals",
            operation_id: "addPrincipal",
            summary: "Add a principal; answers its token, shown only this once",
            access: admin,
            parameters: vec![],
            request: Some(body(
                json!({
                    "name": principal_name(),
                    "role": {"type": "string", "enum": ROLES},
                    "queues": {"type": "array", "items": name(), "uniqueItems": true, "description": "The queues a reviewer may work: at least one for a reviewer, none for the other roles"},
                }),
                &["name", "role"],
            )),
            answers: vec![json_answer(
                201,
                "the principal, with its token",
                "NewPrincipal",
            )],
            problems: &[400, 401, 403, 408, 409, 413, 415, 422, 503],
        },
        Operation {
            method: "get",
            path: "/v1/principals",
            operation_id: "listPrincipals",
            summary: "Every principal, revoked ones included (never a token or its hash)",
            access: Access::Bearer("admin, auditor"),
            parameters: vec![],
            request: None,
            answers: vec![json_answer(200, "the principals", "Principals")],
            problems: &[401, 403, 503],
        },
        Operation {
            method: "delete",
            path: "/v1/principals/{name}",
            operation_id: "revokePrincipal",
            summary: "Revoke a principal: its token stops working at once",
            access: admin,
            parameters: vec![],
            request: None,
            answers: vec![json_answer(200, "the revoked principal", "Principal")],
            problems: &[400, 401, 403, 404, 409, 422, 503],
        },
        Operation {
            method: "get",
            path: "/v1/principals/{name}/callback-secret",
            operation_id: "getCallbackSecret",
            summary: "The agent's callback signing secret",
            access: Access::Bearer("admin, the agent itself"),
            parameters: vec![],
            request: None,
            answers: vec![json_answer(
                200,
                "the agent and its secret",
                "CallbackSecret",
            )],
            problems: &[400, 401, 403, 404],
        },
    ];
    operations.extend(measure_operations());
    operations
}

/// The statuses of `GET /v1/queue?status=`.
const QUEUE_STATUSES: &[&str] = &[
    "pending",
    "claimed",
    "changes_requested",
    "decided",
    "withdrawn",
];
const ITEM_STATUSES: &[&str] = &[
    "not_submitted",
    "pending",
    "changes_requested",
    "approved",
    "edited_and_approved",
    "rejected",
    "approved_on_expiry",
    "rejected_on_expiry",
    "auto_approved",
    "withdrawn",
];
const OUTCOMES: &[&str] = &[
    "approved",
    "edited_and_approved",
    "rejected",
    "approved_on_expiry",
    "rejected_on_expiry",
    "auto_approved",
];
const RISKS: &[&str] = &["low", "normal", "high"];
const ROLES: &[&str] = &["agent", "reviewer", "auditor", "admin", "analyst"];

/// The named schemas of `components.schemas`.
fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        ("Problem", problem()),
        ("Item", item()),
        ("Event", event()),
        (
            "AuditTrail",
            response_object(json!({"item": uuid(), "events": array(reference("Event"))})),
        ),
        (
            "QueuePage",
            response_object(
                json!({"items": array(reference("QueueEntry")), "next_cursor": nullable(json!({"type": "string"}))}),
            ),
        ),
        ("QueueEntry", queue_entry()),
        ("Principal", principal()),
        ("NewPrincipal", {
            let mut new = principal();
            new["properties"]["token"] =
                json!({"type": "string", "description": "the bearer token, shown only now"});
            new["required"]
                .as_array_mut()
                .expect("a list")
                .push("token".into());
            new
        }),
        (
            "Principals",
            response_object(json!({"principals": array(reference("Principal"))})),
        ),
        (
            "CallbackSecret",
            response_object(
                json!({"agent": {"type": "string"}, "secret": {"type": "string", "pattern": "^whsec_[A-Za-z0-9+/]+={0,2}$", "description": "the Standard Webhooks signing secret"}}),
            ),
        ),
        (
            "Health",
            response_object(json!({
                "status": {"type": "string", "enum": ["ok"]},
                "backend": backend(),
                "log": {"type": "string", "enum": ["writable"]},
                "events": count(),
                "streams": nullable(count()),
                "projected": count(),
            })),
        ),
        (
            "Ready",
            response_object(json!({
                "status": {"type": "string", "enum": ["ready"]},
                "backend": backend(),
                "log": {"type": "string", "enum": ["writable"]},
                "projector": {"type": "string", "enum": ["following"]},
                "events": count(),
                "projected": count(),
            })),
        ),
        ("ExpiryAction", expiry_action()),
        ("Checkpoint", checkpoint()),
        (
            "Calibration",
            response_object(json!({
                "metric": {"type": "string", "enum": ["calibration"]},
                "by": array(json!({"type": "string"})),
                "since": nullable(timestamp()),
                "until": nullable(timestamp()),
                "buckets": count(),
                "slices": array(json!({
                    "type": "object",
                    "description": "one slice: its value for each dimension of `by`, its decided items, the expected calibration error and its buckets",
                    "required": ["decided", "expected_calibration_error", "buckets"],
                    "properties": {
                        "decided": count(),
                        "expected_calibration_error": {"type": "number"},
                        "buckets": array(json!({"type": "object", "required": ["confidence_low", "confidence_high", "decided", "mean_confidence", "accuracy", "override_rate", "override_rate_low", "override_rate_high"]})),
                    },
                })),
                "as_of_position": count(),
            })),
        ),
        (
            "OverrideRates",
            response_object(json!({
                "metric": {"type": "string", "enum": ["override-rates"]},
                "by": array(json!({"type": "string"})),
                "since": nullable(timestamp()),
                "until": nullable(timestamp()),
                "rows": array(json!({
                    "type": "object",
                    "description": "one slice: its value for each dimension of `by` (named by the dimension), then its counts and rates",
                    "required": ["decided", "approved", "edited", "rejected", "overridden", "override_rate", "override_rate_low", "override_rate_high", "expired", "auto_approved"],
                    "properties": {
                        "decided": count(), "approved": count(), "edited": count(), "rejected": count(),
                        "overridden": count(), "expired": count(), "auto_approved": count(),
                        "override_rate": {"type": "number"},
                        "override_rate_low": {"type": "number"},
                        "override_rate_high": {"type": "number"},
                    },
                })),
                "as_of_position": count(),
            })),
        ),
        ("AnalyticsRows", analytics_rows(&[])),
        (
            "Accuracy",
            json!({
                "type": "object",
                "required": ["slices", "as_of_position"],
                "properties": {
                    "slices": array(json!({
                        "type": "object",
                        "required": ["model", "model_version", "kind", "decided", "overridden", "override_rate", "override_rate_low", "override_rate_high", "window_since", "window_until", "measured_at", "measurement_id", "policy", "sampling"],
                    })),
                    "appended": array(json!({"type": "object"})),
                    "as_of_position": count(),
                },
                "additionalProperties": false,
            }),
        ),
        (
            "Drift",
            analytics_rows(&[
                ("test", json!({"type": "string"})),
                ("baseline_since", nullable(timestamp())),
                ("window_since", timestamp()),
                ("window_until", timestamp()),
                ("window_days", count()),
                ("significance", json!({"type": "number"})),
                ("minimum_sample", count()),
                ("slices_tested", count()),
            ]),
        ),
        (
            "CheckpointPage",
            response_object(json!({
                "checkpoints": array(reference("Checkpoint")),
                "next_after": nullable(count()),
                "verifier_key": verifier_key(),
            })),
        ),
        (
            "InclusionProof",
            response_object(json!({
                "position": count(),
                "tree_size": count(),
                "leaf_hash": hash(),
                "root_hash": hash(),
                "inclusion_proof": array(hash()),
                "checkpoint": nullable(json!({"type": "string", "description": "the signed note of a checkpoint of exactly this tree size, if one was stored"})),
            })),
        ),
        (
            "ConsistencyProof",
            response_object(json!({
                "first": count(),
                "second": count(),
                "first_root_hash": hash(),
                "second_root_hash": hash(),
                "consistency_proof": array(hash()),
            })),
        ),
        ("ProvenEvent", proven_event()),
        ("DecisionSummary", decision_summary()),
        (
            "ItemRecord",
            response_object(json!({
                "format": {"type": "string", "enum": ["approval-ledger-bundle/1"]},
                "item_id": uuid(),
                "summary": response_object(json!({
                    "scope": {"type": "string", "enum": ["item"]},
                    "decision": reference("DecisionSummary"),
                })),
                "verifier_key": verifier_key(),
                "checkpoint": nullable(reference("Checkpoint")),
                "events": array(reference("ProvenEvent")),
                "proven": count(),
                "how_to_verify": {"type": "string"},
            })),
        ),
    ]
}

/// The answer of an analytics measure: `{"metric", "by", "since", "until", "rows", "as_of_position"}`
/// and the measure's own fields.
fn analytics_rows(fields: &[(&str, Value)]) -> Value {
    let mut properties = json!({
        "metric": {"type": "string"},
        "by": array(json!({"type": "string"})),
        "since": nullable(timestamp()),
        "until": nullable(timestamp()),
        "rows": array(json!({
            "type": "object",
            "description": "one slice: its value for each dimension of `by` (named by the dimension), then the measure's fields",
        })),
        "as_of_position": count(),
    });
    for (name, schema) in fields {
        properties[*name] = schema.clone();
    }
    response_object(properties)
}

/// The other measures' operations: (path, operation id, summary, answer schema, extra parameters).
fn measure_operations() -> Vec<Operation> {
    let drift_parameters = || {
        let mut parameters = slice_parameters();
        parameters.push(query(
            "window_days",
            "The latest window's length in days (1–366, default 7)",
            count(),
        ));
        parameters.push(query(
            "min_sample",
            "Decided items each side needs for a slice to be tested (default 20)",
            count(),
        ));
        parameters
    };
    [
        ("/v1/analytics/edit-magnitude", "getEditMagnitude", "How much humans changed the outputs they edited: normalized edit distance (text and JSON leaves), mean, p50, p90, max, by slice", "AnalyticsRows", slice_parameters()),
        ("/v1/analytics/review-times", "getReviewTimes", "Time to first claim and to decision (p50, p90, p99 in seconds) of decided items, by slice", "AnalyticsRows", slice_parameters()),
        ("/v1/analytics/rejection-reasons", "getRejectionReasons", "Rejection reasons by frequency, with each one's share and its 95% Wilson interval, by slice", "AnalyticsRows", slice_parameters()),
        ("/v1/analytics/agreement", "getAgreement", "Agreement between reviewers who judged the same items (accept or override): Fleiss' kappa, by slice (not by reviewer)", "AnalyticsRows", slice_parameters()),
        ("/v1/analytics/drift", "getDrift", "Slices whose override rate in the latest window differs from their baseline: two-sided two-proportion z-test, Bonferroni-corrected", "Drift", drift_parameters()),
    ]
    .into_iter()
    .map(|(path, operation_id, summary, schema, parameters)| Operation {
        method: "get",
        path,
        operation_id,
        summary,
        access: Access::Bearer("analyst, auditor, admin"),
        parameters,
        request: None,
        answers: vec![json_answer(200, "the measure by slice", schema)],
        problems: &[400, 401, 403, 422, 503],
    })
    .chain([
        Operation {
            method: "get",
            path: "/v1/analytics/accuracy",
            operation_id: "getAccuracy",
            summary: "The feedback loop: each (model, version, kind)'s latest AccuracyMeasured, its review policy, and whether its new items are only sampled for review",
            access: Access::Bearer("analyst, auditor, admin"),
            parameters: vec![],
            request: None,
            answers: vec![json_answer(200, "the latest measurements", "Accuracy")],
            problems: &[401, 403, 503],
        },
        Operation {
            method: "post",
            path: "/v1/analytics/accuracy",
            operation_id: "measureAccuracy",
            summary: "Measure every slice's override rate now (as the periodic job does) and append an AccuracyMeasured event for each slice whose counts changed",
            access: Access::Bearer("admin"),
            parameters: vec![],
            request: None,
            answers: vec![json_answer(200, "the measurements appended, and the latest of each slice", "Accuracy")],
            problems: &[401, 403, 503],
        },
    ])
    .collect()
}

/// The parameters every analytics operation takes: its grouping and its window.
fn slice_parameters() -> Vec<Parameter> {
    vec![
        query(
            "by",
            "Comma-separated dimensions to group by: model, model_version, kind, queue, reviewer, day, week",
            json!({"type": "string"}),
        ),
        query(
            "since",
            "Only items decided at or after this time (RFC 3339, or a date)",
            json!({"type": "string"}),
        ),
        query(
            "until",
            "Only items decided before this time (RFC 3339, or a date)",
            json!({"type": "string"}),
        ),
    ]
}

/// A signed-note verifier key.
fn verifier_key() -> Value {
    json!({"type": "string", "description": "the C2SP signed-note verifier key: `<name>+<key id>+<base64 of 0x01 and the Ed25519 key>` (empty if the server signs no checkpoints)"})
}

/// A stored checkpoint.
fn checkpoint() -> Value {
    let mut object = response_object(json!({
        "origin": {"type": "string"},
        "tree_size": count(),
        "root_hash": hash(),
        "note": {"type": "string", "description": "the C2SP signed note: tlog-checkpoint body, a blank line, the Ed25519 signature line"},
        "position": count(),
        "recorded_at": timestamp(),
        "verifier_key": verifier_key(),
    }));
    // Only the latest checkpoint's JSON names the key; in a page the page does.
    object["required"] = json!([
        "origin",
        "tree_size",
        "root_hash",
        "note",
        "position",
        "recorded_at"
    ]);
    object
}

/// An event with its canonical bytes and its inclusion proof.
fn proven_event() -> Value {
    response_object(json!({
        "position": count(),
        "stream": {"type": "string"},
        "version": count(),
        "id": uuid(),
        "type": {"type": "string"},
        "schema_version": count(),
        "recorded_at": timestamp(),
        "actor": {"type": "string"},
        "causation_id": nullable(uuid()),
        "correlation_id": nullable(uuid()),
        "data": {"description": "the event's data, as the log holds it"},
        "event_hash": hash(),
        "leaf_hash": hash(),
        "canonical": {"type": "string", "contentEncoding": "base64", "description": "the canonical payload (docs/ledger-format.md) the hashes are of"},
        "inclusion_proof": nullable(array(hash())),
    }))
}

/// What an item's events say was decided.
fn decision_summary() -> Value {
    let text = || nullable(json!({"type": "string"}));
    response_object(json!({
        "item_id": text(),
        "queue": text(),
        "kind": text(),
        "submitted_by": text(),
        "ai_output": {"description": "the AI's output last put up for review"},
        "outcome": text(),
        "decided_by": array(json!({"type": "string"})),
        "decided_at": text(),
        "final_output": {"description": "the output that took effect"},
        "edited": {"type": "boolean"},
        "edit_diff": text(),
        "withdrawn": {"type": "boolean"},
    }))
}

/// The log backend a server runs on.
fn backend() -> Value {
    json!({"type": "string", "enum": ["file", "memory", "postgres", "kurrentdb"], "description": "the log's backend"})
}

/// RFC 9457 problem details, with this API's members.
fn problem() -> Value {
    json!({
        "type": "object",
        "description": "A problem (RFC 9457), as `application/problem+json`",
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "problem": {"type": "string", "description": "the problem's short name, e.g. `malformed-request`, `unauthenticated`, `forbidden`, `not-found`, `method-not-allowed`, `stale-version`, `version-conflict`, `invalid-body`, `domain-rule`, `principal-rule`, `body-too-large`, `body-timeout`, `unsupported-media-type`, `internal-error`, `projections-stopped`, `projections-behind`, `store-unavailable`, `log-writes-paused`, `log-poisoned`, `revoked`, `expiry-is-policy`, `callback-url-refused`, `idempotency-key-reused`"},
            "retryable": {"type": "boolean", "description": "whether the same request may succeed later (503)"},
            "field": {"type": "string", "description": "the body field that is refused (422)"},
            "rule": {"type": "string", "description": "the domain rule that refused the request (`domain-rule`, `principal-rule`)"},
            "current_version": {"type": "integer", "minimum": 0, "description": "the item's version now (409)"},
            "item": {"description": "the item as it is now (409 `stale-version`)"},
            "parameter": {"type": "string", "description": "the query parameter that is wrong (400)"},
            "role": {"type": "string", "description": "the caller's role (403)"},
        },
        "required": ["type", "title", "status", "detail", "problem"],
    })
}

/// An item as every item answer has it: its whole state and its version.
fn item() -> Value {
    let time = timestamp;
    let reviewer_at = |extra: Value| {
        let mut properties = json!({"reviewer": string(), "at": time()});
        properties
            .as_object_mut()
            .expect("an object")
            .extend(extra.as_object().expect("an object").clone());
        response_object(properties)
    };
    response_object(json!({
        "status": {"type": "string", "enum": ITEM_STATUSES},
        "id": uuid(),
        "queue": string(),
        "kind": string(),
        "model": model(),
        "submitted_by": string(),
        "submitted_at": time(),
        "output": {"description": "the content under review now: the latest revision, or a reviewer's edit of it"},
        "output_hash": hash(),
        "revision": count(),
        "output_edited_by": nullable(string()),
        "revisions": array(response_object(json!({
            "revision": count(), "output": {}, "output_hash": hash(), "note": nullable(string()), "at": time(),
        }))),
        "edits": array(response_object(json!({
            "reviewer": string(), "revision": count(), "output": {}, "output_hash": hash(),
            "previous_output_hash": hash(), "note": nullable(string()), "at": time(),
        }))),
        "context": {"description": "the context the agent submitted"},
        "confidence": nullable(json!({"type": "number"})),
        "risk": {"type": "string", "enum": RISKS},
        "priority": {"type": "integer"},
        "due_at": nullable(time()),
        "required_approvals": count(),
        "callback_url": nullable(string()),
        "claim": nullable(response_object(json!({"reviewer": string(), "claimed_at": time(), "expires_at": time()}))),
        "first_claimed_at": nullable(time()),
        "approvals": array(reviewer_at(json!({}))),
        "change_requests": array(reviewer_at(json!({"instructions": string(), "revision": count(), "output_hash": hash()}))),
        "escalations": array(response_object(json!({
            "by": string(), "from_queue": string(), "to_queue": string(), "reason": string(), "at": time(),
        }))),
        "comments": array(response_object(json!({"author": string(), "text": string(), "at": time()}))),
        "rejection": nullable(reviewer_at(json!({"reason": string()}))),
        "withdrawal": nullable(response_object(json!({"by": string(), "reason": nullable(string()), "at": time()}))),
        "expiry": nullable(response_object(json!({
            "due_at": time(), "policy": nullable(string()), "configured_action": reference("ExpiryAction"),
            "applied_action": reference("ExpiryAction"), "at": time(),
        }))),
        "decision": nullable(response_object(json!({
            "outcome": {"type": "string", "enum": OUTCOMES},
            "decided_by": array(string()),
            "revision": count(),
            "output_hash": hash(),
            "final_output": {"description": "the output that takes effect (null when rejected)"},
            "decided_at": time(),
        }))),
        "event_count": count(),
        "last_event_at": nullable(time()),
        "version": {"type": "integer", "minimum": 0, "description": "the item stream's version: If-Match takes it"},
    }))
}

/// One event of the log, as the audit trail and the feed show it.
fn event() -> Value {
    response_object(json!({
        "position": count(),
        "stream": string(),
        "version": count(),
        "id": uuid(),
        "type": string(),
        "schema_version": count(),
        "recorded_at": timestamp(),
        "actor": string(),
        "causation_id": nullable(uuid()),
        "correlation_id": nullable(uuid()),
        "data": {"description": "the event's data, as hashed"},
        "prev_hash": hash(),
        "hash": hash(),
    }))
}

/// One Server-Sent Event of `GET /v1/events`, in the fields of the SSE format (as OpenAPI 3.2
/// and Schemathesis read them): any of the kinds [`feed_event_kinds`] lists.
fn feed_event() -> Value {
    let kinds: Vec<Value> = feed_event_kinds()
        .into_iter()
        .map(|(id, event, data)| {
            json!({
                "type": "object",
                "properties": {
                    "id": id,
                    "event": event,
                    "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data},
                },
                "required": ["event", "data"],
            })
        })
        .collect();
    json!({"anyOf": kinds})
}

/// The kinds of event the feed sends, as (`id`, `event`, `data`) schemas. A message that ends
/// the feed (say, once its principal is revoked) is one more row.
fn feed_event_kinds() -> Vec<(Value, Value, Value)> {
    let ending = response_object(json!({
        "reason": string(),
        "last_event_id": nullable(count()),
    }));
    vec![
        (
            json!({"type": "string", "pattern": "^[0-9]+$", "description": "the event's position: Last-Event-ID resumes after it"}),
            json!({"type": "string", "description": "the event's type, e.g. ItemSubmitted", "not": {"enum": ["lagged", "revoked"]}}),
            reference("Event"),
        ),
        (
            json!({"not": {}, "description": "none: a final message has no position"}),
            json!({"const": "lagged", "description": "the client fell behind by more than the feed's bound and is cut off; reconnect with Last-Event-ID: last_event_id"}),
            ending.clone(),
        ),
        (
            json!({"not": {}, "description": "none: a final message has no position"}),
            json!({"const": "revoked", "description": "the caller's principal was revoked; nothing after the revocation was sent"}),
            ending,
        ),
    ]
}

fn queue_entry() -> Value {
    response_object(json!({
        "id": uuid(),
        "queue": string(),
        "kind": string(),
        "model": model(),
        "status": {"type": "string", "enum": QUEUE_STATUSES},
        "item_status": {"type": "string", "enum": ITEM_STATUSES},
        "priority": {"type": "integer"},
        "due_at": nullable(timestamp()),
        "risk": {"type": "string", "enum": RISKS},
        "confidence": nullable(json!({"type": "number"})),
        "submitted_by": string(),
        "submitted_at": timestamp(),
        "claimed_by": nullable(string()),
        "claim_expires_at": nullable(timestamp()),
        "approvals": count(),
        "required_approvals": count(),
        "revision": count(),
        "output_hash": hash(),
        "version": count(),
    }))
}

fn principal() -> Value {
    response_object(json!({
        "name": string(),
        "role": {"type": "string", "enum": ROLES},
        "queues": array(string()),
        "added_at": timestamp(),
        "revoked_at": nullable(timestamp()),
        "active": {"type": "boolean"},
    }))
}

fn model() -> Value {
    response_object(json!({"name": string(), "version": string()}))
}

/// What happens when an item's deadline passes without a decision.
fn expiry_action() -> Value {
    json!({"oneOf": [
        body(json!({"action": {"const": "reject"}}), &["action"]),
        body(json!({"action": {"const": "approve"}}), &["action"]),
        body(json!({"action": {"const": "escalate"}, "queue": name()}), &["action", "queue"]),
    ]})
}

/// The body of `POST /v1/items`.
fn submission() -> Value {
    body(
        json!({
            "queue": name(),
            "kind": name(),
            "model": body(json!({"name": name(), "version": name()}), &["name", "version"]),
            "output": any_json_but_null("the AI output to review"),
            "context": {"description": "any JSON the reviewer should see beside the output (default {})"},
            "confidence": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            "risk": {"type": "string", "enum": RISKS, "default": "normal"},
            "priority": {"type": "integer", "minimum": i32::MIN, "maximum": i32::MAX, "default": 0},
            "due_at": {"type": ["string", "null"], "format": "date-time", "description": "the deadline: at least the operator's expiry policy's minimum review window (built-in: 300 s) after submission; what happens then is the policy's, not the submitter's (`on_expiry` is refused with 422 `expiry-is-policy`)"},
            "required_approvals": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1, "description": "distinct reviewers who must approve"},
            "callback_url": {"type": ["string", "null"], "format": "uri", "pattern": "^https?://[^\\s]+$", "maxLength": 2048, "description": "where the server POSTs the decision: a public host, or one on the operator's `--callback-allow` list; no userinfo (else 422 `callback-url-refused`)"},
        }),
        &["queue", "kind", "model", "output"],
    )
}

/// A request body object: these properties, these required, nothing else.
fn body(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

/// A response object: every property always present, nothing else.
fn response_object(properties: Value) -> Value {
    let required: Vec<&String> = properties.as_object().expect("an object").keys().collect();
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn nullable(schema: Value) -> Value {
    json!({"anyOf": [schema, {"type": "null"}]})
}

fn array(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

fn string() -> Value {
    json!({"type": "string"})
}

fn count() -> Value {
    json!({"type": "integer", "minimum": 0})
}

fn uuid() -> Value {
    json!({"type": "string", "format": "uuid"})
}

fn timestamp() -> Value {
    json!({"type": "string", "format": "date-time"})
}

fn hash() -> Value {
    json!({"type": "string", "pattern": "^[0-9a-f]{64}$"})
}

/// A queue, kind or model name: not blank, no surrounding whitespace, at most 200 characters.
fn name() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^\\S(.*\\S)?$"})
}

/// A principal's name: lowercase letters, digits, `.`, `_`, `-`; `system` is reserved.
fn principal_name() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[a-z0-9._-]+$", "not": {"const": "system"}})
}

/// Text a person reads (reasons, instructions, comments): not blank, at most 10,000 characters.
fn text() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 10000, "pattern": "\\S"})
}

/// Optional text: absent, null or blank all mean none.
fn optional_text() -> Value {
    json!({"type": ["string", "null"], "maxLength": 10000})
}

fn output_hash() -> Value {
    json!({"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$", "description": "the output_hash the reviewer saw: refused (409) if the output changed since"})
}

fn any_json_but_null(description: &str) -> Value {
    json!({"type": ["object", "array", "string", "number", "boolean"], "description": description})
}

fn etag() -> Value {
    json!({"type": "string", "pattern": "^\"[0-9]+\"$", "description": "the item's version, quoted"})
}

fn query(name: &'static str, description: &'static str, schema: Value) -> Parameter {
    Parameter {
        name,
        location: In::Query,
        description,
        schema,
    }
}

fn if_match() -> Parameter {
    Parameter {
        name: "If-Match",
        location: In::Header,
        description: "Refuse (409 `stale-version`) unless the item is at this version: `\"3\"`, `3` or `W/\"3\"`",
        schema: json!({"type": "string", "pattern": "^\\s*(W/)?\"?[0-9]{1,19}\"?\\s*$"}),
    }
}

fn json_answer(status: u16, description: &'static str, schema: &str) -> Answer {
    Answer {
        status,
        description,
        content: Content::Json(reference(schema)),
        headers: vec![],
    }
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for operation in operations() {
        let path_item = paths
            .entry(operation.path.to_owned())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("a path item");
        path_item.insert(operation.method.to_owned(), operation_object(&operation));
    }
    let schemas: Map<String, Value> = schemas()
        .into_iter()
        .map(|(name, schema)| (name.to_owned(), schema))
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Approval ledger",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "An event-sourced, audit-first approval ledger for human-in-the-loop AI. Errors are `application/problem+json` (RFC 9457).",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "A principal's token, as `ledger serve` or `POST /v1/principals` printed it once"}},
            "schemas": schemas,
        },
    })
}

/// One operation as the document has it.
fn operation_object(operation: &Operation) -> Value {
    let mut parameters: Vec<Value> = path_captures(operation.path)
        .map(|capture| {
            let schema = if capture == "id" { uuid() } else { string() };
            json!({"name": capture, "in": "path", "required": true, "schema": schema})
        })
        .collect();
    parameters.extend(operation.parameters.iter().map(|parameter| {
        json!({
            "name": parameter.name,
            "in": match parameter.location { In::Query => "query", In::Header => "header" },
            "required": false,
            "description": parameter.description,
            "schema": parameter.schema,
        })
    }));

    let mut responses = Map::new();
    for answer in &operation.answers {
        let mut response = json!({"description": answer.description});
        response["content"] = match &answer.content {
            Content::Json(schema) => json!({"application/json": {"schema": schema}}),
            Content::Text(media_type) => {
                let mut content = Map::new();
                content.insert(
                    (*media_type).to_owned(),
                    json!({"schema": {"type": "string"}}),
                );
                Value::Object(content)
            }
            Content::EventStream(schema) => json!({"text/event-stream": {"schema": schema}}),
            Content::JsonOrText(schema, media_type) => {
                let mut content = Map::new();
                content.insert("application/json".to_owned(), json!({"schema": schema}));
                content.insert(
                    (*media_type).to_owned(),
                    json!({"schema": {"type": "string"}}),
                );
                Value::Object(content)
            }
        };
        if !answer.headers.is_empty() {
            let headers: Map<String, Value> = answer
                .headers
                .iter()
                .map(|(name, schema)| {
                    (
                        (*name).to_owned(),
                        json!({"required": true, "schema": schema}),
                    )
                })
                .collect();
            response["headers"] = Value::Object(headers);
        }
        responses.insert(answer.status.to_string(), response);
    }
    let mut problems = operation.problems.to_vec();
    problems.extend([405, 500]);
    problems.sort_unstable();
    for status in problems {
        let description = PROBLEMS
            .iter()
            .find(|(known, _)| *known == status)
            .map_or("A problem", |(_, description)| description);
        let mut response = json!({
            "description": description,
            "content": {"application/problem+json": {"schema": reference("Problem")}},
        });
        if status == 405 {
            response["headers"] =
                json!({"Allow": {"required": true, "schema": {"type": "string"}}});
        }
        responses.insert(status.to_string(), response);
    }

    let who = match operation.access {
        Access::Anyone => "anyone, without a token",
        Access::Bearer(roles) => roles,
    };
    let mut object = json!({
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "description": format!("Who: {who}."),
        "tags": [tag(operation.path)],
        "responses": responses,
    });
    object["security"] = match operation.access {
        Access::Anyone => json!([]),
        Access::Bearer(_) => json!([{"bearer": []}]),
    };
    if !parameters.is_empty() {
        object["parameters"] = Value::Array(parameters);
    }
    if let Some(schema) = &operation.request {
        let required = schema["required"]
            .as_array()
            .is_some_and(|required| !required.is_empty());
        let description = if required {
            "JSON"
        } else {
            "JSON; optional: an empty body stands for {}"
        };
        object["requestBody"] = json!({
            "required": required,
            "description": description,
            "content": {"application/json": {"schema": schema}},
        });
    }
    object
}

/// The `{captures}` of a path pattern.
fn path_captures(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|segment| {
        segment
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
    })
}

/// The group an operation is listed under.
fn tag(path: &str) -> &'static str {
    if path.starts_with("/v1/items") || path.starts_with("/v1/queue") {
        "items"
    } else if path.starts_with("/v1/principals") {
        "principals"
    } else if path.starts_with("/v1/analytics") {
        "analytics"
    } else if path.starts_with("/v1/audit") || path.ends_with("/record") {
        "audit"
    } else if path.starts_with("/v1/events") {
        "events"
    } else {
        "service"
    }
}

/// `GET /openapi.json`.
pub async fn serve_document() -> axum::Json<Value> {
    axum::Json(document())
}
