//! The account streamer (reference §6): one websocket per grant that pushes the grant's
//! orders, balances and positions as they change.
//!
//! The protocol is small: `connect` with the account numbers and an access token, acked with
//! `status: ok`; `heartbeat` every 15–20 s, each with a currently valid token (the socket is
//! dropped after about a minute of silence, and a session whose token expired silently stops
//! delivering, so sending a fresh token in the heartbeat is how it is kept alive across
//! refreshes); notifications `{type, data, timestamp}`, sometimes batched as
//! `{"results": [...]}`, each carrying the full object. There is no replay after a reconnect
//! and no `Transaction` notification: the caller reads those over REST.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use zeroize::Zeroize;

use super::client::AccessToken;
use super::error::BrokerError;
use super::model::{Balance, Order, Position, Record};
use crate::domain::rows::Quarantined;

/// How long `connect` may take to be acknowledged.
const CONNECT_WAIT: Duration = Duration::from_secs(10);
/// What the client announces as `source`.
const SOURCE: &str = concat!("tastysync/", env!("CARGO_PKG_VERSION"));

/// One pushed object, parsed the way the sync parses the same object over REST.
#[derive(Debug)]
pub enum Notification {
    Order(Record<Order>),
    Balance(Record<Balance>),
    Position(Record<Position>),
    /// A notification this product does not store (`TradingStatus`, `ExternalTransaction`,
    /// ...), by type. `ExternalTransaction` still means new transactions to read.
    Other(String),
    /// A known type whose object the model cannot read: set aside as the sync would.
    Unreadable {
        kind: &'static str,
        row: Quarantined,
    },
}

/// A notification with the time the broker stamped on it (epoch milliseconds on the wire).
#[derive(Debug)]
pub struct Pushed {
    pub notification: Notification,
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// One message from the streamer.
#[derive(Debug)]
pub enum Frame {
    Ack { action: String },
    Refused { action: String, message: String },
    Notifications(Vec<Pushed>),
}

/// Reads one text message. Anything that is not JSON is a protocol error.
pub fn parse_frame(text: &str) -> Result<Frame, BrokerError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| BrokerError::transient(format!("the streamer sent something else: {e}")))?;
    let action = || value["action"].as_str().unwrap_or_default().to_owned();
    match value["status"].as_str() {
        Some("ok") => return Ok(Frame::Ack { action: action() }),
        Some(_) => {
            let message = value["message"].as_str().unwrap_or("refused").to_owned();
            return Ok(Frame::Refused {
                action: action(),
                message,
            });
        }
        None => {}
    }
    let items = match value {
        Value::Object(mut object) if object.contains_key("results") => {
            match object.remove("results") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            }
        }
        other => vec![other],
    };
    Ok(Frame::Notifications(
        items.into_iter().map(notification).collect(),
    ))
}

fn notification(mut item: Value) -> Pushed {
    let kind = item["type"].as_str().unwrap_or_default().to_owned();
    let sent_at = item["timestamp"]
        .as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis);
    let data = item.get_mut("data").map(Value::take).unwrap_or_default();
    let notification = match kind.as_str() {
        "Order" => record(data, "orders").map_or_else(|n| *n, Notification::Order),
        "AccountBalance" => record(data, "balances").map_or_else(|n| *n, Notification::Balance),
        "CurrentPosition" => record(data, "positions").map_or_else(|n| *n, Notification::Position),
        _ => Notification::Other(kind),
    };
    Pushed {
        notification,
        sent_at,
    }
}

