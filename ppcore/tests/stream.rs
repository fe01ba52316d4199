//! Streams as pure state: cutting, reassembling, limits, lies and stalls,
//! on a fake clock and without sockets.

use ppcore::stream::{
    Assembler, Claimed, Incoming, Limits, Outgoing, StreamError, StreamFrame, DEFAULT_MAX_PAYLOAD,
    MAX_CHUNK,
};
use proptest::prelude::*;
use serde_bytes::ByteBuf;
use std::collections::HashMap;
use std::time::{Duration, Instant};

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Every frame of `out`, each sent through MessagePack as the link would.
fn drain(out: &mut Outgoing) -> Vec<StreamFrame> {
    let mut frames = Vec::new();
    while let Some(frame) = out.next_frame() {
        let bytes = rmp_serde::to_vec(&frame).unwrap();
        assert!(
            bytes.len() <= MAX_CHUNK + 64,
            "a frame of {} bytes",
            bytes.len()
        );
        frames.push(rmp_serde::from_slice(&bytes).unwrap());
    }
    frames
}

fn chunk(id: u64, offset: u64, len: usize) -> StreamFrame {
    StreamFrame::Chunk {
        id,
        offset,
        data: ByteBuf::from(vec![7u8; len]),
    }
}

#[test]
fn a_large_payload_goes_in_chunks_of_at_most_one_mebibyte() {
    let data = payload(3 * MAX_CHUNK + 5, 1);
    let mut out = Outgoing::new();
    out.push(9, data.clone(), DEFAULT_MAX_PAYLOAD).unwrap();
    assert_eq!(out.pending_bytes(), data.len() as u64);
    let frames = drain(&mut out);
    assert!(out.is_empty());
    assert_eq!(frames.len(), 1 + 4, "a start, then four chunks");
    assert_eq!(
        frames[0],
        StreamFrame::Start {
            id: 9,
            len: data.len() as u64
        }
    );
    let mut asm = Assembler::new(Limits::default());
    let now = Instant::now();
    let mut done = None;
    for f in frames {
        assert!(done.is_none(), "complete before the last chunk");
        done = asm.receive(f, now).unwrap();
    }
    assert_eq!(done, Some((9, data)));
    assert_eq!((asm.open_streams(), asm.reserved()), (0, 0));
}

#[test]
fn an_empty_payload_is_a_start_alone() {
    let mut out = Outgoing::new();
    out.push(1, Vec::new(), 10).unwrap();
    let frames = drain(&mut out);
    assert_eq!(frames, vec![StreamFrame::Start { id: 1, len: 0 }]);
    let mut asm = Assembler::new(Limits::default());
    assert_eq!(
        asm.receive(frames[0].clone(), Instant::now()),
        Ok(Some((1, Vec::new())))
    );
}

#[test]
fn over_the_limit_is_refused_before_any_byte_moves() {
    let mut out = Outgoing::new();
    let err = out.push(4, vec![0; 101], 100).unwrap_err();
    assert_eq!(
        err,
        StreamError::TooLarge {
            id: 4,
            len: 101,
            max: 100
        }
    );
    assert!(out.is_empty() && out.next_frame().is_none());
    assert!(err.to_string().contains("over the 100-byte limit"), "{err}");
    // Receiving: an announced length over the limit is refused at the start.
    let limits = Limits {
        max_payload: 100,
        ..Limits::default()
    };
    let mut asm = Assembler::new(limits);
    let start = StreamFrame::Start {
        id: 4,
        len: 1 << 40,
    };
    assert!(matches!(
        asm.receive(start, Instant::now()),
        Err(StreamError::TooLarge { .. })
    ));
    assert_eq!(asm.reserved(), 0, "nothing reserved for a refused stream");
}

