//! cxr-nvimgcodec against the real nvImageCodec.
//!
//! The CPU tests need the library (set `CXR_NVIMGCODEC` to
//! `…/site-packages/nvidia/nvimgcodec/libnvimgcodec.so.0`, or have the wheel
//! in the workspace's `.venv`); without it they print a notice and pass.
//! `gpu_decodes_jpeg2000` is ignored unless run with `--ignored` and
//! `CXR_GPU_TESTS=1` on a machine with a CUDA device.

use std::path::{Path, PathBuf};
use std::time::Instant;

use cxr_nvimgcodec::{Component, Decoded, Error, Kind, NvImageCodec, Output};
use jpeg_encoder::{ColorType, Encoder};
use sha2::{Digest, Sha256};

const MAX_PIXELS: u64 = 50_000_000;

/// Site-packages directories of the workspace's virtual environment.
fn site_packages() -> Vec<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/lib");
    let Ok(entries) = std::fs::read_dir(&venv) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages"))
        .filter(|p| p.is_dir())
        .collect()
}

/// The CPU codec, or `None` (with a notice) when the library is absent.
fn cpu_codec(test: &str) -> Option<NvImageCodec> {
    match NvImageCodec::load(None, &site_packages(), Kind::Cpu) {
        Ok(codec) => Some(codec),
        Err(Error::NotFound {
            component: Component::NvImageCodec,
            tried,
        }) => {
            eprintln!(
                "SKIPPED {test}: nvImageCodec not found (set CXR_NVIMGCODEC; tried {})",
                tried.join(", ")
            );
            None
        }
        Err(other) => panic!("nvImageCodec found but not usable: {other}"),
    }
}

/// A smooth greyscale test card (JPEG at quality 100 keeps it within ±1).
fn card(width: u16, height: u16, seed: u32) -> Vec<u8> {
    let mut pixels = Vec::with_capacity(usize::from(width) * usize::from(height));
    for y in 0..u32::from(height) {
        for x in 0..u32::from(width) {
            pixels.push(((x * 3 + y * 2 + seed * 17) % 200 + 20) as u8);
        }
    }
    pixels
}

fn jpeg(pixels: &[u8], width: u16, height: u16, color: ColorType) -> Vec<u8> {
    let mut out = Vec::new();
    Encoder::new(&mut out, 100)
        .encode(pixels, width, height, color)
        .expect("encode JPEG");
    out
}

fn assert_close(decoded: &Decoded, reference: &[u8], width: u16, height: u16) {
    assert_eq!(
        (decoded.width, decoded.height),
        (u32::from(width), u32::from(height))
    );
    assert_eq!(decoded.precision, 8);
    assert!(!decoded.signed);
    assert_eq!(decoded.samples.len(), reference.len());
    let worst = decoded
        .samples
        .iter()
        .zip(reference)
        .map(|(&d, &r)| (i32::from(d) - i32::from(r)).abs())
        .max()
        .unwrap_or(0);
    assert!(
        worst <= 1,
        "a sample is {worst} away from the encoded value"
    );
}

#[test]
fn loading_a_nonexistent_path_is_not_found() {
    let missing = Path::new("/nonexistent/nvidia/nvimgcodec/libnvimgcodec.so.0");
    match NvImageCodec::load(Some(missing), &[], Kind::Cpu) {
        Err(Error::NotFound { component, tried }) => {
            assert_eq!(component, Component::NvImageCodec);
            assert_eq!(tried, vec![missing.display().to_string()]);
        }
        Err(other) => panic!("expected NotFound, got: {other}"),
        Ok(_) => panic!("loaded a library that does not exist"),
    }
}

