//! The audit trail and the purge, through the accounts handler, against Postgres and moto.

use serde_json::{Value, json};
use tastysync_tests::event;
use tastysync_tests::leaks::{self, Secrets};
use tastytrade_sim::data::Sizes;

use crate::link::{World, as_user, delete, link_personal, list, send_accounts, world_with};
use crate::sync::{drain, worker};

async fn world() -> World {
    world_with(Sizes {
        accounts: 2,
        transactions: 40,
        orders: 8,
        years: 1,
    })
    .await
}

fn with_query(mut event: Value, query: &[(&str, &str)]) -> Value {
    let pairs: serde_json::Map<String, Value> = (query.iter())
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    event["rawQueryString"] = (query.iter())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
        .into();
    event["queryStringParameters"] = Value::Object(pairs);
    event
}

/// Every page of the user's trail, `limit` events at a time.
async fn trail(w: &World, user: &str, limit: &str) -> Vec<Vec<Value>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", limit)];
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor.as_str()));
        }
        let request = as_user(with_query(event("audit-events.json"), &query), user);
        let (status, page) = send_accounts(w, request).await;
        assert_eq!(status, 200, "{page}");
        pages.push(page["items"].as_array().unwrap().clone());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return pages,
        }
    }
}

fn account_ids(linked: &[Value]) -> Vec<String> {
    (linked.iter())
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn links_unlinks_and_relinks_are_in_their_users_trail_with_their_source_newest_first() {
    let w = world().await;
    let first = account_ids(&link_personal(&w, "user-a").await);
    assert_eq!(delete(&w, "user-a", &first[0]).await, 204);
    link_personal(&w, "user-a").await;
    link_personal(&w, "user-b").await;

    let pages = trail(&w, "user-a", "2").await;
    let theirs = trail(&w, "user-b", "100").await;

    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [2, 2, 1]);
    let events: Vec<&Value> = pages.iter().flatten().collect();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["relink", "relink", "unlink", "link", "link"]);
    assert_eq!(events[2]["account_id"], first[0].as_str());
    for event in &events {
        assert_eq!(event["outcome"], "succeeded");
        assert_eq!(event["actor"], "user");
        assert_eq!(event["source_ip"], "203.0.113.7");
        assert_eq!(event["user_agent"], "frontend/1.0");
    }
    let their_actions: Vec<&str> = (theirs.iter().flatten())
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(their_actions, ["link", "link"], "only user-b's own events");
    let rewrite = (w.db.client().await)
        .execute("UPDATE audit_events SET outcome = 'refused'", &[])
        .await
        .unwrap_err();
    let message = rewrite.as_db_error().map(|e| e.message().to_owned());
    assert_eq!(message.as_deref(), Some("audit_events is append-only"));
    let bad = as_user(
        with_query(event("audit-events.json"), &[("cursor", "nonsense")]),
        "user-a",
    );
    let (status, body) = send_accounts(&w, bad).await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("cursor"))
    );
}

/// Where `needles` are found: each table and task item that holds one.
async fn found(w: &World, needles: &Secrets) -> Vec<String> {
    let client = w.db.client().await;
    let mut found = Vec::new();
    for (table, text) in leaks::every_table(&client).await {
        found.extend(
            needles
                .found_in(&text)
                .into_iter()
                .map(|s| format!("{table}: {s}")),
        );
    }
    for item in crate::link::table_items(w).await {
        found.extend(
            needles
                .found_in(&item)
                .into_iter()
                .map(|s| format!("task item: {s}")),
        );
    }
    found
}

#[tokio::test]
async fn a_purge_leaves_nothing_of_the_user_in_any_table_or_task_item_and_keeps_everyone_elses() {
    let w = world().await;
    let (gone, kept) = ("user-purged-7f3a", "user-kept-51c2");
    let theirs = account_ids(&link_personal(&w, gone).await);
    link_personal(&w, kept).await;
    assert!(drain(&w, &worker(&w)).await.is_empty());
    // One account unlinked with its history kept: a purge takes it too.
    assert_eq!(delete(&w, gone, &theirs[1]).await, 204);
    let of_theirs = Secrets::new(std::iter::once(gone.to_owned()).chain(theirs.clone()));
    assert!(
        found(&w, &of_theirs)
            .await
            .iter()
            .any(|f| f.starts_with("task item")),
        "the scan must see the user's task items before the purge"
    );

    let (status, _) = send_accounts(&w, as_user(event("me-data-delete.json"), gone)).await;

    assert_eq!(status, 204);
    let left = found(&w, &of_theirs).await;
    assert!(left.is_empty(), "left after the purge: {left:#?}");
    assert_eq!(
        list(&w, kept).await.len(),
        2,
        "another user's accounts stay"
    );
    let client = w.db.client().await;
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM transactions t JOIN tastytrade_accounts a
                     ON a.id = t.account_id WHERE a.user_id = $1),
                    (SELECT count(*) FROM audit_events WHERE action = 'purge'
                     AND user_id = encode(sha256(convert_to($2, 'UTF8')), 'hex'))",
            &[&kept, &gone],
        )
        .await
        .unwrap();
    let (their_rows, purges): (i64, i64) = (row.get(0), row.get(1));
    assert!(their_rows > 0, "another user's synced rows stay");
    assert_eq!(purges, 1, "the purge itself is on record, under a hash");
}

#[tokio::test]
async fn unlinking_with_purge_true_deletes_the_accounts_history_and_tasks() {
    let w = world().await;
    let theirs = account_ids(&link_personal(&w, "user-a").await);
    assert!(drain(&w, &worker(&w)).await.is_empty());
    let path = format!("/api/v1/tastytrade-accounts/{}", theirs[0]);
    let unlink = |query: &[(&str, &str)]| {
        let request = with_query(event("accounts-delete.json"), query);
        as_user(crate::link::with_path(request, &path), "user-a")
    };

    let (refused, _) = send_accounts(&w, unlink(&[("purge", "yes")])).await;
    let (status, _) = send_accounts(&w, unlink(&[("purge", "true")])).await;

    assert_eq!((refused, status), (400, 204));
    let account = Secrets::new([theirs[0].clone()]);
    let left: Vec<String> = (found(&w, &account).await.into_iter())
        .filter(|f| !f.starts_with("audit_events"))
        .collect();
    assert!(left.is_empty(), "the account is left in {left:#?}");
}
