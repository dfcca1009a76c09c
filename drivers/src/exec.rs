//! `exec`: an out-of-tree driver. The daemon starts a program and supervises
//! it; the program writes one JSON object a line to its standard output and
//! may read lock commands from its standard input. Anyone can write one, in
//! any language.
//!
//! From the program (standard output), one object per line:
//! - `{"key":"5"}`: keypad keys, `0`-`9`, `*`, `#`; several in one string
//!   (`{"key":"4839#"}`) are reported one by one, up to [`MAX_KEYS_PER_LINE`].
//! - `{"card":"04a1b2c3"}`: a card UID in hex, 1 to 10 bytes (`:`, `-` or
//!   spaces between bytes allowed).
//! - `{"qr":"..."}`: a QR or barcode payload, not empty.
//! - `{"level":true}`: a contact or button level (`true` is active).
//! - `{"health":"online"}`, `{"health":"offline","error":"..."}`: the
//!   program's own device came or went (`error` optional).
//!
//! Each object holds exactly those fields. Blank lines are ignored; anything
//! else (not JSON, another shape, a line longer than `max_line`) is counted
//! and dropped with a warning that shows no payload.
//!
//! To the program (standard input), when a door uses the device as its lock:
//! `{"lock":"unlocked"}` or `{"lock":"locked"}`, one a line. A newly started
//! program is first told the last state Porter asked for, if any.
//!
//! With `feedback = true`, and named in a door's `feedback` list, the program
//! also receives that door's feedback on its standard input, one
//! [`Feedback`] object a line (`{"feedback":"grant","door":"main"}`), so a
//! display or a speaker can be an exec driver. A feedback line is written
//! only if the pipe has room for it at once; otherwise it is dropped and
//! counted ([`ExecFeedback`]): a slow or stuck program never holds up the
//! door's feedback task, the decision loop or a lock.
//!
//! The program exiting, for any reason, is a failure: the supervisor starts
//! it again with backoff. Its standard error is logged at warn, line by line,
//! bounded in length and rate.

use crate::contract::{CardUid, Feedback, FeedbackReceiver, Input, InputDriver, InputSink, Output};
use crate::error::{DriverError, ErrorKind};
use crate::lines::{Frame, LineReader};
use crate::settings::{ConfigErrors, Section};
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::process::Stdio;
use std::sync::{Arc, Mutex as StdMutex, OnceLock};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::process::{ChildStdin, Command};
use tokio::sync::Mutex;
use tokio::time::{timeout, Instant};

/// The default longest line from the program, in bytes.
pub const DEFAULT_MAX_LINE: usize = 4096;
/// The most keys one `{"key":...}` line may carry.
pub const MAX_KEYS_PER_LINE: usize = 64;
/// The longest `error` text of a health line kept, in characters.
pub const MAX_ERROR_TEXT: usize = 200;
/// The longest standard-error line logged, in bytes.
const STDERR_MAX_LINE: usize = 1024;
/// Standard-error lines logged per minute; more are counted, not shown.
const STDERR_LINES_PER_MINUTE: u32 = 60;
/// How long a program may take to exit after closing its standard output, and
/// how long its last lines are read after it exited.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// How long a lock command may wait for room in the program's standard input.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// At shutdown, how long a program has to exit after its standard input is
/// closed (a lock program reads its last command, applies it and exits at
/// end of input) before it is killed.
pub const STOP_GRACE: Duration = Duration::from_millis(500);
const ENOEXEC: i32 = 8;

/// The `exec` kind's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConfig {
    /// The program, as an absolute path.
    pub command: String,
    pub args: Vec<String>,
    /// Added to the program's environment.
    pub env: BTreeMap<String, String>,
    /// The longest line accepted from the program, in bytes.
    pub max_line: usize,
    /// The program reads feedback lines: a door may name it in `feedback`.
    pub feedback: bool,
}

