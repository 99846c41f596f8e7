//! The seam for a JPEG 2000 decoder ahead of OpenJPEG (the GPU's,
//! installed at start-up): what it decodes is used and reported as
//! `accelerated`; a stream it fails on, or decodes to another size than the
//! header's, is decoded by OpenJPEG and reported as `fallback`; with none
//! installed, OpenJPEG decodes and the frame says `cpu`.
//!
//! The fake decoder answers only for this test's own codestream (a film no
//! other test decodes) and refuses every other stream, so the other tests of
//! this binary, running meanwhile, see only fallbacks with OpenJPEG's
//! values.

use std::sync::{Arc, Mutex};

use cxr_ingest::accel::{install_jpeg2000_decoder, CodestreamDecoder, DecodedCodestream};
use cxr_ingest::{read_bytes, Decoder, IngestLimits};
use cxr_synth::{dicom_bytes, generate_case, CaseSpec, OutputSyntax};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// The right samples, with pixel 0 flipped in its lowest bit so that
    /// the test can tell they came from here.
    Marked,
    /// One row short.
    WrongSize,
    /// A failure (as a GPU error would be).
    Fail,
}

struct Fake {
    codestream: Vec<u8>,
    width: u32,
    height: u32,
    samples: Vec<u16>,
    mode: Mutex<Mode>,
    calls: Mutex<usize>,
}

impl CodestreamDecoder for Fake {
    fn name(&self) -> &str {
        "fake"
    }

    fn decode(&self, codestream: &[u8], max_pixels: u64) -> Result<DecodedCodestream, String> {
        if codestream != self.codestream.as_slice() {
            return Err("not this test's stream".into());
        }
        assert_eq!(max_pixels, u64::from(self.width) * u64::from(self.height));
        *self.calls.lock().unwrap() += 1;
        let mut samples = self.samples.clone();
        samples[0] ^= 1;
        match *self.mode.lock().unwrap() {
            Mode::Marked => Ok(DecodedCodestream {
                width: self.width,
                height: self.height,
                samples,
            }),
            Mode::WrongSize => Ok(DecodedCodestream {
                width: self.width,
                height: self.height - 1,
                samples,
            }),
            Mode::Fail => Err("device lost".into()),
        }
    }
}

/// The frame's codestream: every fragment after the (empty) offset table.
fn codestream(bytes: &[u8]) -> Vec<u8> {
    let obj = dicom_object::from_reader(&bytes[128..]).expect("parse");
    let pixel_data = obj
        .element(dicom_dictionary_std::tags::PIXEL_DATA)
        .expect("pixel data");
    pixel_data
        .value()
        .fragments()
        .expect("encapsulated")
        .concat()
}

#[test]
fn an_installed_jpeg2000_decoder_is_used_and_openjpeg_takes_what_it_fails() {
    let spec = CaseSpec {
        syntax: OutputSyntax::J2kLossless,
        bits: Some(12),
        ..CaseSpec::small()
    };
    let case = generate_case(&spec, 4242, 7).expect("case");
    let bytes = dicom_bytes(&case, OutputSyntax::J2kLossless).expect("opj_compress");
    let limits = IngestLimits::default();

    let cpu = read_bytes(&bytes, &limits).expect("OpenJPEG");
    assert_eq!(cpu.stored.decoder, Decoder::Cpu);

    let fake = Arc::new(Fake {
        codestream: codestream(&bytes),
        width: cpu.stored.columns,
        height: cpu.stored.rows,
        samples: cpu.stored.values.clone(),
        mode: Mutex::new(Mode::Marked),
        calls: Mutex::new(0),
    });
    install_jpeg2000_decoder(Some(fake.clone()));

    let accelerated = read_bytes(&bytes, &limits).expect("accelerated");
    assert_eq!(accelerated.stored.decoder, Decoder::Accelerated);
    assert_eq!(accelerated.stored.values[0], cpu.stored.values[0] ^ 1);
    assert_eq!(accelerated.stored.values[1..], cpu.stored.values[1..]);

    for mode in [Mode::WrongSize, Mode::Fail] {
        *fake.mode.lock().unwrap() = mode;
        let fallback = read_bytes(&bytes, &limits).expect("fallback");
        assert_eq!(fallback.stored.decoder, Decoder::Fallback);
        assert_eq!(fallback.stored.values, cpu.stored.values);
        assert_eq!(fallback.image.pixels, cpu.image.pixels);
    }
    assert_eq!(*fake.calls.lock().unwrap(), 3);

    // Native films never reach it.
    let native = dicom_bytes(&case, OutputSyntax::ExplicitLe).expect("native");
    assert_eq!(
        read_bytes(&native, &limits).unwrap().stored.decoder,
        Decoder::Native
    );
    assert_eq!(*fake.calls.lock().unwrap(), 3);

    install_jpeg2000_decoder(None);
    let again = read_bytes(&bytes, &limits).expect("OpenJPEG again");
    assert_eq!(again.stored.decoder, Decoder::Cpu);
    assert_eq!(*fake.calls.lock().unwrap(), 3);
}
