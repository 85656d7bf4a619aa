//! `template.yaml` against the code: functions against crates, routes against
//! `shared::api::ROUTES`, each function's `Ports` policy against `shared::permissions`, and the
//! queue and table settings against the local stack's. Each check is a function returning what
//! disagrees, so the tests below can also show that a broken template is caught.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml_ng::Value;
use tastysync_local::provision;
use tastysync_shared::api::{BASE_PATH, ROUTES};
use tastysync_shared::permissions;

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn template() -> Value {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

/// A plain value, or the value inside a CloudFormation tag (`!Ref X`, `!GetAtt X.Arn`).
fn untagged(value: &Value) -> &Value {
    match value {
        Value::Tagged(tagged) => &tagged.value,
        other => other,
    }
}

fn str_of(value: &Value) -> &str {
    untagged(value).as_str().unwrap_or_default()
}

fn resources(template: &Value) -> &serde_yaml_ng::Mapping {
    template["Resources"].as_mapping().unwrap()
}

/// Each function's crate (named by its `CodeUri`, `build/lambda/<crate>/bootstrap.zip`) and
/// its resource.
fn functions(template: &Value) -> BTreeMap<String, &Value> {
    resources(template)
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(id, r)| {
            let code = str_of(&r["Properties"]["CodeUri"]);
            let name = code
                .strip_prefix("build/lambda/")
                .and_then(|rest| rest.strip_suffix("/bootstrap.zip"))
                .unwrap_or_else(|| panic!("{id:?}: CodeUri {code} is not a `make package` zip"));
            (name.to_owned(), r)
        })
        .collect()
}

