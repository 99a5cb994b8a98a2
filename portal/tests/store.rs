//! The portal's database on both backends: every operation of
//! `conclave_portal::store` runs, through the same test bodies, against an
//! SQLite file and against a real temporary PostgreSQL server
//! (`common::pg`). Requirements R4 (portal keys and rotation), R8 (licenses,
//! revocation, the revocation list's serial), R16 (policy profiles) and R18
//! (the relay list).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeSet;

use common::pg::TempPostgres;
use conclave_portal::secret::{self, KdfParams, SealedSecret};
use conclave_portal::store::{
    Backend, LicenseRecord, RelayRecord, RootKeyRecord, Store, StoreError,
};
use conclave_protocol::artefact::{Branding, LicenseNumber, PolicyProfile, RecordingPolicy};
use conclave_protocol::fixtures::{self, s};
use conclave_protocol::sign::PublicKey;

/// Cheap Argon2 parameters: the construction is the one production uses.
const FAST: KdfParams = KdfParams {
    m_cost_kib: 64,
    t_cost: 1,
    p_cost: 1,
};
const PASSPHRASE: &str = "a long admin passphrase";

fn sealed(secret: [u8; 32]) -> SealedSecret {
    secret::seal_with_params(&secret, PASSPHRASE, FAST, &mut fixtures::rng(7)).unwrap()
}

fn root_key(seed: u64, created_at: i64, active: bool) -> RootKeyRecord {
    let identity = fixtures::identity(seed);
    RootKeyRecord::new(
        identity.public_key(),
        sealed(*identity.to_seed()),
        created_at,
        active,
    )
}

fn relay(name: &str, priority: u8) -> RelayRecord {
    RelayRecord {
        name: name.into(),
        host: format!("{name}.relay.example.org"),
        quic_port: 443,
        tls_port: 443,
        websocket_port: 8443,
        public_key: PublicKey([priority; 32]),
        region: "eu".into(),
        priority,
    }
}

fn number(n: u64) -> LicenseNumber {
    LicenseNumber::new(n).unwrap()
}

fn license(n: u64, signed_by: &str) -> LicenseRecord {
    let master = fixtures::identity(n);
    LicenseRecord {
        number: number(n),
        licensee: format!("Licensee {n}"),
        profile: "support".into(),
        master_public: master.public_key(),
        master_seed: sealed(*master.to_seed()),
        issued_at: 1_795_000_000,
        expires_at: 1_826_536_000,
        revoked_at: None,
        signed_by: signed_by.into(),
    }
}

fn branding(product: &str) -> Branding {
    Branding {
        product_name: s(product),
        organisation: s("Acme"),
        accent_rgb: [0x20, 0x60, 0xc0],
        support_url: s("https://support.acme.example"),
    }
}

// ---- the test bodies, each run on both backends ----------------------------

