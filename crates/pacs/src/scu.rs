//! C-STORE as SCU: sends outbox objects to the destination over one
//! association per batch, proposing each SOP class in Explicit and Implicit
//! VR Little Endian and writing each data set in the syntax accepted.

use std::time::Duration;

use dicom_encoding::TransferSyntaxIndex;
use dicom_object::OpenFileOptions;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::association::client::ClientAssociationOptions;
use dicom_ul::association::{Association, AsyncClientAssociation};
use dicom_ul::pdu::{PDataValue, PDataValueType, PresentationContextResultReason};
use dicom_ul::Pdu;
use tokio::net::TcpStream;

use super::config::Destination;
use super::dimse::{self, Command};
use super::scp::send_fragments;
use super::uids;

/// An object to send: an outbox file, or the bytes of a Part 10 file (from
/// the shared outbox).
#[derive(Debug, Clone, Copy)]
pub enum Object<'a> {
    /// A file on disk.
    File(&'a std::path::Path),
    /// The file's bytes.
    Bytes(&'a [u8]),
}

/// What happened to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The destination confirmed it (status success or warning).
    Stored {
        /// The status.
        status: u16,
    },
    /// The destination refused it, or it could not be prepared; the
    /// association can carry the next object.
    Failed(String),
    /// The association broke while sending it.
    Broken(String),
}

/// The calling side of an association.
pub struct StoreScu {
    /// Our AE title.
    pub calling_ae: String,
    /// Where to.
    pub destination: Destination,
    /// Our maximum PDU.
    pub max_pdu: u32,
    /// Per-operation timeout.
    pub timeout: Duration,
}

impl StoreScu {
    /// Opens an association proposing `sop_classes`.
    pub async fn connect(
        &self,
        sop_classes: &[String],
    ) -> Result<AsyncClientAssociation<TcpStream>, String> {
        let mut options = ClientAssociationOptions::new()
            .calling_ae_title(self.calling_ae.clone())
            .called_ae_title(self.destination.ae_title.clone())
            .max_pdu_length(self.max_pdu)
            .read_timeout(self.timeout)
            .write_timeout(self.timeout)
            .connection_timeout(self.timeout);
        for class in sop_classes {
            options = options.with_presentation_context(
                class.clone(),
                vec![
                    uids::EXPLICIT_VR_LE.to_string(),
                    uids::IMPLICIT_VR_LE.to_string(),
                ],
            );
        }
        options
            .establish_async((self.destination.host.as_str(), self.destination.port))
            .await
            .map_err(|e| format!("association with {}: {e}", self.destination))
    }

    /// Sends one Part 10 file on an open association.
    pub async fn store(
        association: &mut AsyncClientAssociation<TcpStream>,
        message_id: u16,
        object: Object<'_>,
    ) -> Delivery {
        let opened = match object {
            Object::File(path) => OpenFileOptions::new().open_file(path),
            Object::Bytes(bytes) => OpenFileOptions::new().from_reader(bytes),
        };
        let object = match opened {
            Ok(o) => o,
            Err(e) => return Delivery::Failed(format!("reading the outbox object: {e}")),
        };
        let class = object.meta().media_storage_sop_class_uid().to_string();
        let instance = object.meta().media_storage_sop_instance_uid().to_string();
        let Some(pc) = association
            .presentation_contexts()
            .iter()
            .find(|pc| {
                pc.reason == PresentationContextResultReason::Acceptance
                    && pc.abstract_syntax.trim_end_matches('\0') == class
            })
            .cloned()
        else {
            return Delivery::Failed(format!(
                "the destination accepted no presentation context for SOP class {class}"
            ));
        };
        let Some(ts) = TransferSyntaxRegistry.get(pc.transfer_syntax.trim_end_matches('\0')) else {
            return Delivery::Failed(format!("unknown transfer syntax {}", pc.transfer_syntax));
        };
        let mut data = Vec::new();
        if let Err(e) = object.write_dataset_with_ts(&mut data, ts) {
            return Delivery::Failed(format!("encoding the data set: {e}"));
        }
        let peer_max = association.peer_max_pdu_length();
        let command = dimse::store_request(message_id, &class, &instance);
        if let Err(e) = send_fragments(
            association,
            pc.id,
            PDataValueType::Command,
            &command,
            peer_max,
        )
        .await
        {
            return Delivery::Broken(format!("sending the command: {e}"));
        }
        if let Err(e) =
            send_fragments(association, pc.id, PDataValueType::Data, &data, peer_max).await
        {
            return Delivery::Broken(format!("sending the data set: {e}"));
        }
        match receive_command(association).await {
            Ok(rsp) => match rsp.status() {
                Some(status) if dimse::status::is_stored(status) => Delivery::Stored { status },
                Some(status) => Delivery::Failed(format!(
                    "the destination answered status 0x{status:04X}{}",
                    rsp.error_comment()
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default()
                )),
                None => Delivery::Failed("response without a status".into()),
            },
            Err(e) => Delivery::Broken(e),
        }
    }

    /// Sends a C-ECHO on an open association (Verification must have been proposed).
    pub async fn echo(association: &mut AsyncClientAssociation<TcpStream>) -> Result<u16, String> {
        let pc = association
            .presentation_contexts()
            .iter()
            .find(|pc| {
                pc.reason == PresentationContextResultReason::Acceptance
                    && pc.abstract_syntax.trim_end_matches('\0') == uids::VERIFICATION
            })
            .cloned()
            .ok_or("Verification was not accepted")?;
        let peer_max = association.peer_max_pdu_length();
        send_fragments(
            association,
            pc.id,
            PDataValueType::Command,
            &dimse::echo_request(1, uids::VERIFICATION),
            peer_max,
        )
        .await?;
        let rsp = receive_command(association).await?;
        rsp.status().ok_or_else(|| "no status".to_string())
    }
}

/// Reads P-DATA until a complete command set has arrived.
async fn receive_command(
    association: &mut AsyncClientAssociation<TcpStream>,
) -> Result<Command, String> {
    let mut bytes = Vec::new();
    loop {
        match association.receive().await.map_err(|e| e.to_string())? {
            Pdu::PData { data } => {
                for PDataValue {
                    value_type,
                    is_last,
                    data,
                    ..
                } in data
                {
                    if value_type == PDataValueType::Command {
                        bytes.extend_from_slice(&data);
                        if bytes.len() > 1 << 16 {
                            return Err("response command larger than 64 KiB".into());
                        }
                        if is_last {
                            return Command::parse(&bytes).map_err(|e| e.to_string());
                        }
                    }
                }
            }
            Pdu::AbortRQ { .. } => return Err("the destination aborted the association".into()),
            other => return Err(format!("unexpected PDU from the destination: {other:?}")),
        }
    }
}
