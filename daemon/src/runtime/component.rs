//! The daemon's running parts and the order they stop in.
//!
//! Each part of the daemon (the inputs, the admin socket, the watchers, the
//! decision loop, the doors, MQTT) starts as a [`Component`]: its tasks and
//! the one token that asks them to stop. [`Shutdown`] holds the components
//! in the order they stop (docs/architecture.md, "Shutdown"): each is asked
//! to stop and awaited before the next, all under one deadline, so the
//! order is written once, as a list, not spread over the start.

use std::future::Future;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running part: its tasks and the token that stops them.
pub struct Component {
    name: &'static str,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Component {
    pub fn new(name: &'static str) -> Self {
        Component { name, cancel: CancellationToken::new(), tasks: Vec::new() }
    }

    /// The token its tasks watch; cancelled when the component stops.
    pub fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Spawns a task of this component.
    pub fn spawn<F>(&mut self, task: F)
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.push(tokio::spawn(async move {
            task.await;
        }));
    }

    /// Adds a task spawned elsewhere.
    pub fn push(&mut self, task: JoinHandle<()>) {
        self.tasks.push(task);
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Asks its tasks to stop and waits for every one of them.
    pub async fn stop(self) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// The components in the order they stop: the first added stops first.
#[derive(Default)]
pub struct Shutdown {
    order: Vec<Component>,
}

impl Shutdown {
    /// Adds `c` after those already added.
    pub fn then(&mut self, c: Component) -> &mut Self {
        self.order.push(c);
        self
    }

    /// Stops every component in order, each awaited before the next, until
    /// `deadline`; returns the name of the component still stopping when
    /// the deadline passed, if one was.
    pub async fn run(self, deadline: tokio::time::Instant) -> Option<&'static str> {
        for c in self.order {
            let name = c.name();
            if tokio::time::timeout_at(deadline, c.stop()).await.is_err() {
                return Some(name);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// A task that notes when it saw its token cancelled, and when it ended.
    fn noting(c: &mut Component, log: &Arc<Mutex<Vec<String>>>, linger: Duration) {
        let (token, log, name) = (c.token(), log.clone(), c.name());
        c.spawn(async move {
            token.cancelled().await;
            log.lock().unwrap().push(format!("{name} asked"));
            tokio::time::sleep(linger).await;
            log.lock().unwrap().push(format!("{name} done"));
        });
    }

    #[tokio::test(start_paused = true)]
    async fn components_stop_in_order_each_finished_before_the_next_is_asked() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut s = Shutdown::default();
        for name in ["inputs", "decisions", "doors"] {
            let mut c = Component::new(name);
            noting(&mut c, &log, Duration::from_millis(100));
            noting(&mut c, &log, Duration::from_millis(50));
            s.then(c);
        }
        let late = s.run(tokio::time::Instant::now() + Duration::from_secs(10)).await;
        assert_eq!(late, None);
        let log = log.lock().unwrap().clone();
        let at = |what: &str| log.iter().rposition(|l| l == what).unwrap();
        assert!(at("inputs done") < log.iter().position(|l| l == "decisions asked").unwrap(), "{log:?}");
        assert!(at("decisions done") < log.iter().position(|l| l == "doors asked").unwrap(), "{log:?}");
        assert_eq!(log.len(), 12, "{log:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn one_deadline_for_the_whole_shutdown_names_the_part_still_stopping() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut s = Shutdown::default();
        let mut slow = Component::new("mqtt");
        noting(&mut slow, &log, Duration::from_secs(60));
        let mut after = Component::new("after");
        noting(&mut after, &log, Duration::ZERO);
        s.then(slow).then(after);
        let t0 = tokio::time::Instant::now();
        assert_eq!(s.run(t0 + Duration::from_secs(10)).await, Some("mqtt"));
        assert_eq!(t0.elapsed(), Duration::from_secs(10));
        assert!(!log.lock().unwrap().iter().any(|l| l.starts_with("after")));
    }
}
