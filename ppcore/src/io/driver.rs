//! The skeleton a link driver is made of, whichever end it drives: one
//! thread, a non-blocking `mio` socket, a [`Waker`] for the rest of the
//! program, and a short spin before it sleeps. The drivers (the node's in
//! `ppserver`, the client's in `ppclient`) keep their own state and do what
//! their link says; what they share is here: the sizes of a turn, the
//! poll's tokens, the socket watched, one read, when to spin, the spin and
//! the sleep.

use crate::sched::queue::Wake;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The buffer a driver reads the socket into.
pub const READ_BUF: usize = 64 << 10;
/// Reads per wake-up before a driver looks at its other work.
pub const READS_PER_TURN: usize = 16;
/// How long a driver looks for news before it sleeps, while its jobs are
/// out or shortly after the last one ended: a short job then costs no
/// wake-up.
pub const SPIN: Duration = Duration::from_micros(100);
/// The token of a driver's [`Waker`] in its poll.
pub const WAKE: Token = Token(0);
/// The token of a driver's socket in its poll.
pub const SOCKET: Token = Token(1);

/// Wakes a driver asleep in `mio`. Only a driver that is (about to be)
/// asleep costs a system call; a busy one sees the news on its next turn.
pub struct Waker {
    mio: mio::Waker,
    /// Set by the driver just before it looks for work and sleeps.
    asleep: AtomicBool,
}

impl Waker {
    /// A waker of the driver that sleeps in `poll` (as [`WAKE`]).
    pub fn new(poll: &Poll) -> io::Result<Arc<Self>> {
        Ok(Arc::new(Waker {
            mio: mio::Waker::new(poll.registry(), WAKE)?,
            asleep: AtomicBool::new(false),
        }))
    }

    /// Wakes the driver if it sleeps (or is about to).
    pub fn wake(&self) {
        if self.asleep.swap(false, Ordering::SeqCst) {
            // A failed wake leaves the driver to its next timer.
            let _ = self.mio.wake();
        }
    }

    /// The driver is about to look for work one last time and sleep: news
    /// from now on wakes its poll.
    pub fn going_to_sleep(&self) {
        self.asleep.store(true, Ordering::SeqCst);
    }

    /// The driver is awake again: news from now on costs no system call.
    pub fn awake(&self) {
        self.asleep.store(false, Ordering::SeqCst);
    }
}

impl Wake for Waker {
    fn wake(&self) {
        Waker::wake(self);
    }
}

/// Makes `stream` a driver's socket: no Nagle delay, non-blocking, and
/// watched by `poll` for reading (as [`SOCKET`]).
pub fn watch(poll: &Poll, stream: std::net::TcpStream) -> io::Result<TcpStream> {
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    let mut stream = TcpStream::from_std(stream);
    poll.registry()
        .register(&mut stream, SOCKET, Interest::READABLE)?;
    Ok(stream)
}

/// Watches `stream` for room to write only while bytes wait to go out
/// (`all_written` false): `watching` says what the poll watches now, and
/// is kept true to it.
pub fn watch_writes(
    registry: &Registry,
    stream: &mut TcpStream,
    watching: &mut bool,
    all_written: bool,
) -> io::Result<()> {
    if all_written != *watching {
        return Ok(());
    }
    let interest = match all_written {
        true => Interest::READABLE,
        false => Interest::READABLE | Interest::WRITABLE,
    };
    registry.reregister(stream, SOCKET, interest)?;
    *watching = !all_written;
    Ok(())
}

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

/// Whether a driver with nothing to do right now should [`spin`] before it
/// sleeps: while its jobs are out (`jobs_out`), or within [`SPIN`] of the
/// last one's end (`active`), news is likely soon.
pub fn worth_spinning(jobs_out: bool, active: Instant, now: Instant) -> bool {
    jobs_out || now.saturating_duration_since(active) < SPIN
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
/// the core in between: `news(driver)` (the rest of the program's, such as
/// a finished job or a queued one; it may take what it found) and events
/// of the [`SOCKET`] on the driver's poll (`poll(driver)`, polled without
/// waiting, into `events`).
pub fn spin<D: ?Sized>(
    driver: &mut D,
    poll: fn(&mut D) -> &mut Poll,
    events: &mut Events,
    mut news: impl FnMut(&mut D) -> bool,
) -> Spun {
    let until = Instant::now() + SPIN;
    while Instant::now() < until {
        std::thread::yield_now();
        if news(driver) {
            return Spun::News;
        }
        if poll(driver).poll(events, Some(Duration::ZERO)).is_ok()
            && events.iter().any(|ev| ev.token() == SOCKET)
        {
            return Spun::Socket;
        }
    }
    Spun::Quiet
}

/// Sleeps in `poll` for up to `timeout` (until an event); true if the
/// [`SOCKET`] is readable (or closed, or failed). An interrupted sleep is
/// a short one; other errors are the caller's to log.
pub fn sleep(poll: &mut Poll, events: &mut Events, timeout: Duration) -> io::Result<bool> {
    match poll.poll(events, Some(timeout)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(false),
        Err(e) => return Err(e),
    }
    Ok(events.iter().any(|ev| {
        ev.token() == SOCKET && (ev.is_readable() || ev.is_read_closed() || ev.is_error())
    }))
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

    #[test]
    fn a_driver_spins_while_jobs_are_out_or_just_after_the_last_ended() {
        let t0 = Instant::now();
        assert!(worth_spinning(true, t0, t0 + Duration::from_secs(60)));
        assert!(worth_spinning(false, t0, t0));
        assert!(worth_spinning(false, t0, t0 + SPIN / 2));
        assert!(!worth_spinning(false, t0, t0 + SPIN));
        assert!(!worth_spinning(false, t0, t0 + Duration::from_secs(60)));
    }

    #[test]
    fn a_waker_wakes_only_a_driver_that_said_it_sleeps() {
        let mut poll = Poll::new().expect("a poll");
        let mut events = Events::with_capacity(4);
        let waker = Waker::new(&poll).expect("a waker");
        waker.wake();
        poll.poll(&mut events, Some(Duration::ZERO)).expect("poll");
        assert!(events.is_empty(), "a busy driver costs no wake-up");
        waker.going_to_sleep();
        waker.wake();
        poll.poll(&mut events, Some(Duration::ZERO)).expect("poll");
        assert!(events.iter().any(|ev| ev.token() == WAKE));
        waker.wake();
        poll.poll(&mut events, Some(Duration::ZERO)).expect("poll");
        assert!(events.is_empty(), "woken once until it sleeps again");
    }
}
