//! `litevault delay-proxy`: a TCP proxy that adds a fixed round trip, to
//! measure replication or PostgreSQL as if the server were across a network.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use litevault_bench::proxy::DelayProxy;

/// Forward TCP connections to a server, adding a round trip to each exchange.
#[derive(Parser, Debug)]
pub struct Args {
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// The server to forward to, e.g. 127.0.0.1:9000.
    #[arg(long)]
    upstream: String,
    /// Round trip to add (half each way), e.g. 10ms.
    #[arg(long, value_parser = litevault::units::parse_duration, default_value = "10ms")]
    rtt: std::time::Duration,
}

pub async fn run(a: Args) -> anyhow::Result<ExitCode> {
    let upstream: std::net::SocketAddr = tokio::net::lookup_host(&a.upstream)
        .await
        .with_context(|| {
            format!(
                "cannot resolve --upstream {:?}; write host:port",
                a.upstream
            )
        })?
        .next()
        .with_context(|| format!("--upstream {:?} resolves to no address", a.upstream))?;
    let proxy = DelayProxy::start(&a.listen, upstream, a.rtt).await?;
    // The address goes to stdout alone, so a script can read it.
    println!("{}", proxy.addr());
    eprintln!(
        "forwarding {} -> {upstream}, adding {:?} per round trip; Ctrl-C to stop",
        proxy.addr(),
        a.rtt
    );
    super::shutdown_signal().await;
    eprintln!("{} connections proxied", proxy.connections());
    Ok(ExitCode::SUCCESS)
}
