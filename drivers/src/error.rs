//! Driver errors, typed by kind so the supervisor chooses a policy without
//! matching on message strings.

use std::fmt;

/// What kind of failure a driver met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The daemon's user may not open the device; the hint names the fix.
    PermissionDenied,
    /// The device path does not exist (unplugged, or a wrong path).
    NotFound,
    /// The device went away while in use.
    Disconnected,
    /// The device spoke something we could not understand.
    Protocol,
    /// Anything else.
    Other,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Disconnected => "disconnected",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Other => "other",
        }
    }
}

/// A driver failure: its kind, what happened, and how to fix it when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverError {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: Option<String>,
}

impl DriverError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        DriverError { kind, message: message.into(), hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Maps an I/O error on `path`, naming the usual fix for a permission error.
    pub fn io(path: &str, e: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::PermissionDenied => DriverError::new(ErrorKind::PermissionDenied, format!("{path}: permission denied"))
                .with_hint(
                    "add the `porter` user to the device's group (dialout for serial ports, \
                 input for input devices, gpio for GPIO) or install Porter's udev rules (udev/60-porter.rules)",
                ),
            K::NotFound => DriverError::new(ErrorKind::NotFound, format!("{path}: no such device")),
            K::UnexpectedEof | K::BrokenPipe | K::ConnectionReset => {
                DriverError::new(ErrorKind::Disconnected, format!("{path}: {e}"))
            }
            _ => DriverError::new(ErrorKind::Other, format!("{path}: {e}")),
        }
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.kind.as_str())?;
        if let Some(h) = &self.hint {
            write!(f, "; fix: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DriverError {}
