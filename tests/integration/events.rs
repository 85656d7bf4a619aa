//! The events out: a rule on the stack's bus (as the app's backend would subscribe) delivers
//! each kind to a queue, and each detail is checked against its JSON Schema in
//! `events/schemas/` by a real validator (Python's `jsonschema`, in the project virtualenv).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tastysync_shared::domain::events::Event;
use tastysync_shared::realtime::StreamerSettings;
use tastytrade_sim::Activity;

use crate::link::World;
use crate::sync::{drain, one_synced_account, run_task};

/// A queue subscribed to everything tastysync publishes on the world's bus; its URL.
async fn subscribe(w: &World) -> String {
    let sqs = w.aws.sqs();
    let name = format!("{}events-test", w.aws.names.event_bus);
    let queue = sqs.create_queue().queue_name(&name).send().await.unwrap();
    let url = queue.queue_url.unwrap();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let events = aws_sdk_eventbridge::Client::new(&w.aws.sdk);
    let rule = format!("{}-everything", w.aws.names.event_bus);
    events
        .put_rule()
        .name(&rule)
        .event_bus_name(&w.aws.stack.event_bus)
        .event_pattern(json!({"source": ["tastysync"]}).to_string())
        .send()
        .await
        .unwrap();
    let target = aws_sdk_eventbridge::types::Target::builder()
        .id("queue")
        .arn(arn)
        .build()
        .unwrap();
    events
        .put_targets()
        .rule(&rule)
        .event_bus_name(&w.aws.stack.event_bus)
        .targets(target)
        .send()
        .await
        .unwrap();
    url
}

/// Every event the queue holds, as EventBridge delivered it.
async fn delivered(w: &World, url: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let received = w
            .aws
            .sqs()
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if received.is_empty() {
            return out;
        }
        for message in received {
            out.push(serde_json::from_str(message.body.as_deref().unwrap()).unwrap());
            w.aws
                .sqs()
                .delete_message()
                .queue_url(url)
                .receipt_handle(message.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

/// Validates each event's detail against `events/schemas/<detail-type>.json`; the problems.
fn schema_violations(events: &[Value]) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: `make test` installs it",
        python.display()
    );
    let script = r#"
import json, pathlib, sys
import jsonschema
schemas = pathlib.Path(sys.argv[1])
problems = []
for line in sys.stdin:
    event = json.loads(line)
    schema = json.loads((schemas / (event["detail-type"] + ".json")).read_text())
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    for error in validator.iter_errors(event["detail"]):
        problems.append(f'{event["detail-type"]}: {error.json_path}: {error.message}')
print("\n".join(problems))
"#;
    let input: String = events.iter().map(|e| format!("{e}\n")).collect();
    let mut child = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(root.join("events/schemas"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "the validator ran");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn a_rule_on_the_bus_delivers_every_event_kind_with_its_documented_schema() {
    let (w, worker, account_id) = one_synced_account(50, 10).await;
    let url = subscribe(&w).await;
    let number = w.sim.credentials.account_numbers[0].clone();

    // SyncCompleted: an incremental sync.
    run_task(
        &worker,
        account_id,
        tastysync_shared::domain::tasks::TaskKind::Incremental,
    )
    .await;

    // OrderUpdated, BalanceUpdated, PositionsChanged: the streamer stores what it is pushed.
    let settings = StreamerSettings {
        debounce: Duration::from_millis(200),
        ..StreamerSettings::default()
    };
    let streamer = crate::realtime::streamer(&w, settings);
    let serving = streamer.run_shard(0, Instant::now() + Duration::from_secs(60));
    let pushed = async {
        let sim = &w.sim.simulator;
        while sim.streamer_connections() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let activity = Activity {
            trades: 1,
            cash_change_cents: 100,
            close_positions: 1,
            ..Activity::default()
        };
        sim.add_activity(&number, &activity).unwrap();
        // Until all three are on the queue the rule feeds.
        let started = Instant::now();
        let mut seen = Vec::new();
        while started.elapsed() < Duration::from_secs(10) {
            seen.extend(delivered(&w, &url).await);
            let kinds: BTreeSet<&str> = seen
                .iter()
                .filter_map(|e| e["detail-type"].as_str())
                .collect();
            if ["OrderUpdated", "BalanceUpdated", "PositionsChanged"]
                .iter()
                .all(|k| kinds.contains(k))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        seen
    };
    let mut events = tokio::select! {
        report = serving => panic!("the shard stopped early: {report:?}"),
        seen = pushed => seen,
    };

    // SyncFailed and AccountNeedsReauth: the user revokes the grant, and the next sync finds out.
    w.sim.simulator.revoke(&w.sim.credentials.refresh_token);
    w.sim.simulator.expire_access_tokens();
    let task = tastysync_shared::domain::tasks::NewTask::new(
        "user-a",
        account_id,
        tastysync_shared::domain::tasks::TaskKind::Manual,
    );
    tastysync_shared::ports::TaskCreator::create(&worker.tasks, &task)
        .await
        .unwrap();
    tastysync_shared::ports::SyncQueue::enqueue(&worker.queue, &task.message())
        .await
        .unwrap();
    drain(&w, &worker).await;
    events.extend(delivered(&w, &url).await);

    let kinds: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| e["detail-type"].as_str())
        .collect();
    assert_eq!(kinds, Event::NAMES.into_iter().collect(), "{events:#?}");
    assert!(events.iter().all(|e| e["source"] == "tastysync"));
    assert!(
        events.iter().all(|e| e["detail"]["user_id"] == "user-a"
            && e["detail"]["account_id"] == account_id.to_string().as_str()),
        "every event names the account and its user"
    );
    let violations = schema_violations(&events);
    assert!(
        violations.is_empty(),
        "events that break their schema:\n{violations}"
    );
}

#[test]
fn a_detail_that_breaks_its_schema_is_caught() {
    let broken = json!({
        "detail-type": "OrderUpdated",
        "detail": {"account_id": "not-a-uuid", "user_id": "u", "order_id": "7", "status": null, "extra": 1},
    });
    let violations = schema_violations(&[broken]);
    for field in ["account_id", "order_id", "extra"] {
        assert!(
            violations.contains(field),
            "{field} not reported: {violations}"
        );
    }
}