#[test]
fn cpu_decodes_a_greyscale_baseline_jpeg() {
    let Some(codec) = cpu_codec("cpu_decodes_a_greyscale_baseline_jpeg") else {
        return;
    };
    eprintln!(
        "nvImageCodec {} from {}",
        codec.version(),
        codec.library().display()
    );
    let (w, h) = (64, 48);
    let pixels = card(w, h, 0);
    let stream = jpeg(&pixels, w, h, ColorType::Luma);
    let mut results = codec.decode_batch(&[&stream], MAX_PIXELS);
    assert_eq!(results.len(), 1);
    let decoded = results.remove(0).unwrap_or_else(|e| {
        panic!(
            "decode failed: {e}\nlibrary log:\n{}",
            codec.messages().join("\n")
        )
    });
    assert_close(&decoded, &pixels, w, h);
    eprintln!("library log:\n  {}", codec.messages().join("\n  "));
}

#[test]
fn a_batch_of_three_decodes_in_order() {
    let Some(codec) = cpu_codec("a_batch_of_three_decodes_in_order") else {
        return;
    };
    let sizes = [(64u16, 48u16), (33, 17), (128, 96)];
    let cards: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &(w, h))| card(w, h, i as u32))
        .collect();
    let streams: Vec<Vec<u8>> = cards
        .iter()
        .zip(sizes)
        .map(|(p, (w, h))| jpeg(p, w, h, ColorType::Luma))
        .collect();
    let refs: Vec<&[u8]> = streams.iter().map(Vec::as_slice).collect();
    assert!(codec.decode_batch(&[], MAX_PIXELS).is_empty());
    let results = codec.decode_batch(&refs, MAX_PIXELS);
    assert_eq!(results.len(), 3);
    for ((result, pixels), (w, h)) in results.iter().zip(&cards).zip(sizes) {
        match result {
            Ok(decoded) => assert_close(decoded, pixels, w, h),
            Err(e) => panic!("{w}x{h} failed: {e}"),
        }
    }
}

#[test]
fn a_corrupt_stream_fails_alone_in_its_batch() {
    let Some(codec) = cpu_codec("a_corrupt_stream_fails_alone_in_its_batch") else {
        return;
    };
    let (w, h) = (40, 30);
    let pixels = card(w, h, 5);
    let good = jpeg(&pixels, w, h, ColorType::Luma);
    // Valid headers, entropy-coded data cut short then garbage.
    let mut corrupt = good[..good.len() * 2 / 3].to_vec();
    corrupt.extend_from_slice(&[0xFF, 0xD9, 0x13, 0x37]);
    let garbage = b"definitely not an image".to_vec();
    let empty: &[u8] = &[];
    let results = codec.decode_batch(&[&good, &corrupt, &garbage, empty, &good], MAX_PIXELS);
    assert_eq!(results.len(), 5);
    for i in [0, 4] {
        match &results[i] {
            Ok(decoded) => assert_close(decoded, &pixels, w, h),
            Err(e) => panic!("good image {i} failed beside bad ones: {e}"),
        }
    }
    for (i, result) in results.iter().enumerate().take(4).skip(1) {
        match result {
            Ok(_) if i == 1 => {
                // libjpeg-turbo may pad a truncated scan rather than fail;
                // what matters is that nothing crashed and the rest decoded.
                eprintln!("note: truncated JPEG decoded (padded) rather than failing");
            }
            Ok(_) => panic!("image {i} should have failed"),
            Err(e) => eprintln!("image {i} refused as expected: {e}"),
        }
    }
    assert!(matches!(results[3], Err(Error::Empty)));
}

#[test]
fn colour_and_oversized_images_are_refused_per_image() {
    let Some(codec) = cpu_codec("colour_and_oversized_images_are_refused_per_image") else {
        return;
    };
    let (w, h) = (16, 16);
    let rgb: Vec<u8> = card(w, h, 1)
        .iter()
        .flat_map(|&v| [v, v / 2, 255 - v])
        .collect();
    let colour = jpeg(&rgb, w, h, ColorType::Rgb);
    let grey = jpeg(&card(w, h, 2), w, h, ColorType::Luma);
    let results = codec.decode_batch(&[&colour, &grey], 255);
    assert!(
        matches!(&results[0], Err(Error::MultiComponent { components: 3, codec }) if codec == "jpeg"),
        "{:?}",
        results[0]
    );
    assert!(
        matches!(
            &results[1],
            Err(Error::TooLarge {
                width: 16,
                height: 16,
                max_pixels: 255
            })
        ),
        "{:?}",
        results[1]
    );
}

