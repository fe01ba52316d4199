//! The skeleton a link driver is made of, whichever end it drives: one
//! thread, a non-blocking `mio` socket, and a short spin before it sleeps.
//! The drivers (the node's in `ppserver`, the client's in `ppclient`) keep
//! their own state and do what their link says; what they share is here:
//! the sizes of a turn, one read, and the spin-then-poll wait.

use mio::{Events, Poll, Token};
use std::io::{self, Read};
use std::time::{Duration, Instant};

/// The buffer a driver reads the socket into.
pub const READ_BUF: usize = 64 << 10;
/// Reads per wake-up before a driver looks at its other work.
pub const READS_PER_TURN: usize = 16;
/// How long a driver looks for news before it sleeps, while its jobs are
/// out or shortly after the last one ended: a short job then costs no
/// wake-up.
pub const SPIN: Duration = Duration::from_micros(100);

/// What one read from the socket gave.
#[derive(Debug)]
pub enum ReadOutcome {
    /// This many bytes, at the start of the buffer.
    Bytes(usize),
    /// The peer closed its end.
    Closed,
    /// Nothing more for now: wait for the socket to be readable.
    WouldBlock,
    /// The read failed.
    Failed(io::Error),
}

/// Reads once from `stream` into `buf`; an interrupted read is tried again.
pub fn read_once(stream: &mut impl Read, buf: &mut [u8]) -> ReadOutcome {
    loop {
        return match stream.read(buf) {
            Ok(0) => ReadOutcome::Closed,
            Ok(n) => ReadOutcome::Bytes(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
            Err(e) => ReadOutcome::Failed(e),
        };
    }
}

/// What ended a [`spin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spun {
    /// The rest of the program had news for the driver (`news` said so).
    News,
    /// The socket became ready.
    Socket,
    /// Nothing came within [`SPIN`]: sleep in the poll.
    Quiet,
}

/// Looks for news for up to [`SPIN`] before the driver sleeps, yielding
/// the core in between: `news()` (the rest of the program's, such as a
/// finished job) and events of `socket` on `poll` (polled without waiting,
/// into `events`).
pub fn spin(
    poll: &mut Poll,
    events: &mut Events,
    socket: Token,
    mut news: impl FnMut() -> bool,
) -> Spun {
    let until = Instant::now() + SPIN;
    while Instant::now() < until {
        std::thread::yield_now();
        if news() {
            return Spun::News;
        }
        if poll.poll(events, Some(Duration::ZERO)).is_ok()
            && events.iter().any(|ev| ev.token() == socket)
        {
            return Spun::Socket;
        }
    }
    Spun::Quiet
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that is interrupted once, then gives its bytes, then
    /// would block.
    struct Flaky(u32);

    impl Read for Flaky {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0 += 1;
            match self.0 {
                1 => Err(io::ErrorKind::Interrupted.into()),
                2 => {
                    buf[..3].copy_from_slice(b"abc");
                    Ok(3)
                }
                _ => Err(io::ErrorKind::WouldBlock.into()),
            }
        }
    }

    #[test]
    fn a_read_tries_again_when_interrupted_and_says_what_it_got() {
        let mut buf = [0u8; 8];
        let mut r = Flaky(0);
        assert!(matches!(read_once(&mut r, &mut buf), ReadOutcome::Bytes(3)));
        assert_eq!(&buf[..3], b"abc");
        assert!(matches!(
            read_once(&mut r, &mut buf),
            ReadOutcome::WouldBlock
        ));
        assert!(matches!(
            read_once(&mut &b""[..], &mut buf),
            ReadOutcome::Closed
        ));
    }
}
