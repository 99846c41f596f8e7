//! Access control on the gRPC API: a role × method matrix with tokens as a
//! hospital's OpenID Connect provider issues them (ES256, verified offline
//! against its public key) — valid tokens of each role, an expired one, a
//! forged one (signed by another key), one from another issuer, and none —
//! and `by` taken from the token, not from the request. Health stays open.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cxr_api::pb;
use cxr_api::pb::triage_client::TriageClient;
use cxr_auth::{AuthConfig, Role, TokenConfig};
use cxr_synth::ViewChoice;
use tonic::transport::Channel;

use crate::service_grpc::{channel, config, start, synth};

pub(crate) const ISSUER: &str = "https://keycloak.test/realms/radiology";

/// An EC P-256 key pair made by openssl: (private PKCS#8 PEM, public PEM path).
pub(crate) fn key_pair(dir: &Path, name: &str) -> (Vec<u8>, std::path::PathBuf) {
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    let ok = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&private)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let ok = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    (std::fs::read(private).unwrap(), public)
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token as Keycloak shapes it: realm roles under `realm_access.roles`.
pub(crate) fn token(key: &[u8], issuer: &str, user: &str, roles: &[&str], exp: u64) -> String {
    let claims = serde_json::json!({
        "iss": issuer,
        "aud": "cxr-triage",
        "sub": format!("id-{user}"),
        "preferred_username": user,
        "exp": exp,
        "iat": now(),
        "realm_access": {"roles": roles},
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &jsonwebtoken::EncodingKey::from_ec_pem(key).unwrap(),
    )
    .unwrap()
}

pub(crate) fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(t) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    request
}

async fn wait_serving(ch: Channel) {
    for _ in 0..600 {
        if crate::service_grpc::serving(ch.clone()).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never SERVING");
}

/// The outcome class of a call: allowed (any code but the two below),
/// or refused as unauthenticated or forbidden.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Verdict {
    Allowed,
    Unauthenticated,
    Denied,
}

