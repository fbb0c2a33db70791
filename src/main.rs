//! `whipcast [--config FILE] [--listen ADDR]`: parse flags, load config, run.
//! `whipcast plan-ladder --width W --height H [--hint N]`: print the ladder whipcast would
//! build for that source.
//! `whipcast print-pipelines --width W --height H [...]`: print, as `gst-launch-1.0` text
//! generated from the real builders, the pipeline whipcast would build for that source (what
//! `pipelines/*.sh` run, so the CPU baseline cannot drift).

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
    PlanLadder(SourceArgs),
    /// Print the gst-launch-1.0 description of the pipeline whipcast would build for a
    /// source, read back from the elements its builders make (`#` lines: what stands in for
    /// appsrc/appsink and what has no gst-launch form). Uses `media.*` and `hls.*` settings.
    PrintPipelines(PrintArgs),
}

/// The source a ladder is planned for.
#[derive(clap::Args, Debug)]
struct SourceArgs {
    /// Width of the source's first frame.
    #[arg(long)]
    width: u32,
    /// Height of the source's first frame.
    #[arg(long)]
    height: u32,
    /// The publisher's declared capture height (`?height=`); default `video.plan_height`.
    #[arg(long)]
    hint: Option<u32>,
}

#[derive(clap::Args, Debug)]
struct PrintArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Video codec the publisher sends: H264, VP8 or VP9.
    #[arg(long, default_value = "H264")]
    codec: whipcast::media::VideoCodec,
    /// RTP payload type of the video.
    #[arg(long, default_value_t = 102)]
    video_pt: u8,
    /// RTP payload type of the Opus audio.
    #[arg(long, default_value_t = 111)]
    audio_pt: u8,
    /// The publisher sends no audio (whipcast generates a silent AAC track).
    #[arg(long)]
    no_audio: bool,
    /// Loopback UDP port for video RTP (stands in for the appsrc).
    #[arg(long, default_value_t = 5004)]
    video_port: u16,
    /// Port for video RTCP; default the RTP port + 1 (RFC 3550 §11).
    #[arg(long)]
    video_rtcp_port: Option<u16>,
    /// Loopback UDP port for audio RTP.
    #[arg(long, default_value_t = 5006)]
    audio_port: u16,
    /// Port for audio RTCP; default the RTP port + 1.
    #[arg(long)]
    audio_rtcp_port: Option<u16>,
    /// Write each rendition to DIR/NAME.mp4 (filesink) instead of a fakesink.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    whipcast::logging::init(args.log_format);
    let mut cfg = whipcast::Config::load(args.config.as_deref())?;
    if let Some(Command::PlanLadder(src)) = args.command {
        let ladder = cfg.media.resolve_ladder()?;
        for r in ladder.plan(src.width, src.height, src.hint) {
            println!("{} {} {} {}", r.name, r.width, r.height, r.bitrate_kbps);
        }
        return Ok(());
    }
    if let Some(Command::PrintPipelines(p)) = args.command {
        use whipcast::media::{AudioInput, Ports, PrintOptions, VideoInput};
        whipcast::media::init()?;
        let ladder = cfg.media.resolve_ladder()?;
        let opts = PrintOptions {
            width: p.source.width,
            height: p.source.height,
            height_hint: p.source.hint,
            video: VideoInput {
                codec: p.codec,
                payload_type: p.video_pt,
            },
            audio: (!p.no_audio).then_some(AudioInput {
                payload_type: p.audio_pt,
            }),
            segment_duration: cfg.hls.segment_duration,
            part_duration: Some(cfg.hls.part_duration).filter(|d| !d.is_zero()),
            ports: Ports {
                video: p.video_port,
                video_rtcp: p.video_rtcp_port.unwrap_or(p.video_port.saturating_add(1)),
                audio: p.audio_port,
                audio_rtcp: p.audio_rtcp_port.unwrap_or(p.audio_port.saturating_add(1)),
            },
            out_dir: p.out_dir,
        };
        print!("{}", whipcast::media::print_pipelines(&ladder, &opts)?);
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