impl ExecConfig {
    pub fn parse(sec: &mut Section<'_>, errs: &mut ConfigErrors) -> Self {
        let command = sec
            .string("command", "set command to the program's full path, such as /usr/local/lib/porter/reader", errs)
            .unwrap_or_default();
        if !command.is_empty() && !command.starts_with('/') {
            errs.push(
                sec.key_path("command"),
                format!("`{command}` is not an absolute path"),
                Some("write the program's full path; the daemon does not search PATH".into()),
            );
        }
        let args = sec.opt_strings("args", errs).unwrap_or_default();
        let mut env = BTreeMap::new();
        let env_path = sec.key_path("env");
        match sec.raw("env") {
            None => {}
            Some(Value::Object(map)) => {
                for (k, v) in map {
                    let path = format!("{env_path}.{k}");
                    if k.is_empty() || k.contains(['=', '\0']) {
                        errs.push(path, "not a valid variable name", Some("use letters, digits and _".into()));
                        continue;
                    }
                    match v {
                        Value::String(s) if !s.contains('\0') => {
                            env.insert(k.clone(), s.clone());
                        }
                        _ => errs.push(path, "expected a string", Some("quote the value".into())),
                    }
                }
            }
            Some(_) => {
                errs.push(env_path, "expected a table of strings", Some("write env = { NAME = \"value\" }".into()))
            }
        }
        let max_line = sec.u64_or("max_line", DEFAULT_MAX_LINE as u64, 64..=1 << 20, errs) as usize;
        let feedback = sec.bool_or("feedback", false, errs);
        ExecConfig { command, args, env, max_line, feedback }
    }
}

/// One line from the program, understood.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Inputs(Vec<Input>),
    Online,
    /// The program's device went away; the text says why.
    Offline(String),
    Blank,
    Garbled,
}

/// Parses one line from the program (without its newline).
pub fn parse_line(line: &[u8]) -> Line {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Line::Blank;
    }
    let Ok(obj) = serde_json::from_slice::<Map<String, Value>>(line) else {
        return Line::Garbled;
    };
    let only = |key: &str| obj.len() == 1 && obj.contains_key(key);
    if only("key") {
        if let Some(Value::String(s)) = obj.get("key") {
            let ok = !s.is_empty()
                && s.len() <= MAX_KEYS_PER_LINE
                && s.chars().all(|c| c.is_ascii_digit() || c == '*' || c == '#');
            if ok {
                return Line::Inputs(s.chars().map(Input::Key).collect());
            }
        }
    } else if only("card") {
        if let Some(uid) = obj.get("card").and_then(Value::as_str).and_then(CardUid::parse_hex) {
            return Line::Inputs(vec![Input::Card(uid)]);
        }
    } else if only("qr") {
        if let Some(s) = obj.get("qr").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            return Line::Inputs(vec![Input::Qr(s.to_string())]);
        }
    } else if only("level") {
        if let Some(b) = obj.get("level").and_then(Value::as_bool) {
            return Line::Inputs(vec![Input::Level(b)]);
        }
    } else if obj.contains_key("health") {
        let error = obj.get("error");
        let shape_ok = match error {
            None => obj.len() == 1,
            Some(Value::String(_)) => obj.len() == 2,
            Some(_) => false,
        };
        match (shape_ok, obj.get("health").and_then(Value::as_str)) {
            (true, Some("online")) if error.is_none() => return Line::Online,
            (true, Some("offline")) => {
                let mut why = String::from("the program reported its device offline");
                if let Some(text) = error.and_then(Value::as_str).filter(|t| !t.is_empty()) {
                    why.push_str(": ");
                    why.extend(text.chars().take(MAX_ERROR_TEXT));
                }
                return Line::Offline(why);
            }
            _ => {}
        }
    }
    Line::Garbled
}

/// What an exec device shares between its input driver, which owns the
/// program, and its [`ExecOutput`], which writes lock commands to it.
#[derive(Default)]
struct Shared {
    /// The running program's standard input; `None` when none runs.
    stdin: Option<ChildStdin>,
    /// The last state the output was asked for, told to each new program.
    last: Option<bool>,
    /// Whether a program has been started: before the first one, a state is
    /// only kept for it (the daemon drives its locks before it starts its
    /// inputs), which is not a failure.
    started: bool,
}

type Slot = Arc<Mutex<Shared>>;

/// The process-wide registry of exec devices by id. Entries are never
/// removed: there is one per configured exec device.
fn slot(id: &str) -> Slot {
    static SLOTS: OnceLock<StdMutex<HashMap<String, Slot>>> = OnceLock::new();
    let mut slots = SLOTS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    slots.entry(id.to_string()).or_default().clone()
}

fn command_line(on: bool) -> &'static [u8] {
    if on {
        b"{\"lock\":\"unlocked\"}\n"
    } else {
        b"{\"lock\":\"locked\"}\n"
    }
}

