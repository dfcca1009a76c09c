//! Enrolment windows: how long a door waits for the card to assign.
//!
//! The window itself is opened and closed by the decision loop
//! (`runtime::decisions`); its bounds live here, below provisioning (which
//! checks `enroll.start`'s `timeout_s`) and the config (`enroll.window_s`).

use std::time::Duration;

/// The default enrolment window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30);
/// The window's allowed range, in seconds.
pub const WINDOW_RANGE_S: std::ops::RangeInclusive<u64> = 5..=600;
