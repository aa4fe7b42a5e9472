//! The flags every command that joins the bus shares, and the bus they make.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use bus_actors::{Bus, DEFAULT_GROUP, DEFAULT_PORT, Interface, keys};
use clap::Args;

use crate::Failure;

/// How to join: where, and with which keys. Loopback unless `--interface` says otherwise.
#[derive(Args, Debug)]
pub(crate) struct ConnectArgs {
    /// The interface address to bind and to send multicast from (IPv4; 127.0.0.1 keeps
    /// everything on this host).
    #[arg(long, global = true, default_value_t = Ipv4Addr::LOCALHOST)]
    interface: Ipv4Addr,
    /// The multicast group the cluster beacons on.
    #[arg(long, global = true, default_value_t = DEFAULT_GROUP)]
    group: Ipv4Addr,
    /// The group's port.
    #[arg(long, global = true, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// A peer's unicast address to introduce ourselves to, where multicast does not reach
    /// (repeatable).
    #[arg(long = "seed", global = true, value_name = "ADDR")]
    seeds: Vec<SocketAddr>,
    /// Send nothing to the multicast group: beacons go to the seeds only, messages by
    /// unicast (multicast from others is still heard).
    #[arg(long, global = true)]
    no_multicast: bool,
    /// The cluster's pre-shared key file (made with `bus keygen`).
    #[arg(long, global = true, value_name = "FILE", conflicts_with_all = ["key_file", "insecure"])]
    psk_file: Option<PathBuf>,
    /// Public-key mode: this peer's private key file.
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        requires = "group_key_file",
        conflicts_with = "insecure"
    )]
    key_file: Option<PathBuf>,
    /// Public-key mode: the group's private key file, shared by the members for multicast.
    #[arg(long, global = true, value_name = "FILE", requires = "key_file")]
    group_key_file: Option<PathBuf>,
    /// Public-key mode: a peer's public key to trust, in hex (repeatable).
    #[arg(long = "trust", global = true, value_name = "KEY", requires = "key_file", value_parser = parse_public_key)]
    trusted: Vec<[u8; 32]>,
    /// No encryption or authentication, for a cluster started with `.insecure()`.
    #[arg(long, global = true)]
    insecure: bool,
    /// The metadata this peer announces, as KEY=VALUE (repeatable).
    #[arg(long = "meta", global = true, value_name = "KEY=VALUE", value_parser = parse_metadata)]
    metadata: Vec<(String, String)>,
}

fn parse_public_key(text: &str) -> Result<[u8; 32], String> {
    keys::parse_key(text).ok_or_else(|| "not a 32-byte key in hex or base64".to_owned())
}

fn parse_metadata(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| "expected KEY=VALUE".to_owned())
}

impl ConnectArgs {
    /// Starts a bus as the flags say.
    pub(crate) async fn start(&self) -> Result<Bus, Failure> {
        let mut builder = Bus::builder()
            .interface(Interface::V4(self.interface))
            .group(SocketAddr::new(IpAddr::V4(self.group), self.port))
            .seeds(self.seeds.iter().copied())
            .multicast(!self.no_multicast)
            .metadata("tool", "bus-cli");
        for (key, value) in &self.metadata {
            builder = builder.metadata(key.clone(), value.clone());
        }
        builder = if let Some(file) = &self.psk_file {
            builder.cluster_psk(load(file)?)
        } else if let (Some(identity), Some(group)) = (&self.key_file, &self.group_key_file) {
            let pair = |file| {
                keys::Keypair::from_private(load(file)?)
                    .map_err(|e| Failure(format!("{}: {e}", file.display())))
            };
            let mut builder = builder.public_key_mode(pair(identity)?, pair(group)?);
            for key in &self.trusted {
                builder = builder.trust(*key);
            }
            builder
        } else if self.insecure {
            builder.insecure()
        } else {
            return Err(Failure(
                "choose how to join: --psk-file FILE, --key-file FILE --group-key-file FILE, \
                 or --insecure"
                    .to_owned(),
            ));
        };
        Ok(builder.start().await?)
    }
}

fn load(file: &std::path::Path) -> Result<[u8; 32], Failure> {
    Ok(keys::load_key(file)?)
}
