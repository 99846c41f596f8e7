//! Output transfer syntaxes: short names, UIDs, limits, and who encodes
//! them — dicom-rs in-process, this crate's RLE encoder, dcmtk's command-line
//! tools, or OpenJPEG's `opj_compress` (JPEG 2000).

use clap::ValueEnum;
use serde::Serialize;

/// A transfer syntax `synth` can be asked to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum, Serialize)]
pub enum OutputSyntax {
    /// Implicit VR Little Endian, 1.2.840.10008.1.2 (in-process).
    #[value(name = "implicit-le")]
    ImplicitLe,
    /// Explicit VR Little Endian, 1.2.840.10008.1.2.1 (in-process).
    #[value(name = "explicit-le")]
    ExplicitLe,
    /// Explicit VR Big Endian (retired), 1.2.840.10008.1.2.2 (in-process).
    #[value(name = "explicit-be")]
    ExplicitBe,
    /// Deflated Explicit VR Little Endian, 1.2.840.10008.1.2.1.99 (in-process).
    #[value(name = "deflated")]
    Deflated,
    /// RLE Lossless, 1.2.840.10008.1.2.5 (in-process, this crate's encoder).
    #[value(name = "rle")]
    Rle,
    /// JPEG Baseline 8-bit, 1.2.840.10008.1.2.4.50 (in-process; Bits Stored 8).
    #[value(name = "jpeg-baseline")]
    JpegBaseline,
    /// JPEG Extended 12-bit, 1.2.840.10008.1.2.4.51 (dcmtk dcmcjpeg; Bits Stored ≤ 12).
    #[value(name = "jpeg-extended")]
    JpegExtended,
    /// JPEG Lossless process 14 SV1, 1.2.840.10008.1.2.4.70 (dcmtk dcmcjpeg).
    #[value(name = "jpeg-lossless")]
    JpegLossless,
    /// JPEG-LS Lossless, 1.2.840.10008.1.2.4.80 (in-process, CharLS).
    #[value(name = "jpeg-ls")]
    JpegLs,
    /// JPEG-LS near-lossless, 1.2.840.10008.1.2.4.81 (in-process, CharLS).
    #[value(name = "jpeg-ls-near")]
    JpegLsNear,
    /// JPEG 2000 lossless, 1.2.840.10008.1.2.4.90 (OpenJPEG opj_compress, reversible).
    #[value(name = "j2k-lossless")]
    J2kLossless,
    /// JPEG 2000 lossy, 1.2.840.10008.1.2.4.91 (OpenJPEG opj_compress, 9/7 at 10:1).
    #[value(name = "j2k")]
    J2k,
}

/// Who encodes a transfer syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoder {
    /// Native pixel data written by dicom-object.
    Native,
    /// Encapsulated pixel data encoded in this process.
    InProcess,
    /// Encoded from a PGM by OpenJPEG's `opj_compress` (Debian package
    /// libopenjp2-tools), as a raw J2K codestream, then encapsulated here.
    OpenJpeg {
        /// Options before `-i` / `-o`.
        args: &'static [&'static str],
    },
    /// Transcoded from Explicit VR Little Endian by a dcmtk tool.
    Dcmtk {
        /// Program name.
        tool: &'static str,
        /// Options before the input and output file names.
        args: &'static [&'static str],
    },
    /// No encoder: the reason, for the error message.
    Unavailable(&'static str),
}

impl OutputSyntax {
    /// Every syntax, in help order.
    pub const ALL: [OutputSyntax; 12] = [
        OutputSyntax::ImplicitLe,
        OutputSyntax::ExplicitLe,
        OutputSyntax::ExplicitBe,
        OutputSyntax::Deflated,
        OutputSyntax::Rle,
        OutputSyntax::JpegBaseline,
        OutputSyntax::JpegExtended,
        OutputSyntax::JpegLossless,
        OutputSyntax::JpegLs,
        OutputSyntax::JpegLsNear,
        OutputSyntax::J2kLossless,
        OutputSyntax::J2k,
    ];

