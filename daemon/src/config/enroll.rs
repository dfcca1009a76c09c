//! `[enroll]`: card enrolment at the room (`*` `*` PIN `#`, then a card). The
//! window's default and range live in `access::enroll`, below the config,
//! provisioning (which checks `enroll.start` against them) and the runtime.

use crate::access::Role;
use porter_drivers::settings::{ConfigErrors, Section};
use std::time::Duration;

pub use crate::access::enroll::{DEFAULT_WINDOW, WINDOW_RANGE_S};

/// Card enrolment at the room (`*` `*` PIN `#`, then a card).
#[derive(Debug, Clone)]
pub struct EnrollConfig {
    /// The roles whose PIN may open an enrolment window at a keypad.
    pub roles: Vec<crate::access::Role>,
    /// How long a window waits for a card (also `enroll.start`'s default).
    pub window: Duration,
}

impl EnrollConfig {
    /// `[enroll]` of `top`, or the defaults.
    pub(crate) fn parse(top: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let mut s = top.opt_table("enroll", errs);
        let mut roles = vec![Role::Courier, Role::Staff];
        let mut window_s = DEFAULT_WINDOW.as_secs();
        if let Some(s) = s.as_mut() {
            let path = s.key_path("roles");
            if let Some(names) = s.opt_names("roles", errs) {
                roles.clear();
                for (i, n) in names.iter().enumerate() {
                    match Role::parse(n) {
                        Some(r) if !roles.contains(&r) => roles.push(r),
                        Some(_) => {}
                        None => errs.push(
                            format!("{path}[{i}]"),
                            format!("unknown role `{n}`"),
                            Some("use courier, staff, resident or manager; [] lets nobody enroll at a keypad".into()),
                        ),
                    }
                }
            }
            window_s = s.u64_or("window_s", window_s, WINDOW_RANGE_S, errs);
        }
        if let Some(s) = s {
            s.finish(errs);
        }
        EnrollConfig { roles, window: Duration::from_secs(window_s) }
    }
}
