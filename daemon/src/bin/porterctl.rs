//! `porterctl`: send one op to the daemon's admin socket and print the reply.
//!
//! `porterctl [--socket PATH | --config FILE] OP [key=value ...] [key:=JSON ...]`
//! `key=value` passes text; `key:=value` passes JSON (`doors:='["main"]'`,
//! `enabled:=false`); `key=-` reads the text from standard input (for a PIN). Exits 0 when the reply is ok, 1 when it is an error,
//! 2 when the daemon cannot be reached.

use clap::Parser;
use serde_json::{Map, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "porterctl", version, about = "Send one op to porterd's admin socket", after_help = OPS_HELP)]
struct Cli {
    /// The admin socket (default: admin.socket from --config, else /run/porter/admin.sock).
    #[arg(long, env = "PORTER_ADMIN__SOCKET")]
    socket: Option<PathBuf>,
    /// Read the socket path from this config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seconds to wait for the reply.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// The op, such as holder.put or pin.generate.
    op: String,
    /// Arguments: key=text or key:=json.
    args: Vec<String>,
}

const OPS_HELP: &str = "Examples:
  porterctl holder.put holder=courier-ups name=UPS role=courier
  porterctl pin.generate holder=courier-ups
  porterctl pin.set holder=courier-ups pin=-     (type the PIN and Enter: it stays out of ps and shell history)
  porterctl card.assign holder=courier-ups uid=04a1b2c3
  porterctl holder.put holder=staff-ann role=staff doors:='[\"main\"]' schedule:='[{\"days\":\"weekdays\",\"from\":\"07:00\",\"to\":\"19:00\"}]'
  porterctl door.unlock door=main ms=3000
  porterctl lockout.clear device=keypad1
  porterctl state.get
The ops and their arguments are in docs/ops.md.";

fn parse_args(args: &[String]) -> Result<Map<String, Value>, String> {
    let mut m = Map::new();
    for a in args {
        if let Some((k, v)) = a.split_once(":=") {
            let v: Value = serde_json::from_str(v).map_err(|e| format!("{a}: the value after := must be JSON: {e}"))?;
            m.insert(k.to_string(), v);
        } else if let Some((k, "-")) = a.split_once('=') {
            // Secrets (pin=-) are read from standard input, so they stay out
            // of the process list and the shell history.
            let mut line = String::new();
            let n = std::io::stdin().read_line(&mut line).map_err(|e| format!("{k}: reading standard input: {e}"))?;
            if n == 0 {
                return Err(format!("{k}=-: standard input was empty; type the value and press Enter"));
            }
            m.insert(k.to_string(), Value::String(line.trim_end_matches(['\r', '\n']).to_string()));
        } else if let Some((k, v)) = a.split_once('=') {
            m.insert(k.to_string(), Value::String(v.to_string()));
        } else {
            return Err(format!("`{a}`: arguments are key=value or key:=json"));
        }
    }
    Ok(m)
}

fn socket_path(cli: &Cli) -> Result<PathBuf, String> {
    if let Some(s) = &cli.socket {
        return Ok(s.clone());
    }
    if let Some(c) = &cli.config {
        let cfg = porterd::config::Config::load(c).map_err(|e| format!("{}: {e}", c.display()))?;
        return Ok(cfg.admin.socket);
    }
    Ok(PathBuf::from("/run/porter/admin.sock"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let fail = |msg: String| {
        eprintln!("porterctl: {msg}");
        ExitCode::from(2)
    };
    let args = match parse_args(&cli.args) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let path = match socket_path(&cli) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let id = format!("ctl-{}", std::process::id());
    let cmd = serde_json::json!({"id": id, "op": cli.op, "args": args});
    let mut stream = match UnixStream::connect(&path) {
        Ok(s) => s,
        Err(e) => {
            return fail(format!(
                "cannot reach porterd at {}: {e} (is porterd running? is this the admin.socket of its config? are you in the porter group?)",
                path.display()
            ))
        }
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(cli.timeout)));
    let mut line = serde_json::to_vec(&cmd).unwrap_or_default();
    line.push(b'\n');
    if let Err(e) = stream.write_all(&line) {
        return fail(format!("sending to {}: {e}", path.display()));
    }
    let mut reply = String::new();
    if let Err(e) = BufReader::new(&stream).read_line(&mut reply) {
        return fail(format!("no reply from porterd within {} s: {e}", cli.timeout));
    }
    let Ok(v) = serde_json::from_str::<Value>(&reply) else {
        return fail(format!("porterd sent something that is not JSON: {reply}"));
    };
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or(reply));
    if v["ok"] == Value::Bool(true) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
