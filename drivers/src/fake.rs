//! Fakes for tests: an output that records what it was told, and an input fed
//! from a channel.

use crate::contract::{Input, InputDriver, InputSink, Output};
use crate::error::DriverError;
use async_trait::async_trait;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// An output that records every state it was set to, and can be told to
/// fail its next commands (an unplugged relay board).
#[derive(Clone, Default)]
pub struct FakeOutput {
    pub log: Arc<Mutex<Vec<bool>>>,
    failing: Arc<AtomicUsize>,
    attempts: Arc<AtomicUsize>,
}

impl FakeOutput {
    /// The states it was set to, failed commands left out.
    pub fn states(&self) -> Vec<bool> {
        self.log.lock().unwrap().clone()
    }

    /// Makes the next `n` commands fail.
    pub fn fail_next(&self, n: usize) {
        self.failing.store(n, Ordering::SeqCst);
    }

    /// Every command it was given, failed ones included.
    pub fn attempts(&self) -> usize {
        self.attempts.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Output for FakeOutput {
    async fn set(&mut self, on: bool) -> Result<(), DriverError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.failing.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return Err(DriverError::new(crate::error::ErrorKind::Disconnected, "fake output unplugged"));
        }
        self.log.lock().unwrap().push(on);
        Ok(())
    }
}

/// An input device fed by a test through a channel.
pub struct FakeInput {
    rx: mpsc::Receiver<Input>,
}

impl FakeInput {
    pub fn new() -> (mpsc::Sender<Input>, Self) {
        let (tx, rx) = mpsc::channel(64);
        (tx, FakeInput { rx })
    }
}

#[async_trait]
impl InputDriver for FakeInput {
    async fn run(&mut self, sink: &InputSink) -> Result<(), DriverError> {
        sink.online();
        while let Some(i) = self.rx.recv().await {
            sink.input(i);
        }
        Ok(())
    }
}

/// The receiving end of a sink, as a test reads it: each report waited for
/// with a deadline, so a test fails instead of hanging.
pub struct Reports {
    rx: mpsc::Receiver<crate::contract::DeviceReport>,
    deadline: std::time::Duration,
}

impl Reports {
    /// A sink for device `device` and the reports it sends.
    pub fn channel(device: usize, depth: usize, deadline: std::time::Duration) -> (InputSink, Reports) {
        let (tx, rx) = mpsc::channel(depth);
        (InputSink::new(device, tx), Reports { rx, deadline })
    }

    /// The next report; panics at the deadline or when every sink is gone.
    pub async fn next(&mut self) -> crate::contract::Report {
        let r = tokio::time::timeout(self.deadline, self.rx.recv())
            .await
            .expect("no report before the deadline")
            .expect("the driver is gone");
        r.report
    }

    /// The next report is the device going online.
    pub async fn online(&mut self) {
        assert_eq!(self.next().await, crate::contract::Report::Health(crate::contract::Health::Online));
    }

    /// The next report is an input; returns it.
    pub async fn input(&mut self) -> Input {
        match self.next().await {
            crate::contract::Report::Input(i) => i,
            other => panic!("expected an input, got {other:?}"),
        }
    }

    /// A report already waiting, if any.
    pub fn try_next(&mut self) -> Option<crate::contract::Report> {
        self.rx.try_recv().ok().map(|r| r.report)
    }

    /// Asserts that nothing is reported for `quiet`.
    pub async fn silent_for(&mut self, quiet: std::time::Duration) {
        if let Ok(r) = tokio::time::timeout(quiet, self.rx.recv()).await {
            panic!("unexpected report {r:?}");
        }
    }
}
