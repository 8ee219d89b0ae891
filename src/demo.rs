//! `ledger demo seed`: a realistic review history written through the real domain and log, so
//! that a new ledger has a full queue and a history worth analysing at once.
//!
//! Several models with different true override rates per kind of output, reviewers of different
//! speed and strictness, edits of varying size, rejection reasons, change requests and
//! revisions, escalations, expiries, withdrawals, comments and four-eyes approvals, spread over
//! weeks (the domain's own times; the log stamps when the events were written). Every item is
//! simulated from its own random stream (ChaCha8, seeded from the seed and the item's number), and
//! its id is derived from both, so a seed gives the same history whatever the interleaving of the
//! concurrent writers. The true override rate of each (model, kind) slice is printed with the
//! result, for checking what the analytics measure against what was simulated.

use crate::commands::{CommandError, execute};
use crate::log::EventLog;
use chrono::{DateTime, Duration, Utc};
use projections::item::{Command, CommandContext, ExpiryPolicy, ModelIdentity, Risk, Submission};
use projections::principal::Role;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::sync::Arc;
use uuid::Uuid;

/// A model, and how often humans override its outputs before the kind's factor.
const MODELS: [(&str, &str, f64, f64); 4] = [
    // name, version, base override rate, share of submissions
    ("gpt-x", "2026-10", 0.12, 0.30),
    ("gpt-x", "2026-11", 0.07, 0.30),
    ("claude-y", "3.5", 0.10, 0.25),
    ("local-llm", "7b", 0.30, 0.15),
];

/// A kind of output: its queue, and how much harder it is than average.
const KINDS: [(&str, &str, f64); 4] = [
    ("customer-reply", "support", 1.0),
    ("tool-call", "support", 0.6),
    ("lead-score", "sales", 1.3),
    ("contract-clause", "legal", 1.8),
];

/// Reviewers: name, queues, mean minutes to pick an item up, share of overrides that are
/// rejections rather than edits.
const REVIEWERS: [(&str, &[&str], f64, f64); 6] = [
    ("rita", &["support"], 20.0, 0.3),
    ("sam", &["support", "sales"], 45.0, 0.5),
    ("omar", &["sales"], 30.0, 0.4),
    ("lena", &["legal"], 120.0, 0.6),
    ("kai", &["legal", "support"], 60.0, 0.35),
    ("ines", &["support", "sales", "legal"], 90.0, 0.45),
];

const AGENTS: [&str; 3] = ["drafter", "scorer", "clause-bot"];

const REASONS: [&str; 6] = [
    "wrong customer account",
    "tone not appropriate",
    "factually incorrect",
    "missing required disclaimer",
    "out of policy",
    "hallucinated reference",
];

/// How often an item needs two approvals (four eyes).
const FOUR_EYES: f64 = 0.08;

/// How often the second reviewer of a four-eyes item rejects an output the first approved.
const SECOND_OPINION_REJECTS: f64 = 0.1;

/// How often the AI's output is wrong in a slice: what the simulation draws each item from.
fn error_rate(model: usize, kind: usize) -> f64 {
    (MODELS[model].2 * KINDS[kind].2).min(0.9)
}

/// The true override rate of a slice: wrong outputs are always edited or rejected, and a right
/// one is overridden only by a dissenting second reviewer of a four-eyes item.
pub fn true_override_rate(model: usize, kind: usize) -> f64 {
    let wrong = error_rate(model, kind);
    wrong + (1.0 - wrong) * FOUR_EYES * SECOND_OPINION_REJECTS
}

/// One slice's truth, as printed.
#[derive(Debug, Clone, Serialize)]
pub struct TruthRow {
    pub model: String,
    pub model_version: String,
    pub kind: String,
    pub override_rate: f64,
}

/// What a seeding wrote.
#[derive(Debug, Clone, Serialize)]
pub struct SeedReport {
    pub seed: u64,
    pub items: usize,
    pub events: u64,
    /// Tokens of the demo principals this run created (existing ones are left as they are).
    pub tokens: std::collections::BTreeMap<String, String>,
    pub truth: Vec<TruthRow>,
}