fn verdict<T>(r: Result<T, tonic::Status>) -> Verdict {
    match r {
        Err(s) if s.code() == tonic::Code::Unauthenticated => Verdict::Unauthenticated,
        Err(s) if s.code() == tonic::Code::PermissionDenied => Verdict::Denied,
        _ => Verdict::Allowed,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_method_checks_the_caller_and_their_role() {
    let keys = tempfile::tempdir().unwrap();
    let (provider, public) = key_pair(keys.path(), "provider");
    let (attacker, _) = key_pair(keys.path(), "attacker");
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path());
    c.auth = AuthConfig {
        enabled: true,
        tokens: Some(TokenConfig {
            issuer: ISSUER.into(),
            audience: "cxr-triage".into(),
            public_keys: vec![public],
            role_map: [("radiologist".to_string(), Role::Reader)].into(),
            ..TokenConfig::default()
        }),
        ..AuthConfig::default()
    };
    let running = start(c).await;
    let ch = channel(running.addr).await;
    wait_serving(ch.clone()).await;
    let mut client = TriageClient::new(ch);

    let later = now() + 600;
    let uploader = token(&provider, ISSUER, "pacs-gw", &["uploader"], later);
    let reader = token(
        &provider,
        ISSUER,
        "dr.lan",
        &["radiologist", "offline_access"],
        later,
    );
    let admin = token(&provider, ISSUER, "it.admin", &["admin"], later);
    let expired = token(&provider, ISSUER, "dr.lan", &["radiologist"], now() - 3600);
    let forged = token(&attacker, ISSUER, "it.admin", &["admin"], later);
    let elsewhere = token(
        &provider,
        "https://evil.test/realms/x",
        "it.admin",
        &["admin"],
        later,
    );
    let nobody = token(&provider, ISSUER, "visitor", &["offline_access"], later);

    let (film, study, sop) = synth(8301, true, ViewChoice::Pa);
    // The uploader files the film first, so that readers have a study.
    client
        .analyze(with_token(
            pb::AnalyzeRequest {
                dicom: film.clone().into(),
                options: None,
            },
            Some(&uploader),
        ))
        .await
        .unwrap();

    use Verdict::*;
    let credentials: [(&str, Option<&str>); 8] = [
        ("uploader", Some(&uploader)),
        ("reader", Some(&reader)),
        ("admin", Some(&admin)),
        ("expired", Some(&expired)),
        ("forged", Some(&forged)),
        ("other issuer", Some(&elsewhere)),
        ("no role", Some(&nobody)),
        ("none", None),
    ];
    // Expected verdict per credential, in the order above.
    let refused = [Unauthenticated, Unauthenticated, Unauthenticated];
    let upload_only = [Allowed, Denied, Allowed];
    let read_only = [Denied, Allowed, Allowed];
    let any_role = [Allowed, Allowed, Allowed];
    for (method, valid) in [
        ("Analyze", upload_only),
        ("ListWorklist", read_only),
        ("GetStudy", read_only),
        ("UpdateStatus", read_only),
        ("GetHeatmap", read_only),
        ("WatchWorklist", read_only),
        ("ListModels", any_role),
    ] {
        let expected: Vec<Verdict> = valid
            .iter()
            .chain(&refused)
            .copied()
            .chain([Denied, Unauthenticated])
            .collect();
        for ((name, t), want) in credentials.iter().zip(expected) {
            let got = match method {
                "Analyze" => verdict(
                    client
                        .analyze(with_token(
                            pb::AnalyzeRequest {
                                dicom: film.clone().into(),
                                options: None,
                            },
                            *t,
                        ))
                        .await,
                ),
                "ListWorklist" => verdict(
                    client
                        .list_worklist(with_token(pb::ListWorklistRequest::default(), *t))
                        .await,
                ),
                "GetStudy" => verdict(
                    client
                        .get_study(with_token(
                            pb::GetStudyRequest {
                                study_instance_uid: study.clone(),
                            },
                            *t,
                        ))
                        .await,
                ),
                "UpdateStatus" => verdict(
                    client
                        .update_status(with_token(
                            pb::UpdateStatusRequest {
                                study_instance_uid: study.clone(),
                                status: pb::StudyStatus::Claimed as i32,
                                by: "someone-else".into(),
                            },
                            *t,
                        ))
                        .await,
                ),
                "GetHeatmap" => verdict(
                    client
                        .get_heatmap(with_token(
                            pb::GetHeatmapRequest {
                                sop_instance_uid: sop.clone(),
                                finding_id: "tuberculosis".into(),
                                ..Default::default()
                            },
                            *t,
                        ))
                        .await,
                ),
                "WatchWorklist" => verdict(
                    client
                        .watch_worklist(with_token(
                            pb::WatchWorklistRequest { after_sequence: 0 },
                            *t,
                        ))
                        .await,
                ),
                _ => verdict(
                    client
                        .list_models(with_token(pb::ListModelsRequest {}, *t))
                        .await,
                ),
            };
            assert_eq!(got, want, "{method} with {name} credentials");
        }
    }

    // Who changed the status is the token's user, whatever `by` says.
    client
        .update_status(with_token(
            pb::UpdateStatusRequest {
                study_instance_uid: study.clone(),
                status: pb::StudyStatus::Reading as i32,
                by: "someone-else".into(),
            },
            Some(&reader),
        ))
        .await
        .unwrap();
    let study_now = client
        .get_study(with_token(
            pb::GetStudyRequest {
                study_instance_uid: study.clone(),
            },
            Some(&reader),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(study_now.status_by, "dr.lan");

    // Refusals do not repeat the credential.
    let err = client
        .list_worklist(with_token(
            pb::ListWorklistRequest::default(),
            Some(&forged),
        ))
        .await
        .unwrap_err();
    assert!(!err.message().contains(&forged[..20]), "{}", err.message());
    running.stop().await;

    // Every read, change and refusal is in the audit trail, whose chain
    // verifies; tampering with the file is found.
    let store = cxr_worklist::SqliteStore::open(&data.path().join("worklist.sqlite")).unwrap();
    use cxr_worklist::WorklistStore;
    let records = store.audit_after(0, 10_000).unwrap();
    let has = |who: &str, action: &str, outcome: &str| {
        records
            .iter()
            .any(|r| r.entry.who == who && r.entry.action == action && r.entry.outcome == outcome)
    };
    assert!(has("dr.lan", "GetStudy", "OK"), "reads are audited");
    assert!(
        has("dr.lan", "UpdateStatus:READING", "OK"),
        "changes are audited"
    );
    assert!(has("pacs-gw", "Analyze", "OK"));
    assert!(
        has("dr.lan", "Analyze", "PERMISSION_DENIED"),
        "refusals too"
    );
    assert!(has("unauthenticated", "ListWorklist", "UNAUTHENTICATED"));
    let study_read = records
        .iter()
        .find(|r| r.entry.action == "GetStudy" && r.entry.outcome == "OK")
        .unwrap();
    assert_eq!(study_read.entry.object, format!("study:{study}"));
    assert!(study_read.entry.address.starts_with("127.0.0.1:"));
    drop(store);
    let verify = |dir: &Path| {
        Command::new(env!("CARGO_BIN_EXE_cxr-triage"))
            .args(["audit", "verify", "--data-dir"])
            .arg(dir)
            .output()
            .unwrap()
    };
    let out = verify(data.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let raw = rusqlite::Connection::open(data.path().join("worklist.sqlite")).unwrap();
    raw.execute_batch("DROP TRIGGER audit_no_update;").unwrap();
    raw.execute("UPDATE audit SET who = 'someone' WHERE seq = 2", [])
        .unwrap();
    let out = verify(data.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("BROKEN at record 2"));
}

/// STOW-RS asks the same questions: 401 without a valid token, 403
/// without the uploader role, stored with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stow_rs_needs_an_uploader() {
    use std::sync::Arc;
    let keys = tempfile::tempdir().unwrap();
    let (provider, public) = key_pair(keys.path(), "provider");
    let auth = Arc::new(
        cxr_auth::Authenticator::new(&AuthConfig {
            enabled: true,
            tokens: Some(TokenConfig {
                issuer: ISSUER.into(),
                audience: "cxr-triage".into(),
                public_keys: vec![public],
                ..TokenConfig::default()
            }),
            ..AuthConfig::default()
        })
        .unwrap(),
    );
    let data = tempfile::tempdir().unwrap();
    let (pipeline, store) = crate::pacs_support::pipeline(data.path());
    crate::pacs_support::warm(&pipeline).await;
    let mut dicom = crate::pacs_support::dicom_config();
    let stow_at: std::net::SocketAddr = format!("127.0.0.1:{}", crate::pacs_support::free_port())
        .parse()
        .unwrap();
    dicom.stow_listen = Some(stow_at);
    let pacs = cxr_pacs::Pacs::start(&dicom, data.path(), Arc::clone(&pipeline), auth)
        .await
        .unwrap()
        .unwrap();

    let (film, _, _) = synth(8401, false, ViewChoice::Pa);
    let boundary = "cxr-auth-test";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(&film);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let content_type =
        format!("multipart/related; type=\"application/dicom\"; boundary={boundary}");
    let later = now() + 600;
    // As a careful client uploads: `Expect: 100-continue`, and the body
    // only once the server has said it wants it (a refusal comes first).
    let post = |token: Option<String>| -> u16 {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(stow_at).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "POST /studies HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
             Content-Type: {content_type}\r\n{auth}Expect: 100-continue\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        let status = |line: &[u8]| -> u16 {
            String::from_utf8_lossy(line)
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0)
        };
        let mut first = [0u8; 12];
        s.read_exact(&mut first).unwrap();
        if status(&first) != 100 {
            return status(&first);
        }
        s.write_all(&body).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        let text = String::from_utf8_lossy(&rest);
        let final_line = text
            .split("\r\n")
            .find(|l| l.starts_with("HTTP/1.1 ") && !l.starts_with("HTTP/1.1 100"))
            .unwrap_or_default()
            .to_string();
        status(final_line.as_bytes())
    };
    assert_eq!(post(None), 401, "no credentials");
    assert_eq!(post(Some("not.a.token".into())), 401);
    let reader = token(&provider, ISSUER, "dr.lan", &["reader"], later);
    assert_eq!(post(Some(reader)), 403);
    let uploader = token(&provider, ISSUER, "modality-1", &["uploader"], later);
    assert_eq!(post(Some(uploader)), 200, "an uploader stores");
    pacs.shutdown().await;
    // The arrival is in the audit trail under the uploader's name.
    let records = store.audit_after(0, 100).unwrap();
    let arrival = records
        .iter()
        .find(|r| r.entry.action == "STOW-RS")
        .expect("the STOW-RS arrival is audited");
    assert_eq!(
        (arrival.entry.who.as_str(), arrival.entry.outcome.as_str()),
        ("modality-1", "OK")
    );
    assert!(arrival.entry.object.contains("image:"));
    assert!(arrival.entry.address.starts_with("127.0.0.1:"));
}

/// The confirmed attack: another caller re-sends a SOP Instance UID (here a
/// lateral film) to overwrite a CRITICAL result. Now only the uploader
/// that filed it (or an administrator) may replace it; anyone else gets
/// ALREADY_EXISTS and the result stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_uploader_that_filed_a_result_may_replace_it() {
    let keys = tempfile::tempdir().unwrap();
    let (provider, public) = key_pair(keys.path(), "provider");
    let data = tempfile::tempdir().unwrap();
    let mut c = config(data.path());
    c.auth = AuthConfig {
        enabled: true,
        tokens: Some(TokenConfig {
            issuer: ISSUER.into(),
            audience: "cxr-triage".into(),
            public_keys: vec![public],
            ..TokenConfig::default()
        }),
        ..AuthConfig::default()
    };
    let running = start(c).await;
    let ch = channel(running.addr).await;
    wait_serving(ch.clone()).await;
    let mut client = TriageClient::new(ch);
    let later = now() + 600;
    let gateway = token(&provider, ISSUER, "pacs-gw", &["uploader"], later);
    let other = token(&provider, ISSUER, "intruder", &["uploader"], later);
    let admin = token(&provider, ISSUER, "it.admin", &["admin"], later);
    let reader = token(&provider, ISSUER, "dr.lan", &["reader"], later);

    let (film, study, sop) = synth(8311, true, ViewChoice::Pa);
    let (lateral, _, _) = synth(8312, false, ViewChoice::Lateral);
    let lateral = crate::hardening::with_uids(&lateral, &study, &sop);
    let send = |dicom: Vec<u8>, t: &str| {
        with_token(
            pb::AnalyzeRequest {
                dicom: dicom.into(),
                options: None,
            },
            Some(t),
        )
    };
    let first = client
        .analyze(send(film.clone(), &gateway))
        .await
        .unwrap()
        .into_inner();
    assert!(first.analyzable);
    let priority = |r: pb::Study| r.priority;
    let before = priority(
        client
            .get_study(with_token(
                pb::GetStudyRequest {
                    study_instance_uid: study.clone(),
                },
                Some(&reader),
            ))
            .await
            .unwrap()
            .into_inner(),
    );

    let err = client
        .analyze(send(lateral.clone(), &other))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err}");
    let after = priority(
        client
            .get_study(with_token(
                pb::GetStudyRequest {
                    study_instance_uid: study.clone(),
                },
                Some(&reader),
            ))
            .await
            .unwrap()
            .into_inner(),
    );
    assert_eq!(after, before, "the result was replaced");
    // The gateway itself may re-send (a correction); so may an admin.
    client.analyze(send(film.clone(), &gateway)).await.unwrap();
    client.analyze(send(lateral, &admin)).await.unwrap();
    running.stop().await;
}
