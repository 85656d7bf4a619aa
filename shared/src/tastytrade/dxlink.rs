//! Greeks from the market-data feed, DXLink (reference §6; TW `DXLinkStreamer`): one
//! websocket per read, `SETUP` → `AUTH` → `CHANNEL_REQUEST` (FEED) → `FEED_SETUP` (COMPACT,
//! the Greeks fields) → `FEED_SUBSCRIPTION`, then `FEED_DATA` until every symbol has sent an
//! event or the time is up. Keepalives go out every 30 s as the protocol asks (the server drops
//! a client silent for its keepalive timeout, 60 s).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use zeroize::Zeroize;

use super::error::BrokerError;
use super::wire;

/// The protocol version the public SDKs announce.
const VERSION: &str = "0.1-DXF-JS/0.3.0";
/// The feed channel this client opens (odd numbers are the client's).
const CHANNEL: u64 = 1;
/// Seconds either side may stay silent before the other drops the connection.
const KEEPALIVE_TIMEOUT: u64 = 60;
const KEEPALIVE_EVERY: Duration = Duration::from_secs(30);
/// The Greeks fields asked for; COMPACT data carries them in the order `FEED_CONFIG` names.
const GREEKS_FIELDS: [&str; 10] = [
    "eventType",
    "eventSymbol",
    "time",
    "price",
    "volatility",
    "delta",
    "gamma",
    "theta",
    "rho",
    "vega",
];

/// Where and how to reach the feed: `GET /api-quote-tokens`'s `dxlink-url` and `token`.
#[derive(Debug)]
pub struct QuoteFeed {
    pub url: String,
    pub token: SecretString,
}

impl QuoteFeed {
    /// The feed as the grant's sealed cache holds it: one JSON secret.
    pub fn to_cache(&self) -> SecretString {
        let json = json!({"url": self.url, "token": self.token.expose_secret()});
        SecretString::from(json.to_string())
    }

    /// `None` when the cache holds something else; the caller asks for a new token.
    pub fn from_cache(cached: &SecretString) -> Option<Self> {
        let mut value: Value = serde_json::from_str(cached.expose_secret()).ok()?;
        let url = value["url"].as_str()?.to_owned();
        let mut token = value["token"].as_str()?.to_owned();
        let feed = Self {
            url,
            token: SecretString::from(token.clone()),
        };
        token.zeroize();
        if let Some(Value::String(t)) = value.get_mut("token") {
            t.zeroize();
        }
        Some(feed)
    }
}

/// The greeks of one position, at the event's time (the read's, if the event had none).
#[derive(Debug, Clone)]
pub struct PositionGreeks {
    /// The position's symbol (OCC), not the feed's.
    pub symbol: String,
    pub time: DateTime<Utc>,
    pub greeks: Greeks,
}

/// One `Greeks` event. `NaN` and infinities arrive as `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct Greeks {
    pub symbol: String,
    /// The event's own time (epoch milliseconds on the wire).
    pub time: Option<DateTime<Utc>>,
    /// The option's theoretical price.
    pub price: Option<Decimal>,
    pub volatility: Option<Decimal>,
    pub delta: Option<Decimal>,
    pub gamma: Option<Decimal>,
    pub theta: Option<Decimal>,
    pub rho: Option<Decimal>,
    pub vega: Option<Decimal>,
}

/// What a read collected: the latest event per symbol that sent one, and, when some symbols
/// sent none, why the read stopped (the time ran out, or the feed dropped the connection).
#[derive(Debug, Default)]
pub struct FeedRead {
    pub events: Vec<Greeks>,
    pub stopped: Option<String>,
}

