//! A chat room on loopback: run it in several terminals, type a line, and everyone sees it.
//!
//! ```sh
//! cargo run -p examples --bin chat -- alice
//! cargo run -p examples --bin chat -- bob      # in another terminal
//! ```
//!
//! End with Ctrl-D (end of input): the peer says goodbye and the others see it leave.

#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use actix::prelude::*;
use bus_actors::{Bus, BusEvent, Event, Topic};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

/// One line said in the room.
#[derive(Clone, Debug, Deserialize, Serialize, Topic)]
#[topic(name = "chat/room/lobby")]
struct ChatLine {
    nick: String,
    text: String,
}

/// Prints what others say, and who comes and goes.
struct Screen {
    me: bus_actors::PeerId,
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
        match event {
            BusEvent::PeerJoined(peer) => {
                println!("* {} joined", peer.metadata("nick").unwrap_or("someone"));
            }
            BusEvent::PeerLeft(id) => println!("* peer {id} left"),
            BusEvent::PeerUnreachable(id) => println!("* peer {id} went quiet"),
            _ => {}
        }
    }
}

#[actix::main]
async fn main() -> ExitCode {
    let Some(nick) = std::env::args().nth(1) else {
        eprintln!("usage: chat NICKNAME");
        return ExitCode::from(2);
    };
    match chat(nick).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chat: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn chat(nick: String) -> Result<(), bus_actors::Error> {
    let bus = Bus::builder()
        .insecure()
        .metadata("nick", nick.clone())
        .start()
        .await?;
    let screen = Screen { me: bus.local_id() }.start();
    bus.subscribe::<ChatLine>(screen.clone().recipient())
        .await?;
    bus.subscribe_events(screen.recipient());
    println!("* you are {nick}; type to talk, Ctrl-D to leave");

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(text)) = lines.next_line().await {
        if text.trim().is_empty() {
            continue;
        }
        bus.publish(ChatLine {
            nick: nick.clone(),
            text,
        })
        .await?;
    }
    bus.shutdown().await
}
