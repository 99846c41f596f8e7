//! Why an image was not analysed: one typed reason from the gate, the
//! decoder or the models to the worklist, the SR and the CSV row, rendered
//! to text only at those edges.

use cxr_ingest::{IngestErrorKind, NotAnalyzable};

use crate::priority::Unread;

/// Why the AI did not read an image (the image is still filed, for a
/// human).
#[derive(Debug, Clone, PartialEq)]
pub enum NotAnalyzed {
    /// The gate set it aside or ruled it out (lateral, other view, not a
    /// chest, not a radiograph, implausible size).
    Gate(NotAnalyzable),
    /// Its pixels could not be decoded.
    Undecodable {
        /// What kind of failure.
        kind: IngestErrorKind,
        /// The decoder's message.
        message: String,
    },
    /// The models failed on it.
    InferenceFailed(String),
    /// cxr-triage itself failed on it (a defect: a panic while decoding or
    /// preparing it), so that it still reaches a human.
    Internal(String),
}

impl NotAnalyzed {
    /// The machine-readable code: the gate's codes (`lateral_view`, …),
    /// `decode_failed`, `inference_failed` or `internal_error`.
    pub fn code(&self) -> &'static str {
        match self {
            NotAnalyzed::Gate(reason) => reason.code(),
            NotAnalyzed::Undecodable { .. } => "decode_failed",
            NotAnalyzed::InferenceFailed(_) => "inference_failed",
            NotAnalyzed::Internal(_) => "internal_error",
        }
    }

    /// Whether it was set aside on purpose (its study's frontal film is
    /// what the models read) rather than failed.
    pub fn unread(&self) -> Unread {
        match self {
            NotAnalyzed::Gate(
                NotAnalyzable::LateralView { .. }
                | NotAnalyzable::OtherView { .. }
                | NotAnalyzable::NotChest { .. }
                | NotAnalyzable::NotRadiograph { .. },
            ) => Unread::SetAside,
            _ => Unread::Failed,
        }
    }
}

impl std::fmt::Display for NotAnalyzed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotAnalyzed::Gate(reason) => reason.fmt(f),
            NotAnalyzed::Undecodable { message, .. } => f.write_str(message),
            NotAnalyzed::InferenceFailed(message) => f.write_str(message),
            NotAnalyzed::Internal(message) => f.write_str(message),
        }
    }
}

impl From<NotAnalyzable> for NotAnalyzed {
    fn from(reason: NotAnalyzable) -> Self {
        NotAnalyzed::Gate(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_kinds() {
        let lateral = NotAnalyzed::Gate(NotAnalyzable::LateralView {
            view_position: "LL".into(),
        });
        assert_eq!(lateral.code(), "lateral_view");
        assert_eq!(lateral.unread(), Unread::SetAside);
        let small = NotAnalyzed::Gate(NotAnalyzable::ImplausibleSize {
            rows: 10,
            columns: 10,
        });
        assert_eq!(small.unread(), Unread::Failed);
        let failed = NotAnalyzed::InferenceFailed("boom".into());
        assert_eq!(
            (failed.code(), failed.to_string().as_str()),
            ("inference_failed", "boom")
        );
        assert_eq!(failed.unread(), Unread::Failed);
    }
}