/// Reads one Greeks event per symbol of `symbols` from `feed`, for at most `wait`. A refused
/// token, a failed connection or a protocol error before any event is an error; a feed that
/// stops early keeps what it sent.
pub async fn read_greeks(
    feed: &QuoteFeed,
    symbols: &[String],
    wait: Duration,
    tls: Arc<rustls::ClientConfig>,
) -> Result<FeedRead, BrokerError> {
    let deadline = Instant::now() + wait;
    let connector = tokio_tungstenite::Connector::Rustls(tls);
    let connect = tokio_tungstenite::connect_async_tls_with_config(
        feed.url.as_str(),
        None,
        false,
        Some(connector),
    );
    let (mut socket, _) = tokio::time::timeout_at(deadline, connect)
        .await
        .map_err(|_| feed_error("the market-data feed did not answer in time"))?
        .map_err(|e| feed_error(format!("the market-data feed refused the connection: {e}")))?;
    let mut session = Session::new(symbols);
    send(&mut socket, session.setup()).await?;
    let mut keepalive = tokio::time::interval_at(Instant::now() + KEEPALIVE_EVERY, KEEPALIVE_EVERY);
    let stopped = loop {
        if session.complete() {
            break None;
        }
        let message = tokio::select! {
            () = tokio::time::sleep_until(deadline) => break Some("the time ran out".to_owned()),
            _ = keepalive.tick() => {
                send(&mut socket, json!({"type": "KEEPALIVE", "channel": 0})).await?;
                continue;
            }
            message = socket.next() => message,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None => {
                break Some("the feed closed the connection".into());
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => break Some(format!("the feed connection failed: {e}")),
        };
        let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        for reply in session.receive(&message, &feed.token)? {
            send(&mut socket, reply).await?;
        }
        if let Some(every) = session.keepalive.take() {
            keepalive = tokio::time::interval_at(Instant::now() + every, every);
        }
    };
    // Closing is a courtesy; the read is done either way.
    let _ = socket.close(None).await;
    if session.events.is_empty()
        && let Some(reason) = stopped
    {
        return Err(feed_error(format!("no greeks arrived: {reason}")));
    }
    Ok(FeedRead {
        events: session.events.into_values().collect(),
        stopped,
    })
}

async fn send<S>(socket: &mut S, message: Value) -> Result<(), BrokerError>
where
    S: SinkExt<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    let mut text = message.to_string();
    let sent = socket.send(Message::text(text.as_str())).await;
    // An AUTH message carries the quote token: our copy is cleared (the websocket's frame
    // buffer is the library's).
    text.zeroize();
    sent.map_err(|e| feed_error(format!("the feed connection failed: {e}")))
}

fn feed_error(detail: impl Into<String>) -> BrokerError {
    BrokerError::transient(detail)
}

/// The protocol's state: what was asked, what the feed said, the events so far.
struct Session<'s> {
    symbols: &'s [String],
    /// `AUTH_STATE: UNAUTHORIZED` comes once before the token is read; a second one refuses it.
    unauthorized: u32,
    /// How often to send keepalives, once the server's `SETUP` said how long it waits.
    keepalive: Option<Duration>,
    /// The order of the Greeks fields in COMPACT data, as `FEED_CONFIG` set it.
    fields: Vec<String>,
    events: HashMap<String, Greeks>,
}

impl<'s> Session<'s> {
    fn new(symbols: &'s [String]) -> Self {
        Self {
            symbols,
            unauthorized: 0,
            keepalive: None,
            fields: GREEKS_FIELDS.iter().map(|f| (*f).to_owned()).collect(),
            events: HashMap::new(),
        }
    }

    fn setup(&self) -> Value {
        json!({
            "type": "SETUP", "channel": 0, "version": VERSION,
            "keepaliveTimeout": KEEPALIVE_TIMEOUT, "acceptKeepaliveTimeout": KEEPALIVE_TIMEOUT,
        })
    }

    fn complete(&self) -> bool {
        self.symbols.iter().all(|s| self.events.contains_key(s))
    }

