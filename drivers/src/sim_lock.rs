//! `sim_lock`: a lock that only logs. Each change is a log line with its
//! timestamp (`lock unlocked` / `lock locked`), which the demo and the
//! end-to-end tests read.

use crate::contract::Output;
use crate::error::DriverError;
use crate::settings::{ConfigErrors, Section};
use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimLockConfig;

impl SimLockConfig {
    pub fn parse(_sec: &mut Section<'_>, _errs: &mut ConfigErrors) -> Self {
        SimLockConfig
    }
}

pub struct SimLock {
    id: String,
}

impl SimLock {
    pub fn new(id: &str) -> Self {
        SimLock { id: id.to_string() }
    }
}

#[async_trait]
impl Output for SimLock {
    async fn set(&mut self, on: bool) -> Result<(), DriverError> {
        let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        if on {
            tracing::info!(device = %self.id, at_ms = at as u64, "lock unlocked");
        } else {
            tracing::info!(device = %self.id, at_ms = at as u64, "lock locked");
        }
        Ok(())
    }
}

/// `kind = "sim_lock"`: what it is and what it needs (see [`crate::kinds`]).
pub const KIND: crate::kinds::Descriptor = crate::kinds::Descriptor {
    name: "sim_lock",
    role: crate::kinds::Role::Output,
    reports: crate::kinds::Reports { keys: false, levels: false },
    drives_outputs: true,
    output_through_input: false,
    access: crate::kinds::Access::None,
    parse: |sec, errs| Some(crate::kinds::KindConfig::new(SimLockConfig::parse(sec, errs))),
    cross_check: None,
};

impl crate::kinds::DeviceKind for SimLockConfig {
    fn descriptor(&self) -> &'static crate::kinds::Descriptor {
        &KIND
    }

    fn claims(&self) -> Vec<crate::kinds::Claim> {
        Vec::new()
    }

    fn output_driver(&self, id: &str) -> Option<Box<dyn crate::contract::Output>> {
        Some(Box::new(SimLock::new(id)))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
