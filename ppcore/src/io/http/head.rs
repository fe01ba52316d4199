//! A request head parsed from bytes, as a pure function: "not enough bytes
//! yet" is `Ok(None)`, anything over the limits or malformed is an error the
//! server answers and closes on.

use super::limits::Limits;

/// One HTTP/1.x request: its line and headers (a small body, if any, is
/// read and dropped: nothing served here takes one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method as sent (`GET`, `HEAD`, `POST`...).
    pub method: String,
    /// The target's path, without its query.
    pub path: String,
    /// The headers in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Whether the connection stays open after the answer (HTTP/1.1
    /// without `Connection: close`).
    pub keep_alive: bool,
}

impl Request {
    /// The first header called `name` (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    /// Whether the method is `GET` or `HEAD`.
    pub fn is_get_or_head(&self) -> bool {
        self.method == "GET" || self.method == "HEAD"
    }
}

/// Why a request was refused before it reached a handler.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeadError {
    /// The head is longer than [`Limits::max_head`] (431).
    #[error("request head over {0} bytes")]
    HeadTooLarge(usize),
    /// More header lines than [`Limits::max_headers`] (431).
    #[error("more than {0} header lines")]
    TooManyHeaders(usize),
    /// A body longer than [`Limits::max_body`] (413).
    #[error("request body over {0} bytes")]
    BodyTooLarge(usize),
    /// Not HTTP/1.x as this server reads it (400).
    #[error("malformed request: {0}")]
    Malformed(&'static str),
}

impl HeadError {
    /// The status code that answers this error.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::HeadTooLarge(_) | HeadError::TooManyHeaders(_) => 431,
            HeadError::BodyTooLarge(_) => 413,
            HeadError::Malformed(_) => 400,
        }
    }
}

/// The end of the head in `buf`: the index just past its empty line.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(at) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + at;
        let rest = &buf[nl + 1..];
        if rest.starts_with(b"\n") {
            return Some(nl + 2);
        }
        if rest.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        i = nl + 1;
    }
    None
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parses the request at the start of `buf`: `Ok(None)` while it is
/// incomplete, else the request and how many bytes it took (its head and
/// its body, which is dropped).
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Option<(Request, usize)>, HeadError> {
    let Some(end) = head_end(buf) else {
        return match buf.len() > limits.max_head {
            true => Err(HeadError::HeadTooLarge(limits.max_head)),
            false => Ok(None),
        };
    };
    if end > limits.max_head {
        return Err(HeadError::HeadTooLarge(limits.max_head));
    }
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| HeadError::Malformed("not UTF-8"))?;
    let mut lines = text.lines().map(|l| l.strip_suffix('\r').unwrap_or(l));
    let line = lines.next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed("request line"));
    };
    if !is_token(method) || !target.starts_with('/') {
        return Err(HeadError::Malformed("request line"));
    }
    let minor = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        _ => return Err(HeadError::Malformed("not HTTP/1.0 or HTTP/1.1")),
    };
    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        if headers.len() == limits.max_headers {
            return Err(HeadError::TooManyHeaders(limits.max_headers));
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(HeadError::Malformed("header line"))?;
        if !is_token(name) || value.contains('\r') {
            return Err(HeadError::Malformed("header line"));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    let path = target.split('?').next().unwrap_or_default().to_owned();
    let mut request = Request {
        method: method.to_owned(),
        path,
        headers,
        keep_alive: false,
    };
    if request.header("transfer-encoding").is_some() {
        return Err(HeadError::Malformed("chunked bodies are not read"));
    }
    let body = body_length(&request, limits)?;
    let connection = request.header("connection").unwrap_or_default();
    let close = connection
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case("close"));
    request.keep_alive = minor == 1 && !close;
    match buf.len() >= end + body {
        true => Ok(Some((request, end + body))),
        false => Ok(None),
    }
}

