//! The command line (docs/kiosk.md). porterd's `exec` strips `PORTER_*`
//! variables, so everything is an argument. Bad arguments: a clear message on
//! stderr and exit status 2 (clap's).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{CommandFactory, Parser, ValueEnum};

use crate::screen::{Lang, Settings, Zone, MAX_DIGITS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LangArg {
    En,
    Es,
}

/// A touchscreen kiosk for one Porter door, started by porterd as an `exec`
/// device with `feedback = true`: reads porterd's feedback lines on stdin,
/// writes key lines on stdout, serves the page for the screen's browser.
#[derive(Debug, Clone, Parser)]
#[command(name = "porter-kiosk", version)]
pub struct Args {
    /// The address to serve the page on; port 0 picks a free port. Only a
    /// loopback address unless --allow-remote.
    #[arg(long, default_value = "127.0.0.1:8480")]
    pub listen: SocketAddr,
    /// Serve on a non-loopback address and accept any Host (the page then
    /// reaches porterd's keypad from the network: only behind a firewall).
    #[arg(long)]
    pub allow_remote: bool,
    /// This device's id in porterd's config (feedback's "device").
    #[arg(long, value_parser = id)]
    pub device: String,
    /// The door it serves; feedback for other doors is ignored.
    #[arg(long, value_parser = id)]
    pub door: String,
    /// The door's name as shown; default: the door's id.
    #[arg(long, value_parser = text)]
    pub door_name: Option<String>,
    /// The room's name on the idle screen.
    #[arg(long, default_value = "Package room", value_parser = text)]
    pub room: String,
    /// The language at start (switchable on screen; back to it when idle).
    #[arg(long, value_enum, default_value = "en")]
    pub lang: LangArg,
    /// IANA time zone for "try again at HH:MM" (e.g. Europe/Madrid); default:
    /// the system's local time.
    #[arg(long, value_parser = zone)]
    pub timezone: Option<chrono_tz::Tz>,
    /// The PIN length: OK is enabled at this many digits.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u8).range(1..=MAX_DIGITS as i64))]
    pub pin_length: u8,
    /// An entry is cleared after this many ms without a touch.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1000..=600_000))]
    pub entry_timeout_ms: u64,
}

fn id(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > crate::feedback::MAX_WORD {
        return Err(format!("an id of 1 to {} characters", crate::feedback::MAX_WORD));
    }
    Ok(s.to_owned())
}

fn text(s: &str) -> Result<String, String> {
    if s.trim().is_empty() || s.chars().count() > 80 || s.chars().any(char::is_control) {
        return Err("1 to 80 characters, no control characters".into());
    }
    Ok(s.to_owned())
}

fn zone(s: &str) -> Result<chrono_tz::Tz, String> {
    s.parse::<chrono_tz::Tz>().map_err(|_| "an IANA time zone name, such as Europe/Madrid".to_owned())
}

impl Args {
    /// Parses the process's arguments; exits 2 with a message when they are bad.
    pub fn parse_or_exit() -> Self {
        let args = Self::parse();
        if let Err(msg) = args.check() {
            Self::command().error(clap::error::ErrorKind::ValueValidation, msg).exit();
        }
        args
    }

    /// The checks across arguments.
    pub fn check(&self) -> Result<(), String> {
        if !self.allow_remote && !self.listen.ip().is_loopback() {
            return Err(format!(
                "--listen {} is not a loopback address: the page types into porterd's keypad; \
                 add --allow-remote to serve it to the network",
                self.listen
            ));
        }
        Ok(())
    }

    pub fn settings(&self) -> Settings {
        Settings {
            device: self.device.clone(),
            door: self.door.clone(),
            door_name: self.door_name.clone().unwrap_or_else(|| self.door.clone()),
            room: self.room.clone(),
            lang: match self.lang {
                LangArg::En => Lang::En,
                LangArg::Es => Lang::Es,
            },
            zone: self.timezone.map_or(Zone::Local, Zone::Named),
            pin_length: usize::from(self.pin_length),
            entry_timeout: Duration::from_millis(self.entry_timeout_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Args, String> {
        let argv = ["porter-kiosk", "--device", "kiosk", "--door", "main"].iter().chain(extra);
        let a = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        a.check()?;
        Ok(a)
    }

    #[test]
    fn defaults() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.listen, "127.0.0.1:8480".parse().unwrap());
        let s = a.settings();
        assert_eq!(
            (s.door_name.as_str(), s.room.as_str(), s.lang, s.pin_length),
            ("main", "Package room", Lang::En, 6)
        );
        assert_eq!(s.entry_timeout, Duration::from_secs(20));
        assert!(matches!(s.zone, Zone::Local));
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(parse(&["--listen", "0.0.0.0:8480"]).unwrap_err().contains("--allow-remote"));
        assert!(parse(&["--listen", "0.0.0.0:8480", "--allow-remote"]).is_ok());
        assert!(parse(&["--listen", "[::1]:0"]).is_ok());
        assert!(parse(&["--timezone", "Mars/Olympus"]).unwrap_err().contains("IANA"));
        assert!(parse(&["--timezone", "Europe/Madrid"]).is_ok());
        assert!(parse(&["--pin-length", "13"]).is_err());
        assert!(parse(&["--lang", "fr"]).is_err());
        assert!(parse(&["--room", "a\u{1b}[2J"]).is_err());
        assert!(Args::try_parse_from(["porter-kiosk", "--door", "main"]).is_err());
    }
}
