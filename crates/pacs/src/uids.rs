//! The SOP classes and transfer syntaxes this node accepts and sends, and
//! the UIDs it makes.

use sha2::{Digest, Sha256};

/// Verification SOP Class (C-ECHO).
pub const VERIFICATION: &str = "1.2.840.10008.1.1";
/// Secondary Capture Image Storage.
pub const SECONDARY_CAPTURE: &str = "1.2.840.10008.5.1.4.1.1.7";
/// Comprehensive 3D SR Storage.
pub const COMPREHENSIVE_3D_SR: &str = "1.2.840.10008.5.1.4.1.1.88.34";
/// Implicit VR Little Endian.
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
/// Explicit VR Little Endian.
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";

/// Storage SOP classes accepted as SCP: CR and every Digital X-Ray class
/// (DX, mammography, intra-oral; for presentation and for processing).
/// Chest films arrive as CR or DX; the others are accepted so that a
/// misrouted image is filed for a human (NOT_ANALYZED) instead of failing
/// the sender's queue.
pub const STORAGE_SOP_CLASSES: [(&str, &str); 7] = [
    (
        "1.2.840.10008.5.1.4.1.1.1",
        "Computed Radiography Image Storage",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.1.1",
        "Digital X-Ray Image Storage - For Presentation",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.1.1.1",
        "Digital X-Ray Image Storage - For Processing",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.1.2",
        "Digital Mammography X-Ray Image Storage - For Presentation",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.1.2.1",
        "Digital Mammography X-Ray Image Storage - For Processing",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.1.3",
        "Digital Intra-Oral X-Ray Image Storage - For Presentation",
    ),
    (
        "1.2.840.10008.5.1.4.1.1.1.3.1",
        "Digital Intra-Oral X-Ray Image Storage - For Processing",
    ),
];

/// Transfer syntaxes accepted as SCP: every one ingest decodes. When a
/// presentation context proposes several, the first one proposed that is
/// in this list is accepted (the sender's preference).
pub const ACCEPTED_TRANSFER_SYNTAXES: [(&str, &str); 16] = [
    (IMPLICIT_VR_LE, "Implicit VR Little Endian"),
    (EXPLICIT_VR_LE, "Explicit VR Little Endian"),
    (
        "1.2.840.10008.1.2.1.99",
        "Deflated Explicit VR Little Endian",
    ),
    ("1.2.840.10008.1.2.2", "Explicit VR Big Endian (retired)"),
    ("1.2.840.10008.1.2.5", "RLE Lossless"),
    ("1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1)"),
    ("1.2.840.10008.1.2.4.51", "JPEG Extended (Process 2 & 4)"),
    (
        "1.2.840.10008.1.2.4.57",
        "JPEG Lossless, Non-Hierarchical (Process 14)",
    ),
    (
        "1.2.840.10008.1.2.4.70",
        "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 SV1)",
    ),
    ("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless"),
    ("1.2.840.10008.1.2.4.81", "JPEG-LS Lossy (Near-Lossless)"),
    ("1.2.840.10008.1.2.4.90", "JPEG 2000 (Lossless Only)"),
    ("1.2.840.10008.1.2.4.91", "JPEG 2000"),
    (
        "1.2.840.10008.1.2.4.201",
        "High-Throughput JPEG 2000 (Lossless Only)",
    ),
    (
        "1.2.840.10008.1.2.4.202",
        "High-Throughput JPEG 2000 with RPCL Options (Lossless Only)",
    ),
    ("1.2.840.10008.1.2.4.203", "High-Throughput JPEG 2000"),
];

/// Whether `uid` is a storage SOP class accepted as SCP.
pub fn is_accepted_storage(uid: &str) -> bool {
    STORAGE_SOP_CLASSES.iter().any(|(u, _)| *u == uid)
}

/// Implementation Class UID of this node (own 2.25 root, PS3.5 B.2).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.95812441675063226011294932830186212137";
/// Implementation Version Name of this node.
pub const IMPLEMENTATION_VERSION_NAME: &str = concat!("CXR_TRIAGE_", env!("CARGO_PKG_VERSION"));

/// A UID under 2.25 (PS3.5 B.2) derived from `parts`: the same parts always
/// give the same UID, so a result made twice from the same image by the
/// same model is the same DICOM instance, never a duplicate in PACS.
pub fn derived_uid(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(b"cxr-triage/uid/1");
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    let mut n = u128::from_be_bytes(digest[..16].try_into().expect("16 bytes"));
    // Leading zeros are not allowed in a UID component; the top bit is
    // cleared as in a UUID-derived UID and the value is never 0.
    n &= u128::MAX >> 1;
    format!("2.25.{}", n.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_uids_are_valid_stable_and_distinct() {
        let a = derived_uid(&["sr", "1.2.3"]);
        assert_eq!(a, derived_uid(&["sr", "1.2.3"]));
        assert_ne!(a, derived_uid(&["sc", "1.2.3"]));
        // Part boundaries matter.
        assert_ne!(derived_uid(&["ab", "c"]), derived_uid(&["a", "bc"]));
        assert!(a.len() <= 64);
        assert!(a.starts_with("2.25.") && !a[5..].starts_with('0'));
        assert!(a[5..].bytes().all(|b| b.is_ascii_digit()));
    }

    #[test]
    fn accepted_lists_are_consistent() {
        assert!(is_accepted_storage("1.2.840.10008.5.1.4.1.1.1"));
        assert!(!is_accepted_storage("1.2.840.10008.5.1.4.1.1.4"));
        assert!(IMPLEMENTATION_VERSION_NAME.len() <= 16);
    }
}
