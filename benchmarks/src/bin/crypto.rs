//! What encrypted sessions cost: AEAD seal + open of 1 MiB frames and of
//! small frames (one job's `Run` or `Done` is about 100 bytes) on one core
//! for both candidate ciphers (the transport's backend, ring), the same for
//! the RustCrypto AES-256-GCM the transport used before issue 33
//! (`rustcrypto_aesgcm_mb_s`, the comparison), handshakes per second, and loopback TCP
//! with and without sealing. AEAD and handshake rates are per CPU second of
//! the measuring thread, so that a busy shared machine does not halve them;
//! TCP rates are per wall second.
//!
//! `cargo run --release -p benchmarks --bin crypto -- --json`

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::Aes256Gcm;
use anyhow::{Context, Result};
use clap::Parser;
use ppcore::secure::{ClientHandshake, NodeHandshake};
use ppcore::{Cipher, Key, KeySet, Transport, CIPHER};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

const FRAME: usize = benchmarks::AEAD_FRAME;

#[derive(Parser)]
#[command(about = "AEAD, handshake and loopback TCP throughput of pp's encrypted sessions")]
struct Args {
    /// 1 MiB frames per measurement.
    #[arg(long, default_value_t = 512)]
    frames: usize,
    /// Handshakes for the handshake rate.
    #[arg(long, default_value_t = 2000)]
    handshakes: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn mb_s(bytes: usize, started: Instant) -> f64 {
    bytes as f64 / 1e6 / started.elapsed().as_secs_f64()
}

/// Seal + open of `frames` 1 MiB frames with RustCrypto's AES-256-GCM on
/// this thread, as the transport did before issue 33 (in place, detached
/// tag, Noise's nonce): MB per CPU second.
fn rustcrypto_aesgcm_mb_s(frames: usize) -> Result<f64> {
    let (a, b) = (
        Aes256Gcm::new((&[1u8; 32]).into()),
        Aes256Gcm::new((&[1u8; 32]).into()),
    );
    let mut frame = vec![0x5a; FRAME];
    let (_, cpu) = benchmarks::timed(|| {
        for seq in 0..frames as u64 {
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&seq.to_be_bytes());
            let tag = a
                .encrypt_in_place_detached((&nonce).into(), b"", &mut frame)
                .map_err(|_| anyhow::anyhow!("seal failed"))?;
            b.decrypt_in_place_detached((&nonce).into(), b"", &mut frame, &tag)
                .map_err(|_| anyhow::anyhow!("open failed"))?;
        }
        Ok(())
    })?;
    anyhow::ensure!(
        frame.iter().all(|&x| x == 0x5a),
        "round trip changed the frame"
    );
    Ok((frames * FRAME) as f64 / 1e6 / cpu)
}

/// Bytes of the small frame: about one job's `Run` or `Done` frame.
const SMALL: usize = 128;

/// CPU nanoseconds of one seal + open of a [`SMALL`] frame on this thread.
fn small_ns(cipher: Cipher, frames: usize) -> Result<f64> {
    let mut a = Transport::from_raw_keys(cipher, &[1; 32], &[2; 32]);
    let mut b = Transport::from_raw_keys(cipher, &[2; 32], &[1; 32]);
    let frame = vec![0x5a; SMALL];
    let (_, cpu) = benchmarks::timed(|| {
        for _ in 0..frames {
            let plain = b.open_vec(a.seal(&frame)?)?;
            anyhow::ensure!(plain.len() == SMALL, "short frame");
        }
        Ok(())
    })?;
    Ok(cpu * 1e9 / frames as f64)
}

/// Whole handshakes (both sides, on this thread) per CPU second.
fn handshakes(n: usize) -> Result<f64> {
    let key = Key::generate()?;
    let keys = KeySet::one(key.clone());
    let (_, cpu) = benchmarks::timed(|| {
        for _ in 0..n {
            let (mut client, hello) = ClientHandshake::start(&key, b"hello")?;
            let mut node = NodeHandshake::new(keys.clone(), b"welcome".to_vec())?;
            let answer = node.read(&hello)?.context("no answer")?;
            client.read(&answer)?;
            let (_, _) = (client.finish()?, node.finish()?);
        }
        Ok(())
    })?;
    Ok(n as f64 / cpu)
}

