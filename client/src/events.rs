//! What a session tells its app, and what the app tells the session.
//!
//! Both apps are thin over these: the command line prints each [`Event`] as a
//! line of text or of JSON (`serde`), and parses [`Command`]s from its input;
//! the windows of the later GUI draw from the same stream.

use conclave_protocol::app::ControlEnd;
use conclave_protocol::bounded::BoundedString;
use conclave_protocol::frame::PeerId;
use conclave_protocol::input::{InputEvent, MouseButton, NamedKey};
use conclave_protocol::shared::BlobId;
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
    /// Who presents now (`None`: nobody; 1 is the moderator).
    Presenter {
        /// The presenter.
        peer: Option<u32>,
    },
    /// This app started or stopped sharing its screen.
    Sharing {
        /// Whether it shares now.
        active: bool,
        /// What it shares.
        source: String,
    },
    /// A viewer's figures, every second while screen frames arrive: the live
    /// line.
    ScreenStats {
        /// The presenter.
        from: u32,
        /// Whole frames shown per second.
        fps: u32,
        /// Screen bytes received per second.
        bytes_per_s: u64,
        /// Mean capture-to-display latency in ms (by the presenter's and this
        /// host's clocks: meaningful when they agree, as on one machine).
        latency_ms: u64,
        /// The interval's largest latency in ms.
        latency_max_ms: u64,
        /// Screen width.
        width: u32,
        /// Screen height.
        height: u32,
    },
    /// The moderator asks to control this computer: answer `allow` or
    /// `deny` before the countdown runs out.
    ControlRequested {
        /// Who asks.
        by: String,
        /// Seconds of countdown.
        seconds: u32,
        /// What happens when it runs out: "allow" or "deny".
        default: &'static str,
    },
    /// Remote control of a participant changed: asked, active, denied or
    /// ended.
    Control {
        /// The controlled participant.
        peer: u32,
        /// The new state.
        state: &'static str,
        /// Why.
        reason: String,
    },
    /// A hand was raised or lowered (R27).
    Hand {
        /// Whose.
        peer: u32,
        /// Raised (true) or lowered.
        raised: bool,
    },
    /// A recording started or stopped (R25).
    Recording {
        /// Whether it runs now.
        active: bool,
        /// Who records.
        by: String,
    },
    /// A file is offered to this side (R23): `accept ID` or `decline ID`.
    FileOffered {
        /// Who offers it.
        peer: u32,
        /// The transfer's number (per peer and direction).
        id: u32,
        /// Its name.
        name: String,
        /// Its size in bytes.
        size: u64,
    },
    /// A file transfer moved on: every step is shown on both sides (R23).
    File {
        /// The other side.
        peer: u32,
        /// The transfer's number.
        id: u32,
        /// "send" or "receive".
        direction: &'static str,
        /// offered, accepted, declined, progress, complete, cancelled or failed.
        state: &'static str,
        /// Bytes done.
        done: u64,
        /// Bytes in all.
        size: u64,
        /// The file's path, or what went wrong.
        detail: String,
    },
    /// A shared file (R24) moved on: uploading, uploaded (a participant's,
    /// waiting for the moderator), available (`fetch ID`), fetching,
    /// progress, fetched, removed or failed.
    Shared {
        /// Its number in the session: 16 hex digits.
        id: String,
        /// Its name.
        name: String,
        /// Its size in bytes.
        size: u64,
        /// Who shared it.
        from: String,
        /// The step.
        state: &'static str,
        /// Bytes done.
        done: u64,
        /// The saved file's path, the file shared, or what went wrong.
        detail: String,
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
    /// (Master) who presents (the moderator is peer 1; `None`: nobody).
    Present(Option<PeerId>),
    /// (Master) ask a participant for remote control.
    RequestControl(PeerId),
    /// (Master) end remote control.
    ReleaseControl,
    /// (Master) input events, in order, for the participant that granted
    /// control.
    Input(Vec<InputEvent>),
    /// (Participant) allow the pending control request.
    AllowControl,
    /// (Participant) deny the pending control request.
    DenyControl,
    /// (Participant) end remote control at once.
    StopControl(ControlEnd),
    /// (Participant) refuse control requests without asking (view only).
    ViewOnly(bool),
    /// Offer a file (R23) to a participant (master; `None`: the only one)
    /// or to the moderator (participant).
    SendFile(Option<PeerId>, std::path::PathBuf),
    /// Accept an offered file from a peer (`None`: the only one offering).
    AcceptFile(Option<PeerId>, u32),
    /// Decline an offered file.
    DeclineFile(Option<PeerId>, u32),
    /// Share a file with everyone in the session, kept on the relay (R24).
    Share(std::path::PathBuf),
    /// (Master) delete a shared file.
    Unshare(BlobId),
    /// Fetch a shared file into the downloads folder.
    Fetch(BlobId),
    /// Start (`true`) or stop recording the session (R25).
    Record(bool),
    /// (Participant) raise or lower the hand; (master) lower a
    /// participant's hand with `Some(peer)` (R27).
    Hand(Option<PeerId>, bool),
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
        "deny" if !rest.is_empty() => Ok(Command::Deny(peer()?)),
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
        "present" => match rest {
            "me" => Ok(Command::Present(Some(PeerId::MASTER))),
            "nobody" | "stop" => Ok(Command::Present(None)),
            _ => Ok(Command::Present(Some(peer()?))),
        },
        "control" => Ok(Command::RequestControl(peer()?)),
        "release" => Ok(Command::ReleaseControl),
        "allow" => Ok(Command::AllowControl),
        "deny" if rest.is_empty() => Ok(Command::DenyControl),
        "stop" => Ok(Command::StopControl(ControlEnd::StopButton)),
        "view-only" => match rest {
            "on" | "" => Ok(Command::ViewOnly(true)),
            "off" => Ok(Command::ViewOnly(false)),
            _ => Err("view-only on or view-only off".into()),
        },
        "send" => {
            let (who, path) = match rest.split_once(' ') {
                Some((n, p)) if n.parse::<u32>().is_ok() => (Some(peer()?), p.trim()),
                _ => (None, rest),
            };
            if path.is_empty() {
                return Err("send [N] FILE".into());
            }
            Ok(Command::SendFile(who, path.into()))
        }
        "accept" | "decline" => {
            let mut it = rest.split_whitespace();
            let (who, id) = match (it.next(), it.next()) {
                (Some(p), Some(id)) => (Some(p), id),
                (Some(id), None) => (None, id),
                _ => return Err(format!("{word} [PEER] ID")),
            };
            let who = who
                .map(|p| p.parse::<u32>().map(PeerId).map_err(|_| format!("{p:?} is not a participant number")))
                .transpose()?;
            let id = id.parse::<u32>().map_err(|_| format!("{id:?} is not a transfer number"))?;
            Ok(if word == "accept" {
                Command::AcceptFile(who, id)
            } else {
                Command::DeclineFile(who, id)
            })
        }
        "share" if !rest.is_empty() => Ok(Command::Share(rest.into())),
        "share" => Err("share FILE".into()),
        "unshare" => rest.parse().map(Command::Unshare),
        "fetch" => rest.parse().map(Command::Fetch),
        "raise" => Ok(Command::Hand(None, true)),
        "lower" if rest.is_empty() => Ok(Command::Hand(None, false)),
        "lower" => Ok(Command::Hand(Some(peer()?), false)),
        "record" => match rest {
            "" | "start" => Ok(Command::Record(true)),
            "stop" => Ok(Command::Record(false)),
            _ => Err("record or record stop".into()),
        },
        "move" | "click" | "press" | "release-button" | "wheel" | "type" | "key" => {
            input_command(word, rest).map(Command::Input)
        }
        _ => Err(format!(
            "unknown command {line:?}: admit N, deny N, remove N, grant N RIGHTS, lock, unlock, chat TEXT, present N|me|nobody, control N, send [N] FILE, accept [N] ID, decline [N] ID, share FILE, fetch ID, unshare ID, record [stop], raise, lower [N], release, move X Y, click [BUTTON], type TEXT, key NAME, wheel N, allow, deny, stop, view-only on|off, leave"
        )),
    }
}

