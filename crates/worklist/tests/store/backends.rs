//! The two backends every store test runs against: SQLite on a file, and a
//! database of its own on the throwaway PostgreSQL server.

use cxr_worklist::testing::{run_sql, ThrowawayPostgres};
use cxr_worklist::{PostgresStore, SqliteStore, WorklistStore};

/// Runs SQL against a database directly.
type RunSql = Box<dyn Fn(&str) -> Result<(), String>>;

/// A fresh, empty worklist database.
pub struct Db {
    /// What it is, for messages.
    pub name: &'static str,
    open: Box<dyn Fn() -> Box<dyn WorklistStore>>,
    sql: RunSql,
    /// SQL that removes the triggers guarding the audit trail (as someone
    /// with the database's owner credentials could).
    pub drop_audit_guards: &'static str,
    _dir: Option<tempfile::TempDir>,
}

impl Db {
    /// Opens the database (again): a new connection, as another process
    /// or replica would.
    pub fn open(&self) -> Box<dyn WorklistStore> {
        (self.open)()
    }

    /// Runs SQL directly against the database, past the store.
    pub fn sql(&self, sql: &str) -> Result<(), String> {
        (self.sql)(sql)
    }
}

/// A SQLite file in a temporary directory.
pub fn sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/worklist.sqlite");
    let open_path = path.clone();
    Db {
        name: "sqlite",
        open: Box::new(move || Box::new(SqliteStore::open(&open_path).unwrap())),
        sql: Box::new(move |sql| {
            rusqlite::Connection::open(&path)
                .and_then(|c| c.execute_batch(sql))
                .map_err(|e| e.to_string())
        }),
        drop_audit_guards: "DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;",
        _dir: Some(dir),
    }
}

/// A new database on the throwaway PostgreSQL server.
pub fn postgres() -> Db {
    let url = ThrowawayPostgres::shared().create_database();
    let sql_url = url.clone();
    Db {
        name: "postgres",
        open: Box::new(move || Box::new(PostgresStore::open(&url, 4).unwrap())),
        sql: Box::new(move |sql| run_sql(&sql_url, sql)),
        drop_audit_guards: "DROP TRIGGER audit_no_change ON audit; \
                            DROP TRIGGER audit_no_truncate ON audit;",
        _dir: None,
    }
}

/// Makes each listed `fn name(db: &Db)` a test on SQLite (`sqlite::name`)
/// and on PostgreSQL (`postgres::name`).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name(&$crate::backends::sqlite())
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    super::$name(&$crate::backends::postgres())
                }
            )*
        }
    };
}
