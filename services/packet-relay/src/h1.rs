//! HTTP/1.1 pieces shared by the server and the next-hop client: buffered reads, chunked bodies
//! (RFC 9112 §7.1), header tokens, and the `Date` header.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt as _};

/// Largest head (request or status line and headers) accepted.
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest total of a chunked body's framing beyond the data: chunk extensions over all chunks,
/// and the trailer section (each was limited only per line; 200 MiB of trailer lines grew a
/// router's memory past its 64 Mi limit).
pub const MAX_CHUNK_OVERHEAD: usize = 64 * 1024;

/// The size of a chunk line (`1a;ext=v`): hex digits only (no sign, no `0x`, at most 16), then
/// optional whitespace before an extension; no CR or LF inside the line (RFC 9112 §7.1).
fn chunk_size(line: &[u8]) -> Result<(usize, usize), BodyError> {
    if line.iter().any(|b| *b == b'\r' || *b == b'\n') {
        return Err(BodyError::Protocol("bare CR or LF in a chunk line"));
    }
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(BodyError::Protocol("bad chunk size"));
    }
    let rest = &line[digits..];
    let after_ws = rest.trim_ascii_start();
    if !(after_ws.is_empty() || after_ws.starts_with(b";")) {
        return Err(BodyError::Protocol("bad chunk size"));
    }
    let size = std::str::from_utf8(&line[..digits])
        .ok()
        .and_then(|s| usize::from_str_radix(s, 16).ok())
        .ok_or(BodyError::Protocol("bad chunk size"))?;
    Ok((size, rest.len()))
}

/// Reads more bytes into `buf`; the number read (0 at the end of the stream).
pub async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(4096);
    }
    stream.read_buf(buf).await
}

/// Where a body's bytes come from: [`Plain`] reads as it likes; the server's source charges every
/// growth of the connection's buffer to a shared memory budget first.
pub trait Source {
    /// Reads more bytes into `buf`; the number read (0 at the end of the stream).
    fn fill(&mut self, buf: &mut Vec<u8>) -> impl Future<Output = io::Result<usize>> + Send;
}

/// A stream read with [`fill`], no budget (the next-hop client: its answers are bounded by
/// size).
pub struct Plain<'a, S>(pub &'a mut S);

impl<S: AsyncRead + Unpin + Send> Source for Plain<'_, S> {
    fn fill(&mut self, buf: &mut Vec<u8>) -> impl Future<Output = io::Result<usize>> + Send {
        fill(self.0, buf)
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Over the limit (only the bytes up to the limit were read).
    TooLarge,
    /// The stream ended or failed.
    Io(io::Error),
    /// Not HTTP/1.1 framing.
    Protocol(&'static str),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge => f.write_str("body over the limit"),
            Self::Io(e) => write!(f, "{e}"),
            Self::Protocol(e) => f.write_str(e),
        }
    }
}

impl From<io::Error> for BodyError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

fn closed(e: &'static str) -> BodyError {
    BodyError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, e))
}

/// The position of the next CRLF at or after `from`, reading more as needed.
async fn line_end<S: Source>(
    source: &mut S,
    buf: &mut Vec<u8>,
    from: usize,
) -> Result<usize, BodyError> {
    let mut searched = from;
    loop {
        if let Some(i) = buf[searched..].windows(2).position(|w| w == b"\r\n") {
            return Ok(searched + i);
        }
        searched = buf.len().saturating_sub(1).max(from);
        if buf.len() - from > MAX_HEAD {
            return Err(BodyError::Protocol("chunk line over 64 KiB"));
        }
        if source.fill(buf).await? == 0 {
            return Err(closed("connection closed in a chunked body"));
        }
    }
}

/// Consumed framing kept in the buffer at most before it is dropped (so a body of many tiny
/// chunks costs about its data, not six times it).
const COMPACT_AFTER: usize = 16 * 1024;

/// Decodes the chunked body starting at `start` in `buf` in place (reading more from `source` as
/// needed), at most `limit` bytes of data. Returns the body's length — its bytes are then
/// `buf[start..start + len]` — and the position after it (trailers included), where a pipelined
/// request or nothing follows.
pub async fn read_chunked<S: Source>(
    source: &mut S,
    buf: &mut Vec<u8>,
    start: usize,
    limit: usize,
) -> Result<(usize, usize), BodyError> {
    // Decoded data is moved down to `write`; `pos` is where the raw framing continues.
    let mut write = start;
    let mut pos = start;
    let mut overhead = 0usize;
    loop {
        if pos - write > COMPACT_AFTER {
            buf.drain(write..pos);
            pos = write;
        }
        let eol = line_end(source, buf, pos).await?;
        let (size, extension) = chunk_size(&buf[pos..eol])?;
        overhead = overhead.saturating_add(extension);
        if overhead > MAX_CHUNK_OVERHEAD {
            return Err(BodyError::Protocol("chunk extensions over 64 KiB in total"));
        }
        pos = eol + 2;
        if size == 0 {
            // Trailers, up to an empty line, within the same total.
            loop {
                let eol = line_end(source, buf, pos).await?;
                let empty = eol == pos;
                overhead = overhead.saturating_add(eol - pos + 2);
                if overhead > MAX_CHUNK_OVERHEAD {
                    return Err(BodyError::Protocol("trailers over 64 KiB in total"));
                }
                if buf[pos..eol].contains(&b'\n') || buf[pos..eol].contains(&b'\r') {
                    return Err(BodyError::Protocol("bare CR or LF in a trailer"));
                }
                pos = eol + 2;
                if empty {
                    return Ok((write - start, pos));
                }
            }
        }
        if (write - start).saturating_add(size) > limit {
            return Err(BodyError::TooLarge);
        }
        // `size` is at most `limit` here, so `pos + size + 2` cannot overflow.
        while buf.len() < pos + size + 2 {
            if source.fill(buf).await? == 0 {
                return Err(closed("connection closed in a chunked body"));
            }
        }
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err(BodyError::Protocol("chunk not followed by CRLF"));
        }
        buf.copy_within(pos..pos + size, write);
        write += size;
        pos += size + 2;
    }
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
pub fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Whether the last transfer coding of a `Transfer-Encoding` value is `chunked`.
pub fn chunked_last(value: &[u8]) -> bool {
    value
        .rsplit(|b| *b == b',')
        .next()
        .unwrap_or_default()
        .trim_ascii()
        .eq_ignore_ascii_case(b"chunked")
}

