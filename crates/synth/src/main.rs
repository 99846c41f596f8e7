//! `cxr-synth`: synthetic chest radiographs (DICOM) with known findings,
//! for model training, tests and load tests. Not patient data, and not part
//! of the deployed `cxr-triage` service.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};

use clap::Parser;
use cxr_synth::{
    check_syntax_available, generate_batch, syntax_table, write_sidecars, CaseSpec, FindingSet,
    ModalityChoice, OutputSyntax, PhotometricChoice, ViewChoice,
};

/// A finding type on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FindingArg {
    /// Solitary pulmonary nodule (smooth or spiculated, 5–30 mm by default).
    Nodule,
    /// Tuberculosis-like upper-zone opacities, cavity, fibrosis.
    Tb,
}

/// Bits Stored on the command line: a number or "mixed".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitsArg(pub Option<u8>);

/// Image size on the command line: `WxH` or "mixed".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeArg(pub Option<(u32, u32)>);

/// Options of `cxr-triage synth`.
#[derive(Debug, Clone, Args)]
#[command(after_long_help = after_help())]
pub struct SynthArgs {
    /// Output directory for the DICOM files (NNNNNN.dcm) and the ground-truth
    /// sidecars (ground_truth.jsonl, labels.csv); created if missing.
    #[arg(long, short, env = "CXR_SYNTH_OUT", default_value = "synth-out")]
    pub out: PathBuf,

    /// Number of images to generate.
    #[arg(long, short = 'n', env = "CXR_SYNTH_COUNT", default_value_t = 100)]
    pub count: u64,

    /// Seed: same seed and options give byte-identical files, whatever the
    /// thread count.
    #[arg(long, env = "CXR_SYNTH_SEED", default_value_t = 1)]
    pub seed: u64,

    /// Index of the first image; the file name and the per-image random
    /// stream follow the index, so runs can be split or extended.
    #[arg(long, env = "CXR_SYNTH_FIRST_INDEX", default_value_t = 1)]
    pub first_index: u64,

    /// Fraction of frontal images that carry at least one finding (0–1).
    #[arg(long, env = "CXR_SYNTH_POSITIVE_RATE", default_value_t = 0.5)]
    pub positive_rate: f64,

    /// Finding types positive images may carry, comma-separated.
    #[arg(
        long,
        env = "CXR_SYNTH_FINDINGS",
        value_enum,
        value_delimiter = ',',
        default_value = "nodule,tb"
    )]
    pub findings: Vec<FindingArg>,

    /// Nodule diameter range in mm, MIN-MAX (3–40). Nodules that are
    /// spiculated or at least 10 mm are labelled malignant_nodule.
    #[arg(long, env = "CXR_SYNTH_NODULE_MM", default_value = "5-30", value_parser = parse_range)]
    pub nodule_mm: (f32, f32),

    /// Nodule contrast multiplier (0.25–5). 1 draws nodules as subtle as on
    /// real films; the reference model is trained and tested at 3.
    #[arg(long, env = "CXR_SYNTH_NODULE_CONTRAST", default_value_t = 1.0)]
    pub nodule_contrast: f32,

    /// Projection(s).
    #[arg(
        long,
        env = "CXR_SYNTH_VIEW",
        value_enum,
        ignore_case = true,
        default_value = "frontal"
    )]
    pub view: ViewChoice,

    /// Modality / IOD.
    #[arg(
        long,
        env = "CXR_SYNTH_MODALITY",
        value_enum,
        ignore_case = true,
        default_value = "mixed"
    )]
    pub modality: ModalityChoice,

    /// Photometric Interpretation.
    #[arg(
        long,
        env = "CXR_SYNTH_PHOTOMETRIC",
        value_enum,
        ignore_case = true,
        default_value = "auto"
    )]
    pub photometric: PhotometricChoice,

    /// Bits Stored, 10–16, or "mixed" (10–16 per image). Reduced to 12 for
    /// jpeg-extended and set to 8 (Bits Allocated 8) for jpeg-baseline.
    #[arg(long, env = "CXR_SYNTH_BITS", default_value = "mixed", value_parser = parse_bits)]
    pub bits: BitsArg,

    /// Columns x rows, e.g. 2048x2500, or "mixed": a 35–43 cm detector at
    /// 0.10–0.20 mm (at most 3000 px per side). The field of view stays
    /// 35–43 cm, so a fixed small size has a coarser pixel spacing.
    #[arg(long, env = "CXR_SYNTH_SIZE", default_value = "mixed", value_parser = parse_size)]
    pub size: SizeArg,

    /// Shorthand for --size 512x512 (fast, for training).
    #[arg(long, env = "CXR_SYNTH_SMALL", conflicts_with = "size")]
    pub small: bool,

    /// Write Pixel Representation 1 (signed) with Rescale Intercept 2^(bits−1);
    /// native syntaxes and rle only.
    #[arg(long, env = "CXR_SYNTH_SIGNED")]
    pub signed: bool,

    /// Transfer syntax of the written files (see the table below).
    #[arg(
        long,
        short = 't',
        env = "CXR_SYNTH_TRANSFER_SYNTAX",
        value_enum,
        default_value = "explicit-le"
    )]
    pub transfer_syntax: OutputSyntax,

    /// Worker threads; 0 uses one per core.
    #[arg(long, env = "CXR_SYNTH_THREADS", default_value_t = 0)]
    pub threads: usize,
}

