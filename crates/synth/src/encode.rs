//! Writing a case as a DICOM Part 10 file in a chosen transfer syntax:
//! native syntaxes by dicom-object, RLE by this crate, JPEG baseline and
//! JPEG-LS by dicom-pixeldata's transcoder, JPEG extended and JPEG lossless
//! by dcmtk's `dcmcjpeg` (if on PATH), JPEG 2000 by OpenJPEG's `opj_compress`
//! (if on PATH).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use dicom_core::value::PixelFragmentSequence;
use dicom_core::{DataElement, Length, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::adapters::EncodeOptions;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{FileDicomObject, InMemDicomObject};
use dicom_pixeldata::Transcode;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

use super::case::SyntheticCase;
use super::dicom_out::build_object;
use super::rle;
use super::syntax::{Encoder, OutputSyntax};

/// Why a case could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The transfer syntax has no encoder here.
    #[error("cannot write {syntax}: {reason}")]
    Unsupported {
        /// Short name of the syntax.
        syntax: &'static str,
        /// Why, and what would fix it.
        reason: String,
    },
    /// The case does not fit the syntax (e.g. 16 bits for JPEG extended).
    #[error("case does not fit {syntax}: {reason}")]
    Incompatible {
        /// Short name of the syntax.
        syntax: &'static str,
        /// What does not fit.
        reason: String,
    },
    /// A dcmtk tool is needed but could not be started.
    #[error("{syntax} output needs `{tool}` from dcmtk, which could not be run ({detail}); install dcmtk (e.g. `apt-get install dcmtk`) so that `{tool}` is on PATH")]
    ToolMissing {
        /// Short name of the syntax.
        syntax: &'static str,
        /// Program name.
        tool: &'static str,
        /// The OS error.
        detail: String,
    },
    /// A dcmtk tool ran and failed.
    #[error("`{tool}` failed while writing {syntax}: {stderr}")]
    ToolFailed {
        /// Short name of the syntax.
        syntax: &'static str,
        /// Program name.
        tool: &'static str,
        /// What it printed.
        stderr: String,
    },
    /// Building or encoding the object failed.
    #[error("encoding failed: {0}")]
    Build(String),
    /// A file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The case as the bytes of a DICOM file in `syntax`.
pub fn dicom_bytes(case: &SyntheticCase, syntax: OutputSyntax) -> Result<Vec<u8>, WriteError> {
    check_fit(case, syntax)?;
    let mut obj = build_object(case)?;
    match syntax.encoder() {
        Encoder::Native => {
            set_syntax(&mut obj, syntax)?;
            to_bytes(&obj)
        }
        Encoder::InProcess if syntax == OutputSyntax::Rle => {
            encapsulate_rle(&mut obj, case)?;
            to_bytes(&obj)
        }
        Encoder::InProcess => {
            transcode_in_process(&mut obj, syntax)?;
            to_bytes(&obj)
        }
        Encoder::Dcmtk { tool, args } => via_dcmtk(&obj, syntax, tool, args),
        Encoder::OpenJpeg { args } => {
            let codestream = via_opj_compress(case, syntax, args)?;
            encapsulate(&mut obj, codestream, syntax)?;
            to_bytes(&obj)
        }
        Encoder::Unavailable(reason) => Err(WriteError::Unsupported {
            syntax: syntax.name(),
            reason: reason.to_string(),
        }),
    }
}

/// Writes the case to `path` as a DICOM file in `syntax`.
pub fn write_dicom(
    case: &SyntheticCase,
    syntax: OutputSyntax,
    path: &Path,
) -> Result<(), WriteError> {
    let bytes = dicom_bytes(case, syntax)?;
    std::fs::write(path, bytes).map_err(|source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Checks that `syntax` can be written in this environment at all: known
/// encoder, and the dcmtk tool runs when one is needed.
pub fn check_syntax_available(syntax: OutputSyntax) -> Result<(), WriteError> {
    match syntax.encoder() {
        Encoder::Native | Encoder::InProcess => Ok(()),
        Encoder::Unavailable(reason) => Err(WriteError::Unsupported {
            syntax: syntax.name(),
            reason: reason.to_string(),
        }),
        Encoder::OpenJpeg { .. } => match Command::new(OPJ_COMPRESS).arg("-h").output() {
            Ok(_) => Ok(()),
            Err(e) => Err(WriteError::ToolMissing {
                syntax: syntax.name(),
                tool: OPJ_COMPRESS,
                detail: format!("{e} (apt-get install libopenjp2-tools)"),
            }),
        },
        Encoder::Dcmtk { tool, .. } => match Command::new(tool).arg("--version").output() {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(WriteError::ToolMissing {
                syntax: syntax.name(),
                tool,
                detail: format!("`{tool} --version` exited with {}", out.status),
            }),
            Err(e) => Err(WriteError::ToolMissing {
                syntax: syntax.name(),
                tool,
                detail: e.to_string(),
            }),
        },
    }
}

fn check_fit(case: &SyntheticCase, syntax: OutputSyntax) -> Result<(), WriteError> {
    let bits = case.meta.bits_stored;
    let fits = match syntax.max_bits() {
        8 => bits == 8,
        max => (9..=max).contains(&bits) || (bits == 8 && syntax.encoder() == Encoder::Native),
    };
    let reason = if !fits {
        format!(
            "Bits Stored is {bits}, {} takes {}",
            syntax.name(),
            bits_wanted(syntax)
        )
    } else if case.meta.signed && !syntax.supports_signed() {
        "signed pixel data is written only with native syntaxes or RLE".to_string()
    } else {
        return Ok(());
    };
    Err(WriteError::Incompatible {
        syntax: syntax.name(),
        reason: format!("{reason}; generate the case with this syntax in its CaseSpec"),
    })
}

fn bits_wanted(syntax: OutputSyntax) -> String {
    match syntax.max_bits() {
        8 => "exactly 8".to_string(),
        max => format!("9 to {max}"),
    }
}

/// The registry's entry for `syntax`.
fn registry_entry(
    syntax: OutputSyntax,
) -> Result<&'static dicom_encoding::transfer_syntax::TransferSyntax, WriteError> {
    TransferSyntaxRegistry.get(syntax.uid()).ok_or_else(|| {
        WriteError::Build(format!("transfer syntax {} not in registry", syntax.uid()))
    })
}

fn set_syntax(
    obj: &mut FileDicomObject<InMemDicomObject>,
    syntax: OutputSyntax,
) -> Result<(), WriteError> {
    obj.meta_mut().set_transfer_syntax(registry_entry(syntax)?);
    Ok(())
}

fn to_bytes(obj: &FileDicomObject<InMemDicomObject>) -> Result<Vec<u8>, WriteError> {
    let mut out = Vec::new();
    obj.write_all(&mut out)
        .map_err(|e| WriteError::Build(e.to_string()))?;
    Ok(out)
}

/// Replaces the native pixel data by one RLE fragment.
fn encapsulate_rle(
    obj: &mut FileDicomObject<InMemDicomObject>,
    case: &SyntheticCase,
) -> Result<(), WriteError> {
    let m = &case.meta;
    let bytes_per_sample = usize::from(m.bits_allocated() / 8);
    let native = obj
        .element(tags::PIXEL_DATA)
        .map_err(|e| WriteError::Build(e.to_string()))?
        .to_bytes()
        .map_err(|e| WriteError::Build(e.to_string()))?
        .into_owned();
    let frame_len = m.width as usize * m.height as usize * bytes_per_sample;
    let frame = native
        .get(..frame_len)
        .ok_or_else(|| WriteError::Build("pixel data shorter than one frame".into()))?;
    let fragment = rle::encode_frame(frame, m.height as usize, m.width as usize, bytes_per_sample);
    encapsulate(obj, fragment, OutputSyntax::Rle)
}

/// Replaces the native pixel data with one encapsulated frame.
fn encapsulate(
    obj: &mut FileDicomObject<InMemDicomObject>,
    mut fragment: Vec<u8>,
    syntax: OutputSyntax,
) -> Result<(), WriteError> {
    // Fragments have even length.
    if fragment.len() % 2 == 1 {
        fragment.push(0);
    }
    let seq = PixelFragmentSequence::new(vec![0u32], vec![fragment]);
    obj.put(DataElement::new_with_len(
        tags::PIXEL_DATA,
        VR::OB,
        Length::UNDEFINED,
        seq,
    ));
    set_syntax(obj, syntax)
}

/// OpenJPEG's command-line encoder (Debian package libopenjp2-tools).
const OPJ_COMPRESS: &str = "opj_compress";

/// Encodes the stored values as a J2K codestream with `opj_compress`, through
/// a 16-bit PGM whose maxval sets the precision to Bits Stored.
fn via_opj_compress(
    case: &SyntheticCase,
    syntax: OutputSyntax,
    args: &[&str],
) -> Result<Vec<u8>, WriteError> {
    with_temp_files("pgm", "j2k", |input, output| {
        run_opj_compress(case, syntax, args, input, output)
    })
}

fn run_opj_compress(
    case: &SyntheticCase,
    syntax: OutputSyntax,
    args: &[&str],
    input: &Path,
    output: &Path,
) -> Result<Vec<u8>, WriteError> {
    let m = &case.meta;
    let maxval = (1u32 << m.bits_stored) - 1;
    let mut pgm = format!("P5\n{} {}\n{maxval}\n", m.width, m.height).into_bytes();
    for v in &case.pixels {
        pgm.extend_from_slice(&v.to_be_bytes());
    }
    let mut command = Command::new(OPJ_COMPRESS);
    command
        .args(args)
        .arg("-i")
        .arg(input)
        .arg("-o")
        .arg(output);
    run_encoder(syntax, OPJ_COMPRESS, command, &pgm, input, output).map_err(|e| match e {
        WriteError::ToolMissing {
            syntax,
            tool,
            detail,
        } => WriteError::ToolMissing {
            syntax,
            tool,
            detail: format!("{detail} (apt-get install libopenjp2-tools)"),
        },
        other => other,
    })
}

/// JPEG baseline and JPEG-LS through dicom-pixeldata's transcoder.
fn transcode_in_process(
    obj: &mut FileDicomObject<InMemDicomObject>,
    syntax: OutputSyntax,
) -> Result<(), WriteError> {
    let ts = registry_entry(syntax)?;
    let mut options = EncodeOptions::new();
    let method = match syntax {
        OutputSyntax::JpegBaseline => {
            options.quality = Some(OutputSyntax::JPEG_BASELINE_QUALITY);
            Some("ISO_10918_1")
        }
        OutputSyntax::JpegLsNear => {
            options.quality = Some(OutputSyntax::JPEG_LS_NEAR_QUALITY);
            Some("ISO_14495_1")
        }
        _ => None,
    };
    obj.transcode_with_options(ts, options)
        .map_err(|e| WriteError::Build(format!("{}: {e}", syntax.name())))?;
    if let Some(method) = method {
        let value = PrimitiveValue::from(method);
        obj.put(DataElement::new(
            tags::LOSSY_IMAGE_COMPRESSION_METHOD,
            VR::CS,
            value,
        ));
    }
    Ok(())
}

/// Writes Explicit VR Little Endian to a temporary file, runs the dcmtk
/// tool on it and returns the tool's output file.
fn via_dcmtk(
    obj: &FileDicomObject<InMemDicomObject>,
    syntax: OutputSyntax,
    tool: &'static str,
    args: &[&str],
) -> Result<Vec<u8>, WriteError> {
    with_temp_files("dcm", "dcm", |input, output| {
        run_dcmtk(obj, syntax, tool, args, input, output)
    })
}

/// Runs `f` with two fresh paths in the temporary directory (input and
/// output of an external encoder) and removes both afterwards.
fn with_temp_files<T>(
    input_ext: &str,
    output_ext: &str,
    f: impl FnOnce(&Path, &Path) -> Result<T, WriteError>,
) -> Result<T, WriteError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let stem = format!("cxr-synth-{}-{n}", std::process::id());
    let input = std::env::temp_dir().join(format!("{stem}-in.{input_ext}"));
    let output = std::env::temp_dir().join(format!("{stem}-out.{output_ext}"));
    let result = f(&input, &output);
    let _ = std::fs::remove_file(&input);
    let _ = std::fs::remove_file(&output);
    result
}

fn run_dcmtk(
    obj: &FileDicomObject<InMemDicomObject>,
    syntax: OutputSyntax,
    tool: &'static str,
    args: &[&str],
    input: &Path,
    output: &Path,
) -> Result<Vec<u8>, WriteError> {
    let mut command = Command::new(tool);
    command.args(args).arg(input).arg(output);
    run_encoder(syntax, tool, command, &to_bytes(obj)?, input, output)
}

/// Writes `input_bytes` to `input`, runs an external encoder that writes
/// `output`, and returns what it wrote; a missing tool and a failed run are
/// told apart.
fn run_encoder(
    syntax: OutputSyntax,
    tool: &'static str,
    mut command: Command,
    input_bytes: &[u8],
    input: &Path,
    output: &Path,
) -> Result<Vec<u8>, WriteError> {
    let io = |path: &Path, source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(input, input_bytes).map_err(|e| io(input, e))?;
    let out = command.output().map_err(|e| WriteError::ToolMissing {
        syntax: syntax.name(),
        tool,
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(WriteError::ToolFailed {
            syntax: syntax.name(),
            tool,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    std::fs::read(output).map_err(|e| io(output, e))
}