    /// The replies `message` calls for.
    fn receive(
        &mut self,
        message: &Value,
        token: &SecretString,
    ) -> Result<Vec<Value>, BrokerError> {
        let kind = message["type"].as_str().unwrap_or_default();
        Ok(match kind {
            "SETUP" => {
                // Twice within the server's timeout, and never less often than every 30 s.
                let timeout = message["keepaliveTimeout"]
                    .as_u64()
                    .unwrap_or(KEEPALIVE_TIMEOUT);
                self.keepalive = Some(
                    Duration::from_millis(timeout * 500)
                        .clamp(Duration::from_millis(200), KEEPALIVE_EVERY),
                );
                vec![json!({"type": "AUTH", "channel": 0, "token": token.expose_secret()})]
            }
            "AUTH_STATE" if message["state"] == "AUTHORIZED" => vec![json!({
                "type": "CHANNEL_REQUEST", "channel": CHANNEL, "service": "FEED",
                "parameters": {"contract": "AUTO"},
            })],
            "AUTH_STATE" => {
                self.unauthorized += 1;
                if self.unauthorized > 1 {
                    return Err(BrokerError::Permanent {
                        status: None,
                        code: Some("unauthorized".into()),
                        message: "the market-data feed refused the quote token".into(),
                    });
                }
                Vec::new()
            }
            "CHANNEL_OPENED" if message["channel"] == CHANNEL => {
                let add: Vec<Value> = (self.symbols.iter())
                    .map(|s| json!({"type": "Greeks", "symbol": s}))
                    .collect();
                vec![
                    json!({
                        "type": "FEED_SETUP", "channel": CHANNEL, "acceptAggregationPeriod": 0.1,
                        "acceptDataFormat": "COMPACT",
                        "acceptEventFields": {"Greeks": GREEKS_FIELDS},
                    }),
                    json!({"type": "FEED_SUBSCRIPTION", "channel": CHANNEL, "reset": true, "add": add}),
                ]
            }
            "FEED_CONFIG" => {
                if let Some(fields) = message["eventFields"]["Greeks"].as_array() {
                    self.fields = (fields.iter().filter_map(Value::as_str))
                        .map(str::to_owned)
                        .collect();
                }
                Vec::new()
            }
            "FEED_DATA" => {
                self.data(&message["data"]);
                Vec::new()
            }
            "ERROR" => {
                return Err(feed_error(format!(
                    "the market-data feed answered an error: {}",
                    message["error"].as_str().unwrap_or("unnamed")
                )));
            }
            _ => Vec::new(),
        })
    }

    /// COMPACT data: `["Greeks", [field values of one event, then the next, ...]]`, or the
    /// type named in the first event's `eventType` field.
    fn data(&mut self, data: &Value) {
        let Some(parts) = data.as_array() else { return };
        for pair in parts.chunks(2) {
            let [kind, values] = pair else { continue };
            let kind = kind.as_str().or_else(|| kind[0].as_str());
            let (Some("Greeks"), Some(values)) = (kind, values.as_array()) else {
                continue;
            };
            for event in values.chunks(self.fields.len().max(1)) {
                if let Some(greeks) = self.event(event) {
                    self.events.insert(greeks.symbol.clone(), greeks);
                }
            }
        }
    }

    fn event(&self, values: &[Value]) -> Option<Greeks> {
        let field =
            |name: &str| (self.fields.iter().position(|f| f == name)).and_then(|i| values.get(i));
        let number = |name: &str| field(name).and_then(feed_decimal);
        let symbol = field("eventSymbol")?.as_str()?.to_owned();
        if !self.symbols.contains(&symbol) {
            return None;
        }
        let time = field("time")
            .and_then(Value::as_i64)
            .filter(|ms| *ms > 0)
            .and_then(DateTime::from_timestamp_millis);
        Some(Greeks {
            symbol,
            time,
            price: number("price"),
            volatility: number("volatility"),
            delta: number("delta"),
            gamma: number("gamma"),
            theta: number("theta"),
            rho: number("rho"),
            vega: number("vega"),
        })
    }
}

