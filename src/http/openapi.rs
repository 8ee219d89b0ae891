//! `GET /openapi.json`: the OpenAPI 3.1 document of the API, built from the operation table below.
//!
//! Written as a table rather than with utoipa's derive macros: the request bodies are small, the
//! domain types live in the pure core (which should not depend on a documentation crate), and a
//! test (`tests/it/api.rs`) checks the table against the router both ways: every documented
//! operation is answered by a route (not 404/405), and every route pattern is documented.

use serde_json::{Value, json};

/// One documented operation.
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// Who may call it (`anyone` for unauthenticated endpoints).
    pub roles: &'static str,
    /// The JSON schema of the request body, if it takes one.
    pub request: Option<Value>,
    /// Success status and what it answers.
    pub success: (u16, &'static str),
}

fn object(properties: Value, required: &[&str]) -> Value {
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

fn text() -> Value {
    json!({"type": "string"})
}

fn hash() -> Value {
    json!({"type": "string", "pattern": "^[0-9a-f]{64}$", "description": "the output_hash the reviewer saw"})
}

/// Every operation of the API.
pub fn operations() -> Vec<Operation> {
    let decision = |path, summary, request: Option<Value>| Operation {
        method: "post",
        path,
        summary,
        roles: "reviewer (of the item's queue)",
        request,
        success: (200, "the item after the decision"),
    };
    vec![
        Operation {
            method: "get",
            path: "/healthz",
            summary: "Liveness: events stored and projected",
            roles: "anyone",
            request: None,
            success: (200, "status"),
        },
        Operation {
            method: "get",
            path: "/metrics",
            summary: "Prometheus metrics",
            roles: "anyone",
            request: None,
            success: (200, "text format 0.0.4"),
        },
        Operation {
            method: "get",
            path: "/openapi.json",
            summary: "This document",
            roles: "anyone",
            request: None,
            success: (200, "OpenAPI 3.1"),
        },
        Operation {
            method: "post",
            path: "/v1/items",
            summary: "Submit an AI output for review (Idempotency-Key makes a retry answer the first item)",
            roles: "agent",
            request: Some(object(
                json!({
                    "queue": text(), "kind": text(),
                    "model": object(json!({"name": text(), "version": text()}), &["name", "version"]),
                    "output": {"description": "any JSON but null"},
                    "context": {"description": "any JSON"},
                    "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                    "risk": {"enum": ["low", "normal", "high"]},
                    "priority": {"type": "integer"},
                    "due_at": {"type": "string", "format": "date-time"},
                    "required_approvals": {"type": "integer", "minimum": 1, "maximum": 10},
                    "on_expiry": {"type": "object", "properties": {"action": {"enum": ["reject", "approve", "escalate"]}, "queue": text()}},
                    "callback_url": {"type": "string", "format": "uri"},
                }),
                &["queue", "kind", "model", "output"],
            )),
            success: (201, "the item (200 for a retried Idempotency-Key)"),
        },
        Operation {
            method: "get",
            path: "/v1/items/{id}",
            summary: "An item, with its version (also its ETag)",
            roles: "agent (own), reviewer (its queues), auditor, admin",
            request: None,
            success: (200, "the item"),
        },
        Operation {
            method: "get",
            path: "/v1/items/{id}/events",
            summary: "The item's audit trail: every event with position, hash and previous hash",
            roles: "agent (own), reviewer (its queues), auditor, admin",
            request: None,
            success: (200, "the events"),
        },
        Operation {
            method: "get",
            path: "/v1/items/{id}/decision",
            summary: "Long-poll (?wait=30s) until decided, changes requested or withdrawn",
            roles: "agent (own), reviewer (its queues), auditor, admin",
            request: None,
            success: (
                200,
                "the answered item; 202 with the current state when the wait ends",
            ),
        },
        decision(
            "/v1/items/{id}/claim",
            "Claim the item (a lease)",
            Some(object(
                json!({"lease_seconds": {"type": "integer", "minimum": 1, "maximum": 86400}}),
                &[],
            )),
        ),
        decision("/v1/items/{id}/release", "Release one's claim", None),
        decision(
            "/v1/items/{id}/approve",
            "Approve the output",
            Some(object(json!({"seen_output_hash": hash()}), &[])),
        ),
        decision(
            "/v1/items/{id}/edit",
            "Edit the output and approve the edit",
            Some(object(
                json!({"output": {"description": "the edited output"}, "note": text(), "seen_output_hash": hash()}),
                &["output"],
            )),
        ),
        decision(
            "/v1/items/{id}/reject",
            "Reject with a reason",
            Some(object(
                json!({"reason": text(), "seen_output_hash": hash()}),
                &["reason"],
            )),
        ),
        decision(
            "/v1/items/{id}/request-changes",
            "Send it back to the submitter with instructions",
            Some(object(
                json!({"instructions": text(), "seen_output_hash": hash()}),
                &["instructions"],
            )),
        ),
        decision(
            "/v1/items/{id}/escalate",
            "Move it to another queue",
            Some(object(
                json!({"to_queue": text(), "reason": text()}),
                &["to_queue", "reason"],
            )),
        ),
        Operation {
            method: "post",
            path: "/v1/items/{id}/comments",
            summary: "Comment (also on decided items)",
            roles: "reviewer, agent (own), admin",
            request: Some(object(json!({"text": text()}), &["text"])),
            success: (201, "the item"),
        },
        Operation {
            method: "post",
            path: "/v1/items/{id}/revisions",
            summary: "Answer a change request with a new revision",
            roles: "the submitting agent",
            request: Some(object(
                json!({"output": {"description": "the new revision"}, "note": text()}),
                &["output"],
            )),
            success: (201, "the item"),
        },
        Operation {
            method: "post",
            path: "/v1/items/{id}/withdraw",
            summary: "Withdraw the item before a decision",
            roles: "the submitting agent",
            request: Some(object(json!({"reason": text()}), &[])),
            success: (200, "the item"),
        },
        Operation {
            method: "get",
            path: "/v1/queue",
            summary: "The projected queue (?queue=&status=&assignee=&kind=&limit=&cursor=), by priority, due time, submission",
            roles: "reviewer (its queues), auditor, admin",
            request: None,
            success: (200, "items and next_cursor"),
        },
        Operation {
            method: "get",
            path: "/v1/events",
            summary: "The log as Server-Sent Events (?after=POSITION, Last-Event-ID)",
            roles: "auditor, admin",
            request: None,
            success: (200, "text/event-stream"),
        },
        Operation {
            method: "post",
            path: "/v1/principals",
            summary: "Add a principal; answers its token once",
            roles: "admin",
            request: Some(object(
                json!({"name": text(), "role": {"enum": ["agent", "reviewer", "auditor", "admin"]}, "queues": {"type": "array", "items": text()}}),
                &["name", "role"],
            )),
            success: (201, "the principal and its token"),
        },
        Operation {
            method: "get",
            path: "/v1/principals",
            summary: "Every principal (never a token or its hash)",
            roles: "admin, auditor",
            request: None,
            success: (200, "principals"),
        },
        Operation {
            method: "delete",
            path: "/v1/principals/{name}",
            summary: "Revoke a principal",
            roles: "admin",
            request: None,
            success: (200, "the revoked principal"),
        },
        Operation {
            method: "get",
            path: "/v1/principals/{name}/callback-secret",
            summary: "The agent's callback signing secret",
            roles: "admin, the agent itself",
            request: None,
            success: (200, "agent and secret"),
        },
    ]
}

/// The OpenAPI 3.1 document.
pub fn document() -> Value {
    let problem = json!({"description": "a problem (RFC 9457)", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}});
    let mut paths = serde_json::Map::new();
    for operation in operations() {
        let mut responses = serde_json::Map::new();
        responses.insert(
            operation.success.0.to_string(),
            json!({"description": operation.success.1}),
        );
        for status in ["400", "401", "403", "404", "409", "413", "422"] {
            responses.insert(status.into(), problem.clone());
        }
        let mut entry = json!({
            "summary": operation.summary,
            "description": format!("Who: {}.", operation.roles),
            "responses": responses,
        });
        if operation.roles != "anyone" {
            entry["security"] = json!([{"bearer": []}]);
        }
        let parameters: Vec<Value> = ["id", "name"]
            .iter()
            .filter(|name| operation.path.contains(&format!("{{{name}}}")))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !parameters.is_empty() {
            entry["parameters"] = Value::Array(parameters);
        }
        if let Some(schema) = operation.request {
            entry["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": schema}}});
        }
        paths
            .entry(operation.path.to_owned())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("a path item")
            .insert(operation.method.to_owned(), entry);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Approval ledger",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "An event-sourced, audit-first approval ledger for human-in-the-loop AI.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Problem": {
                "type": "object",
                "properties": {
                    "type": text(), "title": text(), "status": {"type": "integer"}, "detail": text(),
                    "problem": text(), "rule": text(), "current_version": {"type": ["integer", "null"]},
                },
                "required": ["type", "title", "status", "detail"],
            }},
        },
    })
}

/// `GET /openapi.json`.
pub async fn serve_document() -> axum::Json<Value> {
    axum::Json(document())
}
