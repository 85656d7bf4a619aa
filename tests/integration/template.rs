//! `template.yaml` against the code: functions against crates, routes against
//! `shared::api::ROUTES`, each function's `Ports` policy against the actions its dependencies'
//! ports declare (`shared::wiring::Function::actions`), and the queue and table settings
//! against the local stack's. Each check is a function returning what disagrees, so the tests
//! below can also show that a broken template is caught.

use std::collections::BTreeSet;

use serde_yaml_ng::Value;
use tastysync_local::provision;
use tastysync_local::template::{self, functions, str_of, untagged};
use tastysync_shared::api::{BASE_PATH, ROUTES};
use tastysync_shared::wiring::Function;

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn template() -> Value {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    template::parse(&text).unwrap()
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
    let declared: BTreeSet<String> = functions(template).unwrap().into_keys().collect();
    let known: BTreeSet<String> = Function::ALL.iter().map(|f| f.name().to_owned()).collect();
    let mut problems = Vec::new();
    for name in crates.difference(&declared) {
        problems.push(format!(
            "crate functions/{name} has no function in the template"
        ));
    }
    for name in declared.difference(crates) {
        problems.push(format!("template function {name} has no crate"));
    }
    for name in crates.symmetric_difference(&known) {
        problems.push(format!(
            "{name}: crates and shared::wiring::Function differ"
        ));
    }
    problems
}

