//! The page's server: the compiled-in assets, `/healthz` and the WebSocket at
//! `/ws` (views out, touches in). axum on HTTP/1 only.
//!
//! A page on loopback can still be reached by a web site through DNS
//! rebinding (a name of the attacker's that resolves to 127.0.0.1), so every
//! request's Host must be a loopback name unless `--allow-remote`, and the
//! WebSocket's Origin too: a foreign page never gets to type into porterd's
//! keypad.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::{mpsc, watch};

use crate::screen::{Touch, View};

pub const INDEX_HTML: &str = include_str!("../assets/index.html");
pub const APP_JS: &str = include_str!("../assets/app.js");
pub const APP_CSS: &str = include_str!("../assets/app.css");
pub const I18N_JSON: &str = include_str!("../assets/i18n.json");

/// How often a connected page hears `{"alive":true}` (it shows "offline"
/// after 12 s without a frame).
pub const ALIVE_EVERY: Duration = Duration::from_secs(5);
/// The largest WebSocket message taken from the page (a touch is ~40 bytes).
pub const MAX_WS_MESSAGE: usize = 1024;

/// A view and when it was made (its `remaining_ms` counts from then).
#[derive(Debug, Clone)]
pub struct Published {
    pub view: View,
    pub at: Instant,
}

/// What the handlers share with the main loop.
#[derive(Debug)]
pub struct Shared {
    pub views: watch::Receiver<Published>,
    /// Touches for the state machine; a full queue drops the touch.
    pub touches: mpsc::Sender<Touch>,
    pub allow_remote: bool,
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }))
        .route("/app.js", get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }))
        .route("/app.css", get(|| async { asset("text/css; charset=utf-8", APP_CSS) }))
        .route("/i18n.json", get(|| async { asset("application/json", I18N_JSON) }))
        .route("/healthz", get(|| async { asset("text/plain; charset=utf-8", "ok") }))
        // The browser asks for it on every load: nothing, rather than a 404
        // in its console.
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/ws", get(ws))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Every request: the Host check, then the headers every response carries.
async fn guard(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_owned);
    let allowed = match &host {
        Some(h) => shared.allow_remote || loopback_host(h),
        None => false,
    };
    let mut resp = if allowed {
        next.run(req).await
    } else {
        (StatusCode::FORBIDDEN, "forbidden: not a loopback Host\n").into_response()
    };
    let ws_src = host.filter(|h| allowed && plain_host(h)).map(|h| format!(" ws://{h}")).unwrap_or_default();
    let csp = format!("default-src 'self'; connect-src 'self'{ws_src}; frame-ancestors 'none'");
    let hs = resp.headers_mut();
    hs.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    hs.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(v) = HeaderValue::from_str(&csp) {
        hs.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

/// Only the characters of a host and port (nothing that could end a CSP
/// directive).
fn plain_host(h: &str) -> bool {
    !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

/// `127.0.0.1`, `localhost` or `[::1]`, each with an optional port.
pub fn loopback_host(h: &str) -> bool {
    let (name, port, v6) = match h.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((inner, after)) => (inner, after, true),
            None => return false,
        },
        None => match h.find(':') {
            Some(i) => (&h[..i], &h[i..], false),
            None => (h, "", false),
        },
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    let name_ok = if v6 { name == "::1" } else { name == "127.0.0.1" || name.eq_ignore_ascii_case("localhost") };
    port_ok && name_ok
}

/// The WebSocket's Origin: the page's own, the very host and port the
/// request was made to (another page served on the controller's loopback,
/// at another port, is another origin and is refused), and without
/// `--allow-remote` a loopback one.
fn origin_ok(headers: &HeaderMap, allow_remote: bool) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else { return false };
    let Some(host) = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) else { return false };
    let req_host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    host.eq_ignore_ascii_case(req_host) && (allow_remote || loopback_host(host))
}

async fn ws(State(shared): State<Arc<Shared>>, headers: HeaderMap, up: WebSocketUpgrade) -> Response {
    if !origin_ok(&headers, shared.allow_remote) {
        return (StatusCode::FORBIDDEN, "forbidden: not a loopback Origin\n").into_response();
    }
    up.max_message_size(MAX_WS_MESSAGE).max_frame_size(MAX_WS_MESSAGE).on_upgrade(move |socket| session(socket, shared))
}

/// One page: its view on connect and on every change, `{"alive":true}` every
/// [`ALIVE_EVERY`], its touches to the state machine. Ends when either side
/// closes.
async fn session(mut socket: WebSocket, shared: Arc<Shared>) {
    let mut views = shared.views.clone();
    let mut alive = tokio::time::interval_at(tokio::time::Instant::now() + ALIVE_EVERY, ALIVE_EVERY);
    let mut send_view = true;
    loop {
        if send_view {
            let frame = {
                let p = views.borrow_and_update();
                p.view.frame(p.at.elapsed())
            };
            if socket.send(Message::Text(frame.into())).await.is_err() {
                return;
            }
            send_view = false;
        }
        tokio::select! {
            changed = views.changed() => match changed {
                Ok(()) => send_view = true,
                Err(_) => return,
            },
            _ = alive.tick() => {
                if socket.send(Message::Text(r#"{"alive":true}"#.into())).await.is_err() {
                    return;
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(text))) => {
                    // Not a touch: ignored (the page is ours; nothing from it is logged).
                    if let Ok(touch) = serde_json::from_str::<Touch>(text.as_str()) {
                        let _ = shared.touches.try_send(touch);
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in ["127.0.0.1", "127.0.0.1:8480", "localhost", "LOCALHOST:1", "[::1]", "[::1]:8480"] {
            assert!(loopback_host(h), "{h}");
        }
        for h in [
            "",
            "evil.example",
            "evil.example:8480",
            "127.0.0.1.evil.example",
            "localhost.evil:80",
            "[::1",
            "[::2]:80",
            "127.0.0.1:",
            "127.0.0.1:abc",
            "127.0.0.1:123456",
            "0.0.0.0:8480",
            "[::1]x",
            "127.0.0.1:80:80",
        ] {
            assert!(!loopback_host(h), "{h}");
        }
    }

    #[test]
    fn origins() {
        let hm = |origin: &str, host: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ORIGIN, origin.parse().unwrap());
            m.insert(header::HOST, host.parse().unwrap());
            m
        };
        assert!(origin_ok(&hm("http://127.0.0.1:8480", "127.0.0.1:8480"), false));
        assert!(origin_ok(&hm("http://localhost:8480", "localhost:8480"), false));
        assert!(!origin_ok(&hm("http://evil.example", "127.0.0.1:8480"), false));
        assert!(!origin_ok(&hm("null", "127.0.0.1:8480"), false));
        assert!(!origin_ok(&hm("http://127.0.0.1:8480/x", "127.0.0.1:8480"), false));
        assert!(!origin_ok(&HeaderMap::new(), false));
        assert!(!origin_ok(&hm("http://localhost:9999", "127.0.0.1:8480"), false), "another loopback page");
        assert!(!origin_ok(&hm("http://127.0.0.1:9999", "127.0.0.1:8480"), false), "another port");
        assert!(!origin_ok(&hm("http://kiosk.lan:8480", "kiosk.lan:8480"), false));
        assert!(origin_ok(&hm("http://kiosk.lan:8480", "kiosk.lan:8480"), true));
        assert!(!origin_ok(&hm("http://evil.example", "kiosk.lan:8480"), true));
    }
}
