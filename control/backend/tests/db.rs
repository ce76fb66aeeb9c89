//! Opening and migrating both kinds of database.

use buildstream_backend::testing::{mysql_server_url, unique_name, TestDatabase};
use buildstream_backend::{Database, Dialect};

#[tokio::test]
async fn both_databases_answer_and_say_which_dialect_they_speak() {
    let [sqlite, mysql] = TestDatabase::both().await;
    assert_eq!(sqlite.db.dialect(), Dialect::Sqlite);
    assert_eq!(mysql.db.dialect(), Dialect::MySql);
    for test in [&sqlite, &mysql] {
        test.db
            .ping()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", test.label));
    }
}

#[tokio::test]
async fn a_sqlite_file_is_created_private_and_reopened() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(unique_name("bs-db-"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("x.db");
    let url = format!("sqlite:{}", path.display());

    let db = Database::open(&url).await.unwrap();
    sqlx::query("CREATE TABLE t (v TEXT)")
        .execute(db.pool())
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES ('kept')")
        .execute(db.pool())
        .await
        .unwrap();
    db.close().await;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let db = Database::open(&url).await.unwrap();
    let kept: String = sqlx::query_scalar("SELECT v FROM t")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(kept, "kept");
    db.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn urls_of_other_databases_are_refused_clearly() {
    let err = Database::open("postgres://localhost/x").await.unwrap_err();
    assert!(
        err.to_string().contains("unsupported database URL"),
        "{err}"
    );
}

#[tokio::test]
async fn a_wrong_mysql_password_is_an_error() {
    let server = mysql_server_url().replacen("root@", "root:wrong-password@", 1);
    let opened = Database::open(&format!("{server}/{}", unique_name("bstest_"))).await;
    assert!(opened.is_err());
}

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./tests/migrations/sqlite");
static MYSQL: sqlx::migrate::Migrator = sqlx::migrate!("./tests/migrations/mysql");
const MIGRATIONS: buildstream_backend::Migrations = buildstream_backend::Migrations {
    sqlite: &SQLITE,
    mysql: &MYSQL,
};

#[tokio::test]
async fn migrations_run_once_on_both() {
    for test in TestDatabase::both().await {
        test.db.migrate(MIGRATIONS).await.unwrap();
        test.db.migrate(MIGRATIONS).await.unwrap();
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM items")
            .fetch_one(test.db.pool())
            .await
            .unwrap();
        assert_eq!(count, 1, "{}", test.label);
    }
}

/// Guards against instances of a service that start together applying the
/// same MySQL migration twice, which leaves it marked partly applied.
#[tokio::test]
async fn instances_migrating_one_mysql_database_at_once_take_turns() {
    let first = TestDatabase::mysql().await;
    let url = first.url().unwrap();
    let mut racers = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        racers.push(tokio::spawn(async move {
            let db = Database::open(&url).await.unwrap();
            let migrated = db.migrate(MIGRATIONS).await;
            db.close().await;
            migrated
        }));
    }
    for racer in racers {
        racer.await.unwrap().unwrap();
    }
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM items")
        .fetch_one(first.db.pool())
        .await
        .unwrap();
    assert_eq!(count, 1);
}
