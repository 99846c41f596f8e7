//! DIMSE command sets (PS3.7 §9, §E): the C-ECHO and C-STORE requests and
//! responses, read and written in Implicit VR Little Endian as every
//! command set is. A command set is flat (group 0000, no sequences), so it
//! is parsed here directly, with every length checked against the buffer.

use std::collections::BTreeMap;

/// Command Field (0000,0100) values this node speaks.
pub mod command_field {
    /// C-STORE-RQ.
    pub const C_STORE_RQ: u16 = 0x0001;
    /// C-STORE-RSP.
    pub const C_STORE_RSP: u16 = 0x8001;
    /// C-ECHO-RQ.
    pub const C_ECHO_RQ: u16 = 0x0030;
    /// C-ECHO-RSP.
    pub const C_ECHO_RSP: u16 = 0x8030;
}

/// Status (0000,0900) values used here (PS3.4 Annex B, PS3.7 Annex C).
pub mod status {
    /// Success.
    pub const SUCCESS: u16 = 0x0000;
    /// Refused: SOP Class not supported.
    pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
    /// Refused: out of resources.
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Error: data set does not match SOP Class.
    pub const DATA_SET_MISMATCH: u16 = 0xA900;
    /// Error: cannot understand.
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;

    /// Whether a C-STORE status means the object was stored (success or a
    /// warning: coercion, elements discarded, data set mismatch accepted).
    pub fn is_stored(status: u16) -> bool {
        status == SUCCESS || (0xB000..=0xBFFF).contains(&status)
    }
}

/// Command Data Set Type (0000,0800) meaning "no data set".
pub const NO_DATA_SET: u16 = 0x0101;

/// Element numbers of group 0000.
mod tag {
    pub const GROUP_LENGTH: u16 = 0x0000;
    pub const AFFECTED_SOP_CLASS_UID: u16 = 0x0002;
    pub const COMMAND_FIELD: u16 = 0x0100;
    pub const MESSAGE_ID: u16 = 0x0110;
    pub const MESSAGE_ID_BEING_RESPONDED_TO: u16 = 0x0120;
    pub const PRIORITY: u16 = 0x0700;
    pub const COMMAND_DATA_SET_TYPE: u16 = 0x0800;
    pub const STATUS: u16 = 0x0900;
    pub const ERROR_COMMENT: u16 = 0x0902;
    pub const AFFECTED_SOP_INSTANCE_UID: u16 = 0x1000;
}

/// Why bytes are not a usable command set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// An element runs past the end of the buffer.
    #[error("command set truncated at byte {offset}")]
    Truncated {
        /// Where the element starts.
        offset: usize,
    },
    /// An element outside group 0000.
    #[error("command set holds element ({group:04X},{element:04X}) outside group 0000")]
    WrongGroup {
        /// Its group.
        group: u16,
        /// Its element.
        element: u16,
    },
    /// A required element is missing or has the wrong size.
    #[error("command set lacks a valid (0000,{0:04X})")]
    Missing(u16),
}

/// A parsed command set: element number → raw value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Command {
    elements: BTreeMap<u16, Vec<u8>>,
}

impl Command {
    /// Parses an Implicit VR Little Endian command set.
    pub fn parse(bytes: &[u8]) -> Result<Command, CommandError> {
        let mut elements = BTreeMap::new();
        let mut at = 0usize;
        while at < bytes.len() {
            let header = bytes
                .get(at..at + 8)
                .ok_or(CommandError::Truncated { offset: at })?;
            let group = u16::from_le_bytes([header[0], header[1]]);
            let element = u16::from_le_bytes([header[2], header[3]]);
            let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
            if group != 0 {
                return Err(CommandError::WrongGroup { group, element });
            }
            let value = at
                .checked_add(8)
                .and_then(|s| Some(s..s.checked_add(len)?))
                .and_then(|r| bytes.get(r))
                .ok_or(CommandError::Truncated { offset: at })?;
            elements.insert(element, value.to_vec());
            at += 8 + len;
        }
        Ok(Command { elements })
    }

    fn u16_of(&self, element: u16) -> Option<u16> {
        match self.elements.get(&element)?.as_slice() {
            [a, b] => Some(u16::from_le_bytes([*a, *b])),
            _ => None,
        }
    }

