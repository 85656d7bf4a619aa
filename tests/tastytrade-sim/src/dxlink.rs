//! The market-data feed (DXLink) the quote token points at: the handshake the public SDKs
//! speak (`SETUP`, `AUTH_STATE`, `CHANNEL_REQUEST`/`CHANNEL_OPENED`, `FEED_SETUP`/
//! `FEED_CONFIG`, `FEED_SUBSCRIPTION`), COMPACT `FEED_DATA` with Greeks events priced by
//! Black-Scholes (deterministic per seed), keepalives enforced, and the faults of
//! [`DxLinkFaults`].

use std::time::Duration;

use chrono::NaiveDate;
use futures_util::{SinkExt, StreamExt};
use rust_decimal::Decimal;
use rust_decimal::prelude::FromPrimitive;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

use crate::server::Simulator;

/// What can go wrong on the feed: `POST /__sim/faults` sets them with the others.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DxLinkFaults {
    /// Every token is refused (`AUTH_STATE: UNAUTHORIZED` after `AUTH`).
    pub refuse_auth: bool,
    /// The data comes this much after the subscription.
    pub slow_ms: u64,
    /// The connection closes after this many events (`None`: never).
    pub drop_after: Option<usize>,
    /// The first symbol's greeks come as `"NaN"` (its time stays real).
    pub nan: bool,
    /// A client silent this long is dropped (0: the protocol's 60 s).
    pub keepalive_seconds: u64,
}

/// One option's greeks as the feed sends them, rounded to the feed's six decimals.
#[derive(Debug, Clone, PartialEq)]
pub struct Greeks {
    pub streamer_symbol: String,
    pub time_ms: i64,
    pub price: Decimal,
    pub volatility: Decimal,
    pub delta: Decimal,
    pub gamma: Decimal,
    pub theta: Decimal,
    pub rho: Decimal,
    pub vega: Decimal,
}

impl Greeks {
    /// The truth's form: the feed's symbol and every value as a decimal string.
    pub fn render(&self) -> Value {
        json!({
            "streamer-symbol": self.streamer_symbol, "time": self.time_ms,
            "price": self.price.to_string(), "volatility": self.volatility.to_string(),
            "delta": self.delta.to_string(), "gamma": self.gamma.to_string(),
            "theta": self.theta.to_string(), "rho": self.rho.to_string(),
            "vega": self.vega.to_string(),
        })
    }
}

/// The feed's name for an OCC option symbol (`SPY   260306C00700000` → `.SPY260306C700`).
pub fn streamer_symbol(occ: &str) -> Option<String> {
    let occ = occ.trim_end();
    if occ.len() < 16 || !occ.is_ascii() {
        return None;
    }
    let (root, tail) = occ.split_at(occ.len() - 15);
    let strike = Decimal::new(tail[7..].parse().ok()?, 3).normalize();
    Some(format!(".{}{}{strike}", root.trim_end(), &tail[..7]))
}

/// The greeks of an option position on `today`: an equity option's from its OCC symbol, a
/// future option's from its feed symbol, the strike and type that end its symbol
/// (`261113P6100`) and its expiry.
pub fn price_position(
    seed: u64,
    position: &crate::data::Position,
    today: NaiveDate,
    time_ms: i64,
) -> Option<Greeks> {
    match position.instrument_type {
        "Equity Option" => {
            let occ = position.symbol.trim_end();
            let (root, tail) = occ.split_at(occ.len().checked_sub(15)?);
            let expiry = NaiveDate::parse_from_str(&format!("20{}", &tail[..6]), "%Y%m%d").ok()?;
            let strike = tail[7..].parse::<f64>().ok()? / 1000.0;
            let option = (root.trim_end(), expiry, &tail[6..7] == "C", strike);
            price(seed, streamer_symbol(occ)?, option, today, time_ms)
        }
        "Future Option" => {
            let tail = position.symbol.split_whitespace().last()?;
            let strike = tail.get(7..)?.parse::<f64>().ok()?;
            let expiry = position.expires_at?.date_naive();
            let option = (
                position.underlying.as_str(),
                expiry,
                tail.get(6..7)? == "C",
                strike,
            );
            price(
                seed,
                position.streamer_symbol.clone()?,
                option,
                today,
                time_ms,
            )
        }
        _ => None,
    }
}

