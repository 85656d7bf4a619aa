//! Option symbols: strike, expiry and call/put from the OCC symbol, with no broker call.
//!
//! An OCC symbol is the root padded to six characters, `YYMMDD`, `C` or `P`, and the strike
//! times 1000 in eight digits (`SPY   260306C00700000`). Future options (`./ESZ9 EW4U9
//! 190927P2975`) follow exchange conventions that vary by product, so they are recognised and
//! deliberately left unparsed rather than guessed at.

use chrono::NaiveDate;
use rust_decimal::Decimal;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OptionSymbol {
    Occ(OccOption),
    FutureOption,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OccOption {
    pub root: String,
    pub expiration: NaiveDate,
    pub kind: OptionKind,
    pub strike: Decimal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    Call,
    Put,
}

impl OptionKind {
    pub fn as_char(self) -> &'static str {
        match self {
            OptionKind::Call => "C",
            OptionKind::Put => "P",
        }
    }
}

impl OccOption {
    /// The market-data feed's name for the option (TW `Option.occ_to_streamer_symbol`):
    /// `.`, the root, `YYMMDD`, `C`/`P` and the strike without trailing zeros
    /// (`.SPY260306C700`, `.SPXW250620P5412.5`).
    pub fn streamer_symbol(&self) -> String {
        format!(
            ".{}{}{}{}",
            self.root,
            self.expiration.format("%y%m%d"),
            self.kind.as_char(),
            self.strike.normalize()
        )
    }
}

/// `None` for anything that is not an option symbol (equities, futures, crypto).
pub fn parse(symbol: &str) -> Option<OptionSymbol> {
    if symbol.starts_with("./") {
        return Some(OptionSymbol::FutureOption);
    }
    parse_occ(symbol).map(OptionSymbol::Occ)
}

fn parse_occ(symbol: &str) -> Option<OccOption> {
    // The last 15 characters are fixed-width; whatever precedes them is the (padded) root.
    // Accepting an unpadded root as well costs nothing and tolerates feeds that trim it.
    let symbol = symbol.trim_end();
    if !symbol.is_ascii() || symbol.len() < 16 {
        return None;
    }
    let (root, tail) = symbol.split_at(symbol.len() - 15);
    let root = root.trim_end();
    if root.is_empty()
        || root.len() > 6
        || !root.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
    {
        return None;
    }
    let (date, rest) = tail.split_at(6);
    let (kind, strike) = rest.split_at(1);
    if !date.bytes().all(|b| b.is_ascii_digit()) || !strike.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let expiration = NaiveDate::parse_from_str(&format!("20{date}"), "%Y%m%d").ok()?;
    let kind = match kind {
        "C" => OptionKind::Call,
        "P" => OptionKind::Put,
        _ => return None,
    };
    let strike = Decimal::new(strike.parse().ok()?, 3).normalize();
    Some(OccOption {
        root: root.to_owned(),
        expiration,
        kind,
        strike,
    })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn occ(symbol: &str) -> OccOption {
        match parse(symbol) {
            Some(OptionSymbol::Occ(o)) => o,
            other => panic!("{symbol:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn padded_occ_symbol_gives_root_expiry_kind_and_strike() {
        let o = occ("SPY   260306C00700000");
        assert_eq!(o.root, "SPY");
        assert_eq!(o.expiration, NaiveDate::from_ymd_opt(2026, 3, 6).unwrap());
        assert_eq!(o.kind, OptionKind::Call);
        assert_eq!(o.strike, Decimal::from(700));
    }

    #[test]
    fn fractional_strikes_and_six_letter_roots_parse() {
        let o = occ("SPXW  250620P05412500");
        assert_eq!((o.root.as_str(), o.kind), ("SPXW", OptionKind::Put));
        assert_eq!(o.strike, Decimal::from_str("5412.5").unwrap());
        assert_eq!(
            occ("GOOGL 250117C00002500").strike,
            Decimal::from_str("2.5").unwrap()
        );
        assert_eq!(occ("BRKB  250117C00450000").root, "BRKB");
    }

    #[test]
    fn streamer_symbols_drop_the_padding_and_the_strikes_trailing_zeros() {
        assert_eq!(
            occ("SPY   260306C00700000").streamer_symbol(),
            ".SPY260306C700"
        );
        assert_eq!(
            occ("SPXW  250620P05412500").streamer_symbol(),
            ".SPXW250620P5412.5"
        );
    }

    #[test]
    fn future_options_are_recognised_but_not_parsed() {
        assert_eq!(
            parse("./ESZ9 EW4U9 190927P2975"),
            Some(OptionSymbol::FutureOption)
        );
    }

    #[test]
    fn equities_futures_and_garbage_are_not_options() {
        for symbol in [
            "AAPL",
            "/ESZ9",
            "BTC/USD",
            "SPY   261306C00700000",
            "SPY   260306X00700000",
            "",
        ] {
            assert_eq!(parse(symbol), None, "{symbol:?}");
        }
    }
}
