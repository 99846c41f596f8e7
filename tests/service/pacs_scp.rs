//! The DICOM listener against real peers: dcmtk's `echoscu` and `storescu`
//! in every transfer syntax ingest reads, then bad peers — an unknown
//! calling AE title, a wrong called AE title, an unsupported SOP class,
//! associations aborted or dropped mid-object, one association too many,
//! idle connections and one address holding its share of the slots —
//! each refused cleanly while the listener keeps serving.

use crate::pacs_support;

use std::time::Duration;

use cxr_ingest::{read_bytes, IngestLimits};
use cxr_pacs::{dimse, uids};
use cxr_synth::OutputSyntax;
use dicom_ul::association::client::ClientAssociationOptions;
use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::Pdu;
use pacs_support::*;

fn echo(port: u16, calling: &str, called: &str) -> std::process::Output {
    dcmtk(
        "echoscu",
        &[
            "-aet",
            calling,
            "-aec",
            called,
            "-to",
            "10",
            "127.0.0.1",
            &port.to_string(),
        ],
    )
}

fn store(port: u16, extra: &[&str], file: &std::path::Path) -> std::process::Output {
    let port = port.to_string();
    let mut args = vec!["-aet", "STORESCU", "-aec", "CXR_TRIAGE", "-to", "10"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["127.0.0.1", &port, file.to_str().unwrap()]);
    dcmtk("storescu", &args)
}

