//! nvImageCodec's two kinds of result code, kept as numbers and named only
//! when rendered.

use std::fmt;

/// An `nvimgcodecStatus_t` returned by a library call (0 is success).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub i32);

impl Status {
    /// The header's name for this code (`NVIMGCODEC_STATUS_…`), or `None`
    /// for a code the 0.9.0 header does not define.
    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "NVIMGCODEC_STATUS_SUCCESS",
            1 => "NVIMGCODEC_STATUS_NOT_INITIALIZED",
            2 => "NVIMGCODEC_STATUS_INVALID_PARAMETER",
            3 => "NVIMGCODEC_STATUS_BAD_CODESTREAM",
            4 => "NVIMGCODEC_STATUS_CODESTREAM_UNSUPPORTED",
            5 => "NVIMGCODEC_STATUS_ALLOCATOR_FAILURE",
            6 => "NVIMGCODEC_STATUS_EXECUTION_FAILED",
            7 => "NVIMGCODEC_STATUS_ARCH_MISMATCH",
            8 => "NVIMGCODEC_STATUS_INTERNAL_ERROR",
            9 => "NVIMGCODEC_STATUS_IMPLEMENTATION_UNSUPPORTED",
            10 => "NVIMGCODEC_STATUS_MISSED_DEPENDENCIES",
            11 => "NVIMGCODEC_STATUS_EXTENSION_NOT_INITIALIZED",
            12 => "NVIMGCODEC_STATUS_EXTENSION_INVALID_PARAMETER",
            13 => "NVIMGCODEC_STATUS_EXTENSION_BAD_CODE_STREAM",
            14 => "NVIMGCODEC_STATUS_EXTENSION_CODESTREAM_UNSUPPORTED",
            15 => "NVIMGCODEC_STATUS_EXTENSION_ALLOCATOR_FAILURE",
            16 => "NVIMGCODEC_STATUS_EXTENSION_ARCH_MISMATCH",
            17 => "NVIMGCODEC_STATUS_EXTENSION_INTERNAL_ERROR",
            18 => "NVIMGCODEC_STATUS_EXTENSION_IMPLEMENTATION_NOT_SUPPORTED",
            19 => "NVIMGCODEC_STATUS_EXTENSION_INCOMPLETE_BITSTREAM",
            20 => "NVIMGCODEC_STATUS_EXTENSION_EXECUTION_FAILED",
            21 => "NVIMGCODEC_STATUS_EXTENSION_CUDA_CALL_ERROR",
            _ => return None,
        })
    }

    /// Whether this is `NVIMGCODEC_STATUS_SUCCESS`.
    pub fn is_success(self) -> bool {
        self.0 == crate::ffi::STATUS_SUCCESS
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "unknown nvimgcodecStatus_t {}", self.0),
        }
    }
}

/// The per-image outcome of a decode (`nvimgcodecProcessingStatus_t`, a
/// bitmask: 0x1 alone is success, every failure has bit 0 set too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessingStatus(pub u32);

/// The header's named values, composite failures first so an exact match
/// wins over the flags it is made of.
const PROCESSING_NAMES: &[(u32, &str)] = &[
    (0x0, "UNKNOWN"),
    (0x1, "SUCCESS"),
    (0x2, "SATURATED"),
    (0x3, "FAIL"),
    (0x7, "IMAGE_CORRUPTED"),
    (0xb, "CODEC_UNSUPPORTED"),
    (0x13, "BACKEND_UNSUPPORTED"),
    (0x23, "ENCODING_UNSUPPORTED"),
    (0x43, "RESOLUTION_UNSUPPORTED"),
    (0x83, "CODESTREAM_UNSUPPORTED"),
    (0x5, "COLOR_SPEC_UNSUPPORTED"),
    (0x9, "ORIENTATION_UNSUPPORTED"),
    (0x11, "ROI_UNSUPPORTED"),
    (0x21, "SAMPLING_UNSUPPORTED"),
    (0x41, "SAMPLE_TYPE_UNSUPPORTED"),
    (0x81, "SAMPLE_FORMAT_UNSUPPORTED"),
    (0x101, "NUM_IMAGES_UNSUPPORTED"),
    (0x201, "NUM_PLANES_UNSUPPORTED"),
    (0x401, "NUM_CHANNELS_UNSUPPORTED"),
    (0x801, "QUALITY_TYPE_UNSUPPORTED"),
    (0x1001, "QUALITY_VALUE_UNSUPPORTED"),
    (0x2001, "TILING_UNSUPPORTED"),
];

impl ProcessingStatus {
    /// Whether the image decoded (`NVIMGCODEC_PROCESSING_STATUS_SUCCESS`).
    pub fn is_success(self) -> bool {
        self.0 == crate::ffi::PROCESSING_STATUS_SUCCESS
    }

    /// The header's names for this status, without the
    /// `NVIMGCODEC_PROCESSING_STATUS_` prefix: the exact name when there is
    /// one, otherwise every "…_UNSUPPORTED" flag (bits 2..) that is set,
    /// joined with `|` (the library ORs them when several things are wrong).
    pub fn names(self) -> String {
        if let Some((_, name)) = PROCESSING_NAMES.iter().find(|(v, _)| *v == self.0) {
            return (*name).to_owned();
        }
        let flags: Vec<&str> = PROCESSING_NAMES
            .iter()
            .filter(|(v, _)| {
                // single-flag failures: bit 0 plus exactly one higher bit
                let high = v & !1;
                v & 1 == 1 && high.count_ones() == 1 && self.0 & high == high
            })
            .map(|(_, n)| *n)
            .collect();
        if flags.is_empty() {
            "UNKNOWN".to_owned()
        } else {
            flags.join("|")
        }
    }
}

impl fmt::Display for ProcessingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:x})", self.names(), self.0)
    }
}

/// Every status name with its value, as `layout/check_layout.c` prints
/// them (for the layout test).
#[cfg(test)]
pub(crate) fn header_lines() -> Vec<String> {
    let statuses = (0..=21).map(|code| {
        let name = Status(code).name().unwrap_or("?");
        format!("{name} {code}")
    });
    let processing = PROCESSING_NAMES
        .iter()
        .map(|(value, name)| format!("NVIMGCODEC_PROCESSING_STATUS_{name} {value}"));
    statuses.chain(processing).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_render_with_their_header_names() {
        assert_eq!(
            Status(3).to_string(),
            "NVIMGCODEC_STATUS_BAD_CODESTREAM (3)"
        );
        assert_eq!(Status(99).to_string(), "unknown nvimgcodecStatus_t 99");
        assert!(Status(0).is_success());
    }

    #[test]
    fn processing_status_names_exact_values_then_flags() {
        assert_eq!(ProcessingStatus(0x1).names(), "SUCCESS");
        assert_eq!(ProcessingStatus(0xb).names(), "CODEC_UNSUPPORTED");
        assert_eq!(ProcessingStatus(0x7).names(), "IMAGE_CORRUPTED");
        // two flags ORed by a decoder's canDecode
        assert_eq!(
            ProcessingStatus(0x41 | 0x81).names(),
            "SAMPLE_TYPE_UNSUPPORTED|SAMPLE_FORMAT_UNSUPPORTED"
        );
        assert!(!ProcessingStatus(0x3).is_success());
        assert_eq!(ProcessingStatus(0x3).to_string(), "FAIL (0x3)");
    }
}