/// R4: root keys are kept for rotation; exactly one is active at a time.
async fn root_keys_rotate(store: &Store) {
    assert_eq!(store.active_root_key().await.unwrap(), None);
    assert_eq!(store.root_keys().await.unwrap(), vec![]);

    let k1 = root_key(1, 100, true);
    let k2 = root_key(2, 200, false);
    store.insert_root_key(&k1).await.unwrap();
    store.insert_root_key(&k2).await.unwrap();
    assert_eq!(store.active_root_key().await.unwrap(), Some(k1.clone()));
    assert_eq!(
        store.root_keys().await.unwrap(),
        vec![k1.clone(), k2.clone()]
    );

    // The sealed seed comes back intact and opens to the key it was made from.
    let back = store.active_root_key().await.unwrap().unwrap();
    let seed = secret::open(&back.sealed, PASSPHRASE).unwrap();
    assert_eq!(
        conclave_protocol::sign::SigningIdentity::from_seed(&seed).public_key(),
        k1.public_key
    );

    // The same key twice.
    let again = RootKeyRecord {
        created_at: 999,
        ..k1.clone()
    };
    assert_eq!(
        store.insert_root_key(&again).await,
        Err(StoreError::Duplicate {
            what: "root key",
            name: k1.key_id.clone()
        })
    );
    // A refused insert changes nothing, even an active one.
    let dup_active = RootKeyRecord {
        active: true,
        ..k2.clone()
    };
    assert!(matches!(
        store.insert_root_key(&dup_active).await,
        Err(StoreError::Duplicate { .. })
    ));
    assert_eq!(store.active_root_key().await.unwrap(), Some(k1.clone()));

    // A key ID that is not the key's fingerprint.
    let mut wrong = root_key(9, 300, false);
    wrong.key_id = k2.key_id.clone();
    assert!(matches!(
        store.insert_root_key(&wrong).await,
        Err(StoreError::Invalid { .. })
    ));

    // Rotation: a new active key retires the old one in the same step.
    let k3 = root_key(3, 300, true);
    store.insert_root_key(&k3).await.unwrap();
    let actives = |keys: Vec<RootKeyRecord>| {
        keys.into_iter()
            .filter(|k| k.active)
            .map(|k| k.key_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        actives(store.root_keys().await.unwrap()),
        vec![k3.key_id.clone()]
    );

    // Switching back to an older key.
    store.set_active_root_key(&k2.key_id).await.unwrap();
    assert_eq!(
        actives(store.root_keys().await.unwrap()),
        vec![k2.key_id.clone()]
    );
    assert_eq!(
        store.active_root_key().await.unwrap().map(|k| k.key_id),
        Some(k2.key_id.clone())
    );
    store.set_active_root_key(&k2.key_id).await.unwrap();
    assert_eq!(
        actives(store.root_keys().await.unwrap()),
        vec![k2.key_id.clone()]
    );

    // An unknown key changes nothing.
    assert_eq!(
        store.set_active_root_key("0011223344556677").await,
        Err(StoreError::NotFound {
            what: "root key",
            name: "0011223344556677".into()
        })
    );
    assert_eq!(
        actives(store.root_keys().await.unwrap()),
        vec![k2.key_id.clone()]
    );
    let all = store.root_keys().await.unwrap();
    assert_eq!(
        all.iter().map(|k| k.created_at).collect::<Vec<_>>(),
        vec![100, 200, 300],
        "oldest first"
    );
}

/// R18: the relay list, ordered by priority then name.
async fn relay_list(store: &Store) {
    assert_eq!(store.relays().await.unwrap(), vec![]);
    for r in [relay("b", 2), relay("z", 1), relay("a", 1), relay("B", 2)] {
        store.add_relay(&r).await.unwrap();
    }
    let names = |relays: Vec<RelayRecord>| relays.into_iter().map(|r| r.name).collect::<Vec<_>>();
    // Byte order on both backends, whatever PostgreSQL's collation.
    assert_eq!(names(store.relays().await.unwrap()), ["a", "z", "B", "b"]);
    assert_eq!(store.relays().await.unwrap()[0], relay("a", 1));

    let mut dup = relay("z", 9);
    dup.host = "elsewhere".into();
    assert_eq!(
        store.add_relay(&dup).await,
        Err(StoreError::Duplicate {
            what: "relay",
            name: "z".into()
        })
    );
    assert_eq!(store.relays().await.unwrap()[1], relay("z", 1));

    // Strings too long for a build's relay list are refused up front.
    let mut long = relay("long", 3);
    long.region = "r".repeat(33);
    assert!(matches!(
        store.add_relay(&long).await,
        Err(StoreError::Invalid { .. })
    ));

    // Extreme values survive.
    let edge = RelayRecord {
        quic_port: 0,
        tls_port: u16::MAX,
        websocket_port: 1,
        priority: u8::MAX,
        ..relay("edge", 0)
    };
    store.add_relay(&edge).await.unwrap();
    assert_eq!(store.relays().await.unwrap().last(), Some(&edge));
    let entry = edge.to_entry().unwrap();
    assert_eq!((entry.name.as_str(), entry.tls_port), ("edge", u16::MAX));

    assert!(store.remove_relay("z").await.unwrap());
    assert!(!store.remove_relay("z").await.unwrap());
    assert!(!store.remove_relay("nowhere").await.unwrap());
    assert_eq!(
        names(store.relays().await.unwrap()),
        ["a", "B", "b", "edge"]
    );
}

/// R16: policy profiles by name; brands by name.
async fn profiles_and_brands(store: &Store) {
    assert_eq!(
        store.profile("support").await,
        Err(StoreError::NotFound {
            what: "policy profile",
            name: "support".into()
        })
    );
    assert_eq!(store.profiles().await.unwrap(), vec![]);

    let support = fixtures::profile();
    store.put_profile(&support).await.unwrap();
    assert_eq!(store.profile("support").await.unwrap(), support);

    // Putting a profile of the same name replaces it.
    let stricter = PolicyProfile {
        remote_control: false,
        recording: RecordingPolicy::Forced,
        ..support.clone()
    };
    store.put_profile(&stricter).await.unwrap();
    assert_eq!(store.profile("support").await.unwrap(), stricter);

    let webcast = PolicyProfile {
        name: s("Marketing webcast"),
        max_participants: 1000,
        screen_sharing: true,
        ..support.clone()
    };
    store.put_profile(&webcast).await.unwrap();
    assert_eq!(
        store.profiles().await.unwrap(),
        vec![webcast.clone(), stricter.clone()]
    );

    // Brands.
    assert_eq!(
        store.brand("acme").await,
        Err(StoreError::NotFound {
            what: "brand",
            name: "acme".into()
        })
    );
    store
        .put_brand("acme", &branding("Acme Support"))
        .await
        .unwrap();
    store
        .put_brand("Zeta", &branding("Zeta Help"))
        .await
        .unwrap();
    assert_eq!(store.brand("acme").await.unwrap(), branding("Acme Support"));
    store
        .put_brand("acme", &branding("Acme Desk"))
        .await
        .unwrap();
    assert_eq!(
        store.brands().await.unwrap(),
        vec![
            ("Zeta".to_string(), branding("Zeta Help")),
            ("acme".to_string(), branding("Acme Desk")),
        ]
    );
}

/// R8: licenses are issued once per number and revoked once.
async fn licenses_and_revocation(store: &Store) {
    assert_eq!(store.licenses().await.unwrap(), vec![]);
    assert_eq!(store.revoked_numbers().await.unwrap(), vec![]);

    let signer = fixtures::identity(1).public_key().fingerprint().to_string();
    let (a, b, c) = (
        license(9_999_999_999, &signer),
        license(1_000_000_000, &signer),
        license(5_555_555_555, &signer),
    );
    for l in [&a, &b, &c] {
        store.insert_license(l).await.unwrap();
    }
    assert_eq!(store.license(a.number).await.unwrap(), a);
    assert_eq!(
        store.licenses().await.unwrap(),
        vec![b.clone(), c.clone(), a.clone()]
    );
    let master = secret::open(
        &store.license(c.number).await.unwrap().master_seed,
        PASSPHRASE,
    )
    .unwrap();
    assert_eq!(
        conclave_protocol::sign::SigningIdentity::from_seed(&master).public_key(),
        c.master_public
    );
    let signed = c.to_license().unwrap();
    assert_eq!(
        (signed.number, signed.licensee.as_str()),
        (c.number, "Licensee 5555555555")
    );

    let mut dup = license(1_000_000_000, &signer);
    dup.licensee = "Someone else".into();
    assert_eq!(
        store.insert_license(&dup).await,
        Err(StoreError::Duplicate {
            what: "license",
            name: "1000000000".into()
        })
    );
    assert_eq!(store.license(b.number).await.unwrap(), b);
    assert_eq!(
        store.license(number(1_234_567_890)).await,
        Err(StoreError::NotFound {
            what: "license",
            name: "1234567890".into()
        })
    );
    let mut long = license(2_000_000_000, &signer);
    long.licensee = "x".repeat(129);
    assert!(matches!(
        store.insert_license(&long).await,
        Err(StoreError::Invalid { .. })
    ));

    // Revocation.
    assert!(store.revoke_license(a.number, 1_800_000_000).await.unwrap());
    assert!(!store.revoke_license(a.number, 1_900_000_000).await.unwrap());
    assert_eq!(
        store.license(a.number).await.unwrap().revoked_at,
        Some(1_800_000_000),
        "a second revocation keeps the first time"
    );
    assert_eq!(
        store.revoke_license(number(1_234_567_890), 1).await,
        Err(StoreError::NotFound {
            what: "license",
            name: "1234567890".into()
        })
    );
    assert!(store.revoke_license(b.number, 1_800_000_001).await.unwrap());
    assert_eq!(
        store.revoked_numbers().await.unwrap(),
        vec![b.number, a.number]
    );
    assert_eq!(store.license(c.number).await.unwrap().revoked_at, None);
}

/// R8: the revocation list's serial starts at 1 and only goes up.
async fn serial_counts_up(store: &Store) {
    for expected in 1..=3 {
        assert_eq!(store.next_revocation_serial().await.unwrap(), expected);
    }
}

/// R8: 20 concurrent callers never get the same serial, and each sees its
/// own values strictly increase.
async fn serial_under_concurrency(store: &Store) {
    const CALLERS: u64 = 20;
    const CALLS: u64 = 5;
    let tasks: Vec<_> = (0..CALLERS)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..CALLS {
                    seen.push(store.next_revocation_serial().await.unwrap());
                }
                seen
            })
        })
        .collect();
    let mut all = BTreeSet::new();
    for task in tasks {
        let seen = task.await.unwrap();
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
        for v in seen {
            assert!(all.insert(v), "serial {v} handed out twice");
        }
    }
    assert_eq!(
        all.into_iter().collect::<Vec<_>>(),
        (1..=CALLERS * CALLS).collect::<Vec<_>>()
    );
    assert_eq!(
        store.next_revocation_serial().await.unwrap(),
        CALLERS * CALLS + 1
    );
}

