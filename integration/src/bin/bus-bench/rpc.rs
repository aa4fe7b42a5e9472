//! `rpc`: calls of a procedure served by a child process, echoing its argument: round-trip
//! percentiles one call at a time, then calls per second with many callers at once.

use super::*;
use bus_actors::{CallRequest, Refusal};

/// The echo procedure's number.
const ECHO: u16 = 400;

/// What `rpc` measures.
#[derive(clap::Args)]
pub(super) struct RpcArgs {
    /// Bytes of each argument and reply.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Calls measured one at a time.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Calls before measuring.
    #[arg(long, default_value_t = 500)]
    warmup_count: usize,
    /// Callers at once for the rate.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds of calls for the rate.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    #[command(flatten)]
    link: Link,
}

/// What the server side of `rpc` is told.
#[derive(clap::Args)]
pub(super) struct RpcServerArgs {
    #[arg(long)]
    group: SocketAddr,
    #[command(flatten)]
    link: Link,
}

pub(super) async fn rpc(args: &RpcArgs) -> Res<()> {
    let (size, link) = (args.size, args.link);
    let group = test_group();
    let mut child = other_side("_rpc-server", group, &link)?
        .spawn()
        .map_err(|e| format!("spawn server: {e}"))?;
    let bus = bench_builder(group, &link, 5)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let servers = bus_actors::TopicId::from_name(&bus_actors::servers_topic(ECHO));
    await_subscribers(&bus, &mut events(&bus), servers, 1, Duration::from_secs(30)).await;
    let server = bus.servers_of(ECHO)[0];
    let deadline = bus_actors::Duration::from_secs(5);
    let argument = vec![0x5a; size];
    let mut rtts = Vec::with_capacity(args.count);
    for seq in 0..args.warmup_count + args.count {
        let sent = Instant::now();
        let reply = bus
            .call_procedure(server, ECHO, &argument, deadline)
            .await
            .map_err(|e| format!("call {seq}: {e}"))?;
        if reply.len() != size {
            return Err(format!("call {seq}: {} bytes back", reply.len()));
        }
        if seq >= args.warmup_count {
            rtts.push(sent.elapsed().as_secs_f64() * 1e6);
        }
    }
    let encrypted = if link.encrypted {
        " encrypted=true"
    } else {
        ""
    };
    println!(
        "peer=bus mode=rpc transport=udp reliability=reliable size={size}{encrypted} {}",
        lat::rtt_fields(&mut rtts)
    );
    let calls = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs_f64(args.secs);
    let callers: FuturesUnordered<_> = (0..args.concurrency)
        .map(|_| {
            let (bus, calls, argument) = (bus.clone(), calls.clone(), argument.clone());
            async move {
                while Instant::now() < until {
                    bus.call_procedure(server, ECHO, &argument, deadline)
                        .await
                        .map_err(|e| e.to_string())?;
                    calls.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<(), String>(())
            }
        })
        .collect();
    let started = Instant::now();
    let results: Vec<Res<()>> = callers.collect().await;
    let elapsed = started.elapsed().as_secs_f64();
    results.into_iter().collect::<Res<Vec<()>>>()?;
    println!(
        "peer=bus mode=rpc_thr transport=udp reliability=reliable size={size}{encrypted} concurrency={} calls_per_s={:.0}",
        args.concurrency,
        calls.load(Ordering::Relaxed) as f64 / elapsed
    );
    let _ = bus.shutdown().await;
    drop(child.stdin.take());
    let _ = child.wait();
    Ok(())
}

/// Echoes every call's argument.
struct Echo;

impl Actor for Echo {
    type Context = Context<Self>;
}

impl Handler<CallRequest> for Echo {
    type Result = Result<Vec<u8>, Refusal>;
    fn handle(&mut self, call: CallRequest, _: &mut Context<Self>) -> Self::Result {
        Ok(call.payload.to_vec())
    }
}

pub(super) async fn rpc_server(args: RpcServerArgs) -> Res<()> {
    let bus = bench_builder(args.group, &args.link, 6)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    bus.serve(ECHO, Echo.start().recipient())
        .map_err(|e| e.to_string())?;
    until_parent_is_done().await;
    let _ = bus.shutdown().await;
    Ok(())
}
