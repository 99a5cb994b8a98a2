//! `conclave-portal`: the portal's command line.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use conclave_portal::engine::{check_profile, default_profile, Portal};
use conclave_portal::store::RelayRecord;
use conclave_protocol::artefact::{Branding, LicenseNumber, Role, Version};
use conclave_protocol::bounded::BoundedString;

#[derive(Debug, Parser)]
#[command(
    name = "conclave-portal",
    version,
    about = "Conclave portal: keys, relays, profiles, licenses and branded builds"
)]
struct Cli {
    /// Database: a SQLite file path, sqlite://… or postgres://…
    #[arg(
        long,
        env = "CONCLAVE_PORTAL_DB",
        default_value = "portal.db",
        global = true
    )]
    db: String,
    /// File holding the admin passphrase (else $CONCLAVE_PORTAL_PASSPHRASE, else a prompt).
    #[arg(long, global = true)]
    passphrase_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make the portal root key, sealed under the admin passphrase.
    Init,
    /// Print the portal's public key (relays trust it with --portal-key).
    PublicKey,
    /// Relays in the list baked into builds.
    #[command(subcommand)]
    Relay(RelayCmd),
    /// Policy profiles (R16).
    #[command(subcommand)]
    Profile(ProfileCmd),
    /// Branding.
    #[command(subcommand)]
    Brand(BrandCmd),
    /// Moderator licenses (R8).
    #[command(subcommand)]
    License(LicenseCmd),
    /// Revocation lists.
    #[command(subcommand)]
    Revocations(RevocationsCmd),
    /// Brand a generic executable: relay list, profile, branding and (master) license, signed.
    Build {
        /// Which app.
        role: AppRole,
        /// Profile name.
        #[arg(long)]
        profile: String,
        /// Brand name.
        #[arg(long)]
        brand: String,
        /// License number (master builds).
        #[arg(long)]
        license: Option<u64>,
        /// The generic executable cargo built (default: next to this program).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Where to write the branded executable.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a branded executable from outside.
    Verify {
        /// The file.
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AppRole {
    Master,
    Participant,
}

#[derive(Debug, Subcommand)]
enum RelayCmd {
    /// Add a relay.
    Add {
        /// Name.
        name: String,
        /// Host name or address.
        #[arg(long)]
        host: String,
        /// The relay's public key (printed by `conclave-relay keygen`).
        #[arg(long)]
        key: String,
        /// QUIC port (0: none).
        #[arg(long, default_value_t = 5000)]
        quic: u16,
        /// TLS port (0: none).
        #[arg(long, default_value_t = 5443)]
        tls: u16,
        /// WebSocket port (0: none).
        #[arg(long, default_value_t = 5444)]
        websocket: u16,
        /// Region label.
        #[arg(long, default_value = "")]
        region: String,
        /// Lower is preferred.
        #[arg(long, default_value_t = 10)]
        priority: u8,
    },
    /// List relays.
    List,
    /// Remove a relay.
    Remove {
        /// Name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum ProfileCmd {
    /// Create or change a profile: `--set remote_control=true --set max_participants=5`.
    Set {
        /// Name.
        name: String,
        /// field=value, repeatable; fields as `profile show` prints them.
        #[arg(long = "set")]
        sets: Vec<String>,
    },
    /// Print a profile as JSON.
    Show {
        /// Name.
        name: String,
    },
    /// List profiles.
    List,
}

#[derive(Debug, Subcommand)]
enum BrandCmd {
    /// Create or change a brand.
    Set {
        /// Name.
        name: String,
        /// Product name in window titles.
        #[arg(long)]
        product: String,
        /// Organisation.
        #[arg(long)]
        organisation: String,
        /// Accent colour, RRGGBB.
        #[arg(long, default_value = "2060c0")]
        accent: String,
        /// Where users get help.
        #[arg(long, default_value = "")]
        support_url: String,
    },
    /// List brands.
    List,
}

#[derive(Debug, Subcommand)]
enum LicenseCmd {
    /// Issue a license (prints its number).
    Issue {
        /// Who holds it.
        #[arg(long)]
        licensee: String,
        /// Profile name.
        #[arg(long)]
        profile: String,
        /// Days of validity.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// List licenses.
    List,
    /// Revoke a license (then publish the revocation list).
    Revoke {
        /// The number.
        number: u64,
    },
}

#[derive(Debug, Subcommand)]
enum RevocationsCmd {
    /// Write a new signed revocation list.
    Publish {
        /// Where.
        #[arg(long)]
        out: PathBuf,
    },
    /// Serve the published list at http://LISTEN/revocations for relays.
    Serve {
        /// The published file.
        #[arg(long)]
        file: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8480")]
        listen: std::net::SocketAddr,
    },
}

fn passphrase(cli: &Cli) -> anyhow::Result<String> {
    if let Some(f) = &cli.passphrase_file {
        let mut s = String::new();
        std::fs::File::open(f)
            .with_context(|| format!("cannot open {}", f.display()))?
            .take(4096)
            .read_to_string(&mut s)?;
        return Ok(s.trim_end_matches(['\n', '\r']).to_string());
    }
    if let Ok(p) = std::env::var("CONCLAVE_PORTAL_PASSPHRASE") {
        return Ok(p);
    }
    Ok(rpassword::prompt_password("admin passphrase: ")?)
}

fn generic_binary(role: Role, given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let name = match role {
        Role::Master => "conclave-master",
        Role::Participant => "conclave-participant",
    };
    let here = std::env::current_exe()?;
    let p = here.with_file_name(name);
    if !p.exists() {
        bail!("no generic {name} next to this program: build it with `cargo build --release -p {name}` or pass --binary");
    }
    Ok(p)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conclave-portal: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let portal = Portal::open(&cli.db).await?;
    let store = portal.store();
    match &cli.command {
        Command::Init => {
            let key = portal
                .init(&passphrase(&cli)?, &mut rand_core::OsRng)
                .await?;
            println!("{}", hex::encode(key.0));
            eprintln!(
                "portal root key made; give the public key above to every relay (--portal-key)"
            );
        }
        Command::PublicKey => println!("{}", hex::encode(portal.public_key().await?.0)),
        Command::Relay(RelayCmd::Add {
            name,
            host,
            key,
            quic,
            tls,
            websocket,
            region,
            priority,
        }) => {
            let bytes = hex::decode(key.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok());
            let Some(k) = bytes else {
                bail!("--key must be the relay's 64-digit hex public key")
            };
            store
                .add_relay(&RelayRecord {
                    name: name.clone(),
                    host: host.clone(),
                    quic_port: *quic,
                    tls_port: *tls,
                    websocket_port: *websocket,
                    public_key: conclave_protocol::sign::PublicKey(k),
                    region: region.clone(),
                    priority: *priority,
                })
                .await?;
        }
        Command::Relay(RelayCmd::List) => {
            for r in store.relays().await? {
                println!(
                    "{}\t{}\tquic:{} tls:{} websocket:{}\t{}\tpriority {}\t{}",
                    r.name,
                    r.host,
                    r.quic_port,
                    r.tls_port,
                    r.websocket_port,
                    r.region,
                    r.priority,
                    hex::encode(r.public_key.0)
                );
            }
        }
        Command::Relay(RelayCmd::Remove { name }) => {
            if !store.remove_relay(name).await? {
                bail!("no relay named {name}");
            }
        }
        Command::Profile(ProfileCmd::Set { name, sets }) => {
            let base = match store.profile(name).await {
                Ok(p) => p,
                Err(conclave_portal::store::StoreError::NotFound { .. }) => default_profile(name)?,
                Err(e) => return Err(e.into()),
            };
            let mut v = serde_json::to_value(&base)?;
            for s in sets {
                let Some((k, val)) = s.split_once('=') else {
                    bail!("--set takes field=value, got {s:?}")
                };
                let parsed = serde_json::from_str(val)
                    .unwrap_or_else(|_| serde_json::Value::String(val.to_string()));
                let slot = k.split('.').try_fold(&mut v, |v, part| v.get_mut(part));
                match slot {
                    Some(slot) if k != "name" => *slot = parsed,
                    _ => bail!(
                        "unknown profile field {k:?}: see `conclave-portal profile show {name}`"
                    ),
                }
            }
            let p = serde_json::from_value(v).context("a value has the wrong type")?;
            check_profile(&p)?;
            store.put_profile(&p).await?;
        }
        Command::Profile(ProfileCmd::Show { name }) => println!(
            "{}",
            serde_json::to_string_pretty(&store.profile(name).await?)?
        ),
        Command::Profile(ProfileCmd::List) => {
            for p in store.profiles().await? {
                println!("{}", p.name);
            }
        }
        Command::Brand(BrandCmd::Set {
            name,
            product,
            organisation,
            accent,
            support_url,
        }) => {
            let rgb = hex::decode(accent)
                .ok()
                .and_then(|b| <[u8; 3]>::try_from(b).ok());
            let Some(accent_rgb) = rgb else {
                bail!("--accent is six hex digits, like 2060c0")
            };
            let branding = Branding {
                product_name: bounded("product", product)?,
                organisation: bounded("organisation", organisation)?,
                accent_rgb,
                support_url: bounded("support url", support_url)?,
            };
            store.put_brand(name, &branding).await?;
        }
        Command::Brand(BrandCmd::List) => {
            for (name, b) in store.brands().await? {
                println!("{name}\t{}\t{}", b.product_name, b.organisation);
            }
        }
        Command::License(LicenseCmd::Issue {
            licensee,
            profile,
            days,
        }) => {
            let unlocked = portal.unlock(&passphrase(&cli)?).await?;
            let r = portal
                .issue_license(&unlocked, licensee, profile, *days, &mut rand_core::OsRng)
                .await?;
            println!("{}", r.number);
        }
        Command::License(LicenseCmd::List) => {
            for r in store.licenses().await? {
                let state = if r.revoked_at.is_some() {
                    "revoked"
                } else {
                    "valid"
                };
                println!(
                    "{}\t{}\t{}\texpires {}\t{state}",
                    r.number, r.licensee, r.profile, r.expires_at
                );
            }
        }
        Command::License(LicenseCmd::Revoke { number }) => {
            let n = LicenseNumber::new(*number).context("license numbers have ten digits")?;
            if !store
                .revoke_license(n, conclave_portal::engine::now().0 as i64)
                .await?
            {
                bail!("license {n} was already revoked");
            }
            eprintln!("license {n} revoked; run `conclave-portal revocations publish` so relays learn of it");
        }
        Command::Revocations(RevocationsCmd::Publish { out }) => {
            let unlocked = portal.unlock(&passphrase(&cli)?).await?;
            let list = portal.revocation_list(&unlocked).await?;
            let tmp = out.with_extension("tmp");
            std::fs::write(&tmp, conclave_protocol::codec::encode(&list))?;
            std::fs::rename(&tmp, out)?;
            eprintln!("revocation list written to {}", out.display());
        }
        Command::Revocations(RevocationsCmd::Serve { file, listen }) => {
            let stop = tokio_util::sync::CancellationToken::new();
            let (tx, rx) = tokio::sync::oneshot::channel();
            let server = tokio::spawn(conclave_portal::serve::serve(
                *listen,
                file.clone(),
                stop.clone(),
                tx,
            ));
            if let Ok(addr) = rx.await {
                println!("serving http://{addr}/revocations");
            }
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
            server.await??;
        }
        Command::Build {
            role,
            profile,
            brand,
            license,
            binary,
            out,
        } => {
            let role = match role {
                AppRole::Master => Role::Master,
                AppRole::Participant => Role::Participant,
            };
            let path = generic_binary(role, binary.clone())?;
            let exe =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let unlocked = portal.unlock(&passphrase(&cli)?).await?;
            let license = license
                .map(|n| LicenseNumber::new(n).context("license numbers have ten digits"))
                .transpose()?;
            let version: Version = conclave_portal::engine::portal_version();
            let branded = portal
                .build(&unlocked, role, &exe, profile, brand, license, version)
                .await?;
            write_executable(out, &branded)?;
            eprintln!("{role} build written to {}", out.display());
        }
        Command::Verify { file } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            let v = portal.verify(&bytes).await?;
            println!(
                "ok: {} build signed by this portal ({})",
                v.config.role,
                v.config.portal_key.fingerprint()
            );
        }
    }
    Ok(())
}

fn bounded<const N: usize>(what: &str, s: &str) -> anyhow::Result<BoundedString<N>> {
    BoundedString::new(s).map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

fn write_executable(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}