/// 1 MiB frames through a loopback TCP connection, sealed or not: a writer
/// thread sends (and seals), this thread receives (and opens).
fn tcp(frames: usize, sealed: bool) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let writer = std::thread::spawn(move || -> Result<()> {
        let mut out = TcpStream::connect(addr)?;
        let mut seal = Transport::from_raw_keys(CIPHER, &[1; 32], &[2; 32]);
        let frame = vec![0x5a; FRAME];
        for _ in 0..frames {
            if sealed {
                out.write_all(&seal.seal_frame(&frame)?)?;
            } else {
                out.write_all(&(FRAME as u32).to_be_bytes())?;
                out.write_all(&frame)?;
            }
        }
        Ok(())
    });
    let (mut input, _) = listener.accept()?;
    let mut open = Transport::from_raw_keys(CIPHER, &[2; 32], &[1; 32]);
    let mut buf = Vec::new();
    let started = Instant::now();
    for _ in 0..frames {
        let mut len = [0u8; 4];
        input.read_exact(&mut len)?;
        buf.resize(u32::from_be_bytes(len) as usize, 0);
        input.read_exact(&mut buf)?;
        if sealed {
            anyhow::ensure!(
                open.open_vec(std::mem::take(&mut buf))?.len() == FRAME,
                "short frame"
            );
        }
    }
    let rate = mb_s(frames * FRAME, started);
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))??;
    Ok(rate)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let (chacha, chacha_wall) = benchmarks::aead_mb_s(Cipher::ChaChaPoly, args.frames)?;
    let (aes, aes_wall) = benchmarks::aead_mb_s(Cipher::AesGcm, args.frames)?;
    let rustcrypto_aes = rustcrypto_aesgcm_mb_s(args.frames)?;
    let smalls = args.frames * 200;
    let (chacha_small, aes_small) = (
        small_ns(Cipher::ChaChaPoly, smalls)?,
        small_ns(Cipher::AesGcm, smalls)?,
    );
    let aead_mb_s = if CIPHER == Cipher::AesGcm {
        aes
    } else {
        chacha
    };
    let handshakes_per_s = handshakes(args.handshakes)?;
    let raw_tcp_mb_s = tcp(args.frames, false)?;
    let sealed_tcp_mb_s = tcp(args.frames, true)?;
    let cipher = format!("{CIPHER:?}");
    if args.json {
        let out = serde_json::json!({
            "cipher": cipher, "aead_mb_s": aead_mb_s,
            "chachapoly_mb_s": chacha, "aesgcm_mb_s": aes,
            "rustcrypto_aesgcm_mb_s": rustcrypto_aes,
            "aesgcm_vs_rustcrypto": aes / rustcrypto_aes,
            "chachapoly_wall_mb_s": chacha_wall, "aesgcm_wall_mb_s": aes_wall,
            "chachapoly_small_ns": chacha_small, "aesgcm_small_ns": aes_small,
            "handshakes_per_s": handshakes_per_s,
            "raw_tcp_mb_s": raw_tcp_mb_s, "sealed_tcp_mb_s": sealed_tcp_mb_s,
        });
        println!("{out}");
    } else {
        println!(
            "seal + open of 1 MiB frames, one core ({} frames), per CPU second (wall):",
            args.frames
        );
        println!("  ChaCha20-Poly1305   {chacha:8.0} MB/s ({chacha_wall:.0})");
        println!("  AES-256-GCM         {aes:8.0} MB/s ({aes_wall:.0})");
        println!(
            "  AES-256-GCM, RustCrypto (before issue 33) {rustcrypto_aes:8.0} MB/s: {:.1}x",
            aes / rustcrypto_aes
        );
        println!("seal + open of a {SMALL}-byte frame, one core, CPU time:");
        println!("  ChaCha20-Poly1305   {chacha_small:8.0} ns");
        println!("  AES-256-GCM         {aes_small:8.0} ns");
        println!("aead_mb_s ({cipher})  {aead_mb_s:8.0} MB/s");
        println!("handshakes_per_s      {handshakes_per_s:8.0}");
        println!("raw_tcp_mb_s          {raw_tcp_mb_s:8.0} MB/s (loopback, 1 MiB frames)");
        println!("sealed_tcp_mb_s       {sealed_tcp_mb_s:8.0} MB/s (the same, sealed and opened)");
    }
    Ok(())
}