/// Input events for `move X Y`, `click [left|middle|right]`, `press
/// BUTTON`, `release-button BUTTON`, `wheel N`, `type TEXT`, `key NAME`.
fn input_command(word: &str, rest: &str) -> Result<Vec<InputEvent>, String> {
    let button = |name: &str| match name {
        "" | "left" => Ok(MouseButton::Left),
        "middle" => Ok(MouseButton::Middle),
        "right" => Ok(MouseButton::Right),
        other => Err(format!("unknown button {other:?}: left, middle or right")),
    };
    let number = |text: &str| -> Result<i64, String> {
        text.parse()
            .map_err(|_| format!("{text:?} is not a number"))
    };
    match word {
        "move" => {
            let mut it = rest.split_whitespace();
            let (Some(x), Some(y)) = (it.next(), it.next()) else {
                return Err("move X Y".into());
            };
            let x = u16::try_from(number(x)?).map_err(|_| "x out of range".to_string())?;
            let y = u16::try_from(number(y)?).map_err(|_| "y out of range".to_string())?;
            Ok(vec![InputEvent::MoveTo { x, y }])
        }
        "click" => {
            let b = button(rest)?;
            Ok(vec![
                InputEvent::Button {
                    button: b,
                    pressed: true,
                },
                InputEvent::Button {
                    button: b,
                    pressed: false,
                },
            ])
        }
        "press" | "release-button" => Ok(vec![InputEvent::Button {
            button: button(rest)?,
            pressed: word == "press",
        }]),
        "wheel" => {
            let dy = i8::try_from(number(rest)?).map_err(|_| "wheel -127..=127".to_string())?;
            Ok(vec![InputEvent::Wheel { dx: 0, dy }])
        }
        "type" => Ok(vec![InputEvent::Text(
            BoundedString::new(rest).map_err(|e| e.to_string())?,
        )]),
        _ => {
            let key = NAMED_KEYS
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(rest))
                .map(|(_, k)| *k)
                .ok_or_else(|| {
                    let names: Vec<&str> = NAMED_KEYS.iter().map(|(n, _)| *n).collect();
                    format!("unknown key {rest:?}: {}", names.join(", "))
                })?;
            Ok(vec![
                InputEvent::Key { key, pressed: true },
                InputEvent::Key {
                    key,
                    pressed: false,
                },
            ])
        }
    }
}

