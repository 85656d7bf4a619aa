//! The account streamer (reference §6): a websocket that pushes the account's orders,
//! balances and positions as they change, to a client that has sent `connect` with its
//! account numbers and a valid access token.
//!
//! As the broker's does, it answers each message with an ack (`status`, `action`,
//! `web-socket-session-id`, `request-id`), drops a client silent longer than the heartbeat
//! limit, never replays what was pushed while a client was away, and silently stops
//! delivering once the session's token has expired: every message carries a token, and the
//! latest valid one keeps the session alive. A heartbeat with a dead token is refused and the
//! session closed. Notifications come from the activity control API, one message per change or
//! `{"results": [...]}` when several change at once; `POST /__sim/streamer/drop` closes every
//! session, as a broker restart would.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

use crate::server::Simulator;

/// What can go wrong on the streamer: `POST /__sim/faults` sets them with the others.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamerFaults {
    /// A client silent this long is dropped (0: the documented 60 s).
    pub heartbeat_seconds: u64,
    /// Every `connect` is refused (`"message": "failed"`), as with a malformed token.
    pub refuse_connect: bool,
}

/// What the activity API pushes to the sessions: notifications for one account, or the end of
/// every session.
#[derive(Debug, Clone)]
pub enum Push {
    Notify {
        account: String,
        notifications: Vec<Value>,
    },
    DropAll,
}

/// One notification as the streamer frames it.
pub fn notification(kind: &str, data: Value) -> Value {
    json!({"type": kind, "data": data, "timestamp": chrono::Utc::now().timestamp_millis()})
}

/// The frame for a batch: the object itself when it is alone, else `{"results": [...]}`.
fn frame(mut notifications: Vec<Value>) -> Value {
    if notifications.len() == 1 {
        notifications.remove(0)
    } else {
        json!({ "results": notifications })
    }
}

pub async fn serve(listener: TcpListener, sim: Simulator) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let sim = sim.clone();
        tokio::spawn(async move {
            if let Ok(socket) = tokio_tungstenite::accept_async(stream).await {
                let pushes = sim.streamer_pushes();
                sim.streamer_sessions(1);
                session(socket, sim.clone(), pushes).await;
                sim.streamer_sessions(-1);
            }
        });
    }
}

/// The state of one session: its id, its accounts once connected, its latest token.
struct Session {
    id: String,
    accounts: Option<Vec<String>>,
    token: String,
}

impl Session {
    fn ack(&self, action: &str, request: &Value, extra: Option<(&str, Value)>) -> Value {
        let mut ack = json!({"status": "ok", "action": action, "web-socket-session-id": self.id});
        if let Some(id) = request.get("request-id") {
            ack["request-id"] = id.clone();
        }
        if let Some((key, value)) = extra {
            ack[key] = value;
        }
        ack
    }

    fn refusal(&self, action: &str, message: &str) -> Value {
        json!({"status": "error", "action": action, "web-socket-session-id": self.id, "message": message})
    }
}

async fn session<S>(
    mut socket: tokio_tungstenite::WebSocketStream<S>,
    sim: Simulator,
    mut pushes: broadcast::Receiver<Push>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let faults = sim.streamer_faults();
    let silence = Duration::from_secs(match faults.heartbeat_seconds {
        0 => 60,
        s => s,
    });
    let mut session = Session {
        id: format!("{:08x}", fastrand::u32(..)),
        accounts: None,
        token: String::new(),
    };
    let mut idle = Box::pin(tokio::time::sleep(silence));
    loop {
        let text = tokio::select! {
            () = &mut idle => {
                // The broker drops an idle socket without a word.
                let _ = socket.close(None).await;
                return;
            }
            push = pushes.recv() => {
                let (account, notifications) = match push {
                    Ok(Push::Notify { account, notifications }) => (account, notifications),
                    Ok(Push::DropAll) | Err(broadcast::error::RecvError::Closed) => {
                        let _ = socket.close(None).await;
                        return;
                    }
                    // A session too slow for the channel misses notifications, as on a real
                    // network; the client's gap sync is what makes up for it.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                };
                let subscribed = session.accounts.as_ref().is_some_and(|a| a.contains(&account));
                // A session whose token has expired silently stops delivering.
                if subscribed && sim.streamer_token_reaches(&session.token, &account) {
                    let text = frame(notifications).to_string();
                    if socket.send(Message::text(text)).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            message = socket.next() => match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
        };
        idle.as_mut().reset(tokio::time::Instant::now() + silence);
        let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let action = message["action"].as_str().unwrap_or_default().to_owned();
        // `Bearer <token>`, as the SDKs send it; a bare token is taken too.
        let token = message["auth-token"].as_str().unwrap_or_default();
        let token = token.strip_prefix("Bearer ").unwrap_or(token).to_owned();
        let (reply, close) = match action.as_str() {
            "connect" => {
                let accounts: Vec<String> = match &message["value"] {
                    Value::String(one) => vec![one.clone()],
                    Value::Array(many) => many
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect(),
                    _ => Vec::new(),
                };
                let reached = !accounts.is_empty()
                    && accounts
                        .iter()
                        .all(|a| sim.streamer_token_reaches(&token, a));
                if faults.refuse_connect || !reached {
                    (session.refusal("connect", "failed"), true)
                } else {
                    session.token = token;
                    let ack = session.ack("connect", &message, Some(("value", json!(accounts))));
                    session.accounts = Some(accounts);
                    (ack, false)
                }
            }
            _ if session.accounts.is_none() => {
                (session.refusal(&action, "connect-not-completed"), false)
            }
            "heartbeat" => {
                let accounts = session.accounts.clone().unwrap_or_default();
                if accounts
                    .iter()
                    .all(|a| sim.streamer_token_reaches(&token, a))
                {
                    session.token = token;
                    (session.ack("heartbeat", &message, None), false)
                } else {
                    (session.refusal("heartbeat", "failed"), true)
                }
            }
            other => (session.refusal(other, "not-implemented"), false),
        };
        if socket.send(Message::text(reply.to_string())).await.is_err() || close {
            let _ = socket.close(None).await;
            return;
        }
    }
}
