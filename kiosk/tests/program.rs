//! porter-kiosk as a real process: its stderr serving line, the HTTP headers
//! and refusals (raw HTTP/1.1 over a TcpStream), the WebSocket (tungstenite,
//! a client no one here wrote), the key lines on stdout, porterd's lines on
//! stdin, stdin's end and SIGTERM. Every wait is for a fact, with a deadline.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

const DEADLINE: Duration = Duration::from_secs(10);

struct Kiosk {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    _stderr: Receiver<String>,
    port: u16,
}

impl Kiosk {
    fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_porter-kiosk"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--device",
                "kiosk",
                "--door",
                "main",
                "--door-name",
                "Package room door",
            ])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = lines(child.stderr.take().unwrap());
        let stdout = lines(child.stdout.take().unwrap());
        let first = stderr.recv_timeout(DEADLINE).expect("no serving line on stderr");
        let port = first
            .strip_prefix("porter-kiosk: serving http://127.0.0.1:")
            .and_then(|rest| rest.strip_suffix('/'))
            .unwrap_or_else(|| panic!("not the serving line: {first:?}"))
            .parse()
            .unwrap();
        Self { stdin: child.stdin.take(), child, stdout, _stderr: stderr, port }
    }

    fn feed(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn ws(&self, origin: Option<&str>) -> Result<Ws, tungstenite::Error> {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut req = format!("ws://{}/ws", self.host()).into_client_request().unwrap();
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        match tungstenite::client(req, stream) {
            Ok((ws, _)) => Ok(Ws(ws)),
            Err(tungstenite::HandshakeError::Failure(e)) => Err(e),
            Err(tungstenite::HandshakeError::Interrupted(_)) => panic!("handshake timed out"),
        }
    }

    fn ws_ok(&self) -> Ws {
        self.ws(Some(&format!("http://{}", self.host()))).unwrap()
    }
}

impl Drop for Kiosk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

struct Ws(WebSocket<TcpStream>);

impl Ws {
    /// The next view (skipping `{"alive":true}`), within the deadline.
    fn view(&mut self) -> Value {
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            match self.0.read() {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if let Some(view) = v.get("view") {
                        return view.clone();
                    }
                    assert_eq!(v, serde_json::json!({"alive": true}));
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("websocket: {e}"),
            }
        }
        panic!("no view within {DEADLINE:?}");
    }

    /// Views until one on `screen`.
    fn until_screen(&mut self, screen: &str) -> Value {
        let end = Instant::now() + DEADLINE;
        loop {
            let v = self.view();
            if v["screen"] == screen {
                return v;
            }
            assert!(Instant::now() < end, "no {screen} view; last {v}");
        }
    }

    fn touch(&mut self, t: Value) {
        self.0.send(Message::Text(t.to_string().into())).unwrap();
    }
}

/// A raw HTTP/1.1 GET: (status, lower-cased headers, body).
fn get(port: u16, path: &str, host: &str) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let mut head = head.split("\r\n");
    let status = head.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = head
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    (status, headers, body.to_owned())
}

fn header<'a>(hs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    hs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn assert_guard_headers(hs: &[(String, String)], what: &str) {
    assert_eq!(header(hs, "cache-control"), Some("no-store"), "{what}");
    assert_eq!(header(hs, "x-content-type-options"), Some("nosniff"), "{what}");
    let csp = header(hs, "content-security-policy").unwrap_or_else(|| panic!("{what}: no CSP"));
    assert!(csp.starts_with("default-src 'self'; connect-src 'self'"), "{what}: {csp}");
    assert!(csp.ends_with("frame-ancestors 'none'"), "{what}: {csp}");
}

