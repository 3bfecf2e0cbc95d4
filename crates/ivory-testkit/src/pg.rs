//! Fresh databases on the PostgreSQL server of the machine, for the tests that run on it
//! (`.ci/run` makes sure it is up and drops the `ivory_t_*` databases of earlier runs).

use sqlx::Connection;

/// The server: `IVORY_TEST_PG` when set, else `postgres://postgres@127.0.0.1` (trust auth).
pub fn server() -> String {
    std::env::var("IVORY_TEST_PG")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1".into())
        .trim_end_matches('/')
        .to_owned()
}

/// Creates an empty database `ivory_t_<uuid>` on `server` and returns its URL.
///
/// # Panics
/// When the server cannot be reached or refuses (a test precondition, not a test outcome).
pub async fn fresh_database_on(server: &str) -> String {
    let server = server.trim_end_matches('/');
    let name = format!("ivory_t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = match sqlx::PgConnection::connect(&format!("{server}/postgres")).await {
        Ok(admin) => admin,
        Err(error) => panic!("the PostgreSQL server {server} (.ci/run starts it): {error}"),
    };
    if let Err(error) = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
    {
        panic!("create the test database {name}: {error}");
    }
    admin.close().await.ok();
    format!("{server}/{name}")
}

/// [`fresh_database_on`] the default [`server`].
pub async fn fresh_database() -> String {
    fresh_database_on(&server()).await
}
