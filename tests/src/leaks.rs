//! Looking for secrets where they must never be: logs, database rows, task items. The
//! dedicated scenario (`secrets_scan`) and the scan after the whole suite
//! (`tastysync-scan-secrets`) share it.

use aho_corasick::AhoCorasick;

/// Finds any of many secrets, as text or as the hex of their bytes (how Postgres prints a
/// `bytea` that holds one unencrypted), in one pass over a text.
#[derive(Debug)]
pub struct Secrets {
    secrets: Vec<String>,
    matcher: AhoCorasick,
}

impl Secrets {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| !s.is_empty()).collect();
        secrets.sort();
        secrets.dedup();
        let patterns = secrets.iter().flat_map(|s| [s.clone(), hex(s)]);
        let matcher = AhoCorasick::new(patterns).expect("the secrets make a matcher");
        Self { secrets, matcher }
    }

    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// The secrets `text` holds, each shown by its first six characters only.
    pub fn found_in(&self, text: &str) -> Vec<String> {
        let mut found: Vec<String> = self
            .matcher
            .find_overlapping_iter(text)
            .map(|m| {
                let secret = &self.secrets[m.pattern().as_usize() / 2];
                format!("{}…", secret.chars().take(6).collect::<String>())
            })
            .collect();
        found.sort();
        found.dedup();
        found
    }
}

fn hex(secret: &str) -> String {
    secret.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Each table of the database's public schema as text (`bytea` as hex), one string per table.
pub async fn every_table(client: &tokio_postgres::Client) -> Vec<(String, String)> {
    let tables = crate::texts(
        client,
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .await;
    let mut dumps = Vec::new();
    for table in tables {
        let sql = format!("SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM \"{table}\" t");
        let text: String = client
            .query_one(&sql, &[])
            .await
            .expect("the table reads")
            .get(0);
        dumps.push((table, text));
    }
    dumps
}

/// Every item of a DynamoDB table, each as its debug text.
pub async fn dynamo_items(client: &aws_sdk_dynamodb::Client, table: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("the emulator scans the table");
        items.extend(page.items().iter().map(|item| format!("{item:?}")));
        start = page.last_evaluated_key;
        if start.is_none() {
            return items;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_found_as_text_or_as_hex_and_shown_only_by_its_start() {
        let secrets = Secrets::new(["at-1-abcdef".to_owned(), "rt-secret".to_owned()]);

        assert_eq!(secrets.found_in("token=at-1-abcdef;"), ["at-1-a…"]);
        assert_eq!(
            secrets.found_in(&format!("\\x{}", hex("rt-secret"))),
            ["rt-sec…"]
        );
        assert!(secrets.found_in("at-1-abcde rt-secre").is_empty());
    }
}
