//! Card enrolment: assigning the next card presented at a door to a holder.
//!
//! The decision loop owns each door's enrolment window (opened by
//! `enroll.start`): it catches the first card presented at the door while
//! the window is open and hands it here instead of deciding it. Assigning
//! writes the store and flushes, which the decision loop must never wait for,
//! so one task takes the jobs in order and runs each assignment on a blocking
//! thread, then records `card.enrolled` or `enroll.refused`.

use super::audit::{Audit, Draft};
use super::clock::Clock;
use crate::provision::KeyService;
use porter_drivers::CardUid;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tokio::sync::mpsc;

pub use crate::config::enroll::{DEFAULT_WINDOW, WINDOW_RANGE_S};

/// One card to assign.
#[derive(Debug)]
pub struct EnrollJob {
    pub holder: String,
    pub uid: CardUid,
    pub door: String,
    pub device: String,
}

/// How an enrolment ended, for the door's feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Enrolled,
    Refused,
}

/// Takes jobs until the channel closes; `done` hears each outcome with the
/// door's index so the door can signal it.
pub async fn run(
    svc: Arc<KeyService>,
    audit: Audit,
    clock: Arc<dyn Clock>,
    mut jobs: mpsc::Receiver<EnrollJob>,
    done: impl Fn(&str, Outcome) + Send + 'static,
) {
    while let Some(job) = jobs.recv().await {
        let s = svc.clone();
        let (holder, uid) = (job.holder.clone(), job.uid);
        let result = crate::provision::background(move || s.card_assign(&holder, &uid))
            .await
            .unwrap_or_else(|e| Err(crate::provision::OpError::internal(e.to_string())));
        let mut f = Map::new();
        f.insert("door".into(), json!(job.door));
        f.insert("device".into(), json!(job.device));
        f.insert("holder".into(), json!(job.holder));
        f.insert("uid".into(), json!(job.uid.to_hex()));
        let kind = match result {
            Ok(()) => {
                tracing::info!(door = %job.door, device = %job.device, holder = %job.holder, "card enrolled");
                done(&job.door, Outcome::Enrolled);
                "card.enrolled"
            }
            Err(e) => {
                tracing::warn!(door = %job.door, device = %job.device, holder = %job.holder, code = e.code.as_str(), error = %e.message, "card enrolment refused");
                f.insert("reason".into(), Value::from(e.code.as_str()));
                f.insert("message".into(), Value::from(e.message));
                done(&job.door, Outcome::Refused);
                "enroll.refused"
            }
        };
        audit.record(Draft { ts_ms: clock.now_ms(), kind, fields: f });
    }
}
