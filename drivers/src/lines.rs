//! Reading `\n`-terminated lines with a bound on their length, for input
//! from outside the daemon: exec programs' output and the admin socket.

use std::io;
use tokio::io::{AsyncRead, AsyncReadExt};

/// A line read with a bound on its length.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// The line without its `\n` (or `\r\n`; a last line without `\n`
    /// loses a final `\r` too).
    Line(Vec<u8>),
    /// A line longer than the bound, read to its end and dropped.
    TooLong,
}

/// Reads `\n`-terminated lines of at most `max` bytes. A longer line is
/// reported once as [`Frame::TooLong`] and skipped to its end, so memory stays
/// bounded. Cancel-safe: bytes read stay in `buf`.
pub struct LineReader<R> {
    reader: R,
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for a newline.
    scanned: usize,
    max: usize,
    discarding: bool,
    eof: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub fn new(reader: R, max: usize) -> Self {
        LineReader { reader, buf: Vec::new(), scanned: 0, max, discarding: false, eof: false }
    }

    /// The next frame; `None` at end of stream. A last line without its
    /// newline still counts.
    pub async fn next(&mut self) -> io::Result<Option<Frame>> {
        loop {
            if let Some(f) = self.take_frame() {
                return Ok(Some(f));
            }
            if self.eof {
                return Ok(None);
            }
            let mut chunk = [0u8; 4096];
            let n = self.reader.read(&mut chunk).await?;
            if n == 0 {
                self.eof = true;
                self.scanned = 0;
                let mut rest = std::mem::take(&mut self.buf);
                if !rest.is_empty() && !self.discarding {
                    // As a terminated line: the `\r` of a `\r\n` cut short is not
                    // the line's (nor counted against the bound, below).
                    if rest.last() == Some(&b'\r') {
                        rest.pop();
                    }
                    return Ok(Some(Frame::Line(rest)));
                }
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn take_frame(&mut self) -> Option<Frame> {
        loop {
            // Only the bytes not searched yet: a long line arriving in small
            // pieces is searched once, not once per piece.
            match self.buf[self.scanned..].iter().position(|b| *b == b'\n').map(|i| i + self.scanned) {
                Some(i) => {
                    let rest = self.buf.split_off(i + 1);
                    let mut line = std::mem::replace(&mut self.buf, rest);
                    self.scanned = 0;
                    line.truncate(i);
                    if self.discarding {
                        self.discarding = false;
                        continue;
                    }
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    return Some(if line.len() > self.max { Frame::TooLong } else { Frame::Line(line) });
                }
                // A partial line is too long only without a last `\r`, which
                // may be its `\r\n`'s: the same line arriving whole is
                // measured without it, and the answer must not depend on
                // where the reads split it.
                None if self.buf.len() - usize::from(self.buf.last() == Some(&b'\r')) > self.max => {
                    self.buf.clear();
                    self.scanned = 0;
                    if self.discarding {
                        return None;
                    }
                    self.discarding = true;
                    return Some(Frame::TooLong);
                }
                None => {
                    self.scanned = self.buf.len();
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn line_reader_bounds_lines_and_keeps_a_last_unterminated_one() {
        let data: &[u8] = b"short\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\nok\n\nlast";
        let mut r = LineReader::new(data, 16);
        let mut got = Vec::new();
        while let Some(f) = r.next().await.unwrap() {
            got.push(f);
        }
        let line = |s: &str| Frame::Line(s.as_bytes().to_vec());
        assert_eq!(got, [line("short"), Frame::TooLong, line("ok"), line(""), line("last")]);

        // A long line that arrives in pieces is reported once and skipped.
        let (mut w, rd) = tokio::io::duplex(8);
        let writer = tokio::spawn(async move {
            w.write_all(&[b'z'; 100]).await.unwrap();
            w.write_all(b"\n{\"key\":\"1\"}\n").await.unwrap();
        });
        let mut r = LineReader::new(rd, 16);
        assert_eq!(r.next().await.unwrap(), Some(Frame::TooLong));
        assert_eq!(r.next().await.unwrap(), Some(line("{\"key\":\"1\"}")));
        writer.await.unwrap();
        assert_eq!(r.next().await.unwrap(), None);
    }

    async fn frames(reader: impl AsyncRead + Unpin, max: usize) -> Vec<Frame> {
        let mut r = LineReader::new(reader, max);
        let mut got = Vec::new();
        while let Some(f) = r.next().await.unwrap() {
            got.push(f);
        }
        got
    }

    /// Found by the `admin_lines` fuzz target (docs/fuzzing.md): a line of
    /// exactly the bound ending in `\r\n` was a line when it arrived in one
    /// read and too long when its `\r` arrived before its `\n`, so a
    /// command of exactly `MAX_COMMAND_BYTES` from a `\r\n` client was
    /// taken or refused by how the kernel split it.
    #[tokio::test]
    async fn a_line_at_the_bound_ending_in_crlf_is_a_line_however_it_is_split() {
        let line = |s: &str| Frame::Line(s.as_bytes().to_vec());
        let whole: &[u8] = b"e\r\n";
        assert_eq!(frames(whole, 1).await, [line("e")]);
        let pieces = (&b"e"[..]).chain(&b"\r"[..]).chain(&b"\n"[..]);
        assert_eq!(frames(pieces, 1).await, [line("e")]);
        // One byte more is too long however it is split.
        assert_eq!(frames(&b"ee\r\n"[..], 1).await, [Frame::TooLong]);
        let pieces = (&b"e"[..]).chain(&b"e"[..]).chain(&b"\r\n"[..]);
        assert_eq!(frames(pieces, 1).await, [Frame::TooLong]);
        // A `\r` at the bound followed by more than the `\n` is too long too.
        let pieces = (&b"e\r"[..]).chain(&b"x\nok"[..]);
        assert_eq!(frames(pieces, 1).await, [Frame::TooLong, Frame::TooLong]);
        // A last line cut short after its `\r` reads as a line at the bound.
        let pieces = (&b"e"[..]).chain(&b"\r"[..]);
        assert_eq!(frames(pieces, 1).await, [line("e")]);
    }
}
