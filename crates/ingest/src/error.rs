//! Why a DICOM object could not be read.
//!
//! Every failure of ingest is an [`IngestError`]: a variant per kind of bad
//! input, each carrying the context a person needs to act on it (which
//! attribute, which transfer syntax, how many bytes were expected). Callers
//! that need to branch or count use [`IngestError::kind`].
//!
//! An image that decodes but is not an analyzable frontal chest radiograph is
//! *not* an error: see [`super::Assessment`].

use serde::Serialize;

/// A failure to read, validate or decode a DICOM object.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file could not be read from disk.
    #[error("cannot read file: {0}")]
    Io(#[from] std::io::Error),
    /// The input is bigger than the configured maximum; nothing was parsed.
    #[error("input is {size} bytes, over the limit of {max} bytes")]
    InputTooLarge {
        /// Size of the input in bytes.
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// The bytes are not a DICOM Part 10 object (no `DICM` magic at 0 or 128).
    #[error("not a DICOM file: {detail}")]
    NotDicom {
        /// What was found instead.
        detail: String,
    },
    /// The input ends before the data set it announces.
    #[error("truncated DICOM file: {detail}")]
    Truncated {
        /// Where the input ended.
        detail: String,
    },
    /// The data set is structurally broken (bad element header, bad length, bad meta group).
    #[error("malformed DICOM data set: {detail}")]
    Malformed {
        /// What is wrong.
        detail: String,
    },
    /// The object has no Pixel Data (7FE0,0010).
    #[error("no Pixel Data (7FE0,0010): the object carries no image")]
    MissingPixelData,
    /// An attribute needed to interpret the pixels is absent.
    #[error("missing required attribute {name} {tag}")]
    MissingAttribute {
        /// Keyword of the attribute.
        name: &'static str,
        /// Tag as `(gggg,eeee)`.
        tag: &'static str,
    },
    /// An attribute has a value that cannot be right.
    #[error("invalid {name}: {value:?} ({why})")]
    InvalidAttribute {
        /// Keyword of the attribute.
        name: &'static str,
        /// The value as found.
        value: String,
        /// Why it is rejected.
        why: &'static str,
    },
    /// Native pixel data whose length disagrees with Rows × Columns × Bits Allocated.
    #[error(
        "pixel data is {actual} bytes but Rows {rows} x Columns {columns} x {bits_allocated} bits x {frames} frame(s) needs {expected}"
    )]
    PixelDataLength {
        /// Bytes required by the image attributes.
        expected: u64,
        /// Bytes present.
        actual: u64,
        /// Rows.
        rows: u32,
        /// Columns.
        columns: u32,
        /// Bits Allocated.
        bits_allocated: u16,
        /// Number of Frames.
        frames: u32,
    },
    /// Rows × Columns beyond the configured limit; rejected before any pixel buffer was allocated.
    #[error("image of {rows} x {columns} pixels is over the limit of {max_side} per side / {max_pixels} pixels")]
    ImageTooLarge {
        /// Rows.
        rows: u32,
        /// Columns.
        columns: u32,
        /// Largest accepted side.
        max_side: u32,
        /// Largest accepted pixel count.
        max_pixels: u64,
    },
    /// A photometric interpretation or sample layout that is not a greyscale radiograph.
    #[error("unsupported photometric interpretation {photometric} with {samples_per_pixel} sample(s) per pixel: {hint}")]
    UnsupportedPhotometric {
        /// Photometric Interpretation as found.
        photometric: String,
        /// Samples per Pixel as found.
        samples_per_pixel: u16,
        /// What this probably is.
        hint: &'static str,
    },
    /// A transfer syntax this build cannot decode.
    #[error("unsupported transfer syntax {uid} ({name})")]
    UnsupportedTransferSyntax {
        /// Transfer Syntax UID.
        uid: String,
        /// Its name, when known.
        name: String,
    },
    /// The compressed pixel stream is broken.
    #[error("corrupt compressed pixel data ({transfer_syntax}): {detail}")]
    CorruptPixelData {
        /// Transfer Syntax UID.
        transfer_syntax: String,
        /// What the decoder said.
        detail: String,
    },
}

/// The kind of an [`IngestError`], for matching, counting and reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestErrorKind {
    /// See [`IngestError::Io`].
    Io,
    /// See [`IngestError::InputTooLarge`].
    InputTooLarge,
    /// See [`IngestError::NotDicom`].
    NotDicom,
    /// See [`IngestError::Truncated`].
    Truncated,
    /// See [`IngestError::Malformed`].
    Malformed,
    /// See [`IngestError::MissingPixelData`].
    MissingPixelData,
    /// See [`IngestError::MissingAttribute`].
    MissingAttribute,
    /// See [`IngestError::InvalidAttribute`].
    InvalidAttribute,
    /// See [`IngestError::PixelDataLength`].
    PixelDataLength,
    /// See [`IngestError::ImageTooLarge`].
    ImageTooLarge,
    /// See [`IngestError::UnsupportedPhotometric`].
    UnsupportedPhotometric,
    /// See [`IngestError::UnsupportedTransferSyntax`].
    UnsupportedTransferSyntax,
    /// See [`IngestError::CorruptPixelData`].
    CorruptPixelData,
}

impl IngestError {
    /// The kind of this error.
    pub fn kind(&self) -> IngestErrorKind {
        use IngestErrorKind as K;
        match self {
            Self::Io(_) => K::Io,
            Self::InputTooLarge { .. } => K::InputTooLarge,
            Self::NotDicom { .. } => K::NotDicom,
            Self::Truncated { .. } => K::Truncated,
            Self::Malformed { .. } => K::Malformed,
            Self::MissingPixelData => K::MissingPixelData,
            Self::MissingAttribute { .. } => K::MissingAttribute,
            Self::InvalidAttribute { .. } => K::InvalidAttribute,
            Self::PixelDataLength { .. } => K::PixelDataLength,
            Self::ImageTooLarge { .. } => K::ImageTooLarge,
            Self::UnsupportedPhotometric { .. } => K::UnsupportedPhotometric,
            Self::UnsupportedTransferSyntax { .. } => K::UnsupportedTransferSyntax,
            Self::CorruptPixelData { .. } => K::CorruptPixelData,
        }
    }
}