#[test]
fn open_streams_together_stay_within_the_buffer_budget() {
    let limits = Limits {
        max_payload: 100,
        max_buffered: 150,
        max_streams: 3,
        ..Limits::default()
    };
    let mut asm = Assembler::new(limits);
    let now = Instant::now();
    asm.receive(StreamFrame::Start { id: 1, len: 100 }, now)
        .unwrap();
    assert!(matches!(
        asm.receive(StreamFrame::Start { id: 2, len: 60 }, now),
        Err(StreamError::OverBudget { open: 160, .. })
    ));
    asm.receive(StreamFrame::Start { id: 3, len: 50 }, now)
        .unwrap();
    assert_eq!(asm.reserved(), 150);
    // An abort frees its share.
    asm.receive(StreamFrame::Abort { id: 1 }, now).unwrap();
    assert_eq!(asm.reserved(), 50);
    asm.receive(StreamFrame::Start { id: 4, len: 1 }, now)
        .unwrap();
    asm.receive(StreamFrame::Start { id: 5, len: 1 }, now)
        .unwrap();
    assert!(matches!(
        asm.receive(StreamFrame::Start { id: 6, len: 1 }, now),
        Err(StreamError::TooMany { max: 3, .. })
    ));
    assert!(matches!(
        asm.receive(StreamFrame::Start { id: 5, len: 1 }, now),
        Err(StreamError::Duplicate { id: 5 })
    ));
}

#[test]
fn a_peer_that_announces_much_and_sends_little_costs_little() {
    let now = Instant::now();
    let mut asm = Assembler::new(Limits::default());
    asm.receive(
        StreamFrame::Start {
            id: 1,
            len: 1 << 30,
        },
        now,
    )
    .unwrap();
    assert_eq!(asm.reserved(), 1 << 30, "counted against the limits");
    assert_eq!(asm.held(), 0, "nothing arrived, nothing held");
    for k in 0..6u64 {
        asm.receive(chunk(1, k * MAX_CHUNK as u64, MAX_CHUNK), now)
            .unwrap();
    }
    assert_eq!(asm.held(), 6 * MAX_CHUNK as u64, "what arrived, no more");
    asm.receive(StreamFrame::Abort { id: 1 }, now).unwrap();
    assert_eq!((asm.held(), asm.reserved()), (0, 0));
    // A small stream never holds more than it announced.
    asm.receive(StreamFrame::Start { id: 2, len: 10 }, now)
        .unwrap();
    asm.receive(chunk(2, 0, 4), now).unwrap();
    assert_eq!(asm.held(), 4);
}

#[test]
fn lies_about_the_length_and_order_are_refused() {
    let now = Instant::now();
    let mut asm = Assembler::new(Limits::default());
    asm.receive(StreamFrame::Start { id: 1, len: 10 }, now)
        .unwrap();
    asm.receive(chunk(1, 0, 6), now).unwrap();
    // Six more would make twelve of ten announced.
    assert_eq!(
        asm.receive(chunk(1, 6, 6), now),
        Err(StreamError::Overflow {
            id: 1,
            len: 10,
            received: 12
        })
    );
    assert!(matches!(
        asm.receive(chunk(1, 0, 4), now),
        Err(StreamError::OutOfOrder {
            offset: 0,
            expected: 6,
            ..
        })
    ));
    assert!(matches!(
        asm.receive(chunk(1, 6, 0), now),
        Err(StreamError::BadChunk { size: 0, .. })
    ));
    assert!(matches!(
        asm.receive(chunk(1, 6, MAX_CHUNK + 1), now),
        Err(StreamError::BadChunk { .. })
    ));
    assert_eq!(
        asm.receive(chunk(2, 0, 1), now),
        Err(StreamError::Unknown { id: 2 })
    );
    // The honest rest still completes it.
    assert_eq!(
        asm.receive(chunk(1, 6, 4), now),
        Ok(Some((1, vec![7u8; 10])))
    );
}

