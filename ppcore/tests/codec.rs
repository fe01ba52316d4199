//! The job codec: byte sequences travel as one binary, numeric arrays as raw
//! little-endian blocks, and every other type still round-trips.

use ppcore::{check_size, decode, encode, Array, ErrorKind, JobError};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Debug;

/// Encodes, checks the counted size, decodes, and compares.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) -> Vec<u8> {
    let bytes = encode(value).unwrap_or_else(|e| panic!("encode {value:?}: {e}"));
    assert_eq!(check_size(value, usize::MAX), Ok(bytes.len()), "{value:?}");
    let back: T = decode(&bytes).unwrap_or_else(|e| panic!("decode {value:?}: {e}"));
    assert_eq!(&back, value);
    bytes
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Image {
    name: String,
    width: u32,
    pixels: Vec<u8>,
    tags: Vec<String>,
    mask: Option<Vec<u8>>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Shape {
    Unit,
    Blob(Vec<u8>),
    Pair(Vec<u8>, u8),
    Named { data: Vec<u8>, scale: f64 },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Untagged {
    Number(u64),
    Bytes(Vec<u8>),
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
enum Tagged {
    Raw { data: Vec<u8> },
    Text { text: String },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Outer {
    id: u64,
    #[serde(flatten)]
    inner: Inner,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Inner {
    data: Vec<u8>,
}

#[test]
fn a_vec_of_bytes_is_one_binary() {
    let ones = vec![0xFFu8; 1 << 20];
    let bytes = round_trip(&ones);
    assert_eq!(bytes.len(), (1 << 20) + 5, "bin32 header and the bytes");
    // The same as a ByteBuf, byte for byte.
    assert_eq!(bytes, encode(&ByteBuf::from(ones.clone())).unwrap());
    // And the same inside an argument tuple.
    assert_eq!(
        encode(&(ones.clone(),)).unwrap(),
        encode(&(ByteBuf::from(ones),)).unwrap()
    );
}

#[test]
fn byte_sequences_written_as_numbers_still_decode() {
    // What older clients and nodes send: one MessagePack integer per byte.
    let old = rmp_serde::to_vec(&(vec![0u8, 1, 200, 255], "x")).unwrap();
    assert_eq!(
        decode::<(Vec<u8>, String)>(&old).unwrap(),
        (vec![0, 1, 200, 255], "x".to_owned())
    );
    // And what we send now, older code reads.
    let new = encode(&(vec![0u8, 1, 200, 255], "x")).unwrap();
    let read: (Vec<u8>, String) = rmp_serde::from_slice(&new).unwrap();
    assert_eq!(read, (vec![0, 1, 200, 255], "x".to_owned()));
}

#[test]
fn every_kind_of_type_still_round_trips() {
    round_trip(&());
    round_trip(&(1u64, -2i64, 0.5f64, true, 'x', "text".to_owned()));
    round_trip(&Vec::<u8>::new());
    round_trip(&vec![vec![1u8, 2], vec![], vec![255]]);
    round_trip(&vec![true, false, true]);
    round_trip(&vec![-1i8, 0, 127]);
    round_trip(&vec![1u64, 2, 300, u64::MAX]);
    round_trip(&vec![1i64, -2, 3]);
    round_trip(&vec![Some(1u8), None]);
    round_trip(&vec![Box::new(7u8), Box::new(8u8)]);
    round_trip(&vec![1u16, 2, 3]);
    round_trip(&vec![0.5f32, -1.0]);
    round_trip(&vec!['a', 'b']);
    round_trip(&vec!["a".to_owned(), String::new()]);
    round_trip(&vec![(), ()]);
    round_trip(&vec![(1u8, 2u8), (3, 4)]);
    round_trip(&Box::<[u8]>::from(&[9u8, 8, 7][..]));
    round_trip(&VecDeque::from(vec![1u8, 2, 3]));
    round_trip(&[1u8, 2, 3, 4]);
    round_trip(&[200u8; 32]);
    round_trip(&Some(vec![5u8; 40]));
    round_trip(&Option::<Vec<u8>>::None);
    round_trip(&HashMap::from([("k".to_owned(), vec![1u8, 2])]));
    round_trip(&BTreeMap::from([(1u8, vec![1u8, 2]), (2, vec![])]));
    round_trip(&Ok::<Vec<u8>, String>(vec![3, 4]));
    round_trip(&Err::<Vec<u8>, String>("no".into()));
    round_trip(&ByteBuf::from(vec![1, 2, 3]));
    round_trip(&JobError::new(ErrorKind::Failed, "boom"));
    round_trip(&Image {
        name: "i".into(),
        width: 2,
        pixels: vec![0, 255, 128, 64],
        tags: vec!["a".into()],
        mask: Some(vec![1, 0, 1, 0]),
    });
    for shape in [
        Shape::Unit,
        Shape::Blob(vec![1, 2, 3]),
        Shape::Pair(vec![4], 5),
        Shape::Named {
            data: vec![6, 7],
            scale: 2.0,
        },
    ] {
        round_trip(&shape);
    }
    round_trip(&Tagged::Text { text: "t".into() });
    round_trip(&Outer {
        id: 3,
        inner: Inner { data: vec![] },
    });
    round_trip(&Untagged::Number(3));
}

#[test]
fn bytes_under_serde_buffering_types_come_back() {
    // Untagged, internally tagged and flattened types buffer their input and
    // see a binary as bytes: a `Vec<u8>` inside them still comes back, and
    // so do a ByteBuf and an Array beside it.
    round_trip(&Untagged::Bytes(vec![1, 2, 250]));
    round_trip(&Tagged::Raw {
        data: vec![1, 2, 250],
    });
    round_trip(&Outer {
        id: 3,
        inner: Inner {
            data: vec![1, 2, 250],
        },
    });
    round_trip(&(
        Outer {
            id: 4,
            inner: Inner { data: vec![9; 300] },
        },
        ByteBuf::from(vec![7u8; 20]),
        Array::from(vec![1.5f64, -0.0, f64::MAX]),
        Array::from(vec![-1i64, i64::MIN]),
    ));
}

/// Encodes an array, checks it is its raw bytes behind a binary header, decodes.
fn array_round_trip<T: ppcore::Element + Copy>(
    items: Vec<T>,
    size: usize,
    same: impl Fn(&T, &T) -> bool,
) {
    let array = Array::from(items.clone());
    let bytes = encode(&array).unwrap();
    let header = bytes.len() - items.len() * size;
    assert!(header <= 5, "header of {header} bytes");
    assert_eq!(check_size(&array, usize::MAX), Ok(bytes.len()));
    let back: Array<T> = decode(&bytes).unwrap();
    assert_eq!(back.len(), items.len());
    assert!(back.iter().zip(&items).all(|(a, b)| same(a, b)));
}

proptest! {
    #[test]
    fn byte_vectors_round_trip(v in proptest::collection::vec(any::<u8>(), 0..3000),
                               nested in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..20)) {
        let bytes = round_trip(&(v.clone(), nested.clone(), Some(v.clone())));
        // One binary per byte vector: never more than a few header bytes per vector.
        let payload = v.len() * 2 + nested.iter().map(Vec::len).sum::<usize>();
        prop_assert!(bytes.len() <= payload + 5 * (nested.len() + 4));
        round_trip(&Untagged::Bytes(v.clone()));
        round_trip(&Outer { id: 1, inner: Inner { data: v } });
    }

    #[test]
    fn float_arrays_keep_every_bit(v in proptest::collection::vec(any::<u64>(), 0..2000)) {
        let f64s: Vec<f64> = v.iter().map(|&b| f64::from_bits(b)).collect();
        array_round_trip(f64s, 8, |a: &f64, b: &f64| a.to_bits() == b.to_bits());
        let f32s: Vec<f32> = v.iter().map(|&b| f32::from_bits(b as u32)).collect();
        array_round_trip(f32s, 4, |a: &f32, b: &f32| a.to_bits() == b.to_bits());
    }

    #[test]
    fn integer_arrays_round_trip(v in proptest::collection::vec(any::<i64>(), 0..2000)) {
        array_round_trip(v.clone(), 8, |a, b| a == b);
        array_round_trip(v.iter().map(|&x| x as u64).collect(), 8, |a, b| a == b);
        array_round_trip(v.iter().map(|&x| x as i32).collect(), 4, |a, b| a == b);
        array_round_trip(v.iter().map(|&x| x as u16).collect(), 2, |a, b| a == b);
        array_round_trip(v.iter().map(|&x| x as i8).collect(), 1, |a, b| a == b);
        array_round_trip(v.iter().map(|&x| x as u8).collect(), 1, |a, b| a == b);
        array_round_trip(v.iter().map(|&x| i128::from(x) << 40).collect(), 16, |a, b| a == b);
    }

    #[test]
    fn arrays_read_lists_of_numbers_too(v in proptest::collection::vec(any::<f64>(), 0..500)) {
        // A plain Vec<f64> on the other side decodes as an Array, and back.
        let back: Array<f64> = decode(&encode(&v).unwrap()).unwrap();
        prop_assert_eq!(back.len(), v.len());
        prop_assert!(back.iter().zip(&v).all(|(a, b)| a.to_bits() == b.to_bits()));
        // In JSON an array is a list of numbers.
        let ints = Array::from(v.iter().map(|x| x.to_bits() as i64).collect::<Vec<_>>());
        let json = serde_json::to_string(&ints).unwrap();
        prop_assert_eq!(&json, &serde_json::to_string(&ints.0).unwrap());
        prop_assert_eq!(serde_json::from_str::<Array<i64>>(&json).unwrap(), ints);
    }
}

#[test]
fn an_array_of_the_wrong_length_is_an_error() {
    let seven = encode(&ByteBuf::from(vec![0u8; 7])).unwrap();
    let err = decode::<Array<f64>>(&seven).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Codec);
    assert!(err.message.contains("invalid length 7"), "{}", err.message);
    assert_eq!(decode::<Array<u8>>(&seven).unwrap().len(), 7);
    // Eight bytes make one f64, little-endian.
    let one = encode(&ByteBuf::from(1.5f64.to_le_bytes().to_vec())).unwrap();
    assert_eq!(decode::<Array<f64>>(&one).unwrap().0, vec![1.5]);
}

#[test]
fn an_array_of_eight_mebibytes_is_its_bytes() {
    let n = 1 << 20;
    let v: Vec<f64> = (0..n).map(|i| i as f64 * 0.25).collect();
    let bytes = encode(&(Array::from(v.clone()),)).unwrap();
    assert_eq!(
        bytes.len(),
        1 + 5 + 8 * n,
        "fixarray, bin32 header, raw bytes"
    );
    assert_eq!(bytes[6..14], 0f64.to_le_bytes());
    assert_eq!(bytes[14..22], 0.25f64.to_le_bytes());
    let (back,): (Array<f64>,) = decode(&bytes).unwrap();
    assert_eq!(back.0, v);
}
