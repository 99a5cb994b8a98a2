//! What a session tells its app, and what the app tells the session.
//!
//! Both apps are thin over these: the command line prints each [`Event`] as a
//! line of text or of JSON (`serde`), and parses [`Command`]s from its input;
//! the windows of the later GUI draw from the same stream.

use conclave_protocol::frame::PeerId;
use conclave_protocol::stage2::Rights;
use serde::Serialize;

/// A member as the participant list shows it (R27).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberInfo {
    /// Its ID in the session (the master is 1).
    pub peer: u32,
    /// Its name.
    pub name: String,
    /// Its rights, by name.
    pub rights: Vec<&'static str>,
}

/// Something the app shows or acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Stage 1 passed: connected to a relay.
    Connected {
        /// The relay's name.
        relay: String,
        /// QUIC, TLS/TCP or WebSocket (R19).
        transport: String,
    },
    /// (Master) the relay opened the session.
    SessionOpened {
        /// The session ID to give to participants.
        session: String,
        /// `support` or `meeting`.
        kind: &'static str,
    },
    /// (Participant) the master's signed announce verified.
    Announced {
        /// The licensee named in the portal-signed license.
        licensee: String,
        /// The moderator's name.
        moderator: String,
        /// `support` or `meeting`.
        kind: &'static str,
    },
    /// (Participant) keys agreed; compare this code with the moderator's.
    JoinCode {
        /// Eight digits.
        safety_code: String,
    },
    /// (Master) a participant waits for admission: compare the code.
    AdmissionRequested {
        /// Its ID.
        peer: u32,
        /// Its name.
        name: String,
        /// Its host.
        host: String,
        /// Eight digits, the same as the participant's.
        safety_code: String,
    },
    /// A participant is admitted.
    Admitted {
        /// Its ID.
        peer: u32,
        /// Its name.
        name: String,
        /// Its host (on the master's side; empty on the participant's).
        host: String,
        /// Whether it proved the session password.
        password_verified: bool,
    },
    /// A join failed.
    JoinFailed {
        /// The participant, on the master's side.
        peer: Option<u32>,
        /// Why, for people.
        reason: String,
    },
    /// A participant left or was removed.
    Left {
        /// Its ID.
        peer: u32,
        /// Its name.
        name: String,
        /// `left`, `removed`, `connection_lost` or `session_ended`.
        reason: &'static str,
    },
    /// A new epoch (group key) is in force, with the participant list.
    Epoch {
        /// The epoch number.
        epoch: u32,
        /// The code every member shows now.
        session_code: String,
        /// Whether the session is locked (R26).
        locked: bool,
        /// Members, master first.
        members: Vec<MemberInfo>,
    },
    /// A participant's rights changed.
    Rights {
        /// Whose.
        peer: u32,
        /// The rights now held, by name.
        rights: Vec<&'static str>,
    },
    /// The session was locked or unlocked (R26).
    Locked {
        /// Locked now.
        locked: bool,
    },
    /// A chat message (R27).
    Chat {
        /// Sender.
        from: u32,
        /// Sender's name.
        name: String,
        /// Text.
        text: String,
    },
    /// The relay dropped frames that policy forbids (R13).
    PolicyDropped {
        /// The frame class.
        class: String,
        /// The relay's explanation.
        message: String,
    },
    /// The relay refused a request.
    Refused {
        /// The refusal code.
        code: String,
        /// For people.
        message: String,
        /// When to try again, if the relay said.
        retry_after_ms: u64,
    },
    /// The relay was lost; moving to the next one (R18).
    RelayLost {
        /// The relay's name.
        relay: String,
        /// Why.
        reason: String,
    },
    /// The session goes on through another relay (R18).
    Resumed {
        /// The new relay's name.
        relay: String,
        /// Its transport.
        transport: String,
        /// From the last frame through the lost relay to the session's
        /// return (a fresh epoch for a participant, the reopened session for
        /// the master), in milliseconds.
        gap_ms: u64,
    },
    /// Something is wrong that people must know (e.g. frames altered on the way).
    Warning {
        /// For people.
        message: String,
    },
    /// A command could not be carried out.
    Error {
        /// For people.
        message: String,
    },
    /// The session is over for this app; nothing follows.
    Ended {
        /// Why, for people.
        reason: String,
    },
}