fn pick_weighted(rng: &mut ChaCha8Rng, weights: impl Iterator<Item = f64> + Clone) -> usize {
    let total: f64 = weights.clone().sum();
    let mut draw = rng.random_range(0.0..total);
    for (index, weight) in weights.enumerate() {
        if draw < weight {
            return index;
        }
        draw -= weight;
    }
    0
}

/// Minutes drawn from an exponential distribution of this mean.
fn minutes(rng: &mut ChaCha8Rng, mean: f64) -> Duration {
    let draw: f64 = rng.random_range(f64::EPSILON..1.0);
    Duration::seconds((-draw.ln() * mean * 60.0) as i64 + 30)
}

fn output_of(kind: &str, rng: &mut ChaCha8Rng, item: usize) -> serde_json::Value {
    match kind {
        "customer-reply" => serde_json::json!({
            "reply": format!("Dear customer, your order #{} has been refunded; it should reach you within {} days.", 10_000 + item, rng.random_range(2..9)),
        }),
        "tool-call" => serde_json::json!({
            "tool": "issue_refund",
            "arguments": {"order": 10_000 + item, "amount": rng.random_range(5..500)},
        }),
        "lead-score" => serde_json::json!({
            "score": (rng.random_range(0..100) as f64) / 100.0,
            "reason": "engaged with pricing page twice this week",
        }),
        _ => serde_json::json!({
            "clause": format!("Liability is capped at {} times the annual fees.", rng.random_range(1..4)),
            "flag": "liability-cap",
        }),
    }
}

/// A human's edit of `output`: small (one word), medium (a sentence) or large (rewritten).
fn edit_of(output: &serde_json::Value, rng: &mut ChaCha8Rng) -> serde_json::Value {
    let mut edited = output.clone();
    let size = rng.random_range(0..3);
    if let Some(object) = edited.as_object_mut() {
        for value in object.values_mut() {
            match value {
                serde_json::Value::String(text) => {
                    *text = match size {
                        0 => text.replacen("the", "this", 1),
                        1 => format!("{text} We apologise for the delay."),
                        _ => {
                            "Rewritten by the reviewer: please contact support for details.".into()
                        }
                    };
                }
                serde_json::Value::Number(number) => {
                    if let Some(float) = number.as_f64() {
                        *value = serde_json::json!((float * 0.5 * 100.0).round() / 100.0);
                    }
                }
                _ => {}
            }
        }
    }
    if edited == *output {
        edited["edited"] = serde_json::Value::Bool(true);
    }
    edited
}

