//! The admin socket's line framing (`porter_drivers::lines::LineReader`, as
//! `provision::admin` reads each connection) and what it hands on: each
//! line, trimmed, to `provision::command::parse`.
//!
//! The first byte is the line bound (1 to 64 bytes, so that lines over it
//! are common), the second the size of the reads that deliver the rest
//! (1 to 16 bytes; a client may send a line in any number of pieces, and
//! partial lines are left at the end). Properties: the same frames whether
//! the bytes come in one read, one byte per read or the fuzzed pieces; no
//! line over the bound is handed on; at the socket's own bound
//! (`MAX_COMMAND_BYTES`) each line parses to a command or an error reply,
//! and a line over it gets an error reply too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porter_drivers::lines::{Frame, LineReader};
use porterd::provision::command::{self, MAX_COMMAND_BYTES};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// Delivers `data` in reads of at most `piece` bytes.
struct Pieces<'a> {
    data: &'a [u8],
    piece: usize,
}

impl AsyncRead for Pieces<'_> {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let n = self.piece.min(self.data.len()).min(buf.remaining());
        let (now, rest) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = rest;
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("a runtime"))
}

fn frames(data: &[u8], piece: usize, max: usize) -> Vec<Frame> {
    runtime().block_on(async {
        let mut r = LineReader::new(Pieces { data, piece }, max);
        let mut out = Vec::new();
        while let Some(f) = r.next().await.expect("reading from memory cannot fail") {
            out.push(f);
        }
        out
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&[max, piece], data)) = data.split_first_chunk::<2>() else { return };
    let max = usize::from(max % 64) + 1;
    let piece = usize::from(piece % 16) + 1;
    let whole = frames(data, usize::MAX, max);
    assert_eq!(frames(data, 1, max), whole, "one byte per read");
    assert_eq!(frames(data, piece, max), whole, "reads of {piece} bytes");
    for f in &whole {
        if let Frame::Line(l) = f {
            assert!(l.len() <= max, "a line of {} bytes over the bound of {max}", l.len());
        }
    }
    for f in frames(data, piece, MAX_COMMAND_BYTES) {
        let reply = match f {
            Frame::TooLong => command::too_long_reply(),
            Frame::Line(line) => match command::parse(line.trim_ascii()) {
                Ok(_) => continue,
                Err(reply) => reply,
            },
        };
        assert_eq!(reply["ok"], false, "{reply}");
        assert!(reply["error"]["code"].is_string(), "{reply}");
    }
});