/// The object, or the notification that sets it aside.
fn record<T: DeserializeOwned>(
    raw: Value,
    kind: &'static str,
) -> Result<Record<T>, Box<Notification>> {
    match T::deserialize(&raw) {
        Ok(item) => Ok(Record {
            item,
            raw: super::model::raw(&raw),
        }),
        Err(e) => Err(Box::new(Notification::Unreadable {
            kind,
            row: Quarantined::new(raw, e.to_string()),
        })),
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A connected session: `connect` acknowledged.
#[derive(Debug)]
pub struct AccountStream {
    socket: Socket,
    next_request: u64,
}

impl AccountStream {
    /// Opens the socket and subscribes to `accounts` with `token`. A refused `connect` is
    /// [`BrokerError::AuthExpired`]: the caller mints a new token and tries again.
    pub async fn connect(
        url: &str,
        accounts: &[String],
        token: &AccessToken,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<Self, BrokerError> {
        let connector = tokio_tungstenite::Connector::Rustls(tls);
        let open =
            tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector));
        let (socket, _) = tokio::time::timeout(CONNECT_WAIT, open)
            .await
            .map_err(|_| BrokerError::transient("the account streamer did not answer in time"))?
            .map_err(|e| BrokerError::transient(format!("the account streamer: {e}")))?;
        let mut stream = Self {
            socket,
            next_request: 1,
        };
        stream.send("connect", Some(json!(accounts)), token).await?;
        let acked = tokio::time::timeout(CONNECT_WAIT, async {
            loop {
                match stream.next().await {
                    Some(Ok(Frame::Ack { action })) if action == "connect" => return Ok(()),
                    Some(Ok(Frame::Refused { action, message })) if action == "connect" => {
                        return Err(BrokerError::AuthExpired {
                            code: Some(message),
                        });
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e),
                    None => {
                        return Err(BrokerError::transient(
                            "the account streamer closed before connecting",
                        ));
                    }
                }
            }
        })
        .await;
        acked.map_err(|_| BrokerError::transient("the account streamer did not acknowledge"))??;
        Ok(stream)
    }

    /// Keeps the session alive with `token`, which becomes the session's token.
    pub async fn heartbeat(&mut self, token: &AccessToken) -> Result<(), BrokerError> {
        self.send("heartbeat", None, token).await
    }

    /// The next message; `None` once the socket is closed. Cancel-safe, so it can wait in a
    /// `select!` beside the heartbeat timer.
    pub async fn next(&mut self) -> Option<Result<Frame, BrokerError>> {
        loop {
            return match self.socket.next().await? {
                Ok(Message::Text(text)) => Some(parse_frame(text.as_str())),
                Ok(Message::Close(_)) => None,
                Ok(_) => continue,
                Err(e) => Some(Err(BrokerError::transient(format!(
                    "the account streamer: {e}"
                )))),
            };
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }

    async fn send(
        &mut self,
        action: &str,
        value: Option<Value>,
        token: &AccessToken,
    ) -> Result<(), BrokerError> {
        let mut message = json!({
            "action": action,
            "auth-token": format!("Bearer {}", token.token.expose_secret()),
            "request-id": self.next_request,
            "source": SOURCE,
        });
        if let Some(value) = value {
            message["value"] = value;
        }
        self.next_request += 1;
        let mut text = message.to_string();
        if let Some(Value::String(t)) = message.get_mut("auth-token") {
            t.zeroize();
        }
        let sent = self.socket.send(Message::text(text.as_str())).await;
        // Every message carries the token: our copies are cleared (the frame buffer is the
        // library's).
        text.zeroize();
        sent.map_err(|e| BrokerError::transient(format!("the account streamer: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_of_results_is_read_as_each_of_its_notifications() {
        let text = r#"{"results": [
            {"type": "Order", "data": {"id": 7, "account-number": "5WT1", "status": "Filled", "legs": []}, "timestamp": 1},
            {"type": "TradingStatus", "data": {}, "timestamp": 2}
        ]}"#;
        let Ok(Frame::Notifications(items)) = parse_frame(text) else {
            panic!("a batch is notifications");
        };
        assert!(matches!(&items[0].notification, Notification::Order(o) if o.item.id == 7));
        assert!(matches!(&items[1].notification, Notification::Other(k) if k == "TradingStatus"));
        assert_eq!(items[1].sent_at.map(|t| t.timestamp_millis()), Some(2));
    }

    #[test]
    fn acks_and_refusals_are_told_apart_from_notifications() {
        let ack = r#"{"status":"ok","action":"connect","web-socket-session-id":"5b","value":["5WT1"],"request-id":1}"#;
        assert!(matches!(parse_frame(ack), Ok(Frame::Ack { action }) if action == "connect"));
        let refused = r#"{"status":"error","action":"heartbeat","message":"failed"}"#;
        assert!(
            matches!(parse_frame(refused), Ok(Frame::Refused { message, .. }) if message == "failed")
        );
    }

    #[test]
    fn an_order_the_model_cannot_read_is_set_aside_not_dropped() {
        let text = r#"{"type": "Order", "data": {"id": "not a number"}, "timestamp": 1}"#;
        let Ok(Frame::Notifications(items)) = parse_frame(text) else {
            panic!("one notification");
        };
        assert!(matches!(
            &items[0].notification,
            Notification::Unreadable { kind: "orders", .. }
        ));
    }
}