#[test]
fn serves_the_page_with_its_headers_and_refuses_foreign_hosts() {
    let k = Kiosk::start(&[]);
    let host = k.host();
    let (status, hs, body) = get(k.port, "/", &host);
    assert_eq!(status, 200);
    assert_guard_headers(&hs, "/");
    assert!(header(&hs, "content-type").unwrap().starts_with("text/html"));
    assert!(body.contains("data-screen"));
    let csp = header(&hs, "content-security-policy").unwrap();
    assert_eq!(csp, format!("default-src 'self'; connect-src 'self' ws://{host}; frame-ancestors 'none'"));
    for (path, ty) in [("/app.js", "text/javascript"), ("/app.css", "text/css"), ("/i18n.json", "application/json")] {
        let (status, hs, _) = get(k.port, path, &format!("localhost:{}", k.port));
        assert_eq!(status, 200, "{path}");
        assert!(header(&hs, "content-type").unwrap().starts_with(ty), "{path}");
        assert_guard_headers(&hs, path);
    }
    let (status, hs, body) = get(k.port, "/healthz", &format!("[::1]:{}", k.port));
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_guard_headers(&hs, "/healthz");
    let (status, hs, _) = get(k.port, "/robots.txt", &host);
    assert_eq!(status, 404);
    assert_guard_headers(&hs, "404");
    // What every browser asks for: nothing, not a 404 in its console.
    let (status, hs, _) = get(k.port, "/favicon.ico", &host);
    assert_eq!(status, 204);
    assert_guard_headers(&hs, "/favicon.ico");
    // DNS rebinding: a name of someone else's that resolves to 127.0.0.1.
    for foreign in [format!("evil.example:{}", k.port), "127.0.0.1.evil.example".into(), "0.0.0.0".into()] {
        let (status, hs, body) = get(k.port, "/", &foreign);
        assert_eq!(status, 403, "{foreign}");
        assert_guard_headers(&hs, "403");
        assert!(!body.contains("data-screen"), "{foreign}");
    }
}

#[test]
fn a_websocket_from_a_foreign_origin_is_refused() {
    let k = Kiosk::start(&[]);
    // Another page on the controller's loopback (another port, another
    // name) is another origin: refused like a foreign one.
    let other_port = format!("http://127.0.0.1:{}", if k.port == 9999 { 9998 } else { 9999 });
    let other_name = format!("http://localhost:{}", k.port);
    for origin in
        [Some("http://evil.example"), Some("null"), Some(other_port.as_str()), Some(other_name.as_str()), None]
    {
        match k.ws(origin) {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403, "{origin:?}"),
            Err(e) => panic!("{origin:?}: {e}"),
            Ok(_) => panic!("{origin:?}: accepted"),
        }
    }
    // The page's own origin.
    let mut ws = k.ws(Some(&format!("http://127.0.0.1:{}", k.port))).unwrap();
    assert_eq!(ws.view()["screen"], "idle");
}