/// Keys by the names commands use.
const NAMED_KEYS: [(&str, NamedKey); 16] = [
    ("Return", NamedKey::Return),
    ("Tab", NamedKey::Tab),
    ("Backspace", NamedKey::Backspace),
    ("Delete", NamedKey::Delete),
    ("Escape", NamedKey::Escape),
    ("Left", NamedKey::Left),
    ("Right", NamedKey::Right),
    ("Up", NamedKey::Up),
    ("Down", NamedKey::Down),
    ("Home", NamedKey::Home),
    ("End", NamedKey::End),
    ("PageUp", NamedKey::PageUp),
    ("PageDown", NamedKey::PageDown),
    ("Shift", NamedKey::Shift),
    ("Control", NamedKey::Control),
    ("Alt", NamedKey::Alt),
];

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
        assert_eq!(
            parse_command("present me"),
            Ok(Command::Present(Some(PeerId::MASTER)))
        );
        assert_eq!(parse_command("deny"), Ok(Command::DenyControl));
        assert_eq!(parse_command("deny 4"), Ok(Command::Deny(PeerId(4))));
        assert_eq!(
            parse_command("type hello world"),
            Ok(Command::Input(vec![InputEvent::Text(
                BoundedString::new("hello world").unwrap()
            )]))
        );
        assert_eq!(
            parse_command("move 10 20"),
            Ok(Command::Input(vec![InputEvent::MoveTo { x: 10, y: 20 }]))
        );
        assert!(parse_command("key F13")
            .unwrap_err()
            .contains("unknown key"));
        assert!(parse_command("move 70000 1").is_err());
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
