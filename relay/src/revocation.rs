//! Keeping the portal's revocation list (R8).
//!
//! The portal publishes its list of revoked licenses as a file holding
//! `conclave_protocol::codec::encode(&signed)`: a version byte, then the
//! postcard encoding of a [`Signed`]`<`[`RevocationList`]`>`. The relay reads
//! it from a file or an `http(s)://` URL ([`RevocationSource`]), checks it,
//! and refuses revoked licenses using the newest valid list it has seen.
//!
//! A list replaces the current one only if
//!
//! 1. it decodes canonically, at most [`MAX_SIGNED_LIST_SIZE`] bytes;
//! 2. its signature verifies against one of the portal keys the relay trusts;
//! 3. it is well formed (license numbers sorted, no duplicates);
//! 4. its serial is strictly greater than the current list's.
//!
//! Anything else leaves the current list in place, so a portal that is down, a
//! damaged download or an old list replayed by an attacker never un-revokes a
//! license and never stops sessions. The relay starts from the empty list
//! (serial 0) until the first valid list arrives.
//!
//! [`Revocations::current`] is cheap (a shared read of an `Arc`) and never
//! waits on a fetch; call it on every Hello. [`Revocations::spawn_refresher`]
//! polls the source in the background.
//!
//! A URL is fetched with a [`FETCH_TIMEOUT`] and a body limit of
//! [`MAX_FETCH_BYTES`], honouring the `HTTP(S)_PROXY` / `NO_PROXY` environment.
//! HTTPS servers are checked against the WebPKI roots; since the list is
//! signed, plain `http://` is as safe for its integrity.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use conclave_protocol::artefact::{LicenseNumber, RevocationList};
use conclave_protocol::codec::{DecodeError, Message};
use conclave_protocol::sign::{PublicKey, SignatureError, Signed};
use conclave_protocol::time::UnixTime;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The most bytes read from a revocation-list file or URL (2 MiB).
pub const MAX_FETCH_BYTES: usize = 2 << 20;

/// The longest a URL fetch may take, from DNS lookup to the end of the body.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest encoded signed revocation list accepted: a 1 MiB list plus
/// room for the signer, length prefixes and signature.
pub const MAX_SIGNED_LIST_SIZE: usize = (1 << 20) + 256;

/// The shortest interval [`Revocations::spawn_refresher`] polls at; shorter
/// ones are raised to it.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(10);

/// `Signed<RevocationList>` as a standalone message, for decoding the
/// portal's file.
#[derive(Serialize, Deserialize)]
struct SignedRevocationList(Signed<RevocationList>);

impl Message for SignedRevocationList {
    const NAME: &'static str = "signed revocation list";
    const MAX_SIZE: usize = MAX_SIGNED_LIST_SIZE;
}

/// Where the relay gets the revocation list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevocationSource {
    /// A file on this machine.
    File(PathBuf),
    /// An `http://` or `https://` URL.
    Url(String),
}

impl FromStr for RevocationSource {
    type Err = RevocationError;

    /// `http://…` or `https://…` (any case) is a URL; anything else a path.
    fn from_str(s: &str) -> Result<Self, RevocationError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(RevocationError::EmptySource);
        }
        let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            Ok(RevocationSource::Url(s.to_string()))
        } else {
            Ok(RevocationSource::File(PathBuf::from(s)))
        }
    }
}

impl fmt::Display for RevocationSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevocationSource::File(path) => write!(f, "{}", path.display()),
            RevocationSource::Url(url) => f.write_str(url),
        }
    }
}

/// What offering a valid list did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The list was newer and is now the current one.
    Updated {
        /// The new current serial.
        serial: u64,
    },
    /// The list was not newer than the current one, which stays.
    Unchanged {
        /// The current (kept) serial.
        serial: u64,
    },
}

/// The state of the revocation list, for metrics and health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationStatus {
    /// The current list's serial (0: no list received yet).
    pub serial: u64,
    /// When (Unix seconds) a valid list was last received, whether or not it
    /// was newer.
    pub last_success_unix: Option<u64>,
    /// The error of the last attempt, if it failed; `None` after a success.
    pub last_error: Option<String>,
}

