//! The systemd service protocol (`sd_notify(3)`), written out: a datagram to
//! the socket in `$NOTIFY_SOCKET` says `READY=1` once the store is open and
//! every lock is in its safe state, `STOPPING=1` at shutdown, and
//! `WATCHDOG=1` every half `$WATCHDOG_USEC` for as long as the decision loop
//! answers. Outside systemd (`$NOTIFY_SOCKET` unset) every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where to tell systemd, if anywhere.
#[derive(Debug, Clone)]
pub struct Notifier {
    socket: Option<std::path::PathBuf>,
    /// Abstract socket names start with `@` in the variable.
    abstract_name: Option<Vec<u8>>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET`.
    pub fn from_env() -> Self {
        Self::new(std::env::var_os("NOTIFY_SOCKET").map(|v| v.into_encoded_bytes()))
    }

    fn new(var: Option<Vec<u8>>) -> Self {
        match var {
            Some(v) if v.first() == Some(&b'@') => Notifier { socket: None, abstract_name: Some(v[1..].to_vec()) },
            Some(v) if !v.is_empty() => {
                Notifier { socket: Some(std::ffi::OsString::from_vec(v).into()), abstract_name: None }
            }
            _ => Notifier { socket: None, abstract_name: None },
        }
    }

    /// Whether systemd listens.
    pub fn enabled(&self) -> bool {
        self.socket.is_some() || self.abstract_name.is_some()
    }

    /// Sends `state` (such as `READY=1`); a failure is logged, never fatal.
    pub fn notify(&self, state: &str) {
        if !self.enabled() {
            return;
        }
        if let Err(e) = self.send(state.as_bytes()) {
            tracing::warn!(error = %e, state, "could not notify systemd");
        }
    }

    fn send(&self, msg: &[u8]) -> std::io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        match (&self.socket, &self.abstract_name) {
            (Some(path), _) => sock.send_to(msg, path).map(|_| ()),
            (None, Some(name)) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                sock.send_to_addr(msg, &addr).map(|_| ())
            }
            (None, None) => Ok(()),
        }
    }
}

use std::os::unix::ffi::OsStringExt;

/// The watchdog interval systemd asks for (`$WATCHDOG_USEC`, for this
/// process when `$WATCHDOG_PID` is set), if any.
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var("WATCHDOG_PID").ok().and_then(|p| p.parse::<u32>().ok()) {
        if pid != std::process::id() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_reach_a_notify_socket_by_path_and_by_abstract_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(Some(path.as_os_str().as_encoded_bytes().to_vec()));
        assert!(n.enabled());
        n.notify("READY=1");
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("porter-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier::new(Some(format!("@{name}").into_bytes()));
        n.notify("WATCHDOG=1");
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");

        // Outside systemd, nothing happens.
        let n = Notifier::new(None);
        assert!(!n.enabled());
        n.notify("READY=1");
    }
}