/// R4: what the portal stored is there after it restarts, and the
/// migrations run again without harm.
async fn survives_reopening(location: &str) {
    let store = Store::open(location).await.unwrap();
    let key = root_key(1, 100, true);
    store.insert_root_key(&key).await.unwrap();
    store.add_relay(&relay("eu-1", 1)).await.unwrap();
    store.put_profile(&fixtures::profile()).await.unwrap();
    store.put_brand("acme", &branding("Acme")).await.unwrap();
    store
        .insert_license(&license(1_234_567_890, &key.key_id))
        .await
        .unwrap();
    store
        .revoke_license(number(1_234_567_890), 1_800_000_000)
        .await
        .unwrap();
    assert_eq!(store.next_revocation_serial().await.unwrap(), 1);
    store.close().await;

    let store = Store::open(location).await.unwrap();
    assert_eq!(store.active_root_key().await.unwrap(), Some(key.clone()));
    assert_eq!(store.relays().await.unwrap(), vec![relay("eu-1", 1)]);
    assert_eq!(store.profiles().await.unwrap(), vec![fixtures::profile()]);
    assert_eq!(store.brand("acme").await.unwrap(), branding("Acme"));
    assert_eq!(
        store.revoked_numbers().await.unwrap(),
        vec![number(1_234_567_890)]
    );
    assert_eq!(store.next_revocation_serial().await.unwrap(), 2);
    store.close().await;
}