/// Writes one lock command. A line this short is written to a pipe whole or
/// not at all, so a timeout leaves no half line behind.
async fn send(id: &str, stdin: &mut ChildStdin, on: bool) -> Result<(), DriverError> {
    match timeout(WRITE_TIMEOUT, stdin.write_all(command_line(on))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(DriverError::new(
            ErrorKind::Disconnected,
            format!("exec device `{id}`: its program closed its standard input ({e})"),
        )),
        Err(_) => Err(DriverError::new(
            ErrorKind::Other,
            format!("exec device `{id}`: its program is not reading its standard input"),
        )
        .with_hint("a program used as a lock must read its standard input line by line")),
    }
}

/// The running program. Dropped (at shutdown, after [`Attached`] closed the
/// program's standard input), it gives the program [`STOP_GRACE`] to exit on
/// its own before `kill_on_drop` kills it. The wait blocks the thread, but
/// only at shutdown: otherwise `run` ends with the program already exited.
struct Stopping(tokio::process::Child);

impl Drop for Stopping {
    fn drop(&mut self) {
        let deadline = std::time::Instant::now() + STOP_GRACE;
        while matches!(self.0.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Puts a program's standard input in the shared slot for its lifetime.
struct Attached {
    slot: Slot,
}

impl Attached {
    async fn new(id: &str, slot: &Slot, mut stdin: ChildStdin) -> Self {
        let mut shared = slot.lock().await;
        if let Some(on) = shared.last {
            if let Err(e) = send(id, &mut stdin, on).await {
                tracing::warn!(device = %id, error = %e, "exec: could not tell the program the lock state");
            }
        }
        shared.stdin = Some(stdin);
        shared.started = true;
        Attached { slot: slot.clone() }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        // When an output holds the lock, its write fails on the closed pipe
        // and it clears the slot itself.
        if let Ok(mut shared) = self.slot.try_lock() {
            shared.stdin = None;
        }
    }
}

/// Logs the program's standard error, bounded in rate.
struct StderrLog {
    window: Instant,
    shown: u32,
    hidden: u64,
}

impl StderrLog {
    fn new() -> Self {
        StderrLog { window: Instant::now(), shown: 0, hidden: 0 }
    }

    fn line(&mut self, id: &str, frame: Frame) {
        if self.window.elapsed() >= Duration::from_secs(60) {
            if self.hidden > 0 {
                tracing::warn!(device = %id, hidden = self.hidden, "exec: standard error lines not shown (over 60 a minute)");
            }
            *self = StderrLog::new();
        }
        if self.shown >= STDERR_LINES_PER_MINUTE {
            self.hidden += 1;
            return;
        }
        self.shown += 1;
        match frame {
            Frame::Line(l) => {
                let text = String::from_utf8_lossy(&l);
                tracing::warn!(device = %id, line = %crate::logtext::escape(text.trim_end()), "exec: program's standard error");
            }
            Frame::TooLong => {
                tracing::warn!(device = %id, "exec: program's standard error: a line over 1024 bytes, not shown");
            }
        }
    }
}

fn spawn_error(command: &str, e: &io::Error) -> DriverError {
    match e.kind() {
        io::ErrorKind::NotFound => DriverError::new(ErrorKind::NotFound, format!("{command}: no such program"))
            .with_hint("set `command` to the full path of a program that exists on this machine"),
        io::ErrorKind::PermissionDenied => DriverError::new(
            ErrorKind::PermissionDenied,
            format!("{command}: permission denied"),
        )
        .with_hint(
            "make the program executable (chmod 755) and readable by the `porter` user, in directories it may enter",
        ),
        _ if e.raw_os_error() == Some(ENOEXEC) => {
            DriverError::new(ErrorKind::Other, format!("{command}: not a program this machine can run"))
                .with_hint("start a script with a #! line, such as #!/bin/sh; build a binary for this machine")
        }
        _ => DriverError::new(ErrorKind::Other, format!("{command}: cannot start it: {e}")),
    }
}

/// Counts of what the driver dropped, kept across restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecStats {
    /// Lines that were not one of the protocol's objects, or too long.
    pub garbled: u64,
    /// Times the program was started.
    pub starts: u64,
}

/// The `exec` input driver: starts the program and reads its lines.
pub struct Exec {
    id: String,
    cfg: ExecConfig,
    slot: Slot,
    stats: ExecStats,
    last_warn: Option<tokio::time::Instant>,
}

impl Exec {
    pub fn new(id: &str, cfg: ExecConfig) -> Self {
        Exec { id: id.to_string(), cfg, slot: slot(id), stats: ExecStats::default(), last_warn: None }
    }

    pub fn stats(&self) -> ExecStats {
        self.stats
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.cfg.command);
        cmd.args(&self.cfg.args);
        // The daemon's own PORTER_ settings may hold secrets: not for the program.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PORTER_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(&self.cfg.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Dropping the run future (shutdown) stops the program: see
            // `Stopping`. Killing it at once could cut off a lock program
            // before it applied the "locked" it was just sent.
            .kill_on_drop(true);
        cmd
    }

    fn handle(&mut self, frame: Frame, sink: &InputSink) {
        let bytes = match frame {
            Frame::Line(l) => match parse_line(&l) {
                Line::Inputs(inputs) => return inputs.into_iter().for_each(|i| sink.input(i)),
                Line::Online => return sink.online(),
                Line::Offline(why) => {
                    tracing::warn!(device = %self.id, "exec: the program reported its device offline");
                    // The program's own words reach logs and events: escaped.
                    return sink.offline(DriverError::new(ErrorKind::Disconnected, crate::logtext::clip(&why, 200)));
                }
                Line::Blank => return,
                Line::Garbled => l.len(),
            },
            Frame::TooLong => self.cfg.max_line + 1,
        };
        self.stats.garbled += 1;
        if !crate::serial::should_warn(&mut self.last_warn, tokio::time::Instant::now()) {
            return;
        }
        tracing::warn!(
            device = %self.id,
            garbled = self.stats.garbled,
            bytes,
            "exec: line not understood; expected one JSON object a line: key, card, qr, level or health"
        );
    }
}

#[async_trait]
impl InputDriver for Exec {
    async fn run(&mut self, sink: &InputSink) -> Result<(), DriverError> {
        let program = self.cfg.command.clone();
        let mut running = Stopping(self.command().spawn().map_err(|e| spawn_error(&program, &e))?);
        let child = &mut running.0;
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(DriverError::new(ErrorKind::Other, format!("{program}: its pipes were not set up")));
        };
        self.stats.starts += 1;
        // Declared after `running`, so dropped first: the program's standard
        // input is closed before `Stopping` waits for it to exit.
        let _attached = Attached::new(&self.id, &self.slot, stdin).await;
        sink.online();
        tracing::info!(device = %self.id, pid = child.id(), starts = self.stats.starts, "exec: program started");

