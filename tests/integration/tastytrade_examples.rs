//! Every example payload of the reference parses, with exact decimals and signs.
//! (Copied from ../shared/reference/examples into tests/fixtures/tastytrade.)

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;
use tastysync_shared::tastytrade::model::{Balance, Effect, Order, Position, Transaction};
use tastysync_shared::tastytrade::occ::{self, OptionKind, OptionSymbol};

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn items<T: serde::de::DeserializeOwned>(json: &str) -> Vec<T> {
    let page: Value = serde_json::from_str(json).unwrap();
    page["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| T::deserialize(v).unwrap())
        .collect()
}

#[test]
fn transactions_page_parses_with_signed_amounts() {
    let txs: Vec<Transaction> = items(include_str!(
        "../fixtures/tastytrade/transactions_page.json"
    ));

    assert_eq!(txs.len(), 5);
    let trade = &txs[0];
    assert_eq!(trade.id, 2_614_480_127);
    assert_eq!(trade.signed_value(), Some(d("630.0")));
    assert_eq!(trade.signed_net_value(), Some(d("627.742")));
    assert_eq!(trade.signed_commission(), Some(d("-2.0")));
    assert_eq!(trade.signed_regulatory_fees(), Some(d("-0.058")));
    assert_eq!(trade.signed_clearing_fees(), Some(d("-0.20")));
    assert_eq!(
        trade.proprietary_index_option_fees_effect,
        Some(Effect::None)
    );
    assert_eq!(trade.order_id, Some(381_772_604));
    assert_eq!(trade.ext_global_order_number, Some(5823));
    // net = value - fees, exactly.
    let fees = trade.signed_commission().unwrap()
        + trade.signed_clearing_fees().unwrap()
        + trade.signed_regulatory_fees().unwrap();
    assert_eq!(
        trade.signed_value().unwrap() + fees,
        trade.signed_net_value().unwrap()
    );

    let expiration = &txs[1];
    assert_eq!(
        expiration.transaction_sub_type.as_deref(),
        Some("Expiration")
    );
    assert_eq!(expiration.signed_value(), Some(Decimal::ZERO));
    assert_eq!(
        expiration.executed_at.unwrap().to_rfc3339(),
        "2025-06-20T22:00:00+00:00"
    );
}

#[test]
fn positions_parse_with_numbers_strings_nan_and_direction() {
    let positions: Vec<Position> = items(include_str!("../fixtures/tastytrade/positions.json"));

    assert_eq!(positions.len(), 3);
    assert_eq!(positions[0].signed_quantity(), Some(d("250")));
    assert_eq!(positions[0].multiplier, Some(d("1")));
    assert_eq!(positions[1].signed_quantity(), Some(d("-1")));
    assert!(positions[1].mark.is_some());
    let future_option = &positions[2];
    assert_eq!(future_option.fixing_price, None, "\"NaN\" is no price");
    assert_eq!(
        occ::parse(&future_option.symbol),
        Some(OptionSymbol::FutureOption)
    );
    match occ::parse(&positions[1].symbol) {
        Some(OptionSymbol::Occ(o)) => {
            assert_eq!(
                (o.root.as_str(), o.kind, o.strike),
                ("SPY", OptionKind::Call, d("640"))
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn single_currency_balance_parses_with_signed_pending_cash() {
    let page: Value =
        serde_json::from_str(include_str!("../fixtures/tastytrade/balances_usd.json")).unwrap();
    let balance = Balance::deserialize(&page["data"]).unwrap();

    assert_eq!(balance.currency.as_deref(), Some("USD"));
    assert_eq!(balance.cash_balance, Some(d("18412.336")));
    assert_eq!(balance.net_liquidating_value, Some(d("22824.836")));
    assert_eq!(balance.signed_pending_cash(), Some(d("2500.0")));
}

#[test]
fn orders_parse_with_legs_fills_and_epoch_updated_at() {
    let orders: Vec<Order> = items(include_str!(
        "../fixtures/tastytrade/orders_page_with_fills.json"
    ));

    let spread = &orders[0];
    assert_eq!(spread.id, 392_055_118);
    assert_eq!(spread.signed_price(), Some(d("1.12")));
    assert_eq!(
        spread.updated_at.unwrap().timestamp_millis(),
        1_751_380_266_431
    );
    assert_eq!(spread.legs.len(), 2);
    let fill = &spread.legs[0].fills[0];
    assert_eq!(
        (fill.fill_id.as_str(), fill.fill_price),
        ("5_OPT7318820118204", Some(d("4.05")))
    );
    assert_eq!(spread.legs[0].remaining_quantity, Some(Decimal::ZERO));
    assert!(
        orders
            .iter()
            .any(|o| o.status.as_deref() == Some("Cancelled"))
    );
}

#[test]
fn token_and_error_examples_parse() {
    let token: Value = serde_json::from_str(include_str!(
        "../fixtures/tastytrade/oauth_token_response.json"
    ))
    .unwrap();
    assert_eq!(token["expires_in"], 900);
    let error: Value =
        serde_json::from_str(include_str!("../fixtures/tastytrade/error_validation.json")).unwrap();
    assert_eq!(error["error"]["code"], "validation_error");
    assert_eq!(error["error"]["errors"][0]["domain"], "per-page");
}