/// A `Content-Length` value.
pub fn content_length(value: &[u8]) -> Option<usize> {
    let v = value.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110 §5.6.7) for a Unix time.
pub fn http_date(unix: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    let digit = |n: u64| b'0' + u8::try_from(n % 10).unwrap_or(0);
    #[allow(clippy::cast_possible_truncation)]
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    out[5] = digit(day / 10);
    out[6] = digit(day);
    #[allow(clippy::cast_possible_truncation)]
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    out[12] = digit(year / 1000);
    out[13] = digit(year / 100);
    out[14] = digit(year / 10);
    out[15] = digit(year);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    out[17] = digit(h / 10);
    out[18] = digit(h);
    out[20] = digit(m / 10);
    out[21] = digit(m);
    out[23] = digit(s / 10);
    out[24] = digit(s);
    out
}

thread_local! {
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// The current `Date` value, formatted once a second per thread.
pub fn now_date() -> [u8; 29] {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != unix {
            *cached = (unix, http_date(unix));
        }
        cached.1
    })
}

/// The reason phrase of a status code (empty for codes without one here; that is valid).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        508 => "Loop Detected",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_imf_fixdate() {
        assert_eq!(&http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&http_date(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&http_date(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(&http_date(4_102_444_799), b"Thu, 31 Dec 2099 23:59:59 GMT");
    }

    #[test]
    fn header_values() {
        assert!(has_token(b"keep-alive, Close", b"close"));
        assert!(!has_token(b"closed", b"close"));
        assert!(chunked_last(b"gzip, Chunked "));
        assert!(!chunked_last(b"chunked, gzip"));
        assert_eq!(content_length(b" 42 "), Some(42));
        assert_eq!(content_length(b"+42"), None);
        assert_eq!(content_length(b""), None);
    }

    async fn chunked(body: &[u8]) -> Result<Vec<u8>, String> {
        let mut buf = body.to_vec();
        let mut empty: &[u8] = &[];
        read_chunked(&mut Plain(&mut empty), &mut buf, 0, 1 << 20)
            .await
            .map(|(len, _)| buf[..len].to_vec())
            .map_err(|e| e.to_string())
    }

    /// RFC 9112 §7.1: a chunk size is hex digits only, a chunk line has no bare CR or LF, and
    /// extensions and trailers have a total bound.
    #[tokio::test]
    async fn chunk_framing_is_strict_and_bounded() {
        assert_eq!(chunked(b"3\r\nabc\r\n0\r\n\r\n").await.unwrap(), b"abc");
        assert_eq!(
            chunked(b"3 ;name=value\r\nabc\r\n0\r\nX-T: 1\r\n\r\n")
                .await
                .unwrap(),
            b"abc"
        );
        for (body, why) in [
            (&b"+3\r\nabc\r\n0\r\n\r\n"[..], "bad chunk size"),
            (b"0x3\r\nabc\r\n0\r\n\r\n", "bad chunk size"),
            (b"-3\r\nabc\r\n0\r\n\r\n", "bad chunk size"),
            (
                b"3;a\nb\r\nabc\r\n0\r\n\r\n",
                "bare CR or LF in a chunk line",
            ),
            (b"11111111111111111\r\n", "bad chunk size"),
        ] {
            assert_eq!(chunked(body).await.unwrap_err(), why, "{body:?}");
        }
        // 200 lines of 1 KiB trailers: refused at 64 KiB in total, not read to the end.
        let mut flood = b"0\r\n".to_vec();
        for _ in 0..200 {
            flood.extend_from_slice(b"X-Flood: ");
            flood.extend_from_slice(&[b'a'; 1024]);
            flood.extend_from_slice(b"\r\n");
        }
        flood.extend_from_slice(b"\r\n");
        assert_eq!(
            chunked(&flood).await.unwrap_err(),
            "trailers over 64 KiB in total"
        );
        // Extensions over many chunks count together.
        let mut ext = Vec::new();
        for _ in 0..100 {
            ext.extend_from_slice(b"1;");
            ext.extend_from_slice(&[b'e'; 1024]);
            ext.extend_from_slice(b"\r\nx\r\n");
        }
        ext.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(
            chunked(&ext).await.unwrap_err(),
            "chunk extensions over 64 KiB in total"
        );
    }
}