#[test]
fn touches_make_exactly_the_specs_key_lines() {
    let mut k = Kiosk::start(&[]);
    let mut ws = k.ws_ok();
    let v = ws.view();
    assert_eq!(
        v,
        serde_json::json!({"screen":"idle","lang":"en","room":"Package room","door":"Package room door",
            "entered":0,"pin_length":6,"reason":null,"until":null,"remaining_ms":null})
    );
    for d in "482913".chars() {
        ws.touch(serde_json::json!({"touch":"digit","digit":d.to_string()}));
    }
    let v = ws.until_screen("pin");
    assert_eq!(v["entered"], 1);
    ws.touch(serde_json::json!({"touch":"ok"}));
    let v = ws.until_screen("checking");
    assert_eq!(v["entered"], 0);
    let line = k.stdout.recv_timeout(DEADLINE).expect("no key line");
    assert_eq!(line, r##"{"key":"*0*482913#"}"##);

    // porterd answers: not accepted, the reason hidden.
    k.feed(r#"{"feedback":"deny","door":"main","reason":"expired","device":"kiosk"}"#);
    let v = ws.until_screen("not_accepted");
    assert_eq!(v["reason"], Value::Null);
    assert!(!v.to_string().contains("expired"));

    // Assigning a card: "*0**" and the PIN in one line.
    let mut k = Kiosk::start(&[]);
    let mut ws = k.ws_ok();
    ws.view();
    ws.touch(serde_json::json!({"touch":"assign"}));
    ws.until_screen("assign_pin");
    // A seventh digit is not taken (the PIN has six); back deletes the
    // sixth, which is typed again.
    for d in "1357924".chars() {
        ws.touch(serde_json::json!({"touch":"digit","digit":d.to_string()}));
    }
    ws.touch(serde_json::json!({"touch":"back"}));
    ws.touch(serde_json::json!({"touch":"ok"}));
    ws.touch(serde_json::json!({"touch":"digit","digit":"2"}));
    ws.touch(serde_json::json!({"touch":"ok"}));
    ws.until_screen("checking");
    assert_eq!(k.stdout.recv_timeout(DEADLINE).unwrap(), r##"{"key":"*0**135792#"}"##);
    // Nothing else is ever written to stdout.
    ws.touch(serde_json::json!({"touch":"ok"}));
    ws.touch(serde_json::json!({"touch":"cancel"}));
    k.feed("garbled, not json");
    k.feed(r#"{"feedback":"enroll_open","door":"main","until_ms":4102444800000,"device":"kiosk"}"#);
    assert!(ws.until_screen("present_card")["remaining_ms"].as_u64().unwrap() > 0);
    drop(k.stdin.take());
    ws.until_screen("offline");
    assert!(k.stdout.recv_timeout(Duration::from_millis(200)).is_err(), "a second line on stdout");
}

#[test]
fn a_grant_on_stdin_opens_the_door_on_the_page() {
    let mut k = Kiosk::start(&[]);
    let mut ws = k.ws_ok();
    assert_eq!(ws.view()["screen"], "idle");
    k.feed(r#"{"lock":"locked"}"#);
    k.feed(r#"{"feedback":"grant","door":"main","unlock_ms":3000,"device":"kiosk","later_field":1}"#);
    let v = ws.until_screen("door_open");
    assert_eq!(v["door"], "Package room door");
    let left = v["remaining_ms"].as_u64().unwrap();
    assert!(left > 0 && left <= 3000, "{left}");
    // A page that connects now sees the countdown from now.
    let mut late = k.ws_ok();
    let v = late.view();
    assert_eq!(v["screen"], "door_open");
    assert!(v["remaining_ms"].as_u64().unwrap() <= left);
    // Then back to idle by itself.
    ws.until_screen("idle");
}

#[test]
fn stdin_eof_says_offline_then_exits_and_frees_the_port() {
    let mut k = Kiosk::start(&[]);
    let mut ws = k.ws_ok();
    assert_eq!(ws.view()["screen"], "idle");
    // porterd gone (even SIGKILLed: its end of the pipe closes with it).
    drop(k.stdin.take());
    ws.until_screen("offline");
    // Then the program ends by itself, so the port is free for the program
    // the next porterd starts (it was held by a leftover screen before).
    wait_exit(&mut k.child, 0, "after its stdin closed");
    std::net::TcpListener::bind(("127.0.0.1", k.port)).expect("the port is free again");
}

#[test]
fn sigterm_exits_zero() {
    let mut k = Kiosk::start(&[]);
    assert_eq!(k.ws_ok().view()["screen"], "idle");
    let status = Command::new("kill").args(["-TERM", &k.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    wait_exit(&mut k.child, 0, "after SIGTERM");
}

/// Waits for `child` to exit with `code`.
fn wait_exit(child: &mut std::process::Child, code: i32, when: &str) {
    let end = Instant::now() + DEADLINE;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert_eq!(st.code(), Some(code), "{when}");
            return;
        }
        assert!(Instant::now() < end, "still running {when}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Regression: a log line on a closed stderr panicked (`eprintln!`) and took
/// the screen down with it.
#[test]
fn a_closed_stderr_does_not_stop_the_screen() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_porter-kiosk"))
        .args(["--listen", "127.0.0.1:0", "--device", "kiosk", "--door", "main"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut first).unwrap();
    let port = first.trim().strip_prefix("porter-kiosk: serving http://127.0.0.1:").unwrap().trim_end_matches('/');
    let k = Kiosk {
        port: port.parse().unwrap(),
        stdin: child.stdin.take(),
        child,
        stdout: mpsc::channel().1,
        _stderr: mpsc::channel().1,
    };
    let mut k = k;
    let mut ws = k.ws_ok();
    ws.view();
    k.feed("garbled: logged on stderr, which is closed");
    k.feed(r#"{"feedback":"grant","door":"main","unlock_ms":3000}"#);
    ws.until_screen("door_open");
}

#[test]
fn bad_arguments_exit_2_with_a_message() {
    let bin = env!("CARGO_BIN_EXE_porter-kiosk");
    for args in [
        &["--door", "main"][..],
        &["--device", "kiosk", "--door", "main", "--listen", "0.0.0.0:0"],
        &["--device", "kiosk", "--door", "main", "--timezone", "Nowhere/Else"],
        &["--device", "kiosk", "--door", "main", "--lang", "fr"],
    ] {
        let out = Command::new(bin).args(args).stdin(Stdio::null()).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: stdout is the key channel");
        assert!(String::from_utf8_lossy(&out.stderr).contains("error:"), "{args:?}");
    }
}
