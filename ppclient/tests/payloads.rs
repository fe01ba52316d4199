//! Byte vectors and numeric arrays through a node (issue 14, point 3): a
//! plain `Vec<u8>` travels as one binary, `Array<T>` as raw little-endian
//! bytes, and both come back exact.

use ppclient::serde::{Deserialize, Serialize};
use ppclient::{Array, ByteBuf, Server};

const MIB: usize = 1 << 20;

ppclient::job! {
    /// Returns its bytes, a plain vector.
    pub fn echo_vec(bytes: Vec<u8>) -> Vec<u8> { bytes }
}

ppclient::job! {
    /// Returns its numbers, with their sum.
    pub fn echo_sum(numbers: Array<f64>) -> (Array<f64>, f64) {
        let sum = numbers.iter().sum();
        (numbers, sum)
    }
}

ppclient::job! {
    /// Negates integers.
    pub fn negate(numbers: Array<i64>) -> Array<i64> {
        numbers.iter().map(|x| x.wrapping_neg()).collect()
    }
}

/// A type serde buffers (flatten): its `Vec<u8>` still decodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "ppclient::serde")]
pub struct Tagged {
    /// A name.
    pub name: String,
    #[serde(flatten)]
    /// The flattened body.
    pub body: Body,
}

/// The flattened part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(crate = "ppclient::serde")]
pub struct Body {
    /// Some bytes.
    pub data: Vec<u8>,
}

ppclient::job! {
    /// Returns its value.
    pub fn echo_tagged(value: Tagged) -> Tagged { value }
}

ppclient::job! {
    /// Scales plain vectors of floats and counts plain vectors of integers.
    pub fn scale_plain(xs: Vec<f64>, by: f64, ids: Vec<i32>) -> Vec<f64> {
        xs.iter().map(|x| x * by + ids.len() as f64).collect()
    }
}

fn with_node() -> (ppserver::Running, Server) {
    let keys = ppclient::KeySet::one(ppclient::Key::generate().unwrap());
    let config = ppserver::Config {
        port: 0,
        workers: 1,
        keys: Some(keys.clone()),
        ..Default::default()
    };
    let node = ppserver::start(config, ppclient::Registry::linked().unwrap()).unwrap();
    let server = Server::builder()
        .ncpus(0)
        .keys(keys)
        .nodes([node.local_addr().to_string()])
        .build()
        .unwrap();
    assert_eq!(server.active_nodes().len(), 1, "{:?}", server.nodes());
    (node, server)
}

#[test]
fn eight_mebibytes_of_ff_bytes_fit_a_frame_as_a_plain_vec() {
    // As one MessagePack integer per byte, 0xFF took two bytes each: 16 MiB,
    // over the frame limit. As one binary it is 8 MiB and a few.
    let (_node, server) = with_node();
    let ones = vec![0xFFu8; 8 * MIB];
    let back = server.submit(echo_vec, (ones.clone(),)).wait();
    assert!(back.as_ref().is_ok_and(|b| *b == ones), "{:?}", back.err());
    let stats = server.stats();
    assert_eq!((stats.succeeded, stats.failed), (1, 0));
}

#[test]
fn numeric_arrays_come_back_bit_for_bit() {
    let (_node, server) = with_node();
    let mut floats: Vec<f64> = (0..MIB / 8).map(|i| i as f64 / 3.0).collect();
    floats.extend([f64::MAX, f64::MIN_POSITIVE, -0.0, f64::INFINITY]);
    let (back, sum) = server
        .submit(echo_sum, (Array::from(floats.clone()),))
        .wait()
        .unwrap();
    assert_eq!(back.len(), floats.len());
    assert!(back
        .iter()
        .zip(&floats)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    assert_eq!(sum, f64::INFINITY);
    let ints: Vec<i64> = (0..1000).map(|i| i * 7 - 3500).chain([i64::MIN]).collect();
    let negated = server
        .submit(negate, (Array::from(ints.clone()),))
        .wait()
        .unwrap();
    let expected: Vec<i64> = ints.iter().map(|x| x.wrapping_neg()).collect();
    assert_eq!(negated.into_vec(), expected);
}

#[test]
fn byte_vectors_inside_buffered_types_and_byte_bufs_still_travel() {
    let (_node, server) = with_node();
    let value = Tagged {
        name: "t".into(),
        body: Body {
            data: vec![0, 1, 254, 255],
        },
    };
    assert_eq!(
        server.submit(echo_tagged, (value.clone(),)).wait(),
        Ok(value)
    );
    let buf = ByteBuf::from(vec![9u8; 1000]);
    assert_eq!(
        server.submit(jobs::echo_bytes, (buf.clone(),)).wait(),
        Ok(buf)
    );
}

#[test]
fn plain_vectors_of_numbers_travel_as_raw_bytes_and_come_back_bit_for_bit() {
    use ppclient::Job;
    let mut xs: Vec<f64> = (0..MIB / 8).map(|i| i as f64 / 7.0).collect();
    xs.extend([f64::NAN, -0.0, f64::MAX]);
    let ids: Vec<i32> = (0..1000).collect();
    // 8 bytes per float, 4 per integer, a few of headers: no per-element tag.
    let mut wire = Vec::new();
    <scale_plain as Job>::write_args(&(xs.clone(), 2.0, ids.clone()), &mut wire).unwrap();
    assert!(
        wire.len() <= xs.len() * 8 + ids.len() * 4 + 32,
        "{} bytes",
        wire.len()
    );
    let (_node, server) = with_node();
    let back = server
        .submit(scale_plain, (xs.clone(), 2.0, ids.clone()))
        .wait()
        .unwrap();
    let want = scale_plain::call(xs, 2.0, ids);
    assert_eq!(back.len(), want.len());
    assert!(back
        .iter()
        .zip(&want)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
}
