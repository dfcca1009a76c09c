//! The `exec` driver running real programs: `sh -c` one-liners and the lock
//! script in tests/fixtures/exec-lock.sh. Every wait has a deadline.

use porter_drivers::exec::{Exec, ExecConfig, ExecFeedback, ExecOutput};
use porter_drivers::{
    supervise, Backoff, CardUid, DeviceReport, Ended, ErrorKind, Health, Input, InputDriver, InputSink, Output, Report,
};
use porter_drivers::{Feedback, FeedbackReceiver};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(10);

fn config(command: &str, args: &[&str]) -> ExecConfig {
    ExecConfig {
        command: command.into(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: BTreeMap::new(),
        max_line: 4096,
        feedback: false,
    }
}

fn sh(script: &str) -> ExecConfig {
    config("/bin/sh", &["-c", script])
}

async fn recv(rx: &mut mpsc::Receiver<DeviceReport>) -> Report {
    timeout(DEADLINE, rx.recv()).await.expect("no report before the deadline").expect("the sink is gone").report
}

async fn recv_n(rx: &mut mpsc::Receiver<DeviceReport>, n: usize) -> Vec<Report> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(recv(rx).await);
    }
    out
}

fn input(i: Input) -> Report {
    Report::Input(i)
}

/// Runs `exec` until `n` reports arrived, then drops its run future.
async fn run_until(exec: &mut Exec, n: usize) -> Vec<Report> {
    let (tx, mut rx) = mpsc::channel::<DeviceReport>(256);
    let sink = InputSink::new(2, tx);
    tokio::select! {
        r = exec.run(&sink) => panic!("the driver ended early: {r:?}"),
        got = recv_n(&mut rx, n) => got,
    }
}

#[tokio::test]
async fn reports_keys_cards_qr_and_levels_and_counts_garbage() {
    let script = r#"printf '%s\n' '{"key":"5"}' '{"key":"12#"}' 'not json' '{"card":"04:a1:b2:c3"}' '' \
        '{"kye":"1"}' '{"qr":"PRT-1 x"}' '{"level":true}' '{"level":false}' '{"key":"9"}'
        exec cat >/dev/null"#;
    let mut exec = Exec::new("exec-kinds", sh(script));
    let got = run_until(&mut exec, 10).await;
    let k = |c| input(Input::Key(c));
    assert_eq!(
        got,
        [
            Report::Health(Health::Online),
            k('5'),
            k('1'),
            k('2'),
            k('#'),
            input(Input::Card(CardUid::parse_hex("04a1b2c3").unwrap())),
            input(Input::Qr("PRT-1 x".into())),
            input(Input::Level(true)),
            input(Input::Level(false)),
            k('9'),
        ]
    );
    assert_eq!(exec.stats().garbled, 2);
}

#[tokio::test]
async fn an_overlong_line_is_dropped_and_the_next_one_read() {
    let script = r#"head -c 5000 /dev/zero | tr '\0' x; echo; echo '{"key":"7"}'; exec cat >/dev/null"#;
    let mut exec = Exec::new("exec-long", ExecConfig { max_line: 64, ..sh(script) });
    let got = run_until(&mut exec, 2).await;
    assert_eq!(got, [Report::Health(Health::Online), input(Input::Key('7'))]);
    assert_eq!(exec.stats().garbled, 1);
}

#[tokio::test]
async fn a_flood_on_standard_error_does_not_block_the_program() {
    // 300 KB on stderr, more than a pipe holds, then a report: if the driver
    // did not drain stderr the program would block before the report.
    let script = r#"i=0; while [ $i -lt 3000 ]; do
            echo "noise $i ......................................................................." >&2; i=$((i+1))
        done
        head -c 100000 /dev/zero | tr '\0' y >&2
        echo '{"key":"3"}'; exec cat >/dev/null"#;
    let mut exec = Exec::new("exec-stderr", sh(script));
    let got = run_until(&mut exec, 2).await;
    assert_eq!(got, [Report::Health(Health::Online), input(Input::Key('3'))]);
    assert_eq!(exec.stats().garbled, 0);
}