/// Black-Scholes greeks of an option (root, expiry, call, strike) on `today`: the
/// underlying's price and volatility come from the seed and the root, the rate is 4%. Theta
/// is per day, vega and rho per point.
fn price(
    seed: u64,
    streamer_symbol: String,
    (root, expiry, call, strike): (&str, NaiveDate, bool, f64),
    today: NaiveDate,
    time_ms: i64,
) -> Option<Greeks> {
    let hash = fnv(root) ^ seed;
    let spot = strike * (0.85 + (hash % 300) as f64 / 1000.0);
    let sigma = 0.15 + ((hash >> 12) % 40) as f64 / 100.0;
    let rate = 0.04;
    let days = (expiry - today).num_days().max(1) as f64;
    let t = days / 365.0;
    let d1 = ((spot / strike).ln() + (rate + sigma * sigma / 2.0) * t) / (sigma * t.sqrt());
    let d2 = d1 - sigma * t.sqrt();
    let discount = (-rate * t).exp();
    let pdf = (-d1 * d1 / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let (value, delta, rho) = if call {
        (
            spot * cdf(d1) - strike * discount * cdf(d2),
            cdf(d1),
            strike * t * discount * cdf(d2) / 100.0,
        )
    } else {
        (
            strike * discount * cdf(-d2) - spot * cdf(-d1),
            cdf(d1) - 1.0,
            -strike * t * discount * cdf(-d2) / 100.0,
        )
    };
    let decay = -spot * pdf * sigma / (2.0 * t.sqrt());
    let carry = rate * strike * discount * if call { -cdf(d2) } else { cdf(-d2) };
    let six = |x: f64| Decimal::from_f64(x).map(|d| d.round_dp(6).normalize());
    Some(Greeks {
        streamer_symbol,
        time_ms,
        price: six(value)?,
        volatility: six(sigma)?,
        delta: six(delta)?,
        gamma: six(pdf / (spot * sigma * t.sqrt()))?,
        theta: six((decay + carry) / 365.0)?,
        rho: six(rho)?,
        vega: six(spot * pdf * t.sqrt() / 100.0)?,
    })
}

/// The standard normal distribution (Abramowitz and Stegun 7.1.26, error below 1.5e-7).
fn cdf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs() / std::f64::consts::SQRT_2);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-(x * x) / 2.0).exp();
    if x >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Serves the feed on `listener` until the process ends.
pub async fn serve(listener: TcpListener, sim: Simulator) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let sim = sim.clone();
        tokio::spawn(async move {
            if let Ok(socket) = tokio_tungstenite::accept_async(stream).await {
                connection(socket, sim).await;
            }
        });
    }
}

async fn connection<S>(mut socket: tokio_tungstenite::WebSocketStream<S>, sim: Simulator)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let faults = sim.dxlink_faults();
    let silence = Duration::from_secs(match faults.keepalive_seconds {
        0 => 60,
        s => s,
    });
    let mut authorized = false;
    let mut fields: Vec<String> = Vec::new();
    loop {
        let message = match tokio::time::timeout(silence, socket.next()).await {
            Err(_) => {
                let timeout = json!({"type": "ERROR", "channel": 0, "error": "TIMEOUT", "message": "no keepalive"});
                let _ = socket.send(Message::text(timeout.to_string())).await;
                let _ = socket.close(None).await;
                return;
            }
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(Message::Close(_))) | None | Some(Err(_))) => return,
            Ok(Some(Ok(_))) => continue,
        };
        let Ok(message) = serde_json::from_str::<Value>(message.as_str()) else {
            continue;
        };
        let channel = message["channel"].clone();
        let replies = match message["type"].as_str().unwrap_or_default() {
            "SETUP" => vec![
                json!({"type": "SETUP", "channel": 0, "version": "1.0-sim", "keepaliveTimeout": silence.as_secs(), "acceptKeepaliveTimeout": 60}),
                json!({"type": "AUTH_STATE", "channel": 0, "state": "UNAUTHORIZED"}),
            ],
            "AUTH" => {
                let token = message["token"].as_str().unwrap_or_default();
                authorized = !faults.refuse_auth && sim.dxlink_token_valid(token);
                let state = if authorized {
                    "AUTHORIZED"
                } else {
                    "UNAUTHORIZED"
                };
                vec![json!({"type": "AUTH_STATE", "channel": 0, "state": state})]
            }
            _ if !authorized => vec![
                json!({"type": "ERROR", "channel": 0, "error": "UNAUTHORIZED", "message": "authorize first"}),
            ],
            "CHANNEL_REQUEST" => vec![
                json!({"type": "CHANNEL_OPENED", "channel": channel, "service": "FEED", "parameters": {"contract": "AUTO"}}),
            ],
            "FEED_SETUP" => {
                fields = (message["acceptEventFields"]["Greeks"]
                    .as_array()
                    .into_iter()
                    .flatten())
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
                vec![
                    json!({"type": "FEED_CONFIG", "channel": channel, "dataFormat": "COMPACT", "aggregationPeriod": 0.1, "eventFields": {"Greeks": fields}}),
                ]
            }
            "FEED_SUBSCRIPTION" => {
                let symbols: Vec<&str> = (message["add"].as_array().into_iter().flatten())
                    .filter(|s| s["type"] == "Greeks")
                    .filter_map(|s| s["symbol"].as_str())
                    .collect();
                let mut events = sim.greeks(&symbols);
                let ready = tokio::time::Instant::now() + Duration::from_millis(faults.slow_ms);
                if !quiet_until(&mut socket, ready, silence).await {
                    return;
                }
                let dropped = faults.drop_after.is_some_and(|n| n < events.len());
                events.truncate(faults.drop_after.unwrap_or(usize::MAX));
                let data: Vec<Value> = (events.iter().enumerate())
                    .flat_map(|(i, g)| compact(g, &fields, faults.nan && i == 0))
                    .collect();
                if !data.is_empty() {
                    let feed =
                        json!({"type": "FEED_DATA", "channel": channel, "data": ["Greeks", data]});
                    if socket.send(Message::text(feed.to_string())).await.is_err() {
                        return;
                    }
                }
                if dropped {
                    let _ = socket.close(None).await;
                    return;
                }
                Vec::new()
            }
            _ => Vec::new(),
        };
        for reply in replies {
            if socket.send(Message::text(reply.to_string())).await.is_err() {
                return;
            }
        }
    }
}