#[test]
fn a_stalled_stream_is_dropped_while_others_keep_flowing() {
    let limits = Limits {
        stall: Duration::from_secs(30),
        ..Limits::default()
    };
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut asm = Assembler::new(limits);
    asm.receive(StreamFrame::Start { id: 1, len: 100 }, at(0))
        .unwrap();
    asm.receive(chunk(1, 0, 10), at(5)).unwrap();
    asm.receive(StreamFrame::Start { id: 2, len: 1000 }, at(6))
        .unwrap();
    assert_eq!(asm.poll_timeout(), Some(at(35)));
    // Stream 2 makes progress every 10 s; stream 1 sends nothing more and
    // is dropped at the first look past 5 + 30 s.
    for k in 0..5u64 {
        let now = at(10 + 10 * k);
        asm.receive(chunk(2, k * 10, 10), now).unwrap();
        let stalled = asm.expire(now);
        if k == 3 {
            assert_eq!(
                stalled,
                vec![StreamError::Stalled {
                    id: 1,
                    idle: Duration::from_secs(35),
                    received: 10,
                    len: 100
                }]
            );
        } else {
            assert_eq!(stalled, vec![], "at {} s", 10 + 10 * k);
        }
    }
    let mut asm2 = Assembler::new(limits);
    asm2.receive(StreamFrame::Start { id: 1, len: 100 }, at(0))
        .unwrap();
    assert!(asm2.expire(at(30)).is_empty(), "30 s is not over 30 s");
    let stalled = asm2.expire(at(31));
    assert_eq!(
        stalled,
        vec![StreamError::Stalled {
            id: 1,
            idle: Duration::from_secs(31),
            received: 0,
            len: 100
        }]
    );
    assert_eq!((asm2.open_streams(), asm2.reserved()), (0, 0));
    assert_eq!(asm2.poll_timeout(), None);

    // In the first assembler, stream 1 (last progress at 5 s) was dropped at
    // the first expire after 35 s, stream 2 was not.
    assert_eq!(asm.open_streams(), 1);
    assert_eq!(asm.reserved(), 1000);
    assert_eq!(
        asm.receive(chunk(1, 10, 1), at(60)),
        Err(StreamError::Unknown { id: 1 })
    );
    // A chunk that comes after the deadline, before any expire, is refused.
    let mut asm3 = Assembler::new(limits);
    asm3.receive(StreamFrame::Start { id: 3, len: 10 }, at(0))
        .unwrap();
    assert!(matches!(
        asm3.receive(chunk(3, 0, 1), at(45)),
        Err(StreamError::Stalled { id: 3, .. })
    ));
    assert_eq!(asm3.reserved(), 0);
}

#[test]
fn an_aborted_outgoing_stream_says_so_only_once_started() {
    let mut out = Outgoing::new();
    out.push(1, payload(10, 0), 100).unwrap();
    out.push(2, payload(10, 0), 100).unwrap();
    assert!(matches!(
        out.push(2, vec![1], 100),
        Err(StreamError::Duplicate { id: 2 })
    ));
    assert_eq!(out.abort(2), None, "never started: nothing to tell");
    assert_eq!(
        out.next_frame(),
        Some(StreamFrame::Start { id: 1, len: 10 })
    );
    assert_eq!(out.abort(1), Some(StreamFrame::Abort { id: 1 }));
    assert!(out.is_empty());
    assert_eq!(out.abort(1), None);
}