/// Why a revocation list was not fetched or not accepted. The current list
/// stays in place in every case.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// The configured source is empty.
    #[error("no revocation list source given: set it to a file path or an http(s):// URL")]
    EmptySource,
    /// The bytes are not a signed revocation list.
    #[error("the revocation list is damaged or is not a signed revocation list ({0}): publish it again from the portal and check the relay's revocation source")]
    Decode(#[source] DecodeError),
    /// The signature does not verify against the trusted portal keys.
    #[error("the revocation list's signature is not valid ({0}): it was altered or signed by a portal this relay does not trust; check the relay's portal keys and revocation source")]
    Signature(#[source] SignatureError),
    /// The list is signed but not sorted or has duplicates.
    #[error("revocation list {serial} is signed but not sorted or has duplicate license numbers: the portal that issued it is faulty; report it to the portal's administrator")]
    NotWellFormed {
        /// The list's serial.
        serial: u64,
    },
    /// The file could not be read.
    #[error("cannot read the revocation list file {}: {source}; check the path in the relay's configuration and the file's permissions", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is larger than any revocation list.
    #[error("the revocation list file {} is larger than {max} bytes, so it is not a revocation list: check the path in the relay's configuration", path.display())]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// [`MAX_FETCH_BYTES`].
        max: usize,
    },
    /// The download failed (address, connection, TLS, timeout, protocol).
    #[error("cannot download the revocation list from {url}: {source}; check the URL and that the portal is reachable from the relay")]
    Fetch {
        /// The URL.
        url: String,
        /// What the HTTP client said.
        source: ureq::Error,
    },
    /// The server answered with an HTTP status other than success.
    #[error("the server answered HTTP {status} for the revocation list at {url}: check the URL in the relay's configuration and the portal's logs")]
    HttpStatus {
        /// The URL.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The download is larger than any revocation list.
    #[error("the revocation list at {url} is larger than {max} bytes, so it is not a revocation list: check the URL in the relay's configuration")]
    BodyTooLarge {
        /// The URL.
        url: String,
        /// [`MAX_FETCH_BYTES`].
        max: usize,
    },
    /// The background download task failed.
    #[error(
        "internal error: the revocation list download task failed ({0}); please report this bug"
    )]
    Task(String),
}

/// The current revocation list, shared by every connection.
#[derive(Debug)]
pub struct Revocations {
    portal_keys: Vec<PublicKey>,
    current: watch::Sender<Arc<RevocationList>>,
    health: Mutex<Health>,
}

#[derive(Debug, Default)]
struct Health {
    last_success_unix: Option<u64>,
    last_error: Option<String>,
}

impl Revocations {
    /// Starts from the empty list (serial 0), trusting lists signed by any of
    /// `portal_keys`.
    pub fn new(portal_keys: Vec<PublicKey>) -> Self {
        let (current, _) = watch::channel(Arc::new(RevocationList::empty()));
        Revocations {
            portal_keys,
            current,
            health: Mutex::new(Health::default()),
        }
    }

    /// The current list. Cheap: clones an `Arc` under a short read lock.
    pub fn current(&self) -> Arc<RevocationList> {
        Arc::clone(&self.current.borrow())
    }

    /// Whether `license` is revoked by the current list.
    pub fn is_revoked(&self, license: LicenseNumber) -> bool {
        self.current.borrow().is_revoked(license)
    }

    /// A receiver that sees every new current list, e.g. to end sessions of
    /// newly revoked licenses.
    pub fn subscribe(&self) -> watch::Receiver<Arc<RevocationList>> {
        self.current.subscribe()
    }

    /// The current serial and how the last attempts went.
    pub fn status(&self) -> RevocationStatus {
        let health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        RevocationStatus {
            serial: self.current.borrow().serial,
            last_success_unix: health.last_success_unix,
            last_error: health.last_error.clone(),
        }
    }

    /// Checks an encoded signed list (see the module docs) and makes it the
    /// current one if it is valid and newer. `now` is recorded as the time of
    /// the last success.
    pub fn offer(&self, bytes: &[u8], now: UnixTime) -> Result<Outcome, RevocationError> {
        let result = self.check_and_install(bytes);
        self.record(now, &result);
        result
    }

