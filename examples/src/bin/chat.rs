//! A chat room on loopback: run it in several terminals with one key file, type a line, and
//! everyone sees it; people joining and leaving are announced by name.
//!
//! ```sh
//! cargo run -p bus-cli -- keygen room.key        # once
//! cargo run -p examples --bin chat -- --psk-file room.key alice
//! cargo run -p examples --bin chat -- --psk-file room.key bob      # in another terminal
//! ```
//!
//! End with Ctrl-D (end of input): the peer says goodbye and the others see it leave.

#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use actix::prelude::*;
use bus_actors::{Bus, BusEvent, DEFAULT_PORT, Event, PeerId, Topic, keys};
use clap::Parser;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

/// One line said in the room.
#[derive(Clone, Debug, Deserialize, Serialize, Topic)]
#[topic(name = "chat/room/lobby")]
struct ChatLine {
    nick: String,
    text: String,
}

/// A chat room: lines typed go to everyone in it.
#[derive(Parser)]
#[command(name = "chat")]
struct Args {
    /// The name others see.
    nick: String,
    /// The room's key file (`bus keygen FILE` makes one); without it, the room is unencrypted.
    #[arg(long)]
    psk_file: Option<PathBuf>,
    /// The group port the room meets on.
    #[arg(long, default_value_t = DEFAULT_PORT)]
    port: u16,
}

/// Prints what others say, and who comes and goes, by name.
struct Screen {
    me: PeerId,
    nicks: HashMap<PeerId, String>,
}

impl Actor for Screen {
    type Context = Context<Self>;
}

impl Handler<Event<ChatLine>> for Screen {
    type Result = ();
    fn handle(&mut self, event: Event<ChatLine>, _: &mut Context<Self>) {
        if event.from != self.me {
            println!("<{}> {}", event.message.nick, event.message.text);
        }
    }
}

impl Handler<BusEvent> for Screen {
    type Result = ();
    fn handle(&mut self, event: BusEvent, _: &mut Context<Self>) {
        let name = |nicks: &HashMap<PeerId, String>, id: &PeerId| {
            nicks
                .get(id)
                .cloned()
                .unwrap_or_else(|| format!("peer {id}"))
        };
        match event {
            BusEvent::PeerJoined(peer) => {
                let nick = peer.metadata("nick").unwrap_or("someone").to_owned();
                // Known already when we began listening: in the room, and said so only now.
                if peer.confirmed && peer.topics.contains(&ChatLine::ID) {
                    println!("* {nick} joined");
                }
                self.nicks.insert(peer.id, nick);
            }
            // Announced once it can be sent to (it answered us), not when first heard of.
            BusEvent::SubscriberJoined { topic, peer } if topic == ChatLine::ID => {
                println!("* {} joined", name(&self.nicks, &peer));
            }
            BusEvent::PeerLeft(id) => {
                println!("* {} left", name(&self.nicks, &id));
                self.nicks.remove(&id);
            }
            BusEvent::PeerUnreachable(id) => println!("* {} went quiet", name(&self.nicks, &id)),
            _ => {}
        }
    }
}

#[actix::main]
async fn main() -> ExitCode {
    examples::log_to_stderr();
    match chat(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn chat(args: Args) -> Result<(), bus_actors::Error> {
    let builder = Bus::builder()
        .group(SocketAddr::from(([239, 255, 28, 12], args.port)))
        .metadata("nick", args.nick.clone());
    let bus = match &args.psk_file {
        Some(file) => builder.cluster_psk(keys::load_key(file)?),
        None => builder.insecure(),
    }
    .start()
    .await?;
    let screen = Screen {
        me: bus.local_id(),
        nicks: HashMap::new(),
    }
    .start();
    bus.subscribe::<ChatLine>(screen.clone().recipient())
        .await?;
    bus.subscribe_events(screen.recipient());
    println!("* you are {}; type to talk, Ctrl-D to leave", args.nick);

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(text)) = lines.next_line().await {
        if text.trim().is_empty() {
            continue;
        }
        bus.publish(ChatLine {
            nick: args.nick.clone(),
            text,
        })
        .await?;
    }
    bus.shutdown().await
}
