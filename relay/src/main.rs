//! `conclave-relay`: run a relay, make a relay key, verify an audit log.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use conclave_relay::config::{write_new_key, Settings};
use conclave_relay::Relay;

#[derive(Debug, Parser)]
#[command(
    name = "conclave-relay",
    version,
    about = "Conclave relay: forwards end-to-end encrypted frames it cannot read"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// TOML configuration file; flags override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Development mode: a throwaway relay key and loopback addresses.
    #[arg(long, global = true)]
    dev: bool,
    #[command(flatten)]
    settings: Settings,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the relay (the default).
    Run,
    /// Write a new relay key to a file and print the public key to pin.
    Keygen {
        /// Where to write the key (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Audit log commands.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check that no record was edited, removed or reordered.
    Verify {
        /// The audit log file.
        file: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("conclave-relay: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Keygen { out }) => {
            let key = write_new_key(&out)?;
            println!("{}", hex::encode(key.public_key().0));
            eprintln!(
                "relay key written to {}; pin the public key above in the portal's relay list",
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Audit {
            command: AuditCommand::Verify { file },
        }) => {
            let f = std::fs::File::open(&file)?;
            match conclave_relay::audit::AuditLog::verify(std::io::BufReader::new(f)) {
                Ok(summary) => {
                    println!(
                        "ok: {} records, chain intact, last hash {}",
                        summary.records,
                        hex::encode(summary.last_hash)
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("TAMPERED: {e}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Some(Command::Run) | None => {
            let file = match &cli.config {
                Some(p) => Settings::from_file(p)?,
                None => Settings::default(),
            };
            let config = file.overlay(cli.settings).resolve(cli.dev)?;
            let drain = config.drain;
            if config.portal_keys.is_empty() {
                tracing::warn!("no portal key configured: every client will be refused until you add --portal-key");
            }
            let relay = Relay::start(config).await?;
            println!("relay key {}", hex::encode(relay.public_key.0));
            for (name, addr) in [
                ("quic", relay.quic),
                ("tls", relay.tls),
                ("websocket", relay.websocket),
                ("admin", relay.admin),
            ] {
                if let Some(a) = addr {
                    println!("{name} {a}");
                }
            }
            shutdown_signal().await;
            tracing::info!(
                drain_secs = drain.as_secs(),
                "shutting down: no new connections, draining sessions"
            );
            relay.shutdown(drain).await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