/// Reads (and drops) what the client sends until `until`; false when it stayed silent longer
/// than `silence` (the connection is then dropped with a `TIMEOUT` error) or went away.
async fn quiet_until<S>(
    socket: &mut tokio_tungstenite::WebSocketStream<S>,
    until: tokio::time::Instant,
    silence: Duration,
) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let heard = tokio::select! {
            () = tokio::time::sleep_until(until) => return true,
            heard = tokio::time::timeout(silence, socket.next()) => heard,
        };
        match heard {
            Err(_) => {
                let timeout = json!({"type": "ERROR", "channel": 0, "error": "TIMEOUT", "message": "no keepalive"});
                let _ = socket.send(Message::text(timeout.to_string())).await;
                let _ = socket.close(None).await;
                return false;
            }
            Ok(Some(Ok(Message::Close(_))) | None | Some(Err(_))) => return false,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// One event's values in the order of `fields`.
fn compact(greeks: &Greeks, fields: &[String], nan: bool) -> Vec<Value> {
    let number = |d: &Decimal| {
        if nan {
            json!("NaN")
        } else {
            Value::Number(d.to_string().parse().unwrap_or_else(|_| 0.into()))
        }
    };
    (fields.iter())
        .map(|field| match field.as_str() {
            "eventType" => json!("Greeks"),
            "eventSymbol" => json!(greeks.streamer_symbol),
            "eventTime" | "eventFlags" | "index" | "sequence" => json!(0),
            "time" => json!(greeks.time_ms),
            "price" => number(&greeks.price),
            "volatility" => number(&greeks.volatility),
            "delta" => number(&greeks.delta),
            "gamma" => number(&greeks.gamma),
            "theta" => number(&greeks.theta),
            "rho" => number(&greeks.rho),
            "vega" => number(&greeks.vega),
            _ => Value::Null,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamer_symbols_follow_the_sdk() {
        assert_eq!(
            streamer_symbol("SPY   260306C00700000").as_deref(),
            Some(".SPY260306C700")
        );
        assert_eq!(
            streamer_symbol("SPXW  250620P05412500").as_deref(),
            Some(".SPXW250620P5412.5")
        );
    }

    #[test]
    fn greeks_are_deterministic_and_sane() {
        let today = NaiveDate::from_ymd_opt(2026, 1, 5).unwrap();
        let expiry = NaiveDate::from_ymd_opt(2026, 3, 20).unwrap();
        let priced = |call| price(7, "X".into(), ("SPY", expiry, call, 600.0), today, 1);
        let (call, put) = (priced(true).unwrap(), priced(false).unwrap());

        assert_eq!(call, priced(true).unwrap());
        assert!(call.delta > Decimal::ZERO && call.delta < Decimal::ONE);
        assert!(put.delta < Decimal::ZERO && put.delta > Decimal::NEGATIVE_ONE);
        assert!(call.gamma > Decimal::ZERO && call.theta < Decimal::ZERO);
        assert_eq!(call.gamma, put.gamma, "a call and a put share gamma");
    }
}