fn after_help() -> String {
    format!(
        "Transfer syntaxes:\n{}\n\nJPEG 2000 output is encoded by OpenJPEG's opj_compress \
         (Debian package libopenjp2-tools) as a raw J2K codestream.\n\n\
         Outputs: DIR/NNNNNN.dcm; DIR/ground_truth.jsonl, one JSON object per image \
         (file, SOP Instance UID, view, modality, size, pixel spacing, findings with \
         type nodule|tb, bbox [x0,y0,x1,y1] half-open in stored-image pixels, nodule \
         diameter and margin, labels tuberculosis / malignant_nodule); \
         DIR/labels.csv (sop_instance_uid,file,tuberculosis,malignant_nodule as 0/1).\n\
         Images are synthetic and carry ImageComments \"SYNTHETIC - NOT A PATIENT\".",
        syntax_table()
    )
}

fn parse_bits(s: &str) -> Result<BitsArg, String> {
    if s.eq_ignore_ascii_case("mixed") {
        return Ok(BitsArg(None));
    }
    match s.parse::<u8>() {
        Ok(b) if (10..=16).contains(&b) => Ok(BitsArg(Some(b))),
        _ => Err(format!("expected 10–16 or \"mixed\", got {s:?}")),
    }
}

fn parse_size(s: &str) -> Result<SizeArg, String> {
    if s.eq_ignore_ascii_case("mixed") {
        return Ok(SizeArg(None));
    }
    let bad = || format!("expected WxH (e.g. 1024x1024) or \"mixed\", got {s:?}");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let w: u32 = w.trim().parse().map_err(|_| bad())?;
    let h: u32 = h.trim().parse().map_err(|_| bad())?;
    if !(64..=8192).contains(&w) || !(64..=8192).contains(&h) {
        return Err(format!("size must be 64–8192 px per side, got {w}x{h}"));
    }
    Ok(SizeArg(Some((w, h))))
}

fn parse_range(s: &str) -> Result<(f32, f32), String> {
    let bad = || format!("expected MIN-MAX in mm (e.g. 5-30), got {s:?}");
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let lo: f32 = lo.trim().parse().map_err(|_| bad())?;
    let hi: f32 = hi.trim().parse().map_err(|_| bad())?;
    Ok((lo, hi))
}

impl SynthArgs {
    /// The case spec these options describe, validated.
    pub fn spec(&self) -> anyhow::Result<CaseSpec> {
        let size = if self.small {
            Some((512, 512))
        } else {
            self.size.0
        };
        let spec = CaseSpec {
            view: self.view,
            modality: self.modality,
            photometric: self.photometric,
            bits: self.bits.0,
            size,
            positive_rate: self.positive_rate,
            findings: FindingSet {
                nodule: self.findings.contains(&FindingArg::Nodule),
                tb: self.findings.contains(&FindingArg::Tb),
            },
            nodule_mm: self.nodule_mm,
            nodule_contrast: self.nodule_contrast,
            signed: self.signed,
            syntax: self.transfer_syntax,
        };
        spec.validate()?;
        Ok(spec)
    }
}

/// The `cxr-synth` command line.
#[derive(Debug, Parser)]
#[command(name = "cxr-synth", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: SynthArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CXR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    match run(&cli.args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Runs `cxr-synth`: generates the images in parallel and writes them
/// with the ground-truth sidecars; prints a one-line summary.
pub fn run(args: &SynthArgs) -> anyhow::Result<()> {
    let spec = args.spec()?;
    if args.first_index.checked_add(args.count).is_none() {
        anyhow::bail!("--first-index + --count overflows");
    }
    check_syntax_available(spec.syntax)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating output directory {}", args.out.display()))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()
        .context("starting worker threads")?;
    let started = Instant::now();
    let records =
        pool.install(|| generate_batch(&spec, args.seed, args.first_index, args.count, &args.out))?;
    write_sidecars(&args.out, &records)
        .with_context(|| format!("writing ground truth to {}", args.out.display()))?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "synth: wrote {} images ({}) and ground_truth.jsonl, labels.csv to {} in {secs:.1} s ({:.1} images/s, {} threads)",
        records.len(),
        spec.syntax.name(),
        args.out.display(),
        records.len() as f64 / secs.max(1e-9),
        pool.current_num_threads()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: SynthArgs,
    }

    #[test]
    fn parses_and_validates() {
        let cli = Cli::try_parse_from([
            "synth",
            "--count",
            "3",
            "--size",
            "640x512",
            "--view",
            "pa",
            "--bits",
            "12",
            "--findings",
            "tb",
            "-t",
            "rle",
        ])
        .expect("valid options");
        let spec = cli.args.spec().expect("valid spec");
        assert_eq!(spec.size, Some((640, 512)));
        assert_eq!(spec.view, ViewChoice::Pa);
        assert!(spec.findings.tb && !spec.findings.nodule);
        assert!(Cli::try_parse_from(["synth", "--size", "12"]).is_err());
        assert!(Cli::try_parse_from(["synth", "--bits", "9"]).is_err());
        assert!(Cli::try_parse_from(["synth", "--small", "--size", "64x64"]).is_err());
    }

    #[test]
    fn help_lists_every_syntax() {
        let help = Cli::command().render_long_help().to_string();
        for s in OutputSyntax::ALL {
            assert!(help.contains(s.name()), "{} missing from help", s.name());
        }
        assert!(help.contains("opj_compress"));
    }
}
