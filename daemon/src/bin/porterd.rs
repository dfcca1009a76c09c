//! `porterd`: the daemon. `porterd --config FILE` runs it; `porterd
//! check-config --config FILE` validates a config and exits 64 when invalid;
//! `--demo` uses the embedded demo config instead of a file.

use anyhow::Context;
use clap::{Parser, Subcommand};
use porterd::config::{Config, DEFAULT_PATH, DEMO_TOML};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status for an invalid configuration (EX_USAGE... EX_DATAERR is 65;
/// the contract fixes 64).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "porterd",
    version,
    about = "Porter: the access-control daemon for package rooms",
    after_help = "Every config key can be overridden from the environment: PORTER_<KEY> for a top-level key, \
                  PORTER_<SECTION>__<KEY> for a nested one (PORTER_DATA_DIR, PORTER_MQTT__URL); see docs/config.md.\n\
                  Exit status: 0 after a clean stop (SIGTERM, SIGINT), 64 for an invalid config (every error is \
                  listed with its key path), 1 when the daemon cannot start."
)]
struct Cli {
    /// The config file.
    #[arg(long, global = true, default_value = DEFAULT_PATH)]
    config: PathBuf,
    /// Use the embedded demo config (console keypad, simulated lock, data in ./data).
    #[arg(long, global = true, conflicts_with = "config")]
    demo: bool,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate the config without touching hardware or the store.
    CheckConfig,
    /// Print the embedded demo config.
    DemoConfig,
}

/// Whom check-config checks the files and folders for: the user it runs
/// as, which is the daemon's (the unit's ExecStartPre runs it as porter);
/// run by root, the packaged service's user `porter` when there is one
/// (root and porter are then both trusted), so that `sudo porterd
/// check-config` agrees with the service. Whether that user may read the
/// secret is `porterctl doctor`'s question (check-config reads it as itself).
fn check_user() -> u32 {
    let me = porterd::ownership::euid();
    if me != 0 {
        return me;
    }
    porterd::doctor::ServiceUser::lookup("porter").map_or(0, |u| u.uid)
}

fn load(cli: &Cli) -> Result<Config, ExitCode> {
    let r = if cli.demo { Config::from_toml(DEMO_TOML) } else { Config::load(&cli.config) };
    r.map_err(|errs| {
        let source = if cli.demo { "embedded demo config".to_string() } else { cli.config.display().to_string() };
        eprintln!("porterd: {source}: {} error(s):", errs.len());
        for e in &errs.0 {
            eprintln!("  {e}");
        }
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Logs to the journal, with each event's fields as journal fields, when
/// standard error is the journal's stream (a systemd service); to standard
/// error otherwise, or when the journal's socket cannot be reached. The level
/// is the config's `log_level`, or `RUST_LOG` when set.
fn init_logging(level: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{level},sled=warn,mio=info")))
    };
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journal) => {
                // Fields under their own names (DEVICE=, DOOR=), not F_DEVICE=.
                let journal = journal.with_syslog_identifier("porterd".into()).with_field_prefix(None);
                tracing_subscriber::registry().with(filter()).with(journal).init();
                return;
            }
            Err(e) => eprintln!("porterd: the journal cannot be reached ({e}); logging to standard error"),
        }
    }
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Whether standard error is the journal's stream: systemd sets
/// `JOURNAL_STREAM` to its `device:inode` for a service whose output goes to
/// the journal (a child started with the variable inherited but another
/// standard error does not match).
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else { return false };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else { return false };
    stream_matches(&var.to_string_lossy(), meta.dev(), meta.ino())
}

fn stream_matches(var: &str, dev: u64, ino: u64) -> bool {
    var.split_once(':').is_some_and(|(d, i)| d.parse() == Ok(dev) && i.parse() == Ok(ino))
}

/// Installs the SIGTERM and SIGINT handlers now (a signal that arrives
/// before the daemon waits for it must still stop it cleanly, not kill it)
/// and returns the future that resolves on the first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = int.recv() => tracing::info!("SIGINT"),
        }
    })
}

fn main() -> ExitCode {
    porterd::memory::one_arena();
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::DemoConfig) => {
            print!("{DEMO_TOML}");
            return ExitCode::SUCCESS;
        }
        Some(Cmd::CheckConfig) => {
            return match load(&cli) {
                Ok(c) => {
                    // The files [mqtt] names are read here too, as the daemon will.
                    if let Some(m) = &c.mqtt {
                        let topics = porterd::provision::mqtt::Topics::new(&c.site, &c.controller);
                        if let Err(e) = porterd::provision::mqtt::options(m, &topics) {
                            eprintln!("porterd: {}: 1 error(s):\n  {e}", cli.config.display());
                            return ExitCode::from(EXIT_CONFIG);
                        }
                    }
                    // The ownership checks the daemon makes at start.
                    let refused: Vec<String> = porterd::doctor::files(&c, check_user(), None)
                        .into_iter()
                        .filter_map(|f| match f {
                            porterd::doctor::Finding::Fix(t) => Some(t),
                            _ => None,
                        })
                        .collect();
                    if !refused.is_empty() {
                        eprintln!("porterd: {}: {} error(s):", cli.config.display(), refused.len());
                        for e in &refused {
                            eprintln!("  {e}");
                        }
                        return ExitCode::from(EXIT_CONFIG);
                    }
                    for v in &c.env_ignored {
                        eprintln!("porterd: warning: {v} names no config key and is ignored");
                    }
                    println!(
                        "config OK: site {}, controller {}, {} door(s), {} device(s)",
                        c.site,
                        c.controller,
                        c.doors.len(),
                        c.devices.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            };
        }
        None => {}
    }
    let cfg = match load(&cli) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(&cfg.log_level);
    for v in &cfg.env_ignored {
        tracing::warn!(variable = %v, "environment variable names no config key and is ignored");
    }
    match serve(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The log goes to standard error already: say it once.
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("porterd")
        .build()
        .context("starting the runtime")?;
    rt.block_on(async {
        let shutdown = shutdown_signal()?;
        porterd::runtime::run(cfg, shutdown).await.map_err(anyhow::Error::from)
    })?;
    // Standard input's reader thread may be blocked in read(); do not wait for it.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_stream_is_told_by_device_and_inode() {
        assert!(stream_matches("8:12345", 8, 12345));
        assert!(!stream_matches("8:12345", 8, 12346));
        assert!(!stream_matches("9:12345", 8, 12345));
        assert!(!stream_matches("garbage", 8, 12345));
        assert!(!stream_matches("", 0, 0));
    }
}
