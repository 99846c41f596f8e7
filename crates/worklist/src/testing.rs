//! A throwaway PostgreSQL server for tests (feature `testing`): Debian's
//! PostgreSQL (`initdb` + `postgres`, found under `/usr/lib/postgresql/*/bin`,
//! on `PATH`, or in `CXR_PG_BIN`) started once per test process on a free
//! loopback port with a private socket directory, as the `postgres` user
//! when the tests run as root (PostgreSQL refuses root). It dies with the
//! test process; the data directory of a run that is gone is removed by the
//! next. Each test takes a database of its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The running server.
pub struct ThrowawayPostgres {
    port: u16,
    dir: PathBuf,
    /// `ca.crt`, `other-ca.crt` (when openssl could make them: the server
    /// then also takes TLS, with a certificate for 127.0.0.1 only).
    tls: Option<PathBuf>,
}

static SERVER: OnceLock<Result<ThrowawayPostgres, String>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

impl ThrowawayPostgres {
    /// The server of this test process, started on first use. Panics
    /// with what is missing when PostgreSQL cannot be started (the test
    /// setup installs it: `make setup-test`).
    pub fn shared() -> &'static ThrowawayPostgres {
        match SERVER.get_or_init(start) {
            Ok(server) => server,
            Err(e) => panic!("the throwaway PostgreSQL did not start: {e}"),
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory (data directory `data`, log
    /// `postgres.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA that signed the server's TLS certificate (valid for the
    /// address 127.0.0.1 only), when the server takes TLS.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|d| d.join("ca.crt"))
    }

    /// A CA that did not sign it.
    pub fn untrusted_ca_file(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|d| d.join("other-ca.crt"))
    }

    /// A URL to the server's `postgres` database, for administration.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates a new, empty database and returns its URL.
    pub fn create_database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        self.execute(&format!("CREATE DATABASE {name}"));
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs `sql` in the `postgres` database (panics on failure). On a
    /// thread of its own: callable from async tests too.
    pub fn execute(&self, sql: &str) {
        run_sql(&self.admin_url(), sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

/// Runs `sql` against `url` on a thread of its own (the synchronous client
/// must not run inside an async runtime).
pub fn run_sql(url: &str, sql: &str) -> Result<(), String> {
    query_text(url, sql).map(|_| ())
}

/// Runs `sql` (one statement or several) against `url` on a thread of its
/// own and returns the rows it yields as text, columns joined by ` | `
/// (for a failing test to show what the database held).
pub fn query_text(url: &str, sql: &str) -> Result<Vec<String>, String> {
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let mut client =
            postgres::Client::connect(&url, postgres::NoTls).map_err(|e| e.to_string())?;
        let rows = client.simple_query(&sql).map_err(|e| e.to_string())?;
        Ok(rows
            .iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => Some(
                    (0..r.len())
                        .map(|i| r.get(i).unwrap_or("NULL"))
                        .collect::<Vec<_>>()
                        .join(" | "),
                ),
                _ => None,
            })
            .collect())
    })
    .join()
    .map_err(|_| "panicked".to_string())?
}

fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("CXR_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p).find(|d| d.join("postgres").exists() && d.join("initdb").exists())
        })
        .ok_or_else(|| {
            "no PostgreSQL server binaries (initdb, postgres) under /usr/lib/postgresql/*/bin or on \
             PATH; install Debian's postgresql package (make setup-test) or set CXR_PG_BIN"
                .into()
        })
}

/// The `postgres` account's uid and gid when running as root.
fn run_as() -> Result<Option<(u32, u32)>, String> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return Ok(None);
    }
    let name = std::ffi::CString::new("postgres").expect("no NUL");
    // SAFETY: a valid C string; the result is read at once, before any
    // other getpw* call on this thread.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err("running as root, and there is no `postgres` user to run PostgreSQL as".into());
    }
    // SAFETY: non-null, from getpwnam.
    Ok(Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) }))
}