/// Writes the demo principals (if absent) and `items` simulated items through the domain.
pub async fn seed(
    log: Arc<dyn EventLog>,
    items: usize,
    seed: u64,
    weeks: i64,
    now: DateTime<Utc>,
) -> anyhow::Result<SeedReport> {
    let projector = crate::projector::Projector::start(log.clone()).await?;
    let mut tokens = std::collections::BTreeMap::new();
    let principals = AGENTS
        .iter()
        .map(|name| (*name, Role::Agent, Vec::new()))
        .chain(REVIEWERS.iter().map(|(name, queues, ..)| {
            let queues = queues.iter().map(|queue| queue.to_string()).collect();
            (*name, Role::Reviewer, queues)
        }))
        .chain([("anna", Role::Analyst, Vec::new())]);
    for (name, role, queues) in principals {
        if projector.read().principals.get(name).is_some() {
            continue;
        }
        let token =
            crate::principals::add_principal(log.as_ref(), &projector, "cli", name, role, queues)
                .await?;
        tokens.insert(name.to_owned(), token);
    }
    let head_before = log.head().await?;
    let start = now - Duration::weeks(weeks);
    let span = (now - start).num_seconds().max(1) as f64;
    let writers = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for item in 0..items {
        let permit = writers.clone().acquire_owned().await?;
        let log = log.clone();
        // Items are submitted in order over the weeks; the last 5% are still open.
        let submitted =
            start + Duration::seconds((span * 0.97 * item as f64 / items.max(1) as f64) as i64);
        let open = item * 20 >= items * 19;
        tasks.spawn(async move {
            let _permit = permit;
            simulate(log.as_ref(), seed, item, submitted, open).await
        });
        while let Some(done) = tasks.try_join_next() {
            done??;
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let truth = (0..MODELS.len())
        .flat_map(|model| {
            (0..KINDS.len()).map(move |kind| TruthRow {
                model: MODELS[model].0.to_owned(),
                model_version: MODELS[model].1.to_owned(),
                kind: KINDS[kind].0.to_owned(),
                override_rate: true_override_rate(model, kind),
            })
        })
        .collect();
    Ok(SeedReport {
        seed,
        items,
        events: log.head().await? - head_before,
        tokens,
        truth,
    })
}

/// The id of item `item` of seed `seed`.
pub fn item_id(seed: u64, item: usize) -> Uuid {
    const NAMESPACE: Uuid = Uuid::from_u128(0x6465_6d6f_2d73_6565_642d_6974_656d_7321);
    Uuid::new_v5(&NAMESPACE, format!("{seed}/{item}").as_bytes())
}

/// One item's history.
async fn simulate(
    log: &dyn EventLog,
    seed: u64,
    item: usize,
    submitted: DateTime<Utc>,
    open: bool,
) -> anyhow::Result<()> {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (item as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let id = item_id(seed, item);
    let model = pick_weighted(&mut rng, MODELS.iter().map(|model| model.3));
    let kind = rng.random_range(0..KINDS.len());
    let (kind_name, queue, _) = KINDS[kind];
    let agent = AGENTS[kind % AGENTS.len()];
    let wrong = rng.random_bool(error_rate(model, kind));
    let confidence = if wrong {
        rng.random_range(0.35..0.85)
    } else {
        rng.random_range(0.6..0.99)
    };
    let risk = match rng.random_range(0..10) {
        0 => Risk::High,
        1..=3 => Risk::Low,
        _ => Risk::Normal,
    };
    let policy: Arc<ExpiryPolicy> = ExpiryPolicy::built_in().into();
    let expires = !open && rng.random_bool(0.02);
    let due_at = submitted
        + if expires {
            Duration::hours(2)
        } else {
            Duration::days(5)
        };
    let output = output_of(kind_name, &mut rng, item);
    let required = if rng.random_bool(FOUR_EYES) { 2 } else { 1 };
    let mut time = submitted;
    let run = |actor: &str, at: DateTime<Utc>, command: Command| {
        let context = CommandContext::new(actor, at);
        async move {
            match execute(log, id, &command, &context, None).await {
                Ok(_) => Ok(()),
                // A command the item no longer takes (it was decided meanwhile) is the
                // simulation's mistake, not the log's: skipped.
                Err(CommandError::Domain(_)) => Ok(()),
                Err(error) => Err(anyhow::Error::from(error)),
            }
        }
    };
    run(
        agent,
        time,
        Command::Submit(Submission {
            item_id: id,
            queue: queue.into(),
            kind: kind_name.into(),
            model: ModelIdentity {
                name: MODELS[model].0.into(),
                version: MODELS[model].1.into(),
            },
            output: output.clone().into(),
            context: serde_json::json!({"ticket": 40_000 + item, "channel": "email"}).into(),
            confidence: Some((confidence * 100.0_f64).round() / 100.0),
            risk,
            priority: rng.random_range(0..5),
            due_at: Some(due_at),
            required_approvals: required,
            callback_url: None,
            expiry_policy: policy.clone(),
            auto_approval: None,
        }),
    )
    .await?;
    if open {
        return Ok(());
    }
    if expires {
        return run(
            CommandContext::SCHEDULER,
            due_at + Duration::minutes(1),
            Command::Expire { policy },
        )
        .await;
    }
    if rng.random_bool(0.01) {
        time += minutes(&mut rng, 30.0);
        return run(
            agent,
            time,
            Command::Withdraw {
                reason: Some("superseded by a newer draft".into()),
            },
        )
        .await;
    }
    let reviewers_of = |queue: &str| -> Vec<usize> {
        (0..REVIEWERS.len())
            .filter(|&reviewer| REVIEWERS[reviewer].1.contains(&queue))
            .collect()
    };
    let mut queue = queue;
    let mut candidates = reviewers_of(queue);
    let mut reviewer = candidates[rng.random_range(0..candidates.len())];
    let lease = Duration::minutes(30);
    time += minutes(&mut rng, REVIEWERS[reviewer].2);
    run(REVIEWERS[reviewer].0, time, Command::Claim { lease }).await?;
    if rng.random_bool(0.05) {
        // Sent back for changes, revised by the agent, then claimed again.
        time += Duration::minutes(rng.random_range(2..15));
        let instructions = "please cite the order number and the refund amount".to_owned();
        run(
            REVIEWERS[reviewer].0,
            time,
            Command::RequestChanges {
                instructions,
                seen_output_hash: None,
            },
        )
        .await?;
        time += minutes(&mut rng, 60.0);
        let revised = edit_of(&output, &mut rng);
        run(
            agent,
            time,
            Command::Revise {
                output: revised.into(),
                note: Some("cited the order".into()),
            },
        )
        .await?;
        time += minutes(&mut rng, REVIEWERS[reviewer].2);
        run(REVIEWERS[reviewer].0, time, Command::Claim { lease }).await?;
    }
    if queue != "legal" && rng.random_bool(0.03) {
        time += Duration::minutes(rng.random_range(2..20));
        run(
            REVIEWERS[reviewer].0,
            time,
            Command::Escalate {
                to_queue: "legal".into(),
                reason: "needs a lawyer's eye".into(),
            },
        )
        .await?;
        queue = "legal";
        candidates = reviewers_of(queue);
        reviewer = candidates[rng.random_range(0..candidates.len())];
        time += minutes(&mut rng, REVIEWERS[reviewer].2);
        run(REVIEWERS[reviewer].0, time, Command::Claim { lease }).await?;
    }
    if rng.random_bool(0.05) {
        run(
            REVIEWERS[reviewer].0,
            time,
            Command::Comment {
                text: "checked against the ticket".into(),
            },
        )
        .await?;
    }
    time += Duration::minutes(rng.random_range(1..12));
    let decider = REVIEWERS[reviewer].0;
    if wrong && rng.random_bool(REVIEWERS[reviewer].3) {
        let reason = REASONS[rng.random_range(0..REASONS.len())].to_owned();
        return run(
            decider,
            time,
            Command::Reject {
                reason,
                seen_output_hash: None,
            },
        )
        .await;
    }
    if wrong {
        let edited = edit_of(&output, &mut rng);
        run(
            decider,
            time,
            Command::EditAndApprove {
                edited_output: edited.into(),
                note: Some("corrected".into()),
                seen_output_hash: None,
            },
        )
        .await?;
    } else {
        run(
            decider,
            time,
            Command::Approve {
                seen_output_hash: None,
            },
        )
        .await?;
    }
    if required == 2 {
        // The second pair of eyes: another reviewer of the queue.
        let others: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&other| other != reviewer)
            .collect();
        if let Some(&second) = others.get(rng.random_range(0..others.len().max(1))) {
            time += minutes(&mut rng, REVIEWERS[second].2);
            run(REVIEWERS[second].0, time, Command::Claim { lease }).await?;
            time += Duration::minutes(rng.random_range(1..8));
            // An output the first approved as is, the second may still reject (reviewers do not
            // always agree: what the agreement measure sees).
            let dissents = !wrong && rng.random_bool(SECOND_OPINION_REJECTS);
            let command = if dissents {
                Command::Reject {
                    reason: "second reviewer disagrees".into(),
                    seen_output_hash: None,
                }
            } else {
                Command::Approve {
                    seen_output_hash: None,
                }
            };
            run(REVIEWERS[second].0, time, command).await?;
        }
    }
    Ok(())
}