        let mut out = LineReader::new(stdout, self.cfg.max_line);
        let mut err = LineReader::new(stderr, STDERR_MAX_LINE);
        let mut err_open = true;
        let mut err_log = StderrLog::new();
        let status = loop {
            tokio::select! {
                biased;
                frame = out.next() => match frame {
                    Ok(Some(f)) => self.handle(f, sink),
                    Ok(None) | Err(_) => match timeout(EXIT_GRACE, child.wait()).await {
                        Ok(status) => break status,
                        Err(_) => {
                            let _ = child.kill().await;
                            return Err(DriverError::new(
                                ErrorKind::Protocol,
                                format!("{program}: closed its standard output but kept running; stopped it"),
                            ));
                        }
                    },
                },
                frame = err.next(), if err_open => match frame {
                    Ok(Some(f)) => err_log.line(&self.id, f),
                    Ok(None) | Err(_) => err_open = false,
                },
                status = child.wait() => {
                    // Lines it wrote just before exiting may still be in the pipe;
                    // a child it left behind may hold the pipe open, hence the bound.
                    let _ = timeout(EXIT_GRACE, async {
                        while let Ok(Some(f)) = out.next().await {
                            self.handle(f, sink);
                        }
                    })
                    .await;
                    break status;
                }
            }
        };
        let status = status.map_err(|e| DriverError::new(ErrorKind::Other, format!("{program}: {e}")))?;
        Err(DriverError::new(ErrorKind::Disconnected, format!("{program}: exited ({status})"))
            .with_hint("the program's standard error is logged as warnings from this device"))
    }
}

/// An exec device used as an output (a door's lock): writes
/// `{"lock":"unlocked"}` / `{"lock":"locked"}` lines to the program that the
/// device's input driver runs. Fails while no program runs; the program is
/// told the last state when it starts.
pub struct ExecOutput {
    id: String,
    slot: Slot,
}

impl ExecOutput {
    pub fn new(id: &str) -> Self {
        ExecOutput { id: id.to_string(), slot: slot(id) }
    }
}