proptest! {
    // Megabytes per case: fewer cases than the default.
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn interleaved_streams_reassemble_exactly(
        sizes in proptest::collection::vec(0usize..(2 * MAX_CHUNK + 3), 1..5),
        seed in any::<u8>(),
    ) {
        let mut out = Outgoing::new();
        let mut sent = HashMap::new();
        for (i, &len) in sizes.iter().enumerate() {
            let data = payload(len, seed.wrapping_add(i as u8));
            out.push(i as u64, data.clone(), DEFAULT_MAX_PAYLOAD).unwrap();
            sent.insert(i as u64, data);
        }
        let total: u64 = sizes.iter().map(|&n| n as u64).sum();
        let mut asm = Assembler::new(Limits { max_buffered: total.max(1), ..Limits::default() });
        let now = Instant::now();
        let mut got = HashMap::new();
        let mut frames = 0;
        while let Some(frame) = out.next_frame() {
            frames += 1;
            prop_assert!(asm.reserved() <= total);
            if let Some((id, data)) = asm.receive(frame, now).unwrap() {
                prop_assert!(got.insert(id, data).is_none());
            }
        }
        prop_assert_eq!(got, sent);
        let chunks: usize = sizes.iter().map(|n| n.div_ceil(MAX_CHUNK)).sum();
        prop_assert_eq!(frames, sizes.len() + chunks);
        prop_assert_eq!((asm.open_streams(), asm.reserved()), (0, 0));
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_frames_never_break_the_limits(
        frames in proptest::collection::vec(
            (0u64..4, 0u8..3, 0u64..300, 0usize..120, 0u64..50), 0..60),
    ) {
        // Whatever a hostile peer sends: the memory reserved stays within the
        // budget, each stream holds at most what it announced, and a
        // completed payload has exactly its announced length.
        let limits = Limits {
            max_payload: 200,
            max_buffered: 300,
            max_streams: 3,
            stall: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        let mut asm = Assembler::new(limits);
        let mut announced = HashMap::new();
        for (id, kind, n, size, secs) in frames {
            let now = t0 + Duration::from_secs(secs);
            let frame = match kind {
                0 => StreamFrame::Start { id, len: n },
                1 => chunk(id, n, size),
                _ => StreamFrame::Abort { id },
            };
            let start = match frame {
                StreamFrame::Start { len, .. } => Some(len),
                _ => None,
            };
            match asm.receive(frame, now) {
                Ok(Some((id, data))) => {
                    let expected = start.or_else(|| announced.get(&id).copied());
                    prop_assert_eq!(Some(data.len() as u64), expected);
                }
                Ok(None) => {
                    if let Some(len) = start {
                        announced.insert(id, len);
                    }
                }
                Err(_) => {}
            }
            let _ = asm.expire(now);
            prop_assert!(asm.reserved() <= 300);
            prop_assert!(asm.open_streams() <= 3);
        }
    }
}

#[test]
fn a_stream_over_the_memory_room_is_refused_stores_nothing_and_completes_as_refused() {
    let now = Instant::now();
    let mut incoming = Incoming::new(Limits::default());
    incoming.set_room(3 * MAX_CHUNK as u64);
    // Fits: kept, and its reservation counts against the room.
    incoming
        .receive(
            StreamFrame::Start {
                id: 1,
                len: 2 * MAX_CHUNK as u64,
            },
            now,
        )
        .unwrap();
    assert_eq!(incoming.reserved(), 2 * MAX_CHUNK as u64);
    // 2 + 2 MiB is over the 3 MiB room: refused, nothing reserved for it.
    incoming
        .receive(
            StreamFrame::Start {
                id: 2,
                len: 2 * MAX_CHUNK as u64,
            },
            now,
        )
        .unwrap();
    assert_eq!(incoming.reserved(), 2 * MAX_CHUNK as u64);
    // Its chunks are still checked (order, length) and dropped.
    incoming.receive(chunk(2, 0, MAX_CHUNK), now).unwrap();
    assert!(matches!(
        incoming.receive(chunk(2, 0, MAX_CHUNK), now),
        Err(StreamError::OutOfOrder { id: 2, .. })
    ));
    let mut incoming = Incoming::new(Limits::default());
    incoming.set_room(MAX_CHUNK as u64);
    incoming
        .receive(
            StreamFrame::Start {
                id: 2,
                len: 2 * MAX_CHUNK as u64,
            },
            now,
        )
        .unwrap();
    incoming.receive(chunk(2, 0, MAX_CHUNK), now).unwrap();
    incoming
        .receive(chunk(2, MAX_CHUNK as u64, MAX_CHUNK), now)
        .unwrap();
    assert_eq!(incoming.claim_or_refused(2), Ok(Claimed::Refused));
    assert_eq!(incoming.reserved(), 0);
    // A stream within the room afterwards is kept and comes back whole.
    incoming
        .receive(StreamFrame::Start { id: 3, len: 5 }, now)
        .unwrap();
    incoming.receive(chunk(3, 0, 5), now).unwrap();
    assert_eq!(
        incoming.claim_or_refused(3),
        Ok(Claimed::Payload(vec![7; 5]))
    );
}