fn route_mismatches(template: &Value) -> Vec<String> {
    let mut declared = BTreeSet::new();
    for (function, resource) in functions(template).unwrap() {
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
                r.function.name().to_owned(),
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

fn policy_mismatches(template: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, granted) in template::policies(template).unwrap() {
        let Some(function) = Function::from_name(&name) else {
            problems.push(format!("{name} is not a function the code knows"));
            continue;
        };
        let used: BTreeSet<String> = function.actions().into_iter().map(str::to_owned).collect();
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

/// The token key's crypto actions, each with the functions whose ports call it.
const KEY_ACTIONS: [&str; 2] = ["kms:GenerateDataKey", "kms:Decrypt"];

/// The functions the token key's policy lets use `action`: those whose role it names, by ARN,
/// in an Allow statement of the action; a statement without that condition lets anyone.
fn key_users(template: &Value, action: &str) -> BTreeSet<String> {
    let resources = &template["Resources"];
    let role_names: Vec<(String, String)> = functions(template)
        .unwrap()
        .into_iter()
        .map(|(name, function)| {
            let role_id = str_of(&function["Properties"]["Role"]).trim_end_matches(".Arn");
            let role_name = str_of(&resources[role_id]["Properties"]["RoleName"]);
            (name, role_name.to_owned())
        })
        .filter(|(_, role_name)| !role_name.is_empty())
        .collect();
    let statements = resources["TokenKey"]["Properties"]["KeyPolicy"]["Statement"]
        .as_sequence()
        .unwrap();
    let covers = |pattern: &str| match pattern.strip_suffix('*') {
        Some(prefix) => action.starts_with(prefix),
        None => pattern == action,
    };
    let mut users = BTreeSet::new();
    for statement in statements.iter().filter(|s| s["Effect"] == "Allow") {
        let actions: Vec<&str> = match &statement["Action"] {
            Value::Sequence(list) => list.iter().map(str_of).collect(),
            single => vec![str_of(single)],
        };
        if !actions.into_iter().any(covers) {
            continue;
        }
        let Some(arns) = statement["Condition"]["ArnEquals"]["aws:PrincipalArn"].as_sequence()
        else {
            users.insert(format!("anyone ({})", str_of(&statement["Sid"])));
            continue;
        };
        for arn in arns.iter().map(str_of) {
            let named = (role_names.iter())
                .find(|(_, role_name)| arn.ends_with(&format!(":role/{role_name}")));
            users.insert(named.map_or_else(|| format!("unknown role {arn}"), |(f, _)| f.clone()));
        }
    }
    users
}

fn key_mismatches(template: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for action in KEY_ACTIONS {
        let allowed = key_users(template, action);
        let needed: BTreeSet<String> = (Function::ALL.iter())
            .filter(|f| f.actions().contains(action))
            .map(|f| f.name().to_owned())
            .collect();
        if allowed != needed {
            problems.push(format!(
                "the token key lets {allowed:?} use {action}; the ports of {needed:?} call it"
            ));
        }
    }
    problems
}

/// Who holds the cluster's master secret, and as whom each function logs in: only migrate
/// reads the secret (its environment, its role); every other function's role may
/// `rds-db:connect` as exactly its [`Function::database_user`], at the proxy, which takes IAM
/// logins only.
fn login_mismatches(template: &Value) -> Vec<String> {
    let text = |value: &Value| serde_yaml_ng::to_string(value).unwrap();
    let mut problems = Vec::new();
    if text(&template["Globals"]).contains("MasterUserSecret") {
        problems.push("the Globals give every function the master secret".to_owned());
    }
    let resources = &template["Resources"];
    for (name, function) in functions(template).unwrap() {
        let user = Function::from_name(&name).unwrap().database_user();
        let role = &resources[str_of(&function["Properties"]["Role"]).trim_end_matches(".Arn")];
        let holds_secret =
            text(function).contains("MasterUserSecret") || text(role).contains("MasterUserSecret");
        if holds_secret != user.is_none() {
            problems.push(format!("{name} holds the master secret: {holds_secret}"));
        }
        let logins: BTreeSet<String> = template::ports_statements(template, function)
            .unwrap()
            .iter()
            .filter(|s| text(&s["Action"]).contains("rds-db:connect"))
            .map(|s| {
                let arn = str_of(&untagged(&s["Resource"])[0]);
                arn.rsplit_once(":dbuser:")
                    .map_or(arn, |(_, user)| user)
                    .to_owned()
            })
            .collect();
        let wanted: BTreeSet<String> = user
            .map(|u| format!("${{ProxyId}}/{u}"))
            .into_iter()
            .collect();
        if logins != wanted {
            problems.push(format!("{name} may log in as {logins:?}; it is {wanted:?}"));
        }
    }
    let proxy = &resources["DatabaseProxy"]["Properties"];
    if proxy["DefaultAuthScheme"] != "IAM_AUTH" || !proxy["Auth"].is_null() {
        problems.push("the proxy takes logins other than IAM ones".to_owned());
    }
    if resources["DatabaseCluster"]["Properties"]["EnableIAMDatabaseAuthentication"] != true {
        problems.push("the cluster does not take IAM logins".to_owned());
    }
    problems
}

fn number(value: &Value) -> u64 {
    untagged(value)
        .as_u64()
        .unwrap_or_else(|| panic!("{value:?}"))
}

#[test]
fn the_templates_pool_size_is_the_codes_default_and_reaches_every_function() {
    let template = template();
    let default = number(&template["Parameters"]["DatabaseMaxConnectionsPerFunction"]["Default"]);
    let passed =
        &template["Globals"]["Function"]["Environment"]["Variables"]["DATABASE_MAX_CONNECTIONS"];

    assert_eq!(
        default,
        tastysync_shared::config::DatabaseConfig::DEFAULT_MAX_CONNECTIONS as u64
    );
    assert_eq!(
        untagged(passed).as_str(),
        Some("DatabaseMaxConnectionsPerFunction"),
        "{passed:?}"
    );
    for (name, resource) in functions(&template).unwrap() {
        let own = &resource["Properties"]["Environment"]["Variables"]["DATABASE_MAX_CONNECTIONS"];
        assert!(own.is_null(), "{name} sets its own pool size: {own:?}");
    }
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
fn the_token_key_lets_exactly_the_functions_that_seal_or_open_tokens_use_it() {
    let problems = key_mismatches(&template());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn a_key_policy_that_lets_another_role_or_anyone_open_tokens_is_caught() {
    let mut template = template();
    let statements = template["Resources"]["TokenKey"]["Properties"]["KeyPolicy"]["Statement"]
        .as_sequence_mut()
        .unwrap();
    statements[0]["Action"] = "kms:*".into();

    let problems = key_mismatches(&template);

    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems
            .iter()
            .all(|p| p.contains("anyone (AccountAdministers)"))
    );
}

#[test]
fn the_token_key_and_the_apps_secrets_outlive_a_stack_deletion() {
    let template = template();
    for id in ["TokenKey", "OAuthClientSecret", "StateSigningSecret"] {
        let resource = &template["Resources"][id];
        assert_eq!(resource["DeletionPolicy"], "Retain", "{id}");
        assert_eq!(resource["UpdateReplacePolicy"], "Retain", "{id}");
    }
}

#[test]
fn no_function_but_migrate_holds_the_master_secret_and_each_logs_in_as_its_own_user() {
    let problems = login_mismatches(&template());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn a_function_given_the_master_secret_or_another_functions_login_is_caught() {
    let mut template = template();
    template["Resources"]["SyncStatusFunction"]["Properties"]["Environment"]["Variables"]
        ["DATABASE_SECRET_ARN"] = template["Resources"]["MigrateFunction"]["Properties"]
        ["Environment"]["Variables"]["DATABASE_SECRET_ARN"]
        .clone();
    let statements = template["Resources"]["AccountsRole"]["Properties"]["Policies"][0]
        ["PolicyDocument"]["Statement"]
        .as_sequence_mut()
        .unwrap();
    let login = statements
        .iter_mut()
        .find(|s| s["Sid"] == "DatabaseLogin")
        .expect("the accounts function's login");
    let Value::Tagged(sub) = &mut login["Resource"] else {
        panic!("the login's resource is a !Sub");
    };
    let arn = str_of(&sub.value[0]).replace("tastysync_accounts", "tastysync_worker");
    sub.value[0] = arn.into();
    template["Resources"]["DatabaseProxy"]["Properties"]["DefaultAuthScheme"] = "NONE".into();

    let problems = login_mismatches(&template);

    assert_eq!(
        problems,
        [
            r#"accounts may log in as {"${ProxyId}/tastysync_worker"}; it is {"${ProxyId}/tastysync_accounts"}"#,
            "sync-status holds the master secret: true",
            "the proxy takes logins other than IAM ones",
        ],
        "{problems:#?}"
    );
}

/// Every source file of the functions and of `shared`, as text.
fn sources() -> String {
    fn walk(dir: &std::path::Path, text: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, text);
            } else if path.extension().is_some_and(|e| e == "rs") {
                text.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut text = String::new();
    walk(&root().join("shared/src"), &mut text);
    walk(&root().join("functions"), &mut text);
    text
}

/// Each log metric filter's term, which the code must log in its function's log group, and
/// the alarm on the filter's metric.
#[test]
fn each_log_metric_filter_matches_an_event_the_code_logs_and_is_alarmed() {
    let template = template();
    let resources = template["Resources"].as_mapping().unwrap();
    let code = sources();
    let alarmed: BTreeSet<&str> = (resources.values())
        .filter(|r| r["Type"] == "AWS::CloudWatch::Alarm")
        .map(|r| str_of(&r["Properties"]["MetricName"]))
        .collect();
    let mut filters = 0;
    for (id, filter) in resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Logs::MetricFilter")
    {
        let term = str_of(&filter["Properties"]["FilterPattern"]);
        let event = term.trim_matches('"');
        assert!(
            !event.is_empty() && code.contains(&format!("\"{event}\"")),
            "{id:?}: no code logs {term}"
        );
        let metric = str_of(&filter["Properties"]["MetricTransformations"][0]["MetricName"]);
        assert!(alarmed.contains(metric), "{id:?}: no alarm on {metric}");
        filters += 1;
    }
    assert_eq!(filters, 4, "the link's OAuth client and three audit trails");
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
fn a_port_action_missing_from_the_template_is_caught() {
    let mut template = template();
    let statements = template["Resources"]["SyncWorkerRole"]["Properties"]["Policies"][0]
        ["PolicyDocument"]["Statement"]
        .as_sequence_mut()
        .unwrap();
    let tasks = statements
        .iter_mut()
        .find(|s| s["Sid"] == "TasksAndLeases")
        .expect("the worker's task statement");
    tasks["Action"]
        .as_sequence_mut()
        .unwrap()
        .retain(|a| a != "dynamodb:GetItem");

    let problems = policy_mismatches(&template);

    assert_eq!(
        problems,
        ["sync-worker calls dynamodb:GetItem, which its policy does not grant"]
    );
}

#[test]
fn the_worker_reads_its_task_so_its_policy_grants_get_item() {
    assert!(Function::SyncWorker.actions().contains("dynamodb:GetItem"));
    assert!(!Function::SyncStatus.actions().contains("dynamodb:PutItem"));
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
    for (name, value) in provision::ALLOCATOR_ENV {
        assert_eq!(
            template["Globals"]["Function"]["Environment"]["Variables"][name], value,
            "{name}"
        );
    }
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