// ---- the backends ------------------------------------------------------------

async fn on_sqlite<F, Fut>(body: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portal.db");
    let store = Store::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    body(store.clone()).await;
    store.close().await;
    assert!(path.is_file(), "the database is a file at the path given");
}

async fn on_postgres<F, Fut>(body: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let pg = TempPostgres::start();
    let store = Store::open(pg.url()).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    body(store.clone()).await;
    store.close().await;
    drop(pg);
}

/// One test per backend for each body.
macro_rules! on_both_backends {
    ($($body:ident => $sqlite:ident, $postgres:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            on_sqlite(|store| async move { $body(&store).await }).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            on_postgres(|store| async move { $body(&store).await }).await;
        }
    )*};
}

on_both_backends! {
    root_keys_rotate => r4_root_keys_rotate_on_sqlite, r4_root_keys_rotate_on_postgres;
    relay_list => r18_relay_list_on_sqlite, r18_relay_list_on_postgres;
    profiles_and_brands => r16_profiles_and_brands_on_sqlite, r16_profiles_and_brands_on_postgres;
    licenses_and_revocation => r8_licenses_and_revocation_on_sqlite, r8_licenses_and_revocation_on_postgres;
    serial_counts_up => r8_revocation_serial_counts_up_on_sqlite, r8_revocation_serial_counts_up_on_postgres;
    serial_under_concurrency => r8_revocation_serial_is_unique_under_20_concurrent_callers_on_sqlite,
        r8_revocation_serial_is_unique_under_20_concurrent_callers_on_postgres;
}

