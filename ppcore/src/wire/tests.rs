//! Messages through the frame codec: round trips, limits, malformed input.

use crate::job::error::{ErrorKind, JobError};
use crate::wire::frame::{
    batches_by_size, decode_frame, encode_frame, FrameError, FrameReader, DEFAULT_MAX_FRAME,
    PER_JOB_OVERHEAD,
};
use crate::wire::messages::{ClientMsg, DoneJob, NodeMsg, RunJob};
use serde_bytes::ByteBuf;
use std::io::{self, Read};

fn sample() -> Vec<NodeMsg> {
    vec![
        NodeMsg::Done(vec![DoneJob {
            id: 7,
            attempt: 2,
            result: Ok(ByteBuf::from(vec![1, 2, 3])),
            exec_ns: 99,
            kept: None,
        }]),
        NodeMsg::Done(vec![DoneJob {
            id: 8,
            attempt: 1,
            result: Err(JobError::new(ErrorKind::Panicked, "boom").on("n", 1)),
            exec_ns: 1,
            kept: None,
        }]),
        NodeMsg::Reject {
            reason: "no".into(),
            retry: true,
        },
        NodeMsg::Pong(3),
    ]
}

#[test]
fn frames_round_trip_one_by_one_and_byte_by_byte() {
    let msgs = sample();
    let mut stream = Vec::new();
    for m in &msgs {
        stream.extend(encode_frame(m).unwrap());
    }
    // Whole stream at once.
    let mut reader = FrameReader::new(&stream[..], DEFAULT_MAX_FRAME);
    for m in &msgs {
        assert_eq!(reader.read::<NodeMsg>().unwrap().as_ref(), Some(m));
    }
    assert!(reader.read::<NodeMsg>().unwrap().is_none());
    // Every prefix of one frame is "need more", never an error.
    let one = encode_frame(&msgs[0]).unwrap();
    for cut in 0..one.len() {
        assert!(decode_frame::<NodeMsg>(&one[..cut], 1 << 20)
            .unwrap()
            .is_none());
    }
    // A stream that arrives one byte per read.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let Some((first, rest)) = self.0.split_first() else {
                return Ok(0);
            };
            out[0] = *first;
            self.0 = rest;
            Ok(1)
        }
    }
    let mut reader = FrameReader::new(Trickle(&stream), DEFAULT_MAX_FRAME);
    for m in &msgs {
        assert_eq!(reader.read::<NodeMsg>().unwrap().as_ref(), Some(m));
    }
}

#[test]
fn malformed_and_truncated_frames_are_errors() {
    let garbage = [0, 0, 0, 3, 0xc1, 0xc1, 0xc1];
    assert!(matches!(
        decode_frame::<NodeMsg>(&garbage, 1024),
        Err(FrameError::Malformed(_))
    ));
    let frame = encode_frame(&NodeMsg::Pong(1)).unwrap();
    let mut reader = FrameReader::new(&frame[..frame.len() - 1], 1024);
    assert!(matches!(
        reader.read::<NodeMsg>(),
        Err(FrameError::Truncated)
    ));
    // A valid frame of the other direction's type is malformed here.
    let wrong = encode_frame(&ClientMsg::Status).unwrap();
    assert!(decode_frame::<NodeMsg>(&wrong, 1024).is_err());
    // Empty body.
    assert!(decode_frame::<NodeMsg>(&[0, 0, 0, 0], 1024).is_err());
}

#[test]
fn batches_stay_within_the_frame_limit() {
    let sizes = vec![100usize, 900, 50, 2000, 10, 10];
    let batches = batches_by_size(sizes, |&n| n, 1000 + 2 * PER_JOB_OVERHEAD);
    assert_eq!(
        batches,
        vec![vec![100, 900], vec![50], vec![2000], vec![10, 10]]
    );
    let jobs: Vec<RunJob> = (0..100)
        .map(|id| RunJob {
            id,
            attempt: 1,
            name: "jobs::echo_bytes".into(),
            args: ByteBuf::from(vec![7u8; 10_000]),
            program: None,
            shared: Vec::new(),
            keep: None,
            journal: None,
            request: None,
        })
        .collect();
    let max = 64 << 10;
    for batch in batches_by_size(jobs, |j| j.args.len(), max) {
        let frame = encode_frame(&ClientMsg::Run(batch)).unwrap();
        assert!(frame.len() - 4 <= max, "{}", frame.len());
    }
}

proptest::proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = decode_frame::<ClientMsg>(&bytes, 1024);
        let _ = decode_frame::<NodeMsg>(&bytes, 1024);
        let mut reader = FrameReader::new(&bytes[..], 1024);
        for _ in 0..8 {
            if !matches!(reader.read::<ClientMsg>(), Ok(Some(_))) { break; }
        }
    }

    #[test]
    fn run_batches_round_trip(ids in proptest::collection::vec(0u64..u64::MAX, 0..64), args in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
        let msg = ClientMsg::Run(ids.iter().map(|&id| RunJob { id, attempt: 1, name: "a::b".into(), args: ByteBuf::from(args.clone()), program: None, shared: Vec::new(), keep: None, journal: None, request: None, }).collect());
        let frame = encode_frame(&msg).unwrap();
        let (back, used) = decode_frame::<ClientMsg>(&frame, DEFAULT_MAX_FRAME).unwrap().unwrap();
        proptest::prop_assert_eq!(used, frame.len());
        proptest::prop_assert_eq!(back, msg);
    }
}