/// A command that drops to `user` (when root) and dies with the thread
/// that spawns it.
fn command(program: &Path, user: Option<(u32, u32)>) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if let Some((uid, gid)) = user {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // After the uid change, which would clear it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

fn chown(path: &Path, user: Option<(u32, u32)>) -> Result<(), String> {
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| format!("chown {}: {e}", path.display()))?;
    }
    Ok(())
}

/// A CA, a server certificate it signed for 127.0.0.1 (and its key, the
/// server's alone), and an unrelated CA, made with openssl in `dir`.
fn make_tls(dir: &Path, user: Option<(u32, u32)>) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let openssl = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .map_err(|e| format!("openssl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for (name, cn) in [("ca", "cxr-test-ca"), ("other-ca", "cxr-other-ca")] {
        let (key, crt, subject) = (
            format!("{name}.key"),
            format!("{name}.crt"),
            format!("/CN={cn}"),
        );
        let mut args = vec!["req", "-x509", "-days", "2", "-subj", &subject];
        args.extend(ec);
        args.extend(["-keyout", &key, "-out", &crt]);
        openssl(&args)?;
    }
    let mut args = vec!["req", "-subj", "/CN=127.0.0.1"];
    args.extend(ec);
    args.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(&args)?;
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n")
        .map_err(|e| e.to_string())?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    ])?;
    let key = dir.join("server.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| e.to_string())?;
    chown(&key, user)?;
    chown(&dir.join("server.crt"), user)?;
    chown(dir, user)?;
    Ok(dir.to_path_buf())
}

/// Removes the directories of earlier runs whose process is gone.
fn sweep(parent: &Path) {
    for e in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("cxr-test-pg-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn start() -> Result<ThrowawayPostgres, String> {
    use std::os::unix::fs::PermissionsExt;
    let bin = bin_dir()?;
    let user = run_as()?;
    let parent = std::env::temp_dir();
    sweep(&parent);
    let dir = parent.join(format!("cxr-test-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data");
    let run = dir.join("run");
    for d in [&dir, &run] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
    }
    chown(&dir, user)?;
    chown(&run, user)?;
    let log = dir.join("postgres.log");
    let initdb = command(&bin.join("initdb"), user)
        .args(["-D"])
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !initdb.status.success() {
        return Err(format!(
            "initdb: {}",
            String::from_utf8_lossy(&initdb.stderr)
        ));
    }
    let tls = make_tls(&dir.join("tls"), user).ok();
    let mut tls_args: Vec<String> = Vec::new();
    if let Some(t) = &tls {
        tls_args = vec![
            "-c".into(),
            "ssl=on".into(),
            "-c".into(),
            format!("ssl_cert_file={}", t.join("server.crt").display()),
            "-c".into(),
            format!("ssl_key_file={}", t.join("server.key").display()),
        ];
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let (postgres, data_, run_) = (bin.join("postgres"), data.clone(), run.clone());
    // Spawned from a thread that never ends: the server gets SIGKILL when
    // the thread that spawned it exits, which is then only with the
    // process.
    let (tx, rx) = std::sync::mpsc::channel::<Result<(), String>>();
    std::thread::Builder::new()
        .name("throwaway-postgres".into())
        .spawn(move || {
            let child: std::io::Result<Child> = command(&postgres, user)
                .arg("-D")
                .arg(&data_)
                .args(["-p", &port.to_string(), "-k"])
                .arg(&run_)
                .args([
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=300",
                ])
                .args(&tls_args)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("log"))
                .stderr(log_file)
                .spawn();
            let _child = match child {
                Ok(c) => {
                    let _ = tx.send(Ok(()));
                    c
                }
                Err(e) => {
                    let _ = tx.send(Err(format!("postgres: {e}")));
                    return;
                }
            };
            loop {
                std::thread::park();
            }
        })
        .map_err(|e| e.to_string())?;
    rx.recv().map_err(|e| e.to_string())??;
    let server = ThrowawayPostgres { port, dir, tls };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match run_sql(&server.admin_url(), "SELECT 1") {
            Ok(()) => return Ok(server),
            Err(e) if Instant::now() > deadline => {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("not accepting connections after 60 s: {e}\n{log}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