#[tokio::test]
async fn r4_sqlite_file_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    // A path with characters that mean something in a URL.
    let path = dir.path().join("my portal #1?.db");
    survives_reopening(path.to_str().unwrap()).await;
    assert!(path.is_file());
}

#[tokio::test]
async fn r4_postgres_database_survives_reopening() {
    let pg = TempPostgres::start();
    survives_reopening(pg.url()).await;
}

#[tokio::test]
async fn sqlite_urls_and_memory_databases_work() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/by-url.db?mode=rwc", dir.path().display());
    let store = Store::open(&url).await.unwrap();
    store.put_brand("acme", &branding("Acme")).await.unwrap();
    store.close().await;
    assert!(dir.path().join("by-url.db").is_file());

    // An in-memory database is one database, however many queries run.
    let store = Store::open("sqlite::memory:").await.unwrap();
    serial_under_concurrency(&store).await;
    profiles_and_brands(&store).await;
}

#[tokio::test]
async fn unsupported_and_unreachable_databases_are_refused_clearly() {
    let e = Store::open("mysql://root:hunter2@localhost/portal")
        .await
        .unwrap_err();
    assert_eq!(
        e,
        StoreError::Unsupported("mysql://localhost/portal".into())
    );
    assert!(!e.to_string().contains("hunter2"));

    // Nothing listens on port 1.
    let e = Store::open("postgres://postgres:hunter2@127.0.0.1:1/portal")
        .await
        .unwrap_err();
    assert!(matches!(&e, StoreError::Database(_)), "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[tokio::test]
async fn corrupt_rows_are_reported_not_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portal.db");
    let store = Store::open(path.to_str().unwrap()).await.unwrap();
    store.put_profile(&fixtures::profile()).await.unwrap();
    store.add_relay(&relay("eu-1", 1)).await.unwrap();
    store
        .insert_license(&license(1_234_567_890, "0011223344556677"))
        .await
        .unwrap();
    store.close().await;

    // Someone edits the database behind the portal's back.
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", path.display());
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    for sql in [
        "UPDATE profiles SET body = '{\"name\": \"support\"' WHERE name = 'support'",
        "UPDATE relays SET public_key = 'not hex' WHERE name = 'eu-1'",
        "UPDATE licenses SET master_seed = '{}' WHERE number = 1234567890",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    pool.close().await;

    let store = Store::open(path.to_str().unwrap()).await.unwrap();
    let corrupt = |r: Result<(), StoreError>, what: &str| match r {
        Err(e @ StoreError::Corrupt { .. }) => {
            assert!(e.to_string().contains(what), "{e}");
            assert!(e.to_string().contains("backup"), "{e}");
        }
        other => panic!("{what}: {other:?}"),
    };
    corrupt(store.profile("support").await.map(drop), "policy profile");
    corrupt(store.profiles().await.map(drop), "policy profile");
    corrupt(store.relays().await.map(drop), "relay");
    corrupt(store.licenses().await.map(drop), "license");
    corrupt(
        store.license(number(1_234_567_890)).await.map(drop),
        "license",
    );
}
