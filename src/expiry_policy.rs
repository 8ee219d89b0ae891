//! The operator's expiry policies (`ledger serve --expiry-policy FILE`, ADR 0007): which
//! `ExpiryPolicy` applies to an item of a queue and a kind, read and checked once at start.
//!
//! The file is JSON, one object with a list of named policies:
//!
//! ```json
//! {"policies": [
//!   {"name": "strict", "action": "reject", "minimum_review_window_seconds": 900},
//!   {"name": "support-replies", "queue": "support", "kind": "customer-reply",
//!    "action": "approve", "allow_auto_approval": true, "minimum_review_window_seconds": 600},
//!   {"name": "legal-to-leads", "queue": "legal", "action": "escalate", "escalate_to": "legal-leads"}
//! ]}
//! ```
//!
//! An item gets the most specific policy that matches it: one naming its queue and its kind, else
//! its queue, else its kind, else the entry naming neither (the default), else the built-in
//! default (reject, no auto-approval, a 5-minute window). A file with a mistake stops the start,
//! naming the file and the entry: a policy that is silently ignored is a hole in review.

use anyhow::Context;
use projections::item::{
    DEFAULT_MINIMUM_REVIEW_WINDOW, ExpiryAction, ExpiryPolicy, MAXIMUM_MINIMUM_REVIEW_WINDOW,
    validate_name,
};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Every configured policy, indexed for [`ExpiryPolicies::resolve`].
#[derive(Debug, Clone, PartialEq)]
pub struct ExpiryPolicies {
    /// The entry naming neither queue nor kind, or the built-in default.
    default: Arc<ExpiryPolicy>,
    by_queue: HashMap<String, QueuePolicies>,
    by_kind: HashMap<String, Arc<ExpiryPolicy>>,
    /// How many entries the file had.
    entries: usize,
}

/// The policies that name one queue: for any kind, and for particular kinds.
#[derive(Debug, Clone, Default, PartialEq)]
struct QueuePolicies {
    any_kind: Option<Arc<ExpiryPolicy>>,
    by_kind: HashMap<String, Arc<ExpiryPolicy>>,
}

impl Default for ExpiryPolicies {
    /// The built-in default for every item: what `ledger serve` applies without a policy file.
    fn default() -> Self {
        ExpiryPolicies {
            default: Arc::new(ExpiryPolicy::built_in()),
            by_queue: HashMap::new(),
            by_kind: HashMap::new(),
            entries: 0,
        }
    }
}

/// The file as written: `{"policies": [...]}`. Entries are read one by one, so that an error
/// names the entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    policies: Vec<serde_json::Value>,
}

/// One entry of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyEntry {
    name: String,
    queue: Option<String>,
    kind: Option<String>,
    action: ActionName,
    /// The queue an `escalate` moves the item to.
    escalate_to: Option<String>,
    #[serde(default)]
    allow_auto_approval: bool,
    /// Absent: the built-in default's window.
    minimum_review_window_seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ActionName {
    Reject,
    Approve,
    Escalate,
}