#[async_trait]
impl Output for ExecOutput {
    async fn set(&mut self, on: bool) -> Result<(), DriverError> {
        let mut shared = self.slot.lock().await;
        shared.last = Some(on);
        let Some(stdin) = shared.stdin.as_mut() else {
            if !shared.started {
                return Ok(());
            }
            return Err(DriverError::new(
                ErrorKind::Disconnected,
                format!("exec device `{}`: its program is not running; it is told the state when it starts", self.id),
            ));
        };
        let r = send(&self.id, stdin, on).await;
        if matches!(&r, Err(e) if e.kind == ErrorKind::Disconnected) {
            shared.stdin = None;
        }
        r
    }
}

/// The longest feedback line written: a pipe takes a write of up to
/// `PIPE_BUF` (4096) bytes whole or not at all, so no half line is left.
const MAX_FEEDBACK_LINE: usize = 4096;

/// An exec device receiving a door's feedback: writes each as a JSON line to
/// the program's standard input, without waiting. The pipe (64 KiB on Linux)
/// is the queue; a line that finds it full, finds no program running, or
/// finds a lock command being written is dropped and counted, with a warning
/// at the first drop and every 100th.
pub struct ExecFeedback {
    id: String,
    slot: Slot,
    dropped: u64,
}

impl ExecFeedback {
    pub fn new(id: &str) -> Self {
        ExecFeedback { id: id.to_string(), slot: slot(id), dropped: 0 }
    }

    /// Feedback lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Writes `line` if it fits in the pipe now; never waits. The write goes
    /// straight to the pipe (non-blocking, as tokio set it), not through
    /// tokio's readiness, which may not yet know that a fresh pipe is
    /// writable.
    fn try_write(&self, line: &[u8]) -> bool {
        use std::io::Write;
        use std::os::fd::AsFd;
        if line.len() > MAX_FEEDBACK_LINE {
            return false;
        }
        let Ok(shared) = self.slot.try_lock() else { return false };
        let Some(stdin) = shared.stdin.as_ref() else { return false };
        let Ok(fd) = stdin.as_fd().try_clone_to_owned() else { return false };
        matches!(std::fs::File::from(fd).write(line), Ok(n) if n == line.len())
    }
}

impl FeedbackReceiver for ExecFeedback {
    fn feedback(&mut self, fb: &Feedback, device: Option<&str>) {
        if self.try_write(fb.json_line(device).as_bytes()) {
            return;
        }
        self.dropped += 1;
        if self.dropped % 100 == 1 {
            tracing::warn!(
                device = %self.id,
                dropped = self.dropped,
                "exec: feedback line dropped: the program is not running or not reading its standard input"
            );
        }
    }
}

/// `kind = "exec"`: what it is and what it needs (see [`crate::kinds`]).
pub const KIND: crate::kinds::Descriptor = crate::kinds::Descriptor {
    name: "exec",
    role: crate::kinds::Role::Input,
    reports: crate::kinds::Reports { keys: true, levels: true },
    drives_outputs: true,
    output_through_input: true,
    access: crate::kinds::Access::None,
    parse: |sec, errs| Some(crate::kinds::KindConfig::new(ExecConfig::parse(sec, errs))),
    cross_check: None,
};

