//! Doors: each door owns its lock output in one task. A grant opens the lock
//! for the unlock time; another grant while open extends it; then it relocks.
//! Locks are driven locked at start (before any input is read) and at
//! shutdown, whatever state they were in.

use porter_drivers::Output;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoorCmd {
    Unlock(Duration),
}

/// The sending side of a door, cloned into the decision loop and the admin.
#[derive(Clone)]
pub struct DoorHandle {
    pub id: String,
    pub unlock: Duration,
    tx: mpsc::Sender<DoorCmd>,
}

impl DoorHandle {
    /// Asks the door to open without waiting; false when its queue is full.
    pub fn open(&self, d: Duration) -> bool {
        self.tx.try_send(DoorCmd::Unlock(d)).is_ok()
    }
}

/// Drives a lock, logging a failure: a lock that cannot be driven must not
/// stop the door task, which retries with the next command.
pub async fn drive(door: &str, out: &mut dyn Output, unlocked: bool) {
    if let Err(e) = out.set(unlocked).await {
        tracing::error!(door, error = %e, unlocked, "lock output failed");
    }
}

/// Makes a door: drives its lock locked now, returns the handle and the task.
pub async fn start(
    id: String,
    unlock: Duration,
    mut out: Box<dyn Output>,
    cancel: CancellationToken,
) -> (DoorHandle, tokio::task::JoinHandle<()>) {
    drive(&id, out.as_mut(), false).await;
    let (tx, rx) = mpsc::channel(32);
    let handle = DoorHandle { id: id.clone(), unlock, tx };
    let task = tokio::spawn(run(id, out, rx, cancel));
    (handle, task)
}

async fn run(id: String, mut out: Box<dyn Output>, mut rx: mpsc::Receiver<DoorCmd>, cancel: CancellationToken) {
    let mut open_until: Option<Instant> = None;
    loop {
        let relock = async {
            match open_until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = relock => {
                drive(&id, out.as_mut(), false).await;
                open_until = None;
            }
            cmd = rx.recv() => match cmd {
                None => break,
                Some(DoorCmd::Unlock(d)) => {
                    let until = Instant::now() + d;
                    if open_until.is_none() {
                        drive(&id, out.as_mut(), true).await;
                    }
                    open_until = Some(open_until.map_or(until, |t| t.max(until)));
                }
            },
        }
    }
    // Shutdown: locked, whatever state the door was in.
    drive(&id, out.as_mut(), false).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use porter_drivers::fake::FakeOutput;

    #[tokio::test(start_paused = true)]
    async fn opens_extends_relocks_and_locks_at_shutdown() {
        let fake = FakeOutput::default();
        let cancel = CancellationToken::new();
        let (door, task) = start("main".into(), Duration::from_secs(3), Box::new(fake.clone()), cancel.clone()).await;
        assert_eq!(fake.states(), [false]);
        assert!(door.open(Duration::from_secs(3)));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(fake.states(), [false, true]);
        door.open(Duration::from_secs(3)); // extends to t=5s
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(fake.states(), [false, true], "still open at 4.5 s");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(fake.states(), [false, true, false], "relocked by 5.5 s");
        door.open(Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(10)).await;
        cancel.cancel();
        task.await.unwrap();
        assert_eq!(fake.states(), [false, true, false, true, false]);
    }
}
