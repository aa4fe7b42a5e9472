//! The security policy of an endpoint: which keys it holds, whom it trusts, and what that means
//! for handshakes and multicast epochs.

use std::collections::HashMap;

use crate::PeerId;
use crate::crypto::handshake::{Credentials, PresharedKey};
use crate::crypto::noise::Keypair;
use zeroize::Zeroizing;

use super::FastHash;
use crate::crypto::{
    OpenError, SenderEpoch, epoch_key_psk, epoch_key_receiver_with, epoch_tag_key_pk,
    epoch_tag_key_psk, epoch_tag_matches,
};

/// How the bus protects its traffic.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Security {
    /// No encryption and no authentication: anyone on the network can read and forge traffic.
    /// For development only; it must be chosen by name and logs a warning when the bus starts.
    Insecure,
    /// Every packet encrypted and authenticated with keys derived from pre-shared keys: one
    /// for the whole cluster, and/or one per peer id.
    Psk {
        /// The key every peer shares, if any.
        cluster: Option<PresharedKey>,
        /// Keys for particular peers, which take precedence.
        per_peer: HashMap<PeerId, PresharedKey>,
    },
    /// Every peer has an X25519 key pair and knows the public keys of the peers it trusts;
    /// unicast sessions come from Noise `KK` handshakes. Multicast is sealed for a group key
    /// pair every member holds (Noise K: only the sender and the group can derive it).
    PublicKey {
        /// This peer's key pair.
        identity: Keypair,
        /// The group's key pair, shared by every member.
        group: Keypair,
        /// The peers trusted, with their public keys.
        trusted: HashMap<PeerId, [u8; 32]>,
    },
}

impl Security {
    /// The key of `peer`, if it is allowed to talk to us (PSK mode).
    pub fn psk_of(&self, peer: PeerId) -> Option<&PresharedKey> {
        match self {
            Security::Psk { cluster, per_peer } => per_peer.get(&peer).or(cluster.as_ref()),
            _ => None,
        }
    }

    /// The credentials of a handshake between `client` (the initiator) and `other`, seen from
    /// this peer (`local`), or `None` if either is not trusted.
    pub fn credentials(&self, local: PeerId, client: PeerId, other: PeerId) -> Option<Credentials> {
        match self {
            Security::Insecure => None,
            Security::Psk { .. } => {
                let responder = if client == local { other } else { local };
                self.psk_of(client)
                    .cloned()
                    .map(|key| Credentials::Psk { key, responder })
            }
            Security::PublicKey {
                identity, trusted, ..
            } => {
                let remote = if client == local { other } else { client };
                trusted.get(&remote).map(|key| Credentials::PublicKey {
                    local: identity.clone(),
                    remote: *key,
                })
            }
        }
    }

    /// The key of `sender`'s epoch `material` at `timestamp_ms` once its `tag` checks out:
    /// one hash decides, before any key derivation (in public-key mode before any
    /// Diffie-Hellman but, once per sender, the static one, kept in `static_dh`).
    ///
    /// # Errors
    /// [`OpenError::UnknownSender`] if the sender is not trusted; [`OpenError::Auth`] if the
    /// tag is wrong (a forged epoch).
    pub fn checked_epoch_key(
        &self,
        sender: PeerId,
        (material, timestamp_ms, tag): (&[u8; 32], u64, &[u8; 16]),
        static_dh: &mut HashMap<PeerId, Zeroizing<[u8; 32]>, FastHash>,
    ) -> Result<[u8; 32], OpenError> {
        match self {
            Security::Insecure => Err(OpenError::UnknownSender),
            Security::Psk { .. } => {
                let psk = self.psk_of(sender).ok_or(OpenError::UnknownSender)?;
                let tag_key = Zeroizing::new(epoch_tag_key_psk(&psk.0, sender));
                if !epoch_tag_matches(&tag_key, sender, material, timestamp_ms, tag) {
                    return Err(OpenError::Auth);
                }
                Ok(epoch_key_psk(&psk.0, sender, material, timestamp_ms))
            }
            Security::PublicKey { group, trusted, .. } => {
                let sender_static = trusted.get(&sender).ok_or(OpenError::UnknownSender)?;
                let dh = match static_dh.get(&sender) {
                    Some(dh) => dh.clone(),
                    None => {
                        let dh =
                            Zeroizing::new(group.dh(sender_static).map_err(|_| OpenError::Auth)?);
                        static_dh.insert(sender, dh.clone());
                        dh
                    }
                };
                let tag_key = Zeroizing::new(epoch_tag_key_pk(&dh, sender));
                if !epoch_tag_matches(&tag_key, sender, material, timestamp_ms, tag) {
                    return Err(OpenError::Auth);
                }
                epoch_key_receiver_with(group, sender, &dh, material, timestamp_ms)
                    .map_err(|_| OpenError::Auth)
            }
        }
    }

    /// A new multicast epoch for this peer, its material drawn from `rng`.
    pub fn new_epoch<R: rand::CryptoRng + ?Sized>(
        &self,
        local: PeerId,
        timestamp_ms: u64,
        rng: &mut R,
    ) -> Option<SenderEpoch> {
        match self {
            Security::Insecure => None,
            Security::Psk { .. } => {
                let psk = self.psk_of(local)?;
                Some(SenderEpoch::generate_psk(local, &psk.0, timestamp_ms, rng))
            }
            Security::PublicKey {
                identity, group, ..
            } => SenderEpoch::generate_pk(local, identity, group.public(), timestamp_ms, rng).ok(),
        }
    }

    /// Whether traffic goes in plaintext.
    pub fn is_insecure(&self) -> bool {
        matches!(self, Security::Insecure)
    }
}