    /// Reads the list from `source` and [offers](Self::offer) it.
    pub async fn refresh(
        &self,
        source: &RevocationSource,
        now: UnixTime,
    ) -> Result<Outcome, RevocationError> {
        match fetch(source).await {
            Ok(bytes) => self.offer(&bytes, now),
            Err(error) => {
                let result = Err(error);
                self.record(now, &result);
                result
            }
        }
    }

    /// Spawns a task that refreshes from `source` at once, then every
    /// `interval` (at least [`MIN_REFRESH_INTERVAL`]), until `cancel` is
    /// cancelled. Failures are logged with `tracing::warn!` and leave the
    /// current list in place. Must be called within a Tokio runtime.
    pub fn spawn_refresher(
        self: &Arc<Self>,
        source: RevocationSource,
        interval: Duration,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        let period = interval.max(MIN_REFRESH_INTERVAL);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                let result = tokio::select! {
                    biased;
                    () = cancel.cancelled() => break,
                    result = this.refresh(&source, crate::hub::now_unix()) => result,
                };
                match result {
                    Ok(Outcome::Updated { serial }) => {
                        tracing::info!(%source, serial, "revocation list updated");
                    }
                    Ok(Outcome::Unchanged { serial }) => {
                        tracing::debug!(%source, serial, "revocation list unchanged");
                    }
                    Err(error) => {
                        tracing::warn!(
                            %source,
                            %error,
                            kept_serial = this.current.borrow().serial,
                            "revocation list refresh failed; keeping the current list"
                        );
                    }
                }
            }
        })
    }

    fn check_and_install(&self, bytes: &[u8]) -> Result<Outcome, RevocationError> {
        let SignedRevocationList(signed) =
            SignedRevocationList::decode(bytes).map_err(RevocationError::Decode)?;
        let list = signed
            .verify(&self.portal_keys)
            .map_err(RevocationError::Signature)?;
        if !list.is_well_formed() {
            return Err(RevocationError::NotWellFormed {
                serial: list.serial,
            });
        }
        let offered = list.serial;
        let new = Arc::new(list);
        let mut kept = 0;
        let updated = self.current.send_if_modified(|current| {
            if offered > current.serial {
                *current = new;
                true
            } else {
                kept = current.serial;
                false
            }
        });
        if updated {
            return Ok(Outcome::Updated { serial: offered });
        }
        if offered < kept {
            tracing::warn!(
                offered,
                kept,
                "offered an older revocation list than the current one; keeping the current list"
            );
        }
        Ok(Outcome::Unchanged { serial: kept })
    }

    fn record(&self, now: UnixTime, result: &Result<Outcome, RevocationError>) {
        let mut health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(_) => {
                health.last_success_unix = Some(now.0);
                health.last_error = None;
            }
            Err(error) => health.last_error = Some(error.to_string()),
        }
    }
}

async fn fetch(source: &RevocationSource) -> Result<Vec<u8>, RevocationError> {
    match source {
        RevocationSource::File(path) => read_file(path).await,
        RevocationSource::Url(url) => {
            let url = url.clone();
            tokio::task::spawn_blocking(move || fetch_url(&url))
                .await
                .map_err(|e| RevocationError::Task(e.to_string()))?
        }
    }
}

async fn read_file(path: &Path) -> Result<Vec<u8>, RevocationError> {
    let read_error = |source| RevocationError::ReadFile {
        path: path.to_path_buf(),
        source,
    };
    let file = tokio::fs::File::open(path).await.map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_FETCH_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(read_error)?;
    if bytes.len() > MAX_FETCH_BYTES {
        return Err(RevocationError::FileTooLarge {
            path: path.to_path_buf(),
            max: MAX_FETCH_BYTES,
        });
    }
    Ok(bytes)
}

