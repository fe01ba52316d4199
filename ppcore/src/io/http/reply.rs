//! What a handler answers, and its bytes on the wire.

/// A whole answer: status, headers, body. `Content-Length` and
/// `Connection` are added when it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers in order. A name or value holding CR or LF is dropped.
    pub headers: Vec<(String, String)>,
    /// The body (left out of the answer to a `HEAD`).
    pub body: Vec<u8>,
}

impl Response {
    /// A response of `status` with a `Content-Type` and a body.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body)
    }

    /// The same response with one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn head(&self, out: &mut Vec<u8>) {
        let reason = reason(self.status);
        out.extend_from_slice(format!("HTTP/1.1 {} {reason}\r\n", self.status).as_bytes());
        let clean = |s: &str| !s.contains(['\r', '\n']);
        for (k, v) in self.headers.iter().filter(|(k, v)| clean(k) && clean(v)) {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
    }

    /// The answer's bytes: head, `Content-Length`, `Connection`, and the
    /// body unless `head_only`.
    pub fn encode(&self, head_only: bool, keep_alive: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        self.head(&mut out);
        let connection = if keep_alive { "keep-alive" } else { "close" };
        let tail = format!(
            "Content-Length: {}\r\nConnection: {connection}\r\n\r\n",
            self.body.len()
        );
        out.extend_from_slice(tail.as_bytes());
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }

    /// The head of a stream whose body runs until the connection closes,
    /// then this response's body as the stream's first bytes.
    pub fn encode_stream_head(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        self.head(&mut out);
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// A long-lived body (server-sent events): asked for its next bytes once
/// per [`Limits::tick`](super::limits::Limits::tick) while the client keeps up.
pub trait EventSource: Send {
    /// The next bytes to send, or `None` when the stream is over.
    fn next_event(&mut self) -> Option<Vec<u8>>;
}

/// A handler's answer to one request.
pub enum Reply {
    /// A whole response.
    Full(Response),
    /// A stream: `head` (its body is the stream's first bytes), then the
    /// source's events. Over [`Limits::max_streams`](super::limits::Limits::max_streams)
    /// the server answers 503 instead.
    Stream {
        /// The status line, headers and first bytes.
        head: Response,
        /// Where the rest comes from.
        events: Box<dyn EventSource>,
    },
}

impl From<Response> for Reply {
    fn from(r: Response) -> Self {
        Reply::Full(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_carries_its_length_and_connection_and_no_injected_header() {
        let r = Response::text(404, "nope\n")
            .with_header("X-A", "1")
            .with_header("X-B", "2\r\nSet-Cookie: x");
        let text = String::from_utf8(r.encode(false, true)).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nX-A: 1\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nnope\n"
        );
        let head = String::from_utf8(r.encode(true, false)).unwrap();
        assert!(head.ends_with("Content-Length: 5\r\nConnection: close\r\n\r\n"));
        let stream = Response::new(200, "text/event-stream", "retry: 1000\n\n");
        let text = String::from_utf8(stream.encode_stream_head()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.ends_with("Connection: close\r\n\r\nretry: 1000\n\n"));
        assert!(!text.contains("Content-Length"));
    }
}
