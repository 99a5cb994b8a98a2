//! A real, temporary PostgreSQL server for tests.
//!
//! [`TempPostgres::start`] runs `initdb` in a fresh temporary directory,
//! starts `postgres` on 127.0.0.1 with a free port (its socket in the same
//! directory, trust authentication, durability off for speed), creates a
//! database and hands back its URL. Dropping the value stops the server
//! (`pg_ctl stop -m immediate`) and removes the directory. Every call gets
//! its own directory and port, so tests in parallel processes (nextest) do
//! not collide.
//!
//! The server binaries are found in `$CONCLAVE_PG_BIN` if set, else in the
//! highest-versioned `/usr/lib/postgresql/*/bin` (Debian's `postgresql`
//! package). Without them the harness fails with a message saying what to
//! install: a PostgreSQL test never passes by skipping.
//!
//! `initdb` and `pg_ctl` refuse to run as root. When the tests run as root
//! (as in CI containers) they run as the `postgres` system user (created by
//! the Debian package) through `runuser`, in a directory handed to that user.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The database [`TempPostgres::start`] creates.
pub const DATABASE: &str = "conclave_test";

/// How many times to try another port when the chosen one was taken in the
/// moment between finding it free and the server binding it.
const PORT_ATTEMPTS: usize = 5;

/// A running temporary PostgreSQL server; stopped and deleted on drop.
pub struct TempPostgres {
    bin: PathBuf,
    data: PathBuf,
    as_postgres_user: bool,
    port: u16,
    url: String,
    // Last, so that the directory is removed after `drop` stopped the server.
    dir: tempfile::TempDir,
}

impl TempPostgres {
    /// Starts a server with one empty database, [`DATABASE`].
    pub fn start() -> TempPostgres {
        let bin = bin_dir();
        let as_postgres_user = running_as_root();
        if as_postgres_user {
            let known = Command::new("id").args(["-u", "postgres"]).output();
            assert!(
                known.is_ok_and(|o| o.status.success()),
                "the tests run as root, and initdb refuses root, but there is no `postgres` \
                 user to run it as: apt-get install postgresql (which creates it)"
            );
        }

        let dir = tempfile::Builder::new()
            .prefix("conclave-pg-")
            .tempdir()
            .expect("cannot create a temporary directory for PostgreSQL");
        if as_postgres_user {
            check(
                Command::new("chown")
                    .arg("postgres:postgres")
                    .arg(dir.path())
                    .output(),
                "chown the temporary directory to postgres",
            );
        }
        let data = dir.path().join("data");
        let log = dir.path().join("server.log");

        let mut server = TempPostgres {
            bin,
            data,
            as_postgres_user,
            port: 0,
            url: String::new(),
            dir,
        };

        let initdb = server.run_server_tool(
            "initdb",
            &[
                "-D".as_ref(),
                server.data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "--auth=trust".as_ref(),
                "--encoding=UTF8".as_ref(),
                "--no-locale".as_ref(),
                "--no-sync".as_ref(),
            ],
        );
        check(Ok(initdb), "initdb");

        let mut started = false;
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let options = format!(
                "-h 127.0.0.1 -p {port} -k {} -c fsync=off -c synchronous_commit=off \
                 -c full_page_writes=off -c shared_buffers=16MB -c max_connections=100",
                server.dir.path().display()
            );
            let out = server.run_server_tool(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    server.data.as_os_str(),
                    "-l".as_ref(),
                    log.as_os_str(),
                    "-w".as_ref(),
                    "-t".as_ref(),
                    "60".as_ref(),
                    "-o".as_ref(),
                    options.as_ref(),
                    "start".as_ref(),
                ],
            );
            if out.status.success() {
                server.port = port;
                started = true;
                break;
            }
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
            let port_taken =
                last_log.contains("could not bind") || last_log.contains("Address already in use");
            assert!(
                port_taken,
                "PostgreSQL did not start: {}\n{}\nserver log:\n{last_log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            started,
            "PostgreSQL found no free port in {PORT_ATTEMPTS} attempts; server log:\n{last_log}"
        );

        // createdb is a client: it needs no particular user.
        check(
            Command::new(server.bin.join("createdb"))
                .args(["-h", "127.0.0.1", "-p", &server.port.to_string()])
                .args(["-U", "postgres", DATABASE])
                .current_dir(server.dir.path())
                .output(),
            "createdb",
        );
        server.url = format!("postgres://postgres@127.0.0.1:{}/{DATABASE}", server.port);
        server
    }

    /// `postgres://postgres@127.0.0.1:PORT/conclave_test`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Runs one of the server's tools (initdb, pg_ctl) as a user it accepts.
    fn run_server_tool(&self, tool: &str, args: &[&std::ffi::OsStr]) -> Output {
        let program = self.bin.join(tool);
        let mut command = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        if self.port != 0 {
            // Best effort: the directory is removed right after either way.
            let _ = self.run_server_tool(
                "pg_ctl",
                &[
                    "-D".as_ref(),
                    self.data.as_os_str(),
                    "-m".as_ref(),
                    "immediate".as_ref(),
                    "-w".as_ref(),
                    "stop".as_ref(),
                ],
            );
        }
    }
}

/// The directory holding initdb, pg_ctl, postgres and createdb.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CONCLAVE_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").is_file() && dir.join("pg_ctl").is_file(),
            "CONCLAVE_PG_BIN={} holds no initdb and pg_ctl: point it at PostgreSQL's bin directory",
            dir.display()
        );
        return dir;
    }
    let mut found: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed: apt-get install postgresql \
             (or set CONCLAVE_PG_BIN to the directory holding initdb and pg_ctl)"
        ),
    }
}

fn running_as_root() -> bool {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .expect("cannot run `id -u` to learn whether the tests run as root");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind a port on 127.0.0.1");
    listener
        .local_addr()
        .expect("a bound socket has an address")
        .port()
}

/// Panics with the command's output unless it succeeded.
fn check(result: std::io::Result<Output>, what: &str) {
    let out = result.unwrap_or_else(|e| panic!("cannot {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
