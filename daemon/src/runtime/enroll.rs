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
use crate::event::Event;
use crate::provision::KeyService;
use porter_drivers::CardUid;
use std::sync::Arc;
use tokio::sync::mpsc;

// The window's bounds live in `access`, below provisioning and the config;
// these paths stay for the code that names them here.
pub use crate::access::enroll::{DEFAULT_WINDOW, WINDOW_RANGE_S};

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
    /// With the `enroll.refused` event's reason word.
    Refused(&'static str),
}

/// Takes jobs until the channel closes; `done` hears each outcome with the
/// door's and the card's device's ids so the door can signal it.
pub async fn run(
    svc: Arc<KeyService>,
    audit: Audit,
    clock: Arc<dyn Clock>,
    mut jobs: mpsc::Receiver<EnrollJob>,
    done: impl Fn(&str, &str, Outcome) + Send + 'static,
) {
    while let Some(job) = jobs.recv().await {
        let s = svc.clone();
        let (holder, uid) = (job.holder.clone(), job.uid);
        let result = crate::provision::background(move || s.card_assign(&holder, &uid))
            .await
            .unwrap_or_else(|e| Err(crate::provision::OpError::internal(e.to_string())));
        let EnrollJob { door, device, holder, uid } = job;
        let uid = uid.to_hex();
        let event = match result {
            Ok(()) => {
                tracing::info!(door = %door, device = %device, holder = %holder, "card enrolled");
                done(&door, &device, Outcome::Enrolled);
                Event::CardEnrolled { door, device, holder, uid }
            }
            Err(e) => {
                tracing::warn!(door = %door, device = %device, holder = %holder, code = e.code.as_str(), error = %e.message, "card enrolment refused");
                done(&door, &device, Outcome::Refused(e.code.as_str()));
                Event::EnrollRefused { door, device, holder, uid, reason: e.code.as_str(), message: e.message }
            }
        };
        audit.record(Draft { ts_ms: clock.now_ms(), event });
    }
}
