//! The library's own log (its debug messenger), kept so that a failure can
//! say what nvImageCodec said about it: which extension did not load, why a
//! decoder refused an image.

use std::collections::VecDeque;
use std::ffi::{c_int, c_void, CStr};
use std::sync::Mutex;

use crate::ffi;

/// How many messages are kept; older ones are dropped first.
const CAPACITY: usize = 256;

/// Messages at INFO and above, most recent last. Boxed by the owner so its
/// address, handed to the library as `user_data`, never moves.
pub(crate) struct MessageLog {
    lines: Mutex<Lines>,
}

/// The kept lines, and how many were ever pushed (so a caller can ask for
/// what arrived after a point it marked).
struct Lines {
    kept: VecDeque<String>,
    pushed: u64,
}

impl MessageLog {
    pub(crate) fn new() -> MessageLog {
        MessageLog {
            lines: Mutex::new(Lines {
                kept: VecDeque::with_capacity(CAPACITY),
                pushed: 0,
            }),
        }
    }

    /// The severities asked for.
    pub(crate) const SEVERITIES: u32 = ffi::DEBUG_MESSAGE_SEVERITY_INFO
        | ffi::DEBUG_MESSAGE_SEVERITY_WARNING
        | ffi::DEBUG_MESSAGE_SEVERITY_ERROR
        | ffi::DEBUG_MESSAGE_SEVERITY_FATAL;

    /// A messenger description that feeds this log. `self` must outlive
    /// the instance it is given to.
    pub(crate) fn messenger_desc(&self) -> ffi::DebugMessengerDesc {
        ffi::DebugMessengerDesc {
            struct_type: ffi::STRUCTURE_TYPE_DEBUG_MESSENGER_DESC,
            struct_size: size_of::<ffi::DebugMessengerDesc>(),
            struct_next: std::ptr::null_mut(),
            message_severity: Self::SEVERITIES,
            message_category: ffi::DEBUG_MESSAGE_CATEGORY_ALL,
            user_callback: Some(on_message),
            user_data: self as *const MessageLog as *mut c_void,
        }
    }

    /// Adds a line of this crate's own (same format as the library's).
    pub(crate) fn push(&self, line: String) {
        // A poisoned lock only means another thread panicked mid-push; the
        // queue itself is still valid.
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.kept.len() == CAPACITY {
            lines.kept.pop_front();
        }
        lines.kept.push_back(line);
        lines.pushed += 1;
    }

    /// A copy of the messages kept so far.
    pub(crate) fn snapshot(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines.kept.iter().cloned().collect()
    }

    /// A point in the log, for [`problems_since`](Self::problems_since).
    pub(crate) fn mark(&self) -> u64 {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).pushed
    }

    /// Every WARNING-and-worse message kept, joined, for an error's detail.
    pub(crate) fn problems(&self) -> String {
        self.problems_since(0)
    }

    /// The WARNING-and-worse messages logged after `mark` (those still
    /// kept), joined.
    pub(crate) fn problems_since(&self, mark: u64) -> String {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let first_kept = lines.pushed - lines.kept.len() as u64;
        let skip = mark.saturating_sub(first_kept) as usize;
        lines
            .kept
            .iter()
            .skip(skip)
            .filter(|l| !l.starts_with("INFO"))
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn severity_name(severity: u32) -> &'static str {
    match severity {
        ffi::DEBUG_MESSAGE_SEVERITY_FATAL => "FATAL",
        ffi::DEBUG_MESSAGE_SEVERITY_ERROR => "ERROR",
        ffi::DEBUG_MESSAGE_SEVERITY_WARNING => "WARNING",
        ffi::DEBUG_MESSAGE_SEVERITY_INFO => "INFO",
        _ => "DEBUG",
    }
}

fn text(ptr: *const std::ffi::c_char) -> Option<String> {
    if ptr.is_null() {
        None
    } else {
        // SAFETY: the library passes NUL-terminated strings valid for the
        // duration of the callback.
        Some(
            unsafe { CStr::from_ptr(ptr) }
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// `nvimgcodecDebugCallback_t`. Called from any of the library's threads;
/// never unwinds into C.
unsafe extern "C" fn on_message(
    severity: u32,
    _category: u32,
    data: *const ffi::DebugMessageData,
    user_data: *mut c_void,
) -> c_int {
    let _ = std::panic::catch_unwind(|| {
        if data.is_null() || user_data.is_null() {
            return;
        }
        // SAFETY: `user_data` is the boxed MessageLog given in
        // `messenger_desc`, alive until after the instance is destroyed;
        // `data` is valid for this call.
        let (log, data) = unsafe { (&*(user_data as *const MessageLog), &*data) };
        let message = text(data.message).unwrap_or_default();
        let line = match text(data.codec_id) {
            Some(id) => format!("{} [{id}] {}", severity_name(severity), message.trim_end()),
            None => format!("{} {}", severity_name(severity), message.trim_end()),
        };
        log.push(line);
    });
    0 // let other messengers see it too
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_since_a_mark_skip_earlier_lines_and_info() {
        let log = MessageLog::new();
        log.push("ERROR old".into());
        let mark = log.mark();
        log.push("INFO chatter".into());
        log.push("WARNING [nvjpeg2k] new".into());
        assert_eq!(log.problems_since(mark), "WARNING [nvjpeg2k] new");
        assert_eq!(log.problems(), "ERROR old; WARNING [nvjpeg2k] new");
    }

    #[test]
    fn the_log_keeps_only_the_most_recent_lines() {
        let log = MessageLog::new();
        for i in 0..(CAPACITY + 10) {
            log.push(format!("ERROR {i}"));
        }
        let kept = log.snapshot();
        assert_eq!(kept.len(), CAPACITY);
        assert_eq!(kept[0], "ERROR 10");
        let mark = log.mark() - 1;
        assert_eq!(log.problems_since(mark), format!("ERROR {}", CAPACITY + 9));
    }
}