    fn text_of(&self, element: u16) -> Option<String> {
        let raw = self.elements.get(&element)?;
        let s = String::from_utf8_lossy(raw);
        Some(s.trim_end_matches(['\0', ' ']).to_string())
    }

    /// Command Field.
    pub fn command_field(&self) -> Result<u16, CommandError> {
        self.u16_of(tag::COMMAND_FIELD)
            .ok_or(CommandError::Missing(tag::COMMAND_FIELD))
    }

    /// Message ID of a request.
    pub fn message_id(&self) -> Result<u16, CommandError> {
        self.u16_of(tag::MESSAGE_ID)
            .ok_or(CommandError::Missing(tag::MESSAGE_ID))
    }

    /// Message ID Being Responded To, of a response.
    pub fn responded_to(&self) -> Option<u16> {
        self.u16_of(tag::MESSAGE_ID_BEING_RESPONDED_TO)
    }

    /// Whether a data set follows.
    pub fn has_data_set(&self) -> bool {
        self.u16_of(tag::COMMAND_DATA_SET_TYPE)
            .is_some_and(|t| t != NO_DATA_SET)
    }

    /// Status of a response.
    pub fn status(&self) -> Option<u16> {
        self.u16_of(tag::STATUS)
    }

    /// Error Comment of a response.
    pub fn error_comment(&self) -> Option<String> {
        self.text_of(tag::ERROR_COMMENT)
    }

    /// Affected SOP Class UID.
    pub fn affected_sop_class(&self) -> Result<String, CommandError> {
        self.text_of(tag::AFFECTED_SOP_CLASS_UID)
            .filter(|s| !s.is_empty())
            .ok_or(CommandError::Missing(tag::AFFECTED_SOP_CLASS_UID))
    }

    /// Affected SOP Instance UID.
    pub fn affected_sop_instance(&self) -> Result<String, CommandError> {
        self.text_of(tag::AFFECTED_SOP_INSTANCE_UID)
            .filter(|s| !s.is_empty())
            .ok_or(CommandError::Missing(tag::AFFECTED_SOP_INSTANCE_UID))
    }
}

/// Writes a command set from `(element, value)` pairs, adding the group
/// length; UI values are padded with NUL and text with a space to even length.
struct CommandWriter {
    elements: Vec<(u16, Vec<u8>)>,
}

impl CommandWriter {
    fn new() -> Self {
        CommandWriter {
            elements: Vec::new(),
        }
    }

    fn u16(mut self, element: u16, v: u16) -> Self {
        self.elements.push((element, v.to_le_bytes().to_vec()));
        self
    }

    fn uid(mut self, element: u16, v: &str) -> Self {
        let mut b = v.as_bytes().to_vec();
        if b.len() % 2 == 1 {
            b.push(0);
        }
        self.elements.push((element, b));
        self
    }

    fn text(mut self, element: u16, v: &str) -> Self {
        let mut b: Vec<u8> = v
            .chars()
            .filter(|c| c.is_ascii() && !c.is_ascii_control() && *c != '\\')
            .take(64)
            .map(|c| c as u8)
            .collect();
        if b.len() % 2 == 1 {
            b.push(b' ');
        }
        self.elements.push((element, b));
        self
    }

    fn finish(mut self) -> Vec<u8> {
        self.elements.sort_by_key(|e| e.0);
        let body_len: usize = self.elements.iter().map(|(_, v)| 8 + v.len()).sum();
        let mut out = Vec::with_capacity(12 + body_len);
        let mut put = |element: u16, value: &[u8]| {
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(&element.to_le_bytes());
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        };
        put(tag::GROUP_LENGTH, &(body_len as u32).to_le_bytes());
        for (element, value) in &self.elements {
            put(*element, value);
        }
        out
    }
}

/// C-ECHO-RSP to `message_id`.
pub fn echo_response(message_id: u16, sop_class: &str) -> Vec<u8> {
    CommandWriter::new()
        .uid(tag::AFFECTED_SOP_CLASS_UID, sop_class)
        .u16(tag::COMMAND_FIELD, command_field::C_ECHO_RSP)
        .u16(tag::MESSAGE_ID_BEING_RESPONDED_TO, message_id)
        .u16(tag::COMMAND_DATA_SET_TYPE, NO_DATA_SET)
        .u16(tag::STATUS, status::SUCCESS)
        .finish()
}