/// Blocking: call from a blocking thread.
fn fetch_url(url: &str) -> Result<Vec<u8>, RevocationError> {
    let fetch_error = |source| RevocationError::Fetch {
        url: url.to_string(),
        source,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(FETCH_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(fetch_error)?;
    let status = response.status();
    if !status.is_success() {
        return Err(RevocationError::HttpStatus {
            url: url.to_string(),
            status: status.as_u16(),
        });
    }
    response
        .body_mut()
        .with_config()
        .limit(MAX_FETCH_BYTES as u64)
        .read_to_vec()
        .map_err(|error| match error {
            ureq::Error::BodyExceedsLimit(_) => RevocationError::BodyTooLarge {
                url: url.to_string(),
                max: MAX_FETCH_BYTES,
            },
            other => fetch_error(other),
        })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use conclave_protocol::bounded::BoundedVec;
    use conclave_protocol::fixtures::{identity, NOW};
    use conclave_protocol::sign::SigningIdentity;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    fn list(serial: u64, revoked: &[u64]) -> RevocationList {
        RevocationList {
            serial,
            issued_at: NOW,
            revoked: BoundedVec::new(
                revoked
                    .iter()
                    .map(|&n| LicenseNumber::new(n).unwrap())
                    .collect(),
            )
            .unwrap(),
        }
    }

    fn signed(by: &SigningIdentity, list: &RevocationList) -> Vec<u8> {
        conclave_protocol::codec::encode(&by.sign(list))
    }

    fn portal() -> SigningIdentity {
        identity(1)
    }

    fn revocations() -> Revocations {
        Revocations::new(vec![identity(9).public_key(), portal().public_key()])
    }

    fn lic(n: u64) -> LicenseNumber {
        LicenseNumber::new(n).unwrap()
    }

    /// Serves one HTTP request on 127.0.0.1 with `status` and `body`.
    fn serve_once(status: &'static str, body: Vec<u8>) -> (String, std::thread::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/revocations.bin", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            read_request_head(&mut stream);
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            // The client may hang up early (body limit): ignore write errors.
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
            let _ = stream.flush();
        });
        (url, server)
    }

    fn read_request_head(stream: &mut TcpStream) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
    }

    async fn wait_for(mut done: impl FnMut() -> bool) {
        for _ in 0..1000 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the condition did not become true");
    }

    #[test]
    fn starts_empty() {
        let r = revocations();
        assert_eq!(r.current().serial, 0);
        assert!(!r.is_revoked(lic(1_234_567_890)));
        assert_eq!(
            r.status(),
            RevocationStatus {
                serial: 0,
                last_success_unix: None,
                last_error: None
            }
        );
    }

    #[test]
    fn a_newer_list_replaces_the_current_one() {
        let r = revocations();
        let mut updates = r.subscribe();
        let outcome = r
            .offer(&signed(&portal(), &list(5, &[1_234_567_890])), NOW)
            .unwrap();
        assert_eq!(outcome, Outcome::Updated { serial: 5 });
        assert!(r.is_revoked(lic(1_234_567_890)));
        assert!(updates.has_changed().unwrap());
        assert_eq!(updates.borrow_and_update().serial, 5);
        let outcome = r
            .offer(
                &signed(&portal(), &list(6, &[1_000_000_000, 1_234_567_890])),
                NOW,
            )
            .unwrap();
        assert_eq!(outcome, Outcome::Updated { serial: 6 });
        assert!(r.current().is_revoked(lic(1_000_000_000)));
        assert_eq!(
            r.status(),
            RevocationStatus {
                serial: 6,
                last_success_unix: Some(NOW.0),
                last_error: None
            }
        );
    }

    #[test]
    fn an_older_or_equal_serial_never_replaces() {
        let r = revocations();
        r.offer(&signed(&portal(), &list(5, &[1_234_567_890])), NOW)
            .unwrap();
        let before = r.current();
        // Same serial, different content: kept as it was.
        assert_eq!(
            r.offer(&signed(&portal(), &list(5, &[])), NOW).unwrap(),
            Outcome::Unchanged { serial: 5 }
        );
        // An older list that would un-revoke the license.
        assert_eq!(
            r.offer(&signed(&portal(), &list(4, &[])), NOW).unwrap(),
            Outcome::Unchanged { serial: 5 }
        );
        assert_eq!(r.current(), before);
        assert!(r.is_revoked(lic(1_234_567_890)));
    }

    #[test]
    fn a_list_signed_by_another_key_is_refused() {
        let r = revocations();
        r.offer(&signed(&portal(), &list(5, &[1_234_567_890])), NOW)
            .unwrap();
        let err = r
            .offer(&signed(&identity(2), &list(9, &[])), NOW)
            .unwrap_err();
        assert!(
            matches!(
                err,
                RevocationError::Signature(SignatureError::UnknownSigner(_))
            ),
            "{err}"
        );
        assert_eq!(r.current().serial, 5);
        assert!(r.is_revoked(lic(1_234_567_890)));
        let status = r.status();
        assert_eq!(status.serial, 5);
        assert!(status.last_error.unwrap().contains("signature"));
    }

    #[test]
    fn a_list_in_another_domain_is_refused() {
        // A license is not a revocation list, even signed by the portal.
        let license = conclave_protocol::fixtures::license(
            &portal(),
            identity(3).public_key(),
            1_234_567_890,
        );
        let r = revocations();
        assert!(r
            .offer(&conclave_protocol::codec::encode(&license), NOW)
            .is_err());
        assert_eq!(r.current().serial, 0);
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let r = revocations();
        let bytes = signed(&portal(), &list(7, &[1_234_567_890, 2_000_000_000]));
        for i in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                let mut damaged = bytes.clone();
                damaged[i] ^= bit;
                assert!(r.offer(&damaged, NOW).is_err(), "byte {i} bit {bit:#x}");
            }
        }
        assert!(r.offer(&[], NOW).is_err());
        assert!(r.offer(&bytes[..bytes.len() - 1], NOW).is_err());
        assert_eq!(r.current().serial, 0);
        assert_eq!(
            r.offer(&bytes, NOW).unwrap(),
            Outcome::Updated { serial: 7 }
        );
    }

    #[test]
    fn an_unsorted_list_is_refused() {
        let r = revocations();
        let err = r
            .offer(
                &signed(&portal(), &list(3, &[2_000_000_000, 1_234_567_890])),
                NOW,
            )
            .unwrap_err();
        assert!(
            matches!(err, RevocationError::NotWellFormed { serial: 3 }),
            "{err}"
        );
        let err = r
            .offer(
                &signed(&portal(), &list(3, &[1_234_567_890, 1_234_567_890])),
                NOW,
            )
            .unwrap_err();
        assert!(
            matches!(err, RevocationError::NotWellFormed { serial: 3 }),
            "{err}"
        );
        assert_eq!(r.current().serial, 0);
    }

    #[test]
    fn sources_parse() {
        assert_eq!(
            "https://portal.example/revocations"
                .parse::<RevocationSource>()
                .unwrap(),
            RevocationSource::Url("https://portal.example/revocations".into())
        );
        assert_eq!(
            " HTTP://10.0.0.1:8080/r "
                .parse::<RevocationSource>()
                .unwrap(),
            RevocationSource::Url("HTTP://10.0.0.1:8080/r".into())
        );
        assert_eq!(
            "/var/lib/conclave/revocations.bin"
                .parse::<RevocationSource>()
                .unwrap(),
            RevocationSource::File("/var/lib/conclave/revocations.bin".into())
        );
        assert_eq!(
            "http".parse::<RevocationSource>().unwrap(),
            RevocationSource::File("http".into())
        );
        assert!(matches!(
            "  ".parse::<RevocationSource>(),
            Err(RevocationError::EmptySource)
        ));
    }

    #[tokio::test]
    async fn files_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revocations.bin");
        let source = RevocationSource::File(path.clone());
        let r = revocations();

        let err = r.refresh(&source, NOW).await.unwrap_err();
        assert!(matches!(err, RevocationError::ReadFile { .. }), "{err}");

        std::fs::write(&path, signed(&portal(), &list(2, &[1_234_567_890]))).unwrap();
        assert_eq!(
            r.refresh(&source, NOW).await.unwrap(),
            Outcome::Updated { serial: 2 }
        );

        // A newer list with one byte flipped in its signature.
        let mut damaged = signed(&portal(), &list(3, &[]));
        let last = damaged.len() - 1;
        damaged[last] ^= 0x04;
        std::fs::write(&path, &damaged).unwrap();
        let err = r.refresh(&source, NOW).await.unwrap_err();
        assert!(matches!(err, RevocationError::Signature(_)), "{err}");
        assert_eq!(r.current().serial, 2);
        assert!(r.status().last_error.is_some());

        std::fs::write(&path, vec![1u8; MAX_FETCH_BYTES + 1]).unwrap();
        let err = r.refresh(&source, NOW).await.unwrap_err();
        assert!(matches!(err, RevocationError::FileTooLarge { .. }), "{err}");
        assert_eq!(r.current().serial, 2);
    }

    #[tokio::test]
    async fn a_url_is_fetched() {
        let r = revocations();
        let (url, server) = serve_once("200 OK", signed(&portal(), &list(4, &[1_234_567_890])));
        let outcome = r.refresh(&RevocationSource::Url(url), NOW).await.unwrap();
        assert_eq!(outcome, Outcome::Updated { serial: 4 });
        assert!(r.is_revoked(lic(1_234_567_890)));
        server.join().unwrap();
    }

    #[tokio::test]
    async fn a_server_error_keeps_the_list() {
        let r = revocations();
        r.offer(&signed(&portal(), &list(4, &[1_234_567_890])), NOW)
            .unwrap();
        let (url, server) = serve_once("500 Internal Server Error", b"oops".to_vec());
        let err = r
            .refresh(&RevocationSource::Url(url), NOW)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RevocationError::HttpStatus { status: 500, .. }),
            "{err}"
        );
        assert_eq!(r.current().serial, 4);
        server.join().unwrap();
    }

    #[tokio::test]
    async fn an_oversized_download_is_refused() {
        let r = revocations();
        let (url, server) = serve_once("200 OK", vec![0u8; MAX_FETCH_BYTES + 1]);
        let err = r
            .refresh(&RevocationSource::Url(url), NOW)
            .await
            .unwrap_err();
        assert!(matches!(err, RevocationError::BodyTooLarge { .. }), "{err}");
        assert_eq!(r.current().serial, 0);
        server.join().unwrap();
    }

    #[tokio::test]
    async fn an_unreachable_url_keeps_the_list() {
        let r = revocations();
        r.offer(&signed(&portal(), &list(4, &[1_234_567_890])), NOW)
            .unwrap();
        // A port that was just free: nothing listens on it.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let source = RevocationSource::Url(format!("http://127.0.0.1:{port}/revocations.bin"));
        let err = r.refresh(&source, NOW).await.unwrap_err();
        assert!(matches!(err, RevocationError::Fetch { .. }), "{err}");
        assert_eq!(r.current().serial, 4);
        assert!(r.is_revoked(lic(1_234_567_890)));
        let status = r.status();
        assert_eq!(status.last_success_unix, Some(NOW.0));
        assert!(status.last_error.unwrap().contains("cannot download"));
    }

    #[tokio::test]
    async fn the_refresher_picks_up_a_newer_file_and_survives_failures() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revocations.bin");
        let write = |bytes: Vec<u8>| {
            // Replace atomically, as a portal sync should.
            let tmp = dir.path().join("revocations.tmp");
            std::fs::write(&tmp, bytes).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        };
        write(signed(&portal(), &list(1, &[])));
        let r = Arc::new(revocations());
        let cancel = CancellationToken::new();
        let task = r.spawn_refresher(
            RevocationSource::File(path.clone()),
            Duration::from_millis(50),
            cancel.clone(),
        );
        wait_for(|| r.current().serial == 1).await;

        // The portal goes wrong: the list is damaged. The refresher keeps serial 1.
        write(b"\x01garbage".to_vec());
        wait_for(|| r.status().last_error.is_some()).await;
        assert_eq!(r.current().serial, 1);

        write(signed(&portal(), &list(2, &[1_234_567_890])));
        wait_for(|| r.current().serial == 2).await;
        assert!(r.is_revoked(lic(1_234_567_890)));
        assert_eq!(r.status().last_error, None);

        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the refresher stops when cancelled")
            .unwrap();
    }
}
