//! Fakes for tests: an output that records what it was told, and an input fed
//! from a channel.

use crate::contract::{Input, InputDriver, InputSink, Output};
use crate::error::DriverError;
use async_trait::async_trait;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// An output that records every state it was set to.
#[derive(Clone, Default)]
pub struct FakeOutput {
    pub log: Arc<Mutex<Vec<bool>>>,
}

impl FakeOutput {
    pub fn states(&self) -> Vec<bool> {
        self.log.lock().unwrap().clone()
    }
}

#[async_trait]
impl Output for FakeOutput {
    async fn set(&mut self, on: bool) -> Result<(), DriverError> {
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
