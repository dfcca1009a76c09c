//! The kiosk's browser test helpers (tests/tests/kiosk.rs): the built
//! `porter-kiosk`, and a headless Chromium driven by tests/kiosk/browser.mjs
//! (playwright-core, installed under target/kiosk by
//! scripts/install-test-deps.sh) one JSON command a line.

use crate::{bin_dir, workspace_root, Lines, DEADLINE};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Once;

/// The path of the built `porter-kiosk`, built first (a no-op when up to
/// date), as [`crate::bin`] builds porterd.
pub fn kiosk_bin() -> PathBuf {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "-p", "porter-kiosk", "--bins"]);
        if bin_dir().file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build");
        assert!(status.success(), "cargo build -p porter-kiosk failed");
    });
    let p = bin_dir().join("porter-kiosk");
    assert!(p.exists(), "{} not found", p.display());
    p
}

/// The port in porterd's log line relaying the program's
/// `porter-kiosk: serving http://127.0.0.1:PORT/`, waited for.
pub fn kiosk_url(log: &Lines, from: usize) -> String {
    let (_, line) = log.wait_for(from, &["porter-kiosk: serving http://127.0.0.1:"]);
    let at = line.find("http://127.0.0.1:").unwrap() + "http://127.0.0.1:".len();
    let port: String = line[at..].chars().take_while(char::is_ascii_digit).collect();
    assert!(port.parse::<u16>().is_ok_and(|p| p > 0), "no port in {line:?}");
    format!("http://127.0.0.1:{port}/")
}

/// Where the screenshots the test compares with live: docs/kiosk.
pub fn shots_dir() -> PathBuf {
    workspace_root().join("docs/kiosk")
}

/// Whether this run rewrites docs/kiosk/*.png (`PORTER_KIOSK_SHOTS=update`).
pub fn updating_shots() -> bool {
    std::env::var("PORTER_KIOSK_SHOTS").is_ok_and(|v| v == "update")
}

/// A headless Chromium with one page, driven by tests/kiosk/browser.mjs.
pub struct Browser {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Lines,
    next: u64,
}

impl Browser {
    /// Starts the driver and opens `url` in an 800x480 page (the Raspberry Pi
    /// touchscreen's size) at device scale 1.
    pub fn open(url: &str) -> Browser {
        let dir = workspace_root().join("target/kiosk");
        assert!(
            dir.join("node_modules/playwright-core").is_dir() && std::path::Path::new("/usr/bin/chromium").exists(),
            "playwright-core under {} or /usr/bin/chromium missing: run scripts/install-test-deps.sh",
            dir.display()
        );
        // The driver imports its packages from target/kiosk/node_modules,
        // which Node resolves from the script's own folder.
        std::fs::copy(workspace_root().join("tests/kiosk/browser.mjs"), dir.join("browser.mjs")).unwrap();
        let mut child = Command::new("node")
            .arg("browser.mjs")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node (apt-get install nodejs)");
        let out = Lines::follow_to_end(child.stdout.take().unwrap(), "browser").0;
        out.follow_into(child.stderr.take().unwrap(), "browser");
        let stdin = child.stdin.take();
        let mut b = Browser { child, stdin, out, next: 0 };
        b.call("open", json!({ "url": url }));
        b
    }

    /// Sends one command and waits for its answer; a failed one fails the test.
    pub fn call(&mut self, op: &str, args: Value) -> Value {
        match self.try_call(op, args) {
            Ok(v) => v,
            Err(e) => panic!("browser {op}: {e}"),
        }
    }

    /// Sends one command and waits for its answer (the driver's own waits
    /// end within [`DEADLINE`]; this one allows a little more).
    pub fn try_call(&mut self, op: &str, args: Value) -> Result<Value, String> {
        self.next += 1;
        let id = self.next;
        let mut msg = args;
        msg["op"] = json!(op);
        msg["id"] = json!(id);
        let s = self.stdin.as_mut().expect("driver stdin open");
        writeln!(s, "{msg}").expect("writing to the browser driver");
        s.flush().unwrap();
        let tag = format!("{{\"id\":{id},");
        let (_, line) = self
            .out
            .wait_within(0, DEADLINE * 2, |l| l.starts_with(&tag))
            .unwrap_or_else(|| panic!("the browser driver did not answer {op}; its output:\n{}", self.out.text()));
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["ok"] == true {
            Ok(v["value"].clone())
        } else {
            Err(v["error"].as_str().unwrap_or("?").to_string())
        }
    }

    /// Waits until the page shows `screen` (main[data-screen]).
    pub fn screen(&mut self, screen: &str) {
        self.call("screen", json!({ "screen": screen }));
    }

    /// Taps the element `selector` (waiting until it is visible and enabled).
    pub fn tap(&mut self, selector: &str) {
        self.call("tap", json!({ "selector": selector }));
    }

    /// Taps the digits of `digits` on the page's keypad.
    pub fn type_digits(&mut self, digits: &str) {
        for d in digits.chars() {
            self.tap(&format!("[data-key=\"{d}\"]"));
        }
    }

    /// The text of the first element matching `selector`.
    pub fn text(&mut self, selector: &str) -> String {
        self.call("text", json!({ "selector": selector })).as_str().unwrap_or_default().to_string()
    }

    /// The attribute `name` of the first element matching `selector` ("" when absent).
    pub fn attr(&mut self, selector: &str, name: &str) -> String {
        let v = self.call("attr", json!({ "selector": selector, "name": name }));
        v.as_str().unwrap_or_default().to_string()
    }

    /// Waits until the text of `selector` is `text`.
    pub fn wait_text(&mut self, selector: &str, text: &str) {
        self.call("wait_text", json!({ "selector": selector, "text": text }));
    }

    /// Compares a screenshot of the page ([data-live] left out of the comparison) with
    /// docs/kiosk/`name`.png, or writes it there under
    /// `PORTER_KIOSK_SHOTS=update`.
    pub fn shot(&mut self, name: &str) {
        let dir = shots_dir();
        self.call("shot", json!({ "name": name, "dir": dir, "update": updating_shots() }));
    }

    /// What the browser holds: `local`, `session` (storage as objects),
    /// `cookie`, `cookies`, and `dom` (the page's whole HTML).
    pub fn leaks(&mut self) -> Value {
        self.call("leaks", json!({}))
    }

    /// Every URL the page requested (documents, scripts, fetches, WebSockets).
    pub fn requests(&mut self) -> Vec<String> {
        let v = self.call("requests", json!({}));
        v.as_array().unwrap().iter().map(|u| u.as_str().unwrap().to_string()).collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Closing its input closes the browser and ends the driver.
        self.stdin.take();
        let deadline = std::time::Instant::now() + DEADLINE;
        while std::time::Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