impl ExpiryPolicies {
    /// Reads and checks the policy file at `path`; an error names the file and the bad entry.
    pub fn read_file(path: &Path) -> anyhow::Result<ExpiryPolicies> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading expiry policy file {}", path.display()))?;
        ExpiryPolicies::from_json(&text)
            .map_err(|reason| anyhow::anyhow!("expiry policy file {}: {reason}", path.display()))
    }

    /// Parses and checks the policies of a file's text; the error says which entry is wrong and why.
    pub fn from_json(text: &str) -> Result<ExpiryPolicies, String> {
        let file: PolicyFile = serde_json::from_str(text)
            .map_err(|error| format!(r#"not a JSON object {{"policies": [...]}}: {error}"#))?;
        let mut policies = ExpiryPolicies::default();
        let mut default_entry: Option<String> = None;
        let mut names: HashMap<String, usize> = HashMap::new();
        for (index, raw_entry) in file.policies.into_iter().enumerate() {
            let number = index + 1;
            let label = match raw_entry.get("name").and_then(serde_json::Value::as_str) {
                Some(name) => format!("entry {number} ({name:?})"),
                None => format!("entry {number}"),
            };
            let entry: PolicyEntry =
                serde_json::from_value(raw_entry).map_err(|error| format!("{label}: {error}"))?;
            let policy = Arc::new(
                entry
                    .to_policy()
                    .map_err(|reason| format!("{label}: {reason}"))?,
            );
            if let Some(first) = names.insert(policy.name.clone(), number) {
                return Err(format!(
                    "{label}: the name is taken by entry {first}; names must be unique, as expiry events record them"
                ));
            }
            let taken = |slot: Option<&Arc<ExpiryPolicy>>| match slot {
                Some(other) => Err(format!(
                    "{label}: policy {:?} matches the same items; one entry per queue and kind",
                    other.name
                )),
                None => Ok(()),
            };
            match (entry.queue, entry.kind) {
                (Some(queue), Some(kind)) => {
                    let queue_policies = policies.by_queue.entry(queue).or_default();
                    taken(queue_policies.by_kind.get(&kind))?;
                    queue_policies.by_kind.insert(kind, policy);
                }
                (Some(queue), None) => {
                    let queue_policies = policies.by_queue.entry(queue).or_default();
                    taken(queue_policies.any_kind.as_ref())?;
                    queue_policies.any_kind = Some(policy);
                }
                (None, Some(kind)) => {
                    taken(policies.by_kind.get(&kind))?;
                    policies.by_kind.insert(kind, policy);
                }
                (None, None) => {
                    if let Some(first) = &default_entry {
                        return Err(format!(
                            "{label}: policy {first:?} is the default already (an entry with neither queue nor kind)"
                        ));
                    }
                    default_entry = Some(policy.name.clone());
                    policies.default = policy;
                }
            }
            policies.entries += 1;
        }
        Ok(policies)
    }

    /// The policy for an item in `queue` of `kind`: the most specific match (shared, so that a
    /// command carries it for the cost of a reference count).
    pub fn resolve(&self, queue: &str, kind: &str) -> &Arc<ExpiryPolicy> {
        let queue_policies = self.by_queue.get(queue);
        queue_policies
            .and_then(|policies| policies.by_kind.get(kind))
            .or_else(|| queue_policies.and_then(|policies| policies.any_kind.as_ref()))
            .or_else(|| self.by_kind.get(kind))
            .unwrap_or(&self.default)
    }

    /// How many policies the operator configured (the built-in default not counted).
    pub fn configured(&self) -> usize {
        self.entries
    }

    /// The policy for items no other policy matches: the file's default entry, or the built-in one.
    pub fn default_policy(&self) -> &ExpiryPolicy {
        &self.default
    }
}

impl PolicyEntry {
    fn to_policy(&self) -> Result<ExpiryPolicy, String> {
        if let Some(queue) = &self.queue {
            validate_name("queue", queue).map_err(|error| error.to_string())?;
        }
        if let Some(kind) = &self.kind {
            validate_name("kind", kind).map_err(|error| error.to_string())?;
        }
        let action = match (self.action, &self.escalate_to) {
            (ActionName::Escalate, Some(queue)) => ExpiryAction::Escalate {
                queue: queue.clone(),
            },
            (ActionName::Escalate, None) => {
                return Err(
                    r#"the action "escalate" needs "escalate_to": the queue to move the item to"#
                        .to_owned(),
                );
            }
            (_, Some(_)) => {
                return Err(r#""escalate_to" goes only with the action "escalate""#.to_owned());
            }
            (ActionName::Reject, None) => ExpiryAction::Reject,
            (ActionName::Approve, None) => ExpiryAction::Approve,
        };
        if let (ExpiryAction::Escalate { queue: to_queue }, Some(queue)) = (&action, &self.queue)
            && to_queue == queue
        {
            return Err(format!(
                "escalate_to: is the queue {queue:?} the policy is for; escalate to another queue"
            ));
        }
        let minimum_review_window = match self.minimum_review_window_seconds {
            None => DEFAULT_MINIMUM_REVIEW_WINDOW,
            Some(seconds) => i64::try_from(seconds)
                .ok()
                .and_then(chrono::Duration::try_seconds)
                .filter(|window| *window <= MAXIMUM_MINIMUM_REVIEW_WINDOW)
                .ok_or_else(|| {
                    format!(
                        "minimum_review_window_seconds: must be from 0 to {} seconds",
                        MAXIMUM_MINIMUM_REVIEW_WINDOW.num_seconds()
                    )
                })?,
        };
        let policy = ExpiryPolicy {
            name: self.name.clone(),
            action,
            allow_auto_approval: self.allow_auto_approval,
            minimum_review_window,
        };
        policy.validate().map_err(|error| error.to_string())?;
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_specific_policy_matches() {
        let policies = ExpiryPolicies::from_json(
            r#"{"policies": [
                {"name": "default", "action": "reject", "minimum_review_window_seconds": 60},
                {"name": "support", "queue": "support", "action": "escalate", "escalate_to": "leads"},
                {"name": "replies", "kind": "reply", "action": "approve", "allow_auto_approval": true},
                {"name": "support-replies", "queue": "support", "kind": "reply", "action": "reject",
                 "minimum_review_window_seconds": 0}
            ]}"#,
        )
        .unwrap();
        let name_for = |queue, kind| policies.resolve(queue, kind).name.as_str();
        assert_eq!(name_for("support", "reply"), "support-replies");
        assert_eq!(name_for("support", "score"), "support");
        assert_eq!(name_for("sales", "reply"), "replies");
        assert_eq!(name_for("sales", "score"), "default");
        assert_eq!(policies.configured(), 4);
        let replies = policies.resolve("sales", "reply");
        assert_eq!(replies.action, ExpiryAction::Approve);
        assert!(replies.allow_auto_approval);
        assert_eq!(replies.minimum_review_window, DEFAULT_MINIMUM_REVIEW_WINDOW);
        assert_eq!(
            policies.resolve("support", "reply").minimum_review_window,
            chrono::Duration::zero()
        );
    }

    #[test]
    fn without_a_file_or_a_default_entry_the_built_in_default_applies() {
        let built_in = ExpiryPolicies::default();
        assert_eq!(**built_in.resolve("any", "thing"), ExpiryPolicy::built_in());
        assert_eq!(built_in.configured(), 0);
        let only_queues = ExpiryPolicies::from_json(
            r#"{"policies": [{"name": "legal", "queue": "legal", "action": "reject"}]}"#,
        )
        .unwrap();
        assert_eq!(
            **only_queues.resolve("support", "reply"),
            ExpiryPolicy::built_in()
        );
        assert_eq!(
            ExpiryPolicies::from_json(r#"{"policies": []}"#).unwrap(),
            built_in
        );
    }

    #[test]
    fn a_bad_entry_is_refused_naming_it_and_why() {
        let refusal = |entries: &str| {
            ExpiryPolicies::from_json(&format!(r#"{{"policies": [{entries}]}}"#)).unwrap_err()
        };
        let cases = [
            (
                r#"{"name": "a", "action": "approve"}"#,
                r#"entry 1 ("a"): allow_auto_approval: must be true"#,
            ),
            (
                r#"{"name": "a", "action": "reject"}, {"name": "b", "action": "sometimes"}"#,
                r#"entry 2 ("b"): unknown variant `sometimes`"#,
            ),
            (
                r#"{"name": "a", "action": "escalate"}"#,
                r#"entry 1 ("a"): the action "escalate" needs "escalate_to""#,
            ),
            (
                r#"{"name": "a", "action": "reject", "escalate_to": "x"}"#,
                r#"entry 1 ("a"): "escalate_to" goes only with the action "escalate""#,
            ),
            (
                r#"{"name": "a", "queue": "q", "action": "escalate", "escalate_to": "q"}"#,
                r#"entry 1 ("a"): escalate_to: is the queue "q""#,
            ),
            (
                r#"{"name": "a", "action": "reject", "on_expiry": "approve"}"#,
                r#"entry 1 ("a"): unknown field `on_expiry`"#,
            ),
            (
                r#"{"name": "a", "action": "reject", "minimum_review_window_seconds": 99999999999}"#,
                r#"entry 1 ("a"): minimum_review_window_seconds: must be from 0 to 31536000 seconds"#,
            ),
            (
                r#"{"name": "a", "action": "reject"}, {"name": "a", "queue": "q", "action": "reject"}"#,
                r#"entry 2 ("a"): the name is taken by entry 1"#,
            ),
            (
                r#"{"name": "a", "kind": "k", "action": "reject"}, {"name": "b", "kind": "k", "action": "reject"}"#,
                r#"entry 2 ("b"): policy "a" matches the same items"#,
            ),
            (
                r#"{"name": "a", "action": "reject"}, {"name": "b", "action": "reject"}"#,
                r#"entry 2 ("b"): policy "a" is the default already"#,
            ),
            (
                r#"{"name": " ", "action": "reject"}"#,
                r#"entry 1 (" "): name: must not be empty"#,
            ),
            (r#"{"action": "reject"}"#, "entry 1: missing field `name`"),
        ];
        for (entries, expected) in cases {
            let error = refusal(entries);
            assert!(error.starts_with(expected), "{entries}: {error}");
        }
        assert!(
            ExpiryPolicies::from_json(r#"[{"name": "a"}]"#)
                .unwrap_err()
                .starts_with(r#"not a JSON object {"policies": [...]}"#)
        );
    }
}