/// nvImageCodec's own instance creation races (see `LIFECYCLE` in the
/// crate); four threads loading at once must all get working decoders.
#[test]
fn instances_loaded_on_several_threads_at_once_all_decode() {
    if cpu_codec("instances_loaded_on_several_threads_at_once_all_decode").is_none() {
        return;
    }
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                for round in 0..3 {
                    let Some(codec) = cpu_codec("(thread)") else {
                        return failures;
                    };
                    let (w, h) = (24, 16);
                    let pixels = card(w, h, t);
                    let stream = jpeg(&pixels, w, h, ColorType::Luma);
                    for r in codec.decode_batch(&[&stream, &stream], MAX_PIXELS) {
                        match r {
                            Ok(d) => assert_close(&d, &pixels, w, h),
                            Err(e) => failures.push(format!("thread {t} round {round}: {e}")),
                        }
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread panicked"))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One line of `tests/data/expected.txt`.
struct Fixture {
    file: String,
    width: u32,
    height: u32,
    precision: u8,
    signed: bool,
    sha256: String,
}

/// `tests/data`: in the source tree, or under the working directory when the
/// test binary runs elsewhere (a GPU host given the repository and the
/// binary).
fn data_dir() -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    if built.is_dir() {
        built
    } else {
        PathBuf::from("crates/nvimgcodec/tests/data")
    }
}

fn fixtures() -> Vec<Fixture> {
    let dir = data_dir();
    let manifest = std::fs::read_to_string(dir.join("expected.txt")).expect("expected.txt");
    manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Fixture {
                file: f[0].to_owned(),
                width: f[1].parse().expect("width"),
                height: f[2].parse().expect("height"),
                precision: f[3].parse().expect("precision"),
                signed: f[4] == "1",
                sha256: f[5].to_owned(),
            }
        })
        .collect()
}