/// The body's length from `Content-Length` (every copy must agree).
fn body_length(request: &Request, limits: &Limits) -> Result<usize, HeadError> {
    let mut length = None;
    for (_, v) in request
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        let n: usize = match !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
            true => v
                .parse()
                .map_err(|_| HeadError::BodyTooLarge(limits.max_body))?,
            false => return Err(HeadError::Malformed("content-length")),
        };
        if length.is_some_and(|l| l != n) {
            return Err(HeadError::Malformed("content-length"));
        }
        length = Some(n);
    }
    let n = length.unwrap_or(0);
    match n > limits.max_body {
        true => Err(HeadError::BodyTooLarge(limits.max_body)),
        false => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_head: 256,
            max_headers: 4,
            max_body: 16,
            ..Limits::default()
        }
    }

    fn ok(text: &str) -> (Request, usize) {
        match parse(text.as_bytes(), &limits()) {
            Ok(Some(r)) => r,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn a_complete_get_is_parsed_with_its_headers_and_length() {
        let text = "GET /metrics?x=1 HTTP/1.1\r\nHost: a:1\r\nAccept: */*\r\n\r\nGET /next";
        let (r, n) = ok(text);
        assert_eq!(n, text.find("GET /next").unwrap());
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", "/metrics"));
        assert_eq!(r.header("host"), Some("a:1"));
        assert_eq!(r.header("HOST"), Some("a:1"));
        assert!(r.keep_alive && r.is_get_or_head());
    }

    #[test]
    fn an_incomplete_head_or_body_asks_for_more() {
        let l = limits();
        for part in [
            "",
            "GET / HTTP/1.1\r\nHost: a",
            "GET / HTTP/1.1\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab",
        ] {
            assert_eq!(parse(part.as_bytes(), &l), Ok(None), "{part:?}");
        }
        let (r, n) = ok("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde");
        assert_eq!((r.method.as_str(), n), ("POST", 43));
    }

    #[test]
    fn connection_close_and_http_1_0_end_the_connection() {
        assert!(
            !ok("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(
            !ok("GET / HTTP/1.1\r\nConnection: TE, Close\r\n\r\n")
                .0
                .keep_alive
        );
        assert!(!ok("GET / HTTP/1.0\r\n\r\n").0.keep_alive);
        assert!(ok("GET / HTTP/1.1\nHost: x\n\n").0.keep_alive, "bare LF");
    }

    #[test]
    fn heads_over_the_limits_are_refused_with_their_status() {
        let l = limits();
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(300));
        let e = parse(long.as_bytes(), &l).unwrap_err();
        assert_eq!((e.clone(), e.status()), (HeadError::HeadTooLarge(256), 431));
        // A head that never ends is refused as soon as it passes the limit.
        let endless = "GET / HTTP/1.1\r\nX: y\r\n".repeat(20);
        assert_eq!(parse(endless.as_bytes(), &l).unwrap_err().status(), 431);
        let many = "GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\ne: 5\r\n\r\n";
        assert_eq!(
            parse(many.as_bytes(), &l),
            Err(HeadError::TooManyHeaders(4))
        );
        let big = "POST / HTTP/1.1\r\nContent-Length: 17\r\n\r\n";
        assert_eq!(parse(big.as_bytes(), &l).unwrap_err().status(), 413);
        let huge = "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert_eq!(parse(huge.as_bytes(), &l).unwrap_err().status(), 413);
    }

    #[test]
    fn malformed_requests_are_bad_requests() {
        let l = limits();
        for bad in [
            "GET\r\n\r\n",
            "GET / HTTP/2\r\n\r\n",
            "GET  / HTTP/1.1\r\n\r\n",
            "GET http://x/ HTTP/1.1\r\n\r\n",
            "G(T / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nno colon\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length:\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            let e = parse(bad.as_bytes(), &l).unwrap_err();
            assert_eq!(e.status(), 400, "{bad:?}: {e}");
        }
        let not_utf8 = b"GET /\xff HTTP/1.1\r\n\r\n";
        assert_eq!(parse(not_utf8, &l).unwrap_err().status(), 400);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_without_panic_within_the_buffer(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)
        ) {
            if let Ok(Some((_, used))) = parse(&data, &limits()) {
                proptest::prop_assert!(used <= data.len());
            }
        }

        #[test]
        fn a_request_arriving_byte_by_byte_is_incomplete_until_its_last_byte(
            path in "/[a-z0-9/]{0,20}",
            headers in proptest::collection::vec(("[A-Za-z-]{1,8}", "[ -~]{0,12}"), 0..4),
            body in "[a-z]{0,16}",
        ) {
            let mut text = format!("POST {path} HTTP/1.1\r\n");
            for (k, v) in &headers {
                text.push_str(&format!("X-{k}: {v}\r\n"));
            }
            text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
            let bytes = text.as_bytes();
            for end in 0..bytes.len() {
                proptest::prop_assert_eq!(parse(&bytes[..end], &limits()), Ok(None));
            }
            let (r, used) = parse(bytes, &limits()).unwrap().unwrap();
            proptest::prop_assert_eq!(used, bytes.len());
            proptest::prop_assert_eq!(r.path, path);
            proptest::prop_assert_eq!(r.headers.len(), headers.len() + 1);
            for ((k, v), (name, value)) in headers.iter().zip(&r.headers) {
                proptest::prop_assert_eq!(name, &format!("X-{k}"));
                proptest::prop_assert_eq!(value, v.trim());
            }
        }
    }
}
