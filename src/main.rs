//! `whipcast [--config FILE] [--listen ADDR]`: parse flags, load config, run.
//! `whipcast plan-ladder --width W --height H [--hint N]`: print the ladder whipcast would
//! build for that source (what `pipelines/*.sh` build, so the CPU baseline cannot drift).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// WebRTC (WHIP / WebSocket) to adaptive HLS live streaming gateway.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// TOML configuration file (see deploy/whipcast.toml); every key has a default.
    #[arg(short, long, env = "WHIPCAST_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on; overrides `server.listen`.
    #[arg(short, long, env = "WHIPCAST_LISTEN")]
    listen: Option<SocketAddr>,
    /// Base URL for Location headers and playback links; overrides `server.public_url`.
    #[arg(long, env = "WHIPCAST_PUBLIC_URL")]
    public_url: Option<String>,
    /// Bearer token required to publish; overrides `auth.token`.
    #[arg(long, env = "WHIPCAST_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Log lines as `text` (control characters escaped) or `json` (for log shippers).
    #[arg(long, env = "WHIPCAST_LOG_FORMAT", default_value = "text")]
    log_format: whipcast::logging::LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Print the rungs planned for a source, one `NAME WIDTH HEIGHT KBPS` line each, from the
    /// configured ladder (`media.ladder_file`, or the embedded pipelines/ladder.toml).
    PlanLadder {
        /// Width of the source's first frame.
        #[arg(long)]
        width: u32,
        /// Height of the source's first frame.
        #[arg(long)]
        height: u32,
        /// The publisher's declared capture height (`?height=`); default `video.plan_height`.
        #[arg(long)]
        hint: Option<u32>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    whipcast::logging::init(args.log_format);
    let mut cfg = whipcast::Config::load(args.config.as_deref())?;
    if let Some(Command::PlanLadder {
        width,
        height,
        hint,
    }) = args.command
    {
        let ladder = cfg.media.resolve_ladder()?;
        for r in ladder.plan(width, height, hint) {
            println!("{} {} {} {}", r.name, r.width, r.height, r.bitrate_kbps);
        }
        return Ok(());
    }
    if let Some(l) = args.listen {
        cfg.server.listen = l;
    }
    if let Some(u) = args.public_url {
        cfg.server.public_url = u;
    }
    if let Some(t) = args.token {
        cfg.auth.token = t;
    }
    cfg.validate()?;
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.server.listen))?;
    whipcast::run(cfg, listener, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