fn crates() -> BTreeSet<String> {
    std::fs::read_dir(root().join("functions"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.join("Cargo.toml").exists())
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn function_mismatches(template: &Value, crates: &BTreeSet<String>) -> Vec<String> {
    let declared: BTreeSet<String> = functions(template).into_keys().collect();
    let permitted: BTreeSet<String> = permissions::FUNCTIONS
        .iter()
        .map(|(name, _)| (*name).to_owned())
        .collect();
    let mut problems = Vec::new();
    for name in crates.difference(&declared) {
        problems.push(format!(
            "crate functions/{name} has no function in the template"
        ));
    }
    for name in declared.difference(crates) {
        problems.push(format!("template function {name} has no crate"));
    }
    for name in crates.symmetric_difference(&permitted) {
        problems.push(format!(
            "{name}: crates and shared::permissions::FUNCTIONS differ"
        ));
    }
    problems
}

fn route_mismatches(template: &Value) -> Vec<String> {
    let mut declared = BTreeSet::new();
    for (function, resource) in functions(template) {
        let Some(events) = resource["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for event in events.values().filter(|e| e["Type"] == "HttpApi") {
            let properties = &event["Properties"];
            declared.insert((
                str_of(&properties["Method"]).to_uppercase(),
                str_of(&properties["Path"]).to_owned(),
                function.clone(),
            ));
        }
    }
    let handled: BTreeSet<(String, String, String)> = ROUTES
        .iter()
        .map(|r| {
            (
                r.method.to_owned(),
                format!("{BASE_PATH}{}", r.path),
                r.function.to_owned(),
            )
        })
        .collect();
    let mut problems: Vec<String> = declared
        .difference(&handled)
        .map(|r| format!("template route {r:?} has no handler route"))
        .collect();
    problems.extend(
        handled
            .difference(&declared)
            .map(|r| format!("handler route {r:?} is not in the template")),
    );
    problems
}

/// The actions of the role's `Ports` policy.
fn granted(template: &Value, function: &Value) -> BTreeSet<String> {
    let role_id = str_of(&function["Properties"]["Role"])
        .strip_suffix(".Arn")
        .expect("each function names its own role: Role: !GetAtt <Role>.Arn");
    let role = &template["Resources"][role_id];
    let policies = role["Properties"]["Policies"].as_sequence().unwrap();
    let ports = policies
        .iter()
        .find(|p| p["PolicyName"] == "Ports")
        .unwrap_or_else(|| panic!("{role_id} has no Ports policy"));
    let mut actions = BTreeSet::new();
    for statement in ports["PolicyDocument"]["Statement"].as_sequence().unwrap() {
        assert_eq!(statement["Effect"], "Allow", "{role_id}: {statement:?}");
        match &statement["Action"] {
            Value::Sequence(list) => actions.extend(list.iter().map(|a| str_of(a).to_owned())),
            single => {
                actions.insert(str_of(single).to_owned());
            }
        }
    }
    actions
}

fn policy_mismatches(template: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, function) in functions(template) {
        let granted = granted(template, function);
        let used: BTreeSet<String> = permissions::actions_of(&name)
            .unwrap_or_default()
            .into_iter()
            .map(str::to_owned)
            .collect();
        for action in granted.difference(&used) {
            problems.push(format!(
                "{name} is granted {action}, which its ports never call"
            ));
        }
        for action in used.difference(&granted) {
            problems.push(format!(
                "{name} calls {action}, which its policy does not grant"
            ));
        }
    }
    problems
}

fn number(value: &Value) -> u64 {
    untagged(value)
        .as_u64()
        .unwrap_or_else(|| panic!("{value:?}"))
}

#[test]
fn every_function_has_a_crate_and_every_crate_a_function() {
    let problems = function_mismatches(&template(), &crates());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_templates_routes_are_exactly_the_handlers_routes() {
    let problems = route_mismatches(&template());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn each_function_is_granted_exactly_the_actions_its_ports_call() {
    let problems = policy_mismatches(&template());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn a_function_without_a_crate_or_a_crate_without_a_function_is_caught() {
    let mut crates = crates();
    crates.insert("orphan-crate".into());
    let mut template = template();
    let resources = template["Resources"].as_mapping_mut().unwrap();
    let mut stray = resources["AccountsFunction"].clone();
    stray["Properties"]["CodeUri"] = "build/lambda/ghost/bootstrap.zip".into();
    resources.insert("GhostFunction".into(), stray);

    let problems = function_mismatches(&template, &crates);

    assert!(
        problems
            .iter()
            .any(|p| p.contains("functions/orphan-crate has no function"))
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("template function ghost has no crate"))
    );
}

#[test]
fn a_route_missing_on_either_side_is_caught() {
    let mut template = template();
    let events = template["Resources"]["AccountsFunction"]["Properties"]["Events"]
        .as_mapping_mut()
        .unwrap();
    events.remove("Unlink");
    let mut extra = events["List"].clone();
    extra["Properties"]["Path"] = "/api/v1/tastytrade-accounts/export".into();
    events.insert("Export".into(), extra);

    let problems = route_mismatches(&template);

    assert!(
        problems
            .iter()
            .any(|p| p.contains("/api/v1/tastytrade-accounts/export") && p.contains("no handler"))
    );
    assert!(problems.iter().any(|p| p.contains("{account_db_id}")
        && p.contains("DELETE")
        && p.contains("not in the template")));
}

#[test]
fn a_grant_no_port_uses_is_caught() {
    let mut template = template();
    let statements = template["Resources"]["SyncStatusRole"]["Properties"]["Policies"][0]
        ["PolicyDocument"]["Statement"]
        .as_sequence_mut()
        .unwrap();
    statements[1]["Action"]
        .as_sequence_mut()
        .unwrap()
        .push("dynamodb:Scan".into());

    let problems = policy_mismatches(&template);

    assert_eq!(
        problems,
        ["sync-status is granted dynamodb:Scan, which its ports never call"]
    );
}

#[test]
fn the_queue_and_table_match_the_local_stacks() {
    let template = template();
    let r = &template["Resources"];
    let worker_timeout = number(&r["SyncWorkerFunction"]["Properties"]["Timeout"]);
    let queue = &r["SyncQueue"]["Properties"];

    assert_eq!(worker_timeout, u64::from(provision::WORKER_TIMEOUT_SECONDS));
    assert_eq!(
        number(&queue["VisibilityTimeout"]),
        u64::from(provision::QUEUE_VISIBILITY_SECONDS),
        "six times the worker's timeout"
    );
    assert_eq!(
        number(&queue["RedrivePolicy"]["maxReceiveCount"]),
        u64::from(provision::MAX_RECEIVE_COUNT)
    );
    assert_eq!(
        number(&r["SyncDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"]),
        u64::from(provision::DLQ_RETENTION_SECONDS)
    );
    let worker_queue = &r["SyncWorkerFunction"]["Properties"]["Events"]["Queue"]["Properties"];
    assert_eq!(
        worker_queue["FunctionResponseTypes"][0],
        "ReportBatchItemFailures"
    );
    let table = &r["TasksTable"]["Properties"];
    assert_eq!(table["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        table["TimeToLiveSpecification"]["AttributeName"],
        provision::TTL_ATTRIBUTE
    );
    assert_eq!(
        table["KeySchema"][0]["AttributeName"],
        provision::PARTITION_KEY
    );
    let index = &table["GlobalSecondaryIndexes"][0];
    assert_eq!(index["IndexName"], provision::ACCOUNT_TASKS_INDEX);
    assert_eq!(
        index["KeySchema"][0]["AttributeName"],
        provision::ACCOUNT_TASKS_PK
    );
    assert_eq!(
        index["KeySchema"][1]["AttributeName"],
        provision::ACCOUNT_TASKS_SK
    );
}