/// Something the app asks of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// (Master) admit a waiting participant.
    Admit(PeerId),
    /// (Master) refuse a waiting participant.
    Deny(PeerId),
    /// (Master) remove a member; the group key changes at once.
    Remove(PeerId),
    /// (Master) set a member's rights.
    Grant(PeerId, Rights),
    /// (Master) lock or unlock (R26).
    Lock(bool),
    /// Send a chat message to everyone (R27).
    Chat(String),
    /// Leave (a participant) or end the session for everyone (the master).
    Leave,
}

/// The names of `rights`, for people and JSON.
pub fn rights_names(rights: Rights) -> Vec<&'static str> {
    RIGHTS
        .iter()
        .filter(|(r, _)| rights.contains(*r))
        .map(|(_, n)| *n)
        .collect()
}

/// Every right with its name.
pub const RIGHTS: [(Rights, &str); 4] = [
    (Rights::PRESENTER, "presenter"),
    (Rights::REMOTE_CONTROL, "control"),
    (Rights::FILE_TRANSFER, "files"),
    (Rights::RECORDING, "recording"),
];

/// Parses `presenter,control,files,recording` (any subset; `none` or empty for none).
pub fn parse_rights(text: &str) -> Result<Rights, String> {
    let mut rights = Rights::NONE;
    for word in text
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty() && *w != "none")
    {
        let (r, _) = RIGHTS.iter().find(|(_, n)| *n == word).ok_or_else(|| {
            format!("unknown right {word:?}: use presenter, control, files, recording or none")
        })?;
        rights = rights.with(*r);
    }
    Ok(rights)
}

/// Parses one line of app input into a command.
pub fn parse_command(line: &str) -> Result<Command, String> {
    let line = line.trim();
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let rest = rest.trim();
    let peer = || -> Result<PeerId, String> {
        let id = rest
            .split_whitespace()
            .next()
            .ok_or("name the participant by its number")?;
        id.parse::<u32>()
            .map(PeerId)
            .map_err(|_| format!("{id:?} is not a participant number"))
    };
    match word {
        "admit" => Ok(Command::Admit(peer()?)),
        "deny" => Ok(Command::Deny(peer()?)),
        "remove" => Ok(Command::Remove(peer()?)),
        "grant" => {
            let id = peer()?;
            let rights = rest.split_once(' ').map_or("", |(_, r)| r);
            Ok(Command::Grant(id, parse_rights(rights)?))
        }
        "lock" => Ok(Command::Lock(true)),
        "unlock" => Ok(Command::Lock(false)),
        "chat" | "say" if !rest.is_empty() => Ok(Command::Chat(rest.to_string())),
        "leave" | "end" | "quit" => Ok(Command::Leave),
        _ => Err(format!(
            "unknown command {line:?}: admit N, deny N, remove N, grant N RIGHTS, lock, unlock, chat TEXT, leave"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_mistakes_say_what_to_type() {
        assert_eq!(parse_command("admit 2"), Ok(Command::Admit(PeerId(2))));
        assert_eq!(
            parse_command("grant 3 control,files"),
            Ok(Command::Grant(
                PeerId(3),
                Rights::REMOTE_CONTROL.with(Rights::FILE_TRANSFER)
            ))
        );
        assert_eq!(
            parse_command("grant 3 none"),
            Ok(Command::Grant(PeerId(3), Rights::NONE))
        );
        assert_eq!(
            parse_command("chat  hello there "),
            Ok(Command::Chat("hello there".into()))
        );
        assert_eq!(parse_command("unlock"), Ok(Command::Lock(false)));
        assert!(parse_command("admit x")
            .unwrap_err()
            .contains("not a participant"));
        assert!(parse_command("grant 2 root")
            .unwrap_err()
            .contains("unknown right"));
        assert!(parse_command("dance")
            .unwrap_err()
            .contains("unknown command"));
    }

    #[test]
    fn events_serialize_as_tagged_json() {
        let e = Event::Chat {
            from: 2,
            name: "Ann".into(),
            text: "hi".into(),
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"chat","from":2,"name":"Ann","text":"hi"}"#
        );
        assert_eq!(rights_names(Rights::ALL).len(), 4);
    }
}