/// C-ECHO-RQ.
pub fn echo_request(message_id: u16, sop_class: &str) -> Vec<u8> {
    CommandWriter::new()
        .uid(tag::AFFECTED_SOP_CLASS_UID, sop_class)
        .u16(tag::COMMAND_FIELD, command_field::C_ECHO_RQ)
        .u16(tag::MESSAGE_ID, message_id)
        .u16(tag::COMMAND_DATA_SET_TYPE, NO_DATA_SET)
        .finish()
}

/// C-STORE-RQ for one object (medium priority; a data set follows).
pub fn store_request(message_id: u16, sop_class: &str, sop_instance: &str) -> Vec<u8> {
    CommandWriter::new()
        .uid(tag::AFFECTED_SOP_CLASS_UID, sop_class)
        .u16(tag::COMMAND_FIELD, command_field::C_STORE_RQ)
        .u16(tag::MESSAGE_ID, message_id)
        .u16(tag::PRIORITY, 0)
        .u16(tag::COMMAND_DATA_SET_TYPE, 0x0000)
        .uid(tag::AFFECTED_SOP_INSTANCE_UID, sop_instance)
        .finish()
}

/// C-STORE-RSP with `status` (and an error comment when it is not success).
pub fn store_response(
    message_id: u16,
    sop_class: &str,
    sop_instance: &str,
    status: u16,
    comment: Option<&str>,
) -> Vec<u8> {
    let mut w = CommandWriter::new()
        .uid(tag::AFFECTED_SOP_CLASS_UID, sop_class)
        .u16(tag::COMMAND_FIELD, command_field::C_STORE_RSP)
        .u16(tag::MESSAGE_ID_BEING_RESPONDED_TO, message_id)
        .u16(tag::COMMAND_DATA_SET_TYPE, NO_DATA_SET)
        .u16(tag::STATUS, status)
        .uid(tag::AFFECTED_SOP_INSTANCE_UID, sop_instance);
    if let Some(c) = comment {
        w = w.text(tag::ERROR_COMMENT, c);
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_request_round_trips() {
        let bytes = store_request(7, "1.2.840.10008.5.1.4.1.1.1", "1.2.3");
        // Group length is the first element and counts the rest.
        let gl = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        assert_eq!(gl, bytes.len() - 12);
        let c = Command::parse(&bytes).unwrap();
        assert_eq!(c.command_field().unwrap(), command_field::C_STORE_RQ);
        assert_eq!(c.message_id().unwrap(), 7);
        assert!(c.has_data_set());
        assert_eq!(c.affected_sop_class().unwrap(), "1.2.840.10008.5.1.4.1.1.1");
        assert_eq!(c.affected_sop_instance().unwrap(), "1.2.3");
    }

    #[test]
    fn a_response_carries_status_and_comment() {
        let bytes = store_response(
            3,
            "1.2",
            "1.2.3",
            status::OUT_OF_RESOURCES,
            Some("disk full"),
        );
        let c = Command::parse(&bytes).unwrap();
        assert_eq!(c.command_field().unwrap(), command_field::C_STORE_RSP);
        assert_eq!(c.responded_to(), Some(3));
        assert_eq!(c.status(), Some(status::OUT_OF_RESOURCES));
        assert_eq!(c.error_comment().as_deref(), Some("disk full"));
        assert!(!c.has_data_set());
        assert!(!status::is_stored(status::OUT_OF_RESOURCES));
        assert!(status::is_stored(0xB007));
    }

    #[test]
    fn malformed_command_sets_are_typed_errors() {
        let good = echo_request(1, "1.2.840.10008.1.1");
        for cut in 1..good.len() {
            if let Ok(c) = Command::parse(&good[..cut]) {
                // A cut on an element boundary parses; the field may be gone.
                let _ = c.command_field();
            }
        }
        let mut huge = good.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Command::parse(&huge),
            Err(CommandError::Truncated { .. })
        ));
        let mut other = good;
        other[0] = 8;
        assert!(matches!(
            Command::parse(&other),
            Err(CommandError::WrongGroup { .. })
        ));
        assert_eq!(
            Command::parse(&[]).unwrap().command_field(),
            Err(CommandError::Missing(0x0100))
        );
    }
}
