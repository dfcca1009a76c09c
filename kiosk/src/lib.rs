//! porter-kiosk: a touchscreen for one Porter door, run by porterd as an
//! `exec` device with `feedback = true` (docs/kiosk.md). It reads porterd's
//! feedback lines on stdin, writes exec key lines on stdout, and serves a page
//! on loopback for the screen's browser in kiosk mode. It depends on neither
//! porterd nor porter-drivers: it holds to the exec line protocol from outside.
//!
//! Layout:
//! - `screen.rs`: the state machine (sans-IO): feedback, touches and time in;
//!   key lines and the page's view out. The PIN's digits live only here.
//! - `feedback.rs`: porterd's lines, parsed leniently; the bounded line cutter.
//! - `args.rs`: the command line.
//! - `web.rs`: the page's server (axum): assets, Host and Origin checks, `/ws`.
//! - `main.rs`: the wiring (stdin, stdout, the timer, the server, signals).
//! - `assets/`: the page (index.html, app.js, app.css, i18n.json), compiled in.

#![forbid(unsafe_code)]

pub mod args;
pub mod feedback;
pub mod screen;
pub mod web;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// Every message id of i18n.json is in every language.
    #[test]
    fn i18n_has_every_id_in_both_languages() {
        let v: serde_json::Value = serde_json::from_str(crate::web::I18N_JSON).unwrap();
        let obj = v.as_object().unwrap();
        let ids = |lang: &str| -> BTreeSet<String> {
            let m = obj.get(lang).and_then(|m| m.as_object()).unwrap_or_else(|| panic!("no {lang} in i18n.json"));
            for (id, text) in m {
                assert!(text.as_str().is_some_and(|t| !t.trim().is_empty()), "{lang}.{id} is not a text");
            }
            m.keys().cloned().collect()
        };
        let (en, es) = (ids("en"), ids("es"));
        assert!(!en.is_empty());
        assert_eq!(en.difference(&es).collect::<Vec<_>>(), Vec::<&String>::new(), "ids missing in es");
        assert_eq!(es.difference(&en).collect::<Vec<_>>(), Vec::<&String>::new(), "ids missing in en");
    }
}
