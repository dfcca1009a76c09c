//! porter-kiosk's wiring: the state machine (`screen.rs`) between porterd's
//! stdin lines, the page's touches and a timer; its key lines to stdout, one
//! flushed write each; its views to the page's WebSockets. One thread is
//! plenty: a screen, a person, a line now and then.

#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::sync::Arc;

use porter_kiosk::args::Args;
use porter_kiosk::feedback::{self, LineBuf};
use porter_kiosk::screen::{Kiosk, Now, Step};
use porter_kiosk::web::{self, Published, Shared};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

/// A line on stderr (porterd logs it at warn). Unlike `eprintln!`, a closed
/// stderr does not panic: the screen matters more than its log.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

fn main() -> ExitCode {
    let args = Args::parse_or_exit();
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            note!("porter-kiosk: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(run(args));
    // tokio's stdin reads on a blocking thread that cannot be interrupted:
    // do not wait for it.
    rt.shutdown_background();
    code
}

/// Long because it is the one loop that owns the state machine: each arm is a
/// source of steps, and the end of the loop carries a step out.
async fn run(args: Args) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            note!("porter-kiosk: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            note!("porter-kiosk: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(t), Ok(i)) => (t, i),
        (Err(e), _) | (_, Err(e)) => {
            note!("porter-kiosk: cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    };

    let mut kiosk = Kiosk::new(args.settings());
    let now = Now::system();
    let (views, views_rx) = watch::channel(Published { view: kiosk.view(now), at: now.at });
    let (touches, mut touch_rx) = mpsc::channel(64);
    let app = web::router(Arc::new(Shared { views: views_rx, touches, allow_remote: args.allow_remote }));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            note!("porter-kiosk: the page's server stopped: {e}");
        }
    });
    note!("porter-kiosk: serving http://{addr}/");

    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    let mut buf = vec![0u8; 4096];
    let mut lines = LineBuf::new();
    let mut stdin_open = true;
    loop {
        let deadline = kiosk.next_deadline();
        let step = tokio::select! {
            _ = term.recv() => return ExitCode::SUCCESS,
            _ = int.recv() => return ExitCode::SUCCESS,
            r = stdin.read(&mut buf), if stdin_open => match r {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    note!("porter-kiosk: porterd closed stdin (stopped or killed): out of service, exiting");
                    kiosk.stdin_closed()
                }
                Ok(n) => {
                    let mut step = Step::default();
                    let now = Now::system();
                    lines.push(&buf[..n], &mut |line| {
                        let parsed = match line {
                            feedback::Cut::Line(l) => feedback::parse(l),
                            feedback::Cut::TooLong => feedback::Line::Garbled,
                        };
                        match parsed {
                            feedback::Line::Feedback(f) => {
                                let s = kiosk.feedback(&f, now);
                                step.lines.extend(s.lines);
                                step.notes.extend(s.notes);
                                step.changed |= s.changed;
                            }
                            feedback::Line::Ignored => {}
                            feedback::Line::Garbled => {
                                kiosk.garbled_line();
                                let n = kiosk.garbled();
                                if n.is_power_of_two() {
                                    note!("porter-kiosk: ignored a garbled line from porterd ({n} so far)");
                                }
                            }
                        }
                    });
                    step
                }
            },
            Some(t) = touch_rx.recv() => kiosk.touch(&t, Now::system()),
            _ = sleep_until(deadline), if deadline.is_some() => kiosk.tick(Now::system()),
        };
        for line in &step.lines {
            // porterd gone: stdin's end says so; nothing else to do here.
            let _ = write_line(&mut stdout, line).await;
        }
        for n in &step.notes {
            note!("{n}");
        }
        if step.changed {
            let now = Now::system();
            views.send_replace(Published { view: kiosk.view(now), at: now.at });
        }
        if !stdin_open {
            // porterd is gone (even killed: its end of the pipe closed with
            // it). The open pages are told, then the program ends, so that
            // the port is free for the program the next porterd starts; the
            // page says "out of service" by itself while no one serves it,
            // and reconnects when someone does.
            tokio::time::sleep(OFFLINE_GRACE).await;
            return ExitCode::SUCCESS;
        }
    }
}

/// How long the out-of-service view is served after porterd went away.
const OFFLINE_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

async fn sleep_until(deadline: Option<std::time::Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await;
    }
}

/// One key line, written whole and flushed (porterd reads line by line).
async fn write_line(out: &mut tokio::io::Stdout, line: &str) -> std::io::Result<()> {
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(line.len() + 1));
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    out.write_all(&bytes).await?;
    out.flush().await
}