impl crate::kinds::DeviceKind for ExecConfig {
    fn descriptor(&self) -> &'static crate::kinds::Descriptor {
        &KIND
    }

    fn claims(&self) -> Vec<crate::kinds::Claim> {
        Vec::new()
    }

    fn input_driver(&self, id: &str) -> Option<Box<dyn crate::contract::InputDriver>> {
        Some(Box::new(Exec::new(id, self.clone())))
    }

    fn output_driver(&self, id: &str) -> Option<Box<dyn crate::contract::Output>> {
        Some(Box::new(ExecOutput::new(id)))
    }

    fn takes_feedback(&self) -> bool {
        self.feedback
    }

    fn feedback_receiver(&self, id: &str) -> Option<Box<dyn FeedbackReceiver>> {
        self.feedback.then(|| Box::new(ExecFeedback::new(id)) as Box<dyn FeedbackReceiver>)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> (ExecConfig, ConfigErrors) {
        let (c, errs) = Section::read("devices[1]", &v, ExecConfig::parse);
        (c.expect("a table"), errs)
    }

    #[test]
    fn config_defaults_and_errors() {
        let (c, errs) = parse(json!({"command": "/usr/local/bin/reader"}));
        assert!(errs.is_empty(), "{errs}");
        assert_eq!(
            c,
            ExecConfig {
                command: "/usr/local/bin/reader".into(),
                args: vec![],
                env: BTreeMap::new(),
                max_line: 4096,
                feedback: false
            }
        );
        let (c, errs) = parse(json!({
            "command": "/bin/sh", "args": ["-c", "exit 0"], "env": {"READER": "/dev/ttyUSB0"}, "max_line": 100
        }));
        assert!(errs.is_empty(), "{errs}");
        assert_eq!(c.args, ["-c", "exit 0"]);
        assert_eq!(c.env.get("READER").map(String::as_str), Some("/dev/ttyUSB0"));
        assert_eq!(c.max_line, 100);

        let (_, errs) = parse(json!({
            "command": "reader.py", "args": ["-v", 3], "env": {"A": 1, "B=C": "x"}, "max_line": 1, "cmd": "x"
        }));
        let paths: Vec<&str> = errs.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "devices[1].command",
                "devices[1].args[1]",
                "devices[1].env.A",
                "devices[1].env.B=C",
                "devices[1].max_line",
                "devices[1].cmd"
            ]
        );
        assert!(errs.0[0].hint.as_deref().unwrap().contains("PATH"));
        let (_, errs) = parse(json!({}));
        assert_eq!(errs.0[0].path, "devices[1].command");
    }

    #[test]
    fn parses_each_line_kind() {
        let k = |c| Input::Key(c);
        assert_eq!(parse_line(br#"{"key":"5"}"#), Line::Inputs(vec![k('5')]));
        assert_eq!(parse_line(br#" {"key":"12*#"} "#), Line::Inputs(vec![k('1'), k('2'), k('*'), k('#')]));
        assert_eq!(
            parse_line(br#"{"card":"04:A1:b2:c3"}"#),
            Line::Inputs(vec![Input::Card(CardUid::parse_hex("04a1b2c3").unwrap())])
        );
        assert_eq!(parse_line(br#"{"qr":"PRT1:x y"}"#), Line::Inputs(vec![Input::Qr("PRT1:x y".into())]));
        assert_eq!(parse_line(br#"{"level":false}"#), Line::Inputs(vec![Input::Level(false)]));
        assert_eq!(parse_line(br#"{"health":"online"}"#), Line::Online);
        assert_eq!(
            parse_line(br#"{"health":"offline"}"#),
            Line::Offline("the program reported its device offline".into())
        );
        let long = "e".repeat(500);
        match parse_line(json!({"health": "offline", "error": long}).to_string().as_bytes()) {
            Line::Offline(why) => assert!(why.ends_with(&"e".repeat(MAX_ERROR_TEXT)) && why.len() < 260, "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_line(b"  \t"), Line::Blank);
        assert_eq!(parse_line(b""), Line::Blank);
    }

    #[test]
    fn rejects_every_other_shape() {
        let too_many_keys = json!({"key": "1".repeat(MAX_KEYS_PER_LINE + 1)}).to_string();
        for bad in [
            "5",
            "not json",
            "{\"key\":\"5\"",
            "[\"key\",\"5\"]",
            "{\"key\":5}",
            "{\"key\":\"\"}",
            "{\"key\":\"5a\"}",
            "{\"key\":\"1 2\"}",
            too_many_keys.as_str(),
            "{\"key\":\"5\",\"qr\":\"x\"}",
            "{\"kye\":\"5\"}",
            "{\"card\":\"xyz\"}",
            "{\"card\":\"abc\"}",
            "{\"card\":\"00112233445566778899aa\"}",
            "{\"qr\":\"\"}",
            "{\"qr\":7}",
            "{\"level\":\"true\"}",
            "{\"health\":\"sleepy\"}",
            "{\"health\":\"online\",\"error\":\"x\"}",
            "{\"health\":\"offline\",\"error\":3}",
            "{\"health\":\"offline\",\"extra\":\"x\"}",
        ] {
            assert_eq!(parse_line(bad.as_bytes()), Line::Garbled, "{bad}");
        }
        assert_eq!(parse_line(b"{\"qr\":\"\xff\"}"), Line::Garbled);
    }

    #[test]
    fn spawn_errors_name_their_fix() {
        let e = spawn_error("/opt/x", &io::Error::from_raw_os_error(2));
        assert_eq!(e.kind, ErrorKind::NotFound);
        let e = spawn_error("/opt/x", &io::Error::from_raw_os_error(13));
        assert_eq!(e.kind, ErrorKind::PermissionDenied);
        assert!(e.hint.unwrap().contains("chmod"));
        let e = spawn_error("/opt/x", &io::Error::from_raw_os_error(ENOEXEC));
        assert!(e.hint.unwrap().contains("#!"));
    }
}
