//! The PostgreSQL worklist over TLS, as libpq's URL parameters say it
//! (`sslmode`, `sslrootcert`): the connection is encrypted, the server's
//! certificate must chain to the given CA and name the host, and a URL that
//! asks for TLS without saying whom to trust is refused.

use cxr_findings::priority::Priority;
use cxr_worklist::testing::ThrowawayPostgres;
use cxr_worklist::{connect_postgres, PostgresStore, WorklistStore};

use crate::worklist_store::record;

fn encrypted(url: &str) -> bool {
    let url = url.to_string();
    std::thread::spawn(move || {
        let mut c = connect_postgres(&url).unwrap();
        c.query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0)
    })
    .join()
    .unwrap()
}

#[test]
fn the_worklist_connects_over_tls_and_verifies_the_server() {
    let pg = ThrowawayPostgres::shared();
    let ca = pg
        .ca_file()
        .expect("the throwaway PostgreSQL has TLS (openssl: scripts/setup.sh test)");
    let url = pg.create_database();
    let tls = format!("{url}?sslmode=verify-full&sslrootcert={}", ca.display());

    let store = PostgresStore::open(&tls, 2).unwrap();
    store
        .put_image(&record("s", "i", Priority::Urgent, 0.9, 1))
        .unwrap();
    assert_eq!(store.get_study("s").unwrap().1.len(), 1);
    assert!(encrypted(&tls), "sslmode=verify-full: encrypted");
    assert!(!encrypted(&url), "no sslmode: plain, as before");

    // libpq's key=value form too.
    let kv = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres sslmode=require sslrootcert={}",
        pg.port(),
        ca.display()
    );
    assert!(encrypted(&kv));

    let refused = |url: String| match PostgresStore::open(&url, 1) {
        Ok(_) => panic!("{url} was accepted"),
        Err(e) => e.to_string(),
    };
    // A server whose certificate another CA signed.
    let other = pg.untrusted_ca_file().unwrap();
    let why = refused(format!(
        "{url}?sslmode=require&sslrootcert={}",
        other.display()
    ));
    assert!(why.contains("certificate"), "{why}");
    // A certificate for 127.0.0.1, reached as `localhost`.
    let why = refused(tls.replace("@127.0.0.1:", "@localhost:"));
    assert!(why.contains("certificate"), "{why}");
    // TLS asked for, no CA given: not "trust anyone".
    let why = refused(format!("{url}?sslmode=require"));
    assert!(why.contains("sslrootcert"), "{why}");
}
