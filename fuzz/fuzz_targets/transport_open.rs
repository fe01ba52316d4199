//! `Transport::open` on any bytes, cut into frames: never a panic, never a
//! frame that opens without having been sealed; and what is sealed opens to
//! itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ppcore::{Transport, CIPHER};

fuzz_target!(|data: &[u8]| {
    let mut receiver = Transport::from_raw_keys(CIPHER, &[1; 32], &[2; 32]);
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let (frame, next) = tail.split_at((len as usize).min(tail.len()));
        assert!(receiver.open(frame).is_err(), "an unsealed frame opened");
        rest = next;
    }
    let mut a = Transport::from_raw_keys(CIPHER, &[5; 32], &[6; 32]);
    let mut b = Transport::from_raw_keys(CIPHER, &[6; 32], &[5; 32]);
    let sealed = a.seal(data).expect("small frame seals");
    assert_eq!(b.open(&sealed).expect("sealed frame opens"), data);
});
