use super::*;

/// A minimal ELF64 header with one program header; `interp` adds PT_INTERP.
fn elf(machine: u16, interp: Option<&str>) -> Vec<u8> {
    let mut b = vec![0u8; 0x200];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = 1;
    b[0x12..0x14].copy_from_slice(&machine.to_le_bytes());
    b[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes()); // e_phoff
    b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    b[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    let kind: u32 = if interp.is_some() { PT_INTERP } else { 1 };
    b[0x40..0x44].copy_from_slice(&kind.to_le_bytes());
    if let Some(path) = interp {
        let at = 0x100u64;
        b[0x48..0x50].copy_from_slice(&at.to_le_bytes()); // p_offset
        b[0x60..0x68].copy_from_slice(&(path.len() as u64 + 1).to_le_bytes()); // p_filesz
        b[0x100..0x100 + path.len()].copy_from_slice(path.as_bytes());
    }
    b
}

#[test]
fn static_and_dynamic_programs_are_told_apart() {
    let (target, linking) = elf_facts(&elf(62, None)).expect("static");
    assert_eq!(target, "x86_64-linux");
    assert_eq!(linking, Linking::Static);
    let (target, linking) = elf_facts(&elf(183, Some("/lib/ld-linux-aarch64.so.1"))).expect("dyn");
    assert_eq!(target, "aarch64-linux");
    assert_eq!(
        linking,
        Linking::Dynamic {
            interpreter: "/lib/ld-linux-aarch64.so.1".into()
        }
    );
}

#[test]
fn non_programs_and_cut_headers_are_refused_not_panicked_on() {
    assert!(elf_facts(b"#!/bin/sh\n").is_err());
    assert!(elf_facts(&elf(62, None)[..0x30]).is_err());
    let mut far = elf(62, Some("/x"));
    far[0x48..0x50].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(elf_facts(&far).is_err());
    assert!(elf_facts(&elf(9999, None)).is_err());
}

#[test]
fn the_running_test_binary_describes_itself() {
    let info = ProgramInfo::current().expect("this test binary is an ELF program");
    assert_eq!(info.target, format!("{}-linux", std::env::consts::ARCH));
    let bytes = std::fs::read(std::env::current_exe().expect("exe")).expect("read");
    assert_eq!(info.size, bytes.len() as u64);
    assert_eq!(info.id, ProgramId::of(&bytes));
}

#[test]
fn program_ids_round_trip_through_hex() {
    let id = ProgramId::of(b"program");
    assert_eq!(ProgramId::from_hex(&id.hex()), Some(id));
    assert_eq!(ProgramId::from_hex("xyz"), None);
    assert_eq!(ProgramId::from_hex(&"g".repeat(64)), None);
    assert_eq!(id.to_string().len(), 12);
}

fn offer(target: &str, linking: Linking, size: u64) -> ProgramInfo {
    ProgramInfo {
        id: ProgramId::of(b"p"),
        size,
        target: target.into(),
        linking,
    }
}

fn caps() -> NodeCaps {
    NodeCaps {
        uploads: true,
        target: "x86_64-linux".into(),
        cache_max: 1000,
    }
}

#[test]
fn node_answers_have_need_or_refuse_with_the_reason() {
    let none = |_: &str| false;
    let stat = offer("x86_64-linux", Linking::Static, 10);
    assert_eq!(answer_offer(&stat, &caps(), true, none), OfferAnswer::Have);
    assert_eq!(answer_offer(&stat, &caps(), false, none), OfferAnswer::Need);
    let no_upload = NodeCaps {
        uploads: false,
        ..caps()
    };
    let refused = |a: OfferAnswer, word: &str| match a {
        OfferAnswer::Refuse(why) => assert!(why.contains(word), "{why}"),
        other => panic!("expected a refusal with {word:?}, got {other:?}"),
    };
    refused(answer_offer(&stat, &no_upload, true, none), "--no-upload");
    let arm = offer("aarch64-linux", Linking::Static, 10);
    refused(answer_offer(&arm, &caps(), false, none), "aarch64-linux");
    let dynamic = offer(
        "x86_64-linux",
        Linking::Dynamic {
            interpreter: "/lib64/ld-linux-x86-64.so.2".into(),
        },
        10,
    );
    refused(answer_offer(&dynamic, &caps(), false, none), "crt-static");
    assert_eq!(
        answer_offer(&dynamic, &caps(), false, |_| true),
        OfferAnswer::Need
    );
    let big = offer("x86_64-linux", Linking::Static, 1001);
    refused(answer_offer(&big, &caps(), false, none), "--cache-max");
}