/// A feed number: a JSON number with its digits, or `"NaN"` and the infinities as `None`.
fn feed_decimal(value: &Value) -> Option<Decimal> {
    match value {
        Value::Number(n) => wire::parse_decimal(&n.to_string()).ok().flatten(),
        Value::String(s) => wire::parse_decimal(s).ok().flatten(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symbols() -> Vec<String> {
        vec![".SPY260306C700".into(), ".QQQ260306P400".into()]
    }

    #[test]
    fn the_handshake_answers_setup_with_auth_and_authorized_with_a_feed_channel() {
        let symbols = symbols();
        let mut session = Session::new(&symbols);
        let token = SecretString::from("dxlink-1".to_owned());

        let auth = session.receive(&json!({"type": "SETUP"}), &token).unwrap();
        let initial = (session.receive(
            &json!({"type": "AUTH_STATE", "state": "UNAUTHORIZED"}),
            &token,
        ))
        .unwrap();
        let channel = (session.receive(
            &json!({"type": "AUTH_STATE", "state": "AUTHORIZED"}),
            &token,
        ))
        .unwrap();
        let feed =
            (session.receive(&json!({"type": "CHANNEL_OPENED", "channel": 1}), &token)).unwrap();

        assert_eq!(auth[0]["token"], "dxlink-1");
        assert!(initial.is_empty());
        assert_eq!(channel[0]["service"], "FEED");
        assert_eq!(feed[0]["acceptDataFormat"], "COMPACT");
        assert_eq!(feed[1]["add"][1]["symbol"], ".QQQ260306P400");
    }

    #[test]
    fn a_cached_feed_opens_to_the_same_url_and_token() {
        let feed = QuoteFeed {
            url: "wss://feed.example/realtime".into(),
            token: SecretString::from("dxlink-7".to_owned()),
        };

        let opened = QuoteFeed::from_cache(&feed.to_cache()).unwrap();

        assert_eq!(opened.url, feed.url);
        assert_eq!(opened.token.expose_secret(), "dxlink-7");
        assert!(QuoteFeed::from_cache(&SecretString::from("not json".to_owned())).is_none());
    }

    #[test]
    fn a_second_unauthorized_state_is_a_refused_token() {
        let symbols = symbols();
        let mut session = Session::new(&symbols);
        let token = SecretString::from("expired".to_owned());
        let unauthorized = json!({"type": "AUTH_STATE", "state": "UNAUTHORIZED"});

        session.receive(&unauthorized, &token).unwrap();

        assert!(session.receive(&unauthorized, &token).is_err());
    }

    #[test]
    fn compact_data_maps_by_the_configured_fields_and_nan_is_none() {
        let symbols = symbols();
        let mut session = Session::new(&symbols);
        let token = SecretString::from("t".to_owned());
        let fields = [
            "eventSymbol",
            "eventType",
            "time",
            "delta",
            "volatility",
            "price",
            "gamma",
            "theta",
            "rho",
            "vega",
        ];
        session
            .receive(
                &json!({"type": "FEED_CONFIG", "eventFields": {"Greeks": fields}}),
                &token,
            )
            .unwrap();
        let data: Value = serde_json::from_str(
            r#"{"type": "FEED_DATA", "channel": 1, "data": ["Greeks", [
                ".SPY260306C700", "Greeks", 1796000000000, 0.512345, 0.2134, 12.5, 0.01, -0.05, 0.02, 0.3,
                ".QQQ260306P400", "Greeks", 1796000000000, "NaN", "Infinity", 1.5, 0.0, 0.0, 0.0, 0.0,
                ".OTHER", "Greeks", 1796000000000, 1, 1, 1, 1, 1, 1, 1]]}"#,
        )
        .unwrap();

        session.receive(&data, &token).unwrap();

        let spy = &session.events[".SPY260306C700"];
        assert_eq!(spy.delta, Some(Decimal::new(512_345, 6)));
        assert_eq!(spy.volatility, Some(Decimal::new(2134, 4)));
        assert_eq!(spy.time, DateTime::from_timestamp_millis(1_796_000_000_000));
        let qqq = &session.events[".QQQ260306P400"];
        assert_eq!((qqq.delta, qqq.volatility), (None, None));
        assert!(session.complete());
        assert!(
            !session.events.contains_key(".OTHER"),
            "only the symbols asked for"
        );
    }
}