fn spooled(data: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(data.join("pacs/incoming"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_transfer_syntax_is_spooled_as_sent_then_reaches_the_worklist() {
    let data = tempfile::tempdir().unwrap();
    let films = tempfile::tempdir().unwrap();
    // No engine yet: what arrives waits in the spool, so it can be checked.
    let (pipeline, store_) = pipeline(data.path());
    let config = dicom_config();
    let port = config.listen.port();
    let pacs = start_pacs(&config, data.path(), &pipeline).await;

    let o = echo(port, "ECHOSCU", "CXR_TRIAGE");
    assert!(o.status.success(), "C-ECHO: {}", text(&o));

    let mut sent = Vec::new();
    for (i, syntax) in OutputSyntax::ALL.into_iter().enumerate() {
        let (path, sop, study) = film(films.path(), 61, i as u64, syntax, i % 2 == 0);
        // storescu proposes the syntax first (with uncompressed ones after
        // it); the listener takes the sender's first choice.
        let propose: &[&str] = match syntax {
            OutputSyntax::ImplicitLe => &["-xi"],
            OutputSyntax::ExplicitLe => &["-xe"],
            OutputSyntax::ExplicitBe => &["-xb"],
            OutputSyntax::Deflated => &["-xd"],
            OutputSyntax::Rle => &["-xr"],
            OutputSyntax::JpegBaseline => &["-xy"],
            OutputSyntax::JpegExtended => &["-xx"],
            OutputSyntax::JpegLossless => &["-xs"],
            OutputSyntax::JpegLs => &["-xt"],
            OutputSyntax::JpegLsNear => &["-xu"],
            OutputSyntax::J2kLossless => &["-xv"],
            OutputSyntax::J2k => &["-xw"],
        };
        let o = store(port, propose, &path);
        assert!(o.status.success(), "{syntax:?}: {}", text(&o));
        sent.push((syntax, path, sop, study));
    }

    // Each arrival is in the audit trail: the calling AE, from where, which
    // image.
    let audited = store_.audit_after(0, 1000).unwrap();
    for (_, _, sop, _) in &sent {
        assert!(
            audited.iter().any(|r| r.entry.action == "C-STORE"
                && r.entry.who == "STORESCU"
                && r.entry.outcome == "OK"
                && r.entry.address.starts_with("127.0.0.1:")
                && r.entry.object.ends_with(&format!("image:{sop}"))),
            "arrival of {sop} not audited"
        );
    }

    // Each object is in the spool in the syntax it was sent in, with the
    // same pixels.
    let files = spooled(data.path());
    assert_eq!(files.len(), sent.len(), "{files:?}");
    let limits = IngestLimits::default();
    for (file, (syntax, original, sop, _)) in files.iter().zip(&sent) {
        let got = read_bytes(&std::fs::read(file).unwrap(), &limits)
            .unwrap_or_else(|e| panic!("{syntax:?}: spooled file unreadable: {e}"));
        let want = read_bytes(&std::fs::read(original).unwrap(), &limits).unwrap();
        assert_eq!(got.transfer_syntax, syntax.uid(), "{syntax:?}");
        assert_eq!(&got.meta.sop_instance_uid, sop);
        assert!(
            got.stored == want.stored,
            "{syntax:?}: pixels changed on the way"
        );
    }

    // Warm: everything flows into the worklist, analysed, and the spool empties.
    warm(&pipeline).await;
    wait_for(
        Duration::from_secs(120),
        "every film on the worklist",
        || {
            sent.iter()
                .all(|(_, _, sop, study)| in_worklist(store_.as_ref(), study, sop).is_some())
        },
    )
    .await;
    for (syntax, _, sop, study) in &sent {
        assert_eq!(
            in_worklist(store_.as_ref(), study, sop),
            Some(true),
            "{syntax:?} not analysed"
        );
    }
    wait_for(Duration::from_secs(10), "an empty spool", || {
        spooled(data.path()).is_empty()
    })
    .await;

    // The same image again updates its result; it is not a second image.
    let (syntax, path, _, study) = &sent[1];
    assert!(store(port, &["-xe"], path).status.success(), "{syntax:?}");
    wait_for(Duration::from_secs(30), "the resend processed", || {
        spooled(data.path()).is_empty() && pacs.spool_depth() == 0
    })
    .await;
    let (summary, images) = store_.get_study(study).unwrap();
    assert_eq!((summary.image_count, images.len()), (1, 1));
    pacs.shutdown().await;
}

/// Opens an association as TESTSCU proposing CR storage.
async fn cr_association(
    port: u16,
) -> dicom_ul::association::AsyncClientAssociation<tokio::net::TcpStream> {
    try_cr_association(port).await.expect("association")
}

/// Like [`cr_association`], retrying for up to 5 s while the listener is
/// still closing earlier associations (their slots free when it has seen
/// them end).
async fn cr_association_when_free(
    port: u16,
) -> dicom_ul::association::AsyncClientAssociation<tokio::net::TcpStream> {
    let start = std::time::Instant::now();
    loop {
        match try_cr_association(port).await {
            Ok(a) => return a,
            Err(_) if start.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("association: {e}"),
        }
    }
}

async fn try_cr_association(
    port: u16,
) -> Result<
    dicom_ul::association::AsyncClientAssociation<tokio::net::TcpStream>,
    dicom_ul::association::Error,
> {
    ClientAssociationOptions::new()
        .calling_ae_title("TESTSCU")
        .called_ae_title("CXR_TRIAGE")
        .with_presentation_context(uids::STORAGE_SOP_CLASSES[0].0, vec![uids::EXPLICIT_VR_LE])
        .establish_async(("127.0.0.1", port))
        .await
}

/// Sends a C-STORE command and the first half of a data set, not the rest.
async fn half_a_store(
    association: &mut dicom_ul::association::AsyncClientAssociation<tokio::net::TcpStream>,
    dataset: &[u8],
    sop: &str,
) {
    let pc = association.presentation_contexts()[0].id;
    let command = dimse::store_request(1, uids::STORAGE_SOP_CLASSES[0].0, sop);
    association
        .send(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc,
                value_type: PDataValueType::Command,
                is_last: true,
                data: command,
            }],
        })
        .await
        .unwrap();
    for chunk in dataset[..dataset.len() / 2].chunks(16_000) {
        association
            .send(&Pdu::PData {
                data: vec![PDataValue {
                    presentation_context_id: pc,
                    value_type: PDataValueType::Data,
                    is_last: false,
                    data: chunk.to_vec(),
                }],
            })
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_peers_are_refused_and_the_listener_keeps_serving() {
    let data = tempfile::tempdir().unwrap();
    let films = tempfile::tempdir().unwrap();
    let (pipeline, store_) = pipeline(data.path());
    warm(&pipeline).await;
    let mut config = dicom_config();
    config.max_associations = 2;
    let port = config.listen.port();
    let pacs = start_pacs(&config, data.path(), &pipeline).await;

    // An unknown calling AE title, and a call to another AE title.
    let o = echo(port, "INTRUDER", "CXR_TRIAGE");
    assert!(!o.status.success());
    assert!(
        text(&o).contains("Calling AE Title Not Recognized"),
        "{}",
        text(&o)
    );
    let o = echo(port, "ECHOSCU", "SOMEONE_ELSE");
    assert!(!o.status.success());
    assert!(
        text(&o).contains("Called AE Title Not Recognized"),
        "{}",
        text(&o)
    );

    // An MR image: its presentation context is refused; nothing is kept.
    let (cr, cr_sop, cr_study) = film(films.path(), 62, 1, OutputSyntax::ExplicitLe, false);
    let mut mr = dicom_object::open_file(&cr).unwrap();
    let mr_class = "1.2.840.10008.5.1.4.1.1.4";
    mr.put(dicom_core::DataElement::new(
        dicom_dictionary_std::tags::SOP_CLASS_UID,
        dicom_core::VR::UI,
        dicom_core::PrimitiveValue::from(mr_class),
    ));
    mr.meta_mut().media_storage_sop_class_uid = mr_class.into();
    let mr_path = films.path().join("mr.dcm");
    mr.write_to_file(&mr_path).unwrap();
    let o = store(port, &["-xe"], &mr_path);
    assert!(!o.status.success(), "MR accepted: {}", text(&o));
    assert!(text(&o).contains("No presentation context"), "{}", text(&o));

    // Aborted mid-object (A-ABORT), and dropped mid-object (TCP closed).
    let (half, half_sop, half_study) = film(films.path(), 62, 2, OutputSyntax::ExplicitLe, true);
    let dataset = {
        let bytes = std::fs::read(&half).unwrap();
        let obj = dicom_object::from_reader(&bytes[128..]).unwrap();
        let mut ds = Vec::new();
        obj.write_dataset(&mut ds).unwrap();
        ds
    };
    let mut a = cr_association(port).await;
    half_a_store(&mut a, &dataset, &half_sop).await;
    a.abort().await.unwrap();
    let mut b = cr_association(port).await;
    half_a_store(&mut b, &dataset, &half_sop).await;
    drop(b);

    // One association too many (limit 2): transient rejection, local limit.
    let hold1 = cr_association_when_free(port).await;
    let hold2 = cr_association_when_free(port).await;
    let o = echo(port, "ECHOSCU", "CXR_TRIAGE");
    assert!(!o.status.success());
    assert!(text(&o).contains("Local Limit Exceeded"), "{}", text(&o));
    hold1.release().await.unwrap();
    hold2.release().await.unwrap();

    // Still serving: echo (once the held slots are free) and a complete
    // store both work.
    wait_for(Duration::from_secs(5), "C-ECHO after the release", || {
        echo(port, "ECHOSCU", "CXR_TRIAGE").status.success()
    })
    .await;
    let o = store(port, &["-xe"], &cr);
    assert!(o.status.success(), "{}", text(&o));
    wait_for(
        Duration::from_secs(60),
        "the good film on the worklist",
        || in_worklist(store_.as_ref(), &cr_study, &cr_sop).is_some(),
    )
    .await;
    // Nothing of the refused or broken objects was kept.
    assert!(in_worklist(store_.as_ref(), &half_study, &half_sop).is_none());
    assert!(
        spooled(data.path()).is_empty(),
        "{:?}",
        spooled(data.path())
    );
    let rejected = std::fs::read_dir(data.path().join("pacs/rejected"))
        .unwrap()
        .count();
    assert_eq!(rejected, 0);
    pacs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_connections_are_closed_and_one_address_cannot_take_every_slot() {
    let data = tempfile::tempdir().unwrap();
    let (pipeline, _store) = pipeline(data.path());
    let mut config = dicom_config();
    config.max_associations = 8;
    config.max_associations_per_peer = 2;
    config.setup_timeout_s = 1;
    let port = config.listen.port();
    let pacs = start_pacs(&config, data.path(), &pipeline).await;

    // Two connections that never send A-ASSOCIATE-RQ hold this address's
    // share: a third caller from it is refused though 6 slots are free.
    let mut idle1 = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut idle2 = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let o = echo(port, "ECHOSCU", "CXR_TRIAGE");
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("Local Limit Exceeded"), "{}", text(&o));

    // After the set-up deadline the idle connections are closed by the
    // listener (EOF), and the address may associate again.
    for idle in [&mut idle1, &mut idle2] {
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(idle, &mut buf),
        )
        .await
        .expect("the idle connection was not closed within 5 s");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    wait_for(Duration::from_secs(5), "C-ECHO after the deadline", || {
        echo(port, "ECHOSCU", "CXR_TRIAGE").status.success()
    })
    .await;
    pacs.shutdown().await;
}

/// `film` rewritten: its Pixel Data replaced by `pixels` (`None`: removed).
fn with_pixels(path: &std::path::Path, pixels: Option<Vec<u8>>, name: &str) -> std::path::PathBuf {
    let mut obj = dicom_object::open_file(path).unwrap();
    match pixels {
        Some(bytes) => {
            obj.put(dicom_core::DataElement::new(
                dicom_dictionary_std::tags::PIXEL_DATA,
                dicom_core::VR::OB,
                dicom_core::PrimitiveValue::from(bytes),
            ));
        }
        None => {
            obj.remove_element(dicom_dictionary_std::tags::PIXEL_DATA);
        }
    }
    let out = path.with_file_name(name);
    obj.write_to_file(&out).unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn objects_without_pixels_are_refused_and_a_sender_of_unreadable_objects_is_held_off() {
    let data = tempfile::tempdir().unwrap();
    let films = tempfile::tempdir().unwrap();
    let (pipeline, store_) = pipeline(data.path());
    warm(&pipeline).await;
    let mut config = dicom_config();
    config.max_unreadable_per_source_per_hour = 2;
    let port = config.listen.port();
    let pacs = start_pacs(&config, data.path(), &pipeline).await;

    // An image object without Pixel Data is not an image: refused at once
    // ("data set does not match SOP class"), never spooled or listed.
    let (cr, cr_sop, cr_study) = film(films.path(), 66, 1, OutputSyntax::ExplicitLe, false);
    let bare = with_pixels(&cr, None, "bare.dcm");
    let o = store(port, &["-xe", "-v"], &bare);
    assert!(
        text(&o).contains("DataSetDoesNotMatchSOPClass"),
        "not refused as a data set mismatch: {}",
        text(&o)
    );
    assert!(spooled(data.path()).is_empty());

    // Two objects whose pixels cannot be decoded (10 bytes for a whole
    // film) are filed NOT_ANALYZED for a human...
    let mut broken = Vec::new();
    for index in 2..4 {
        let (path, sop, study) = film(films.path(), 66, index, OutputSyntax::ExplicitLe, false);
        let path = with_pixels(&path, Some(vec![7; 10]), &format!("broken-{index}.dcm"));
        let o = store(port, &["-xe"], &path);
        assert!(o.status.success(), "{}", text(&o));
        broken.push((sop, study));
    }
    for (sop, study) in &broken {
        wait_for(Duration::from_secs(60), "the broken film listed", || {
            in_worklist(store_.as_ref(), study, sop) == Some(false)
        })
        .await;
    }
    // ...then this sender is held off for the hour ("out of resources":
    // it retries later), even with a good film,
    let o = store(port, &["-xe", "-v"], &cr);
    assert!(
        text(&o).contains("OutOfResources"),
        "not held off: {}",
        text(&o)
    );
    assert!(in_worklist(store_.as_ref(), &cr_study, &cr_sop).is_none());
    // while other senders are not.
    let port_s = port.to_string();
    let o = dcmtk(
        "storescu",
        &[
            "-aet",
            "TESTSCU",
            "-aec",
            "CXR_TRIAGE",
            "-to",
            "10",
            "-xe",
            "127.0.0.1",
            &port_s,
            cr.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    wait_for(
        Duration::from_secs(60),
        "the good film from another sender",
        || in_worklist(store_.as_ref(), &cr_study, &cr_sop) == Some(true),
    )
    .await;
    pacs.shutdown().await;
}

/// A JPEG 2000 decoder that panics on one codestream (a defect injected
/// below the pipeline) and declines every other, which OpenJPEG then
/// decodes: other tests running meanwhile are not affected.
struct PanicsOn(Vec<u8>);

impl cxr_ingest::accel::CodestreamDecoder for PanicsOn {
    fn name(&self) -> &str {
        "panics"
    }
    fn decode(
        &self,
        codestream: &[u8],
        _max_pixels: u64,
    ) -> Result<cxr_ingest::accel::DecodedCodestream, String> {
        if codestream == self.0.as_slice() {
            panic!("injected decoder defect");
        }
        Err("not this test's stream".into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panic_while_decoding_files_the_image_for_a_human_and_the_worker_goes_on() {
    let data = tempfile::tempdir().unwrap();
    let films = tempfile::tempdir().unwrap();
    let (pipeline, store_) = pipeline(data.path());
    warm(&pipeline).await;
    let config = dicom_config();
    let port = config.listen.port();
    let pacs = start_pacs(&config, data.path(), &pipeline).await;

    let (j2k, j2k_sop, j2k_study) = film(films.path(), 64, 1, OutputSyntax::J2kLossless, false);
    let codestream = {
        let obj = dicom_object::open_file(&j2k).unwrap();
        let pixels = obj.element(dicom_dictionary_std::tags::PIXEL_DATA).unwrap();
        pixels.value().fragments().unwrap().concat()
    };
    cxr_ingest::accel::install_jpeg2000_decoder(Some(std::sync::Arc::new(PanicsOn(codestream))));
    let o = store(port, &["-xv"], &j2k);
    assert!(o.status.success(), "{}", text(&o));
    wait_for(
        Duration::from_secs(60),
        "the film whose decoding panicked on the worklist",
        || in_worklist(store_.as_ref(), &j2k_study, &j2k_sop).is_some(),
    )
    .await;
    let (_, images) = store_.get_study(&j2k_study).unwrap();
    let reason = images[0].reason.clone().expect("NOT_ANALYZED");
    assert_eq!(reason.code, "internal_error", "{}", reason.message);
    assert!(reason.message.contains("human"), "{}", reason.message);

    // The same worker goes on with the next film.
    let (cr, cr_sop, cr_study) = film(films.path(), 64, 2, OutputSyntax::ExplicitLe, false);
    let o = store(port, &["-xe"], &cr);
    assert!(o.status.success(), "{}", text(&o));
    wait_for(Duration::from_secs(60), "the next film analysed", || {
        in_worklist(store_.as_ref(), &cr_study, &cr_sop) == Some(true)
    })
    .await;
    cxr_ingest::accel::install_jpeg2000_decoder(None);
    assert!(
        spooled(data.path()).is_empty(),
        "{:?}",
        spooled(data.path())
    );
    pacs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_data_set_that_is_not_dicom_fails_the_store_and_is_not_kept() {
    let data = tempfile::tempdir().unwrap();
    let (pipeline, _store) = pipeline(data.path());
    let config = dicom_config();
    let port = config.listen.port();
    let pacs = start_pacs(&config, data.path(), &pipeline).await;
    let mut a = cr_association(port).await;
    let pc = a.presentation_contexts()[0].id;
    let send = |value_type, data: Vec<u8>| Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc,
            value_type,
            is_last: true,
            data,
        }],
    };
    let command = dimse::store_request(7, uids::STORAGE_SOP_CLASSES[0].0, "1.2.3.4");
    a.send(&send(PDataValueType::Command, command))
        .await
        .unwrap();
    // An element claiming 4 GiB.
    let garbage = [0x08, 0x00, 0x18, 0x00, b'U', b'I', 0xFF, 0xFF, 1, 2, 3, 4];
    a.send(&send(PDataValueType::Data, garbage.to_vec()))
        .await
        .unwrap();
    let Pdu::PData { data: reply } = a.receive().await.unwrap() else {
        panic!("no response")
    };
    let rsp = dimse::Command::parse(&reply[0].data).unwrap();
    assert_eq!(rsp.responded_to(), Some(7));
    assert_eq!(rsp.status(), Some(dimse::status::CANNOT_UNDERSTAND));
    a.release().await.unwrap();
    assert!(spooled(data.path()).is_empty());
    pacs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn objects_spooled_before_a_restart_are_analysed_after_it() {
    let data = tempfile::tempdir().unwrap();
    let films = tempfile::tempdir().unwrap();
    let config = dicom_config();
    let port = config.listen.port();
    let sent: Vec<_> = (0..3)
        .map(|i| film(films.path(), 67, i, OutputSyntax::ExplicitLe, false))
        .collect();
    {
        // Models never load in this run: everything stays spooled.
        let (pipeline, _) = pipeline(data.path());
        let pacs = start_pacs(&config, data.path(), &pipeline).await;
        for (path, _, _) in &sent {
            let o = store(port, &["-xe"], path);
            assert!(o.status.success(), "{}", text(&o));
        }
        pacs.shutdown().await;
    }
    assert_eq!(spooled(data.path()).len(), 3);
    let (pipeline, store_) = pipeline(data.path());
    warm(&pipeline).await;
    let pacs = start_pacs(&config, data.path(), &pipeline).await;
    wait_for(
        Duration::from_secs(60),
        "the spooled films on the worklist",
        || {
            sent.iter()
                .all(|(_, sop, study)| in_worklist(store_.as_ref(), study, sop) == Some(true))
        },
    )
    .await;
    wait_for(Duration::from_secs(10), "an empty spool", || {
        spooled(data.path()).is_empty()
    })
    .await;
    pacs.shutdown().await;
}