    /// The short name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            OutputSyntax::ImplicitLe => "implicit-le",
            OutputSyntax::ExplicitLe => "explicit-le",
            OutputSyntax::ExplicitBe => "explicit-be",
            OutputSyntax::Deflated => "deflated",
            OutputSyntax::Rle => "rle",
            OutputSyntax::JpegBaseline => "jpeg-baseline",
            OutputSyntax::JpegExtended => "jpeg-extended",
            OutputSyntax::JpegLossless => "jpeg-lossless",
            OutputSyntax::JpegLs => "jpeg-ls",
            OutputSyntax::JpegLsNear => "jpeg-ls-near",
            OutputSyntax::J2kLossless => "j2k-lossless",
            OutputSyntax::J2k => "j2k",
        }
    }

    /// The Transfer Syntax UID.
    pub fn uid(self) -> &'static str {
        match self {
            OutputSyntax::ImplicitLe => "1.2.840.10008.1.2",
            OutputSyntax::ExplicitLe => "1.2.840.10008.1.2.1",
            OutputSyntax::ExplicitBe => "1.2.840.10008.1.2.2",
            OutputSyntax::Deflated => "1.2.840.10008.1.2.1.99",
            OutputSyntax::Rle => "1.2.840.10008.1.2.5",
            OutputSyntax::JpegBaseline => "1.2.840.10008.1.2.4.50",
            OutputSyntax::JpegExtended => "1.2.840.10008.1.2.4.51",
            OutputSyntax::JpegLossless => "1.2.840.10008.1.2.4.70",
            OutputSyntax::JpegLs => "1.2.840.10008.1.2.4.80",
            OutputSyntax::JpegLsNear => "1.2.840.10008.1.2.4.81",
            OutputSyntax::J2kLossless => "1.2.840.10008.1.2.4.90",
            OutputSyntax::J2k => "1.2.840.10008.1.2.4.91",
        }
    }

    /// Largest Bits Stored the syntax carries (8 means exactly 8).
    pub fn max_bits(self) -> u8 {
        match self {
            OutputSyntax::JpegBaseline => 8,
            OutputSyntax::JpegExtended => 12,
            _ => 16,
        }
    }

    /// Whether Pixel Representation 1 is written with this syntax.
    pub fn supports_signed(self) -> bool {
        matches!(self.encoder(), Encoder::Native) || self == OutputSyntax::Rle
    }

    /// Whether decoding gives back other values than were encoded.
    pub fn is_lossy(self) -> bool {
        matches!(
            self,
            OutputSyntax::JpegBaseline
                | OutputSyntax::JpegExtended
                | OutputSyntax::JpegLsNear
                | OutputSyntax::J2k
        )
    }

    /// Who encodes this syntax.
    pub fn encoder(self) -> Encoder {
        match self {
            OutputSyntax::ImplicitLe
            | OutputSyntax::ExplicitLe
            | OutputSyntax::ExplicitBe
            | OutputSyntax::Deflated => Encoder::Native,
            OutputSyntax::Rle
            | OutputSyntax::JpegBaseline
            | OutputSyntax::JpegLs
            | OutputSyntax::JpegLsNear => Encoder::InProcess,
            OutputSyntax::JpegExtended => Encoder::Dcmtk {
                tool: "dcmcjpeg",
                args: &["+ee", "+q", "90", "+un", "+sr"],
            },
            OutputSyntax::JpegLossless => Encoder::Dcmtk {
                tool: "dcmcjpeg",
                args: &["+e1", "+un"],
            },
            // Reversible 5/3 wavelet: exact.
            OutputSyntax::J2kLossless => Encoder::OpenJpeg { args: &[] },
            // Irreversible 9/7 wavelet at 10:1, like NEMA's RG1_J2KI.
            OutputSyntax::J2k => Encoder::OpenJpeg {
                args: &["-I", "-r", "10"],
            },
        }
    }

    /// JPEG-LS near-lossless: the CharLS quality used (the registry turns it
    /// into NEAR = ⌊2^(bits−4) · (100 − q) / 100⌋).
    pub(crate) const JPEG_LS_NEAR_QUALITY: u8 = 98;

    /// JPEG baseline quality.
    pub(crate) const JPEG_BASELINE_QUALITY: u8 = 90;

    /// For JPEG-LS near-lossless, the largest absolute error per pixel for
    /// `bits` stored (0 for lossless syntaxes; `None` for other lossy ones).
    pub fn max_error(self, bits: u8) -> Option<u32> {
        match self {
            OutputSyntax::JpegLsNear => {
                let q = u32::from(Self::JPEG_LS_NEAR_QUALITY);
                Some(((1u32 << bits.saturating_sub(4)) * (100 - q) / 100).min(4096))
            }
            s if !s.is_lossy() => Some(0),
            _ => None,
        }
    }
}

/// One line per syntax for `--help`: name, UID, encoder.
pub fn syntax_table() -> String {
    OutputSyntax::ALL
        .iter()
        .map(|s| {
            let how = match s.encoder() {
                Encoder::Native => "in-process".to_string(),
                Encoder::InProcess => "in-process".to_string(),
                Encoder::Dcmtk { tool, .. } => format!("needs dcmtk `{tool}` on PATH"),
                Encoder::OpenJpeg { .. } => "needs OpenJPEG `opj_compress` on PATH".to_string(),
                Encoder::Unavailable(_) => "not available (no encoder)".to_string(),
            };
            format!("  {:<14} {:<24} {}", s.name(), s.uid(), how)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_clap() {
        for s in OutputSyntax::ALL {
            let parsed = OutputSyntax::from_str(s.name(), true).expect("own name parses");
            assert_eq!(parsed, s);
        }
    }

    #[test]
    fn near_lossless_bound_grows_with_bits() {
        assert_eq!(OutputSyntax::JpegLsNear.max_error(12), Some(5));
        assert_eq!(OutputSyntax::JpegLs.max_error(16), Some(0));
        assert_eq!(OutputSyntax::JpegBaseline.max_error(8), None);
    }
}
