//! `cxr-triage preprocess`: write the model-input tensors of DICOM files to a
//! NumPy `.npy` file, exactly as the engine would feed them to a model. Used
//! to train the reference models on what serving sees, and to debug a
//! manifest.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use rayon::prelude::*;
use serde_json::json;

use cxr_ingest::{self as dicom, IngestLimits};
use cxr_model::preprocess::{
    self as preprocess, InputSpec, Interpolation, Layout, Normalization, ResizeMode,
};

/// Resize mode on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ResizeArg {
    /// Fit inside, pad with black.
    Letterbox,
    /// Cover, cut the long side.
    CenterCrop,
    /// Scale each axis on its own.
    Stretch,
}

/// A manifest's interpolation name (`area`, `pil_nearest`, `opencv_linear`,
/// …; see `Interpolation`).
fn parse_interpolation(name: &str) -> Result<Interpolation, String> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|_| {
        format!(
            "unknown interpolation `{name}`; one of: {}",
            Interpolation::NAMES.join(", ")
        )
    })
}

/// Options of `cxr-triage preprocess`.
#[derive(Debug, Args)]
pub struct PreprocessArgs {
    /// DICOM files, in the order their tensors are written.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output prefix: writes PREFIX.npy (float32 [N, 1, H, W], grey in
    /// [0, 1], 0 = black) and PREFIX.jsonl (one line per input file: file,
    /// index into the array or null when unreadable, geometry or error).
    #[arg(long, short, env = "CXR_PREPROCESS_OUT")]
    pub out: PathBuf,
    /// Model input columns.
    #[arg(long, env = "CXR_PREPROCESS_WIDTH", default_value_t = 256)]
    pub width: u32,
    /// Model input rows.
    #[arg(long, env = "CXR_PREPROCESS_HEIGHT", default_value_t = 256)]
    pub height: u32,
    /// How the image is fitted to the input size.
    #[arg(
        long,
        value_enum,
        env = "CXR_PREPROCESS_RESIZE",
        default_value = "letterbox"
    )]
    pub resize: ResizeArg,
    /// Resampling filter: cxr-triage's `area`, `bilinear` or `nearest`, or
    /// a training framework's (`pil_nearest`, `pil_bilinear`,
    /// `opencv_area`, `torch_bilinear`, …), as in a model manifest.
    #[arg(
        long,
        env = "CXR_PREPROCESS_INTERPOLATION",
        default_value = "area",
        value_parser = parse_interpolation
    )]
    pub interpolation: Interpolation,
    /// JPEG 2000 at a reduced resolution level, as `serve` and `score` with
    /// `[decode] jpeg2000_reduce = "auto"` (so training tensors match what
    /// the service feeds the model): `auto` or `off`.
    #[arg(long, env = "CXR_PREPROCESS_JPEG2000_REDUCE", default_value = "off")]
    pub jpeg2000_reduce: cxr_pipeline::jpeg2000::Jpeg2000Reduce,
}

/// Files read per parallel chunk (bounds memory whatever the file count).
const CHUNK: usize = 256;

/// Writes the tensors; exits 1 when some file could not be read (the others
/// are still written).
pub fn run(args: &PreprocessArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        (1..=4096).contains(&args.width) && (1..=4096).contains(&args.height),
        "--width and --height must be 1–4096"
    );
    let spec = InputSpec {
        width: args.width,
        height: args.height,
        channels: 1,
        layout: Layout::Nchw,
        resize: match args.resize {
            ResizeArg::Letterbox => ResizeMode::Letterbox,
            ResizeArg::CenterCrop => ResizeMode::CenterCrop,
            ResizeArg::Stretch => ResizeMode::Stretch,
        },
        interpolation: args.interpolation,
        normalization: Normalization::ZeroOne,
    };
    let npy_path = with_suffix(&args.out, "npy");
    let jsonl_path = with_suffix(&args.out, "jsonl");
    let mut npy = NpyWriter::create(&npy_path, [args.height, args.width])?;
    let mut index_file = BufWriter::new(
        File::create(&jsonl_path).with_context(|| format!("creating {}", jsonl_path.display()))?,
    );
    let limits = IngestLimits {
        jpeg2000_reduce_to: args.jpeg2000_reduce.reduce_to(args.width.max(args.height)),
        ..IngestLimits::default()
    };
    let mut failed = 0usize;
    for chunk in args.files.chunks(CHUNK) {
        let tensors: Vec<_> = chunk
            .par_iter()
            .map(|path| {
                dicom::read_file(path, &limits).map(|r| {
                    let mut buf = vec![0.0f32; spec.image_len()];
                    let mut geometry = preprocess::write_input(&spec, &r.image, &mut buf);
                    if r.stored.reduction > 0 {
                        // In the film's own pixels, as the service gives it.
                        geometry = geometry.upscaled(
                            1 << r.stored.reduction,
                            r.pixel_module.columns,
                            r.pixel_module.rows,
                        );
                    }
                    (buf, geometry)
                })
            })
            .collect();
        for (path, result) in chunk.iter().zip(tensors) {
            let line = match result {
                Ok((buf, geometry)) => {
                    let index = npy.push(&buf)?;
                    json!({"file": path, "index": index, "geometry": geometry})
                }
                Err(error) => {
                    failed += 1;
                    json!({"file": path, "index": null, "error": error.to_string(), "kind": error.kind()})
                }
            };
            writeln!(index_file, "{line}")?;
        }
    }
    let rows = npy.finish()?;
    index_file.flush()?;
    eprintln!(
        "wrote {rows} tensors to {} ({failed} unreadable)",
        npy_path.display()
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn with_suffix(prefix: &Path, ext: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// A streaming `.npy` writer for float32 `[N, 1, H, W]`; N is patched into
/// the fixed-size header at the end.
struct NpyWriter {
    out: BufWriter<File>,
    plane: [u32; 2],
    rows: u64,
}

/// Header size (magic + length + dict, padded): room for any N.
const NPY_HEADER: usize = 128;

impl NpyWriter {
    fn create(path: &Path, plane: [u32; 2]) -> anyhow::Result<NpyWriter> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut writer = NpyWriter {
            out: BufWriter::new(file),
            plane,
            rows: 0,
        };
        writer.write_header()?;
        Ok(writer)
    }

    fn write_header(&mut self) -> anyhow::Result<()> {
        let dict = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, 1, {}, {}), }}",
            self.rows, self.plane[0], self.plane[1]
        );
        let mut header = Vec::with_capacity(NPY_HEADER);
        header.extend_from_slice(b"\x93NUMPY\x01\x00");
        header.extend_from_slice(&((NPY_HEADER - 10) as u16).to_le_bytes());
        header.extend_from_slice(dict.as_bytes());
        anyhow::ensure!(header.len() < NPY_HEADER, "npy header overflow");
        header.resize(NPY_HEADER - 1, b' ');
        header.push(b'\n');
        self.out.write_all(&header)?;
        Ok(())
    }

    fn push(&mut self, values: &[f32]) -> anyhow::Result<u64> {
        for v in values {
            self.out.write_all(&v.to_le_bytes())?;
        }
        self.rows += 1;
        Ok(self.rows - 1)
    }

    fn finish(mut self) -> anyhow::Result<u64> {
        self.out.seek(SeekFrom::Start(0))?;
        self.write_header()?;
        self.out.flush()?;
        Ok(self.rows)
    }
}