fn fixture_bytes(f: &Fixture) -> Vec<u8> {
    let path = data_dir().join(&f.file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn samples_sha256(samples: &[u16]) -> String {
    let mut hash = Sha256::new();
    for s in samples {
        hash.update(s.to_le_bytes());
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks one decode against its manifest line; the failure, if any, as text.
fn check(f: &Fixture, result: &Result<Decoded, Error>) -> Result<(), String> {
    let d = result.as_ref().map_err(|e| format!("{}: {e}", f.file))?;
    let got = (d.width, d.height, d.precision, d.signed);
    let want = (f.width, f.height, f.precision, f.signed);
    if got != want {
        return Err(format!(
            "{}: (w, h, bits, signed) {got:?}, expected {want:?}",
            f.file
        ));
    }
    let digest = samples_sha256(&d.samples);
    if digest != f.sha256 {
        return Err(format!("{}: samples differ (sha256 {digest})", f.file));
    }
    Ok(())
}

/// On the CPU, JPEG 2000 and HTJ2K go to nvImageCodec's OpenCV extension
/// (OpenCV with OpenJPEG 2.5.3 linked in): unsigned samples come back
/// exactly; it has no signed 16-bit output (SAMPLE_TYPE_UNSUPPORTED), which
/// is reported, not required.
#[test]
fn cpu_decodes_unsigned_jpeg2000_fixtures_exactly() {
    let Some(codec) = cpu_codec("cpu_decodes_unsigned_jpeg2000_fixtures_exactly") else {
        return;
    };
    let fixtures = fixtures();
    let streams: Vec<Vec<u8>> = fixtures.iter().map(fixture_bytes).collect();
    let refs: Vec<&[u8]> = streams.iter().map(Vec::as_slice).collect();
    let mut failures = Vec::new();
    for (f, result) in fixtures.iter().zip(codec.decode_batch(&refs, MAX_PIXELS)) {
        match (check(f, &result), f.signed) {
            (Ok(()), _) => eprintln!("CPU {}: exact", f.file),
            (Err(why), true) => eprintln!("CPU {} (signed, not required): {why}", f.file),
            (Err(why), false) => failures.push(why),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
#[ignore = "needs a CUDA device; run with CXR_GPU_TESTS=1 and --ignored"]
fn gpu_decodes_jpeg2000() {
    if std::env::var("CXR_GPU_TESTS").as_deref() != Ok("1") {
        eprintln!("SKIPPED gpu_decodes_jpeg2000: CXR_GPU_TESTS is not 1");
        return;
    }
    let fixtures = fixtures();
    let streams: Vec<Vec<u8>> = fixtures.iter().map(fixture_bytes).collect();
    let refs: Vec<&[u8]> = streams.iter().map(Vec::as_slice).collect();
    let mut failures = Vec::new();

    // Both output paths, so that one run shows which works if one does not.
    for output in [Output::Device, Output::Host] {
        let codec = match NvImageCodec::load_with_output(None, &site_packages(), Kind::Gpu, output)
        {
            Ok(codec) => codec,
            Err(e) => {
                failures.push(format!("{output:?}: load: {e}"));
                continue;
            }
        };
        eprintln!(
            "GPU {output:?}: nvImageCodec {} from {}",
            codec.version(),
            codec.library().display()
        );
        let results = codec.decode_batch(&refs, MAX_PIXELS);
        for (f, result) in fixtures.iter().zip(&results) {
            match check(f, result) {
                Ok(()) => eprintln!("GPU {output:?} {}: exact", f.file),
                Err(why) => failures.push(format!("{output:?} {why}")),
            }
        }

        // A corrupt stream beside good ones fails alone.
        let main = &streams[0];
        let cut = &main[..main.len() / 2];
        let mixed = codec.decode_batch(&[main, cut, b"junk".as_slice(), main], MAX_PIXELS);
        for (i, r) in mixed.iter().enumerate() {
            eprintln!(
                "GPU {output:?} mixed[{i}]: {:?}",
                r.as_ref().map(|d| (d.width, d.height))
            );
        }
        for i in [0, 3] {
            if let Err(why) = check(&fixtures[0], &mixed[i]) {
                failures.push(format!("{output:?} mixed[{i}]: {why}"));
            }
        }
        if mixed[2].is_ok() {
            failures.push(format!("{output:?} mixed[2]: junk decoded"));
        }

        // Throughput: a batch of 8 copies of the 12-bit image, warm.
        let batch: Vec<&[u8]> = std::iter::repeat_n(main.as_slice(), 8).collect();
        let _ = codec.decode_batch(&batch, MAX_PIXELS);
        let rounds = 20;
        let start = Instant::now();
        for _ in 0..rounds {
            for r in codec.decode_batch(&batch, MAX_PIXELS) {
                if let Err(e) = r {
                    failures.push(format!("{output:?} throughput batch: {e}"));
                }
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let images = f64::from(rounds * 8);
        let mpix = images * f64::from(fixtures[0].width * fixtures[0].height) / 1e6;
        eprintln!(
            "GPU {output:?} throughput: {:.0} images/s, {:.1} Mpixel/s ({} batches of 8 x {}x{} 12-bit, {:.1} ms/batch)",
            images / secs,
            mpix / secs,
            rounds,
            fixtures[0].width,
            fixtures[0].height,
            secs * 1e3 / f64::from(rounds)
        );
        let log = codec.messages();
        if !log.is_empty() {
            eprintln!("GPU {output:?} library log:\n  {}", log.join("\n  "));
        }
    }
    assert!(
        failures.is_empty(),
        "GPU failures:\n{}",
        failures.join("\n")
    );
}