#[tokio::test]
async fn the_last_line_counts_and_exiting_is_a_disconnect() {
    let mut exec = Exec::new("exec-exit", sh(r#"printf '{"key":"4"}'; exit 0"#));
    let (tx, mut rx) = mpsc::channel::<DeviceReport>(16);
    let err = timeout(DEADLINE, exec.run(&InputSink::new(0, tx))).await.unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Disconnected);
    assert!(err.message.contains("exit status: 0"), "{err}");
    assert_eq!(recv_n(&mut rx, 2).await, [Report::Health(Health::Online), input(Input::Key('4'))]);
}

#[tokio::test]
async fn a_program_that_exits_is_restarted_under_supervise() {
    let (tx, mut rx) = mpsc::channel::<DeviceReport>(64);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(supervise(
        "exec-restart",
        Box::new(Exec::new("exec-restart", sh(r#"echo '{"key":"1"}'; echo 'failing on purpose' >&2; exit 3"#))),
        InputSink::new(7, tx),
        cancel.clone(),
        Backoff::new(Duration::from_millis(10), Duration::from_millis(100)),
    ));
    for round in 0..3 {
        assert_eq!(recv(&mut rx).await, Report::Health(Health::Online), "round {round}");
        assert_eq!(recv(&mut rx).await, input(Input::Key('1')), "round {round}");
        match recv(&mut rx).await {
            Report::Health(Health::Offline(e)) => {
                assert_eq!(e.kind, ErrorKind::Disconnected);
                assert!(e.message.contains("exit status: 3"), "{e}");
            }
            other => panic!("round {round}: {other:?}"),
        }
    }
    cancel.cancel();
    assert_eq!(timeout(DEADLINE, task).await.unwrap().unwrap(), Ended::Cancelled);
}

#[tokio::test]
async fn programs_that_cannot_start_say_why() {
    let (tx, mut rx) = mpsc::channel::<DeviceReport>(16);
    let sink = InputSink::new(0, tx);
    let err = Exec::new("exec-missing", config("/nonexistent/porter-reader", &[])).run(&sink).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::NotFound, "{err}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reader");
    std::fs::write(&path, "#!/bin/sh\necho '{\"key\":\"1\"}'\n").unwrap();
    // Readable but not executable: even root may not run it.
    let err = Exec::new("exec-noexec", config(path.to_str().unwrap(), &[])).run(&sink).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::PermissionDenied, "{err}");
    assert!(err.hint.unwrap().contains("chmod"));

    // Executable, but a script without its #! line. A child process writes it:
    // a write handle open in this process, inherited by a program another test
    // forks at that moment, would make running it fail with ETXTBSY instead.
    let path = dir.path().join("no-shebang");
    let made = std::process::Command::new("/bin/sh")
        .args(["-c", r#"printf '%s\n' 'echo "{\"key\":\"1\"}"' > "$1" && chmod 755 "$1""#, "sh"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
    let err = Exec::new("exec-enoexec", config(path.to_str().unwrap(), &[])).run(&sink).await.unwrap_err();
    assert!(err.message.contains("not a program this machine can run"), "{err}");
    assert!(err.hint.unwrap().contains("#!"));
    assert!(rx.try_recv().is_err(), "a program that never started is not online");
}

#[tokio::test]
async fn closing_standard_output_while_running_is_a_protocol_error() {
    let mut exec = Exec::new("exec-closed", sh("exec 1>&-; exec sleep 60"));
    let (tx, _rx) = mpsc::channel::<DeviceReport>(16);
    let err = timeout(DEADLINE, exec.run(&InputSink::new(0, tx))).await.unwrap().unwrap_err();
    assert_eq!(err.kind, ErrorKind::Protocol, "{err}");
}

#[tokio::test]
async fn env_is_passed_and_porter_settings_are_not() {
    // The daemon's PORTER_ variables may carry secrets (an MQTT password).
    std::env::set_var("PORTER_EXEC_TEST_SECRET", "hunter2");
    let mut cfg = sh(r#"echo "{\"qr\":\"$READER_PORT|${PORTER_EXEC_TEST_SECRET:-unset}\"}"; exec cat >/dev/null"#);
    cfg.env.insert("READER_PORT".into(), "/dev/ttyUSB7".into());
    let mut exec = Exec::new("exec-env", cfg);
    let got = run_until(&mut exec, 2).await;
    assert_eq!(got[1], input(Input::Qr("/dev/ttyUSB7|unset".into())));
}

/// Whether process `pid` is gone (reaped, or a zombie awaiting its reaper).
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // "pid (comm) state ...": the state follows the last ')'.
        Ok(stat) => stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')).unwrap_or(false),
    }
}

#[tokio::test]
async fn dropping_the_run_future_kills_the_program() {
    // `exec sleep` keeps the shell's pid, which the program reports.
    let mut exec = Exec::new("exec-kill", sh(r#"echo "{\"qr\":\"$$\"}"; exec sleep 600"#));
    let got = run_until(&mut exec, 2).await;
    let Report::Input(Input::Qr(pid)) = &got[1] else { panic!("{got:?}") };
    let pid: u32 = pid.parse().unwrap();
    // The run future is dropped: the program must go, without waiting 600 s.
    let deadline = Instant::now() + DEADLINE;
    while !is_dead(pid) {
        assert!(Instant::now() < deadline, "process {pid} still running after the driver was dropped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn lock_commands_reach_the_program_and_a_new_program_hears_the_last_state() {
    let id = "exec-lock";
    let script = format!("{}/tests/fixtures/exec-lock.sh", env!("CARGO_MANIFEST_DIR"));
    let mut lock = ExecOutput::new(id);
    // No program started yet (the daemon locks before it starts inputs): the
    // state is remembered for the program, not an error.
    lock.set(false).await.unwrap();

    let (tx, mut rx) = mpsc::channel::<DeviceReport>(64);
    let cancel = CancellationToken::new();
    let mut exec = Exec::new(id, config(&script, &[]));
    let task = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            let sink = InputSink::new(1, tx);
            tokio::select! {
                r = exec.run(&sink) => panic!("the lock program ended: {r:?}"),
                _ = cancel.cancelled() => exec,
            }
        }
    });
    // Started, then told the remembered state: locked.
    assert_eq!(recv_n(&mut rx, 2).await, [Report::Health(Health::Online), input(Input::Level(false))]);
    lock.set(true).await.unwrap();
    assert_eq!(recv(&mut rx).await, input(Input::Level(true)));
    lock.set(false).await.unwrap();
    assert_eq!(recv(&mut rx).await, input(Input::Level(false)));
    lock.set(true).await.unwrap();
    assert_eq!(recv(&mut rx).await, input(Input::Level(true)));

    cancel.cancel();
    let exec = timeout(DEADLINE, task).await.unwrap().unwrap();
    assert_eq!(exec.stats().garbled, 0, "the program understood every command");
    // The program is gone: commands fail again.
    let err = lock.set(false).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Disconnected, "{err}");
}

#[tokio::test]
async fn feedback_lines_reach_the_program_and_a_stuck_one_loses_them_without_waiting() {
    // The program answers the first feedback line it reads with a key, so
    // the test sees what arrived through the device's own protocol.
    let script = r#"read -r l
        case "$l" in '{"feedback":"deny","door":"main","reason":"unknown","device":"kiosk"}') echo '{"key":"1"}' ;; *) echo '{"key":"0"}' ;; esac
        exec cat >/dev/null"#;
    let mut exec = Exec::new("exec-feedback", sh(script));
    let mut screen = ExecFeedback::new("exec-feedback");
    let (tx, mut rx) = mpsc::channel::<DeviceReport>(16);
    let sink = InputSink::new(2, tx);
    let deny = Feedback::Deny { door: "main".into(), reason: "unknown" };
    tokio::select! {
        r = exec.run(&sink) => panic!("the driver ended early: {r:?}"),
        _ = async {
            assert_eq!(recv(&mut rx).await, Report::Health(Health::Online));
            screen.feedback(&deny, Some("kiosk"));
            assert_eq!(recv(&mut rx).await, input(Input::Key('1')), "the program did not read the deny line");
        } => {}
    }
    assert_eq!(screen.dropped(), 0);

    // A program that never reads: the pipe fills, later lines are dropped
    // and counted, and no call waits.
    let mut exec = Exec::new("exec-stuck", sh("echo '{\"health\":\"online\"}'; exec sleep 60"));
    let mut stuck = ExecFeedback::new("exec-stuck");
    let (tx, mut rx) = mpsc::channel::<DeviceReport>(16);
    let sink = InputSink::new(2, tx);
    tokio::select! {
        r = exec.run(&sink) => panic!("the driver ended early: {r:?}"),
        _ = async {
            assert_eq!(recv(&mut rx).await, Report::Health(Health::Online));
            let started = std::time::Instant::now();
            for _ in 0..5000 {
                stuck.feedback(&deny, None);
            }
            let took = started.elapsed();
            // 5,000 lines of 52 bytes are four times a 64 KiB pipe.
            assert!(stuck.dropped() > 3000, "dropped {}", stuck.dropped());
            assert!(took < Duration::from_secs(1), "5,000 feedback calls took {took:?}");
        } => {}
    }
    // With no program running, a line is dropped too.
    let mut none = ExecFeedback::new("exec-never-started");
    none.feedback(&deny, None);
    assert_eq!(none.dropped(), 1);
}
