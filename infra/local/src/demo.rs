//! `make demo`: the whole product end to end on loopback, as a user would drive it.
//!
//! It starts the gateway (with the worker) against the stack in the environment, links a
//! tastytrade account through the HTTP API with a personal grant, follows the full sync on
//! `/sync/status` with a progress bar, prints what landed in Postgres, then adds activity,
//! triggers an incremental sync and follows that too.
//!
//! The account is the simulator's (started here, seeded) unless `TASTYTRADE_REFRESH_TOKEN` and
//! `TASTYTRADE_CLIENT_SECRET` are set: then it is that grant's, in `TASTYTRADE_ENV` (sandbox
//! by default), at `TASTYTRADE_API_URL` when given (a proxy, a recorder, another simulator).

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tastysync_shared::aws::SdkConfig;
use tastysync_shared::config::Env;
use tastysync_shared::tastytrade::Environment;
use tastytrade_sim::Simulator;
use tastytrade_sim::data::Sizes;
use tastytrade_sim::server::Config;
use uuid::Uuid;

use crate::gateway;

/// The demo's user, as the JWT `sub`.
const USER: &str = "demo-user";
/// A full sync should not take this long; past it the demo gives up and says so.
const PATIENCE: Duration = Duration::from_secs(900);

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Gateway(#[from] gateway::GatewayError),
    #[error("the simulator could not start: {0}")]
    Simulator(std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{0}")]
    Api(String),
    #[error("database: {0}")]
    Db(#[from] tastysync_shared::db::DbError),
    #[error(transparent)]
    Config(#[from] tastysync_shared::config::ConfigError),
    #[error(transparent)]
    Startup(#[from] tastysync_shared::StartupError),
    #[error("{0}")]
    Usage(&'static str),
}

/// Where the demo's account lives.
enum Broker {
    Simulated(tastytrade_sim::server::Running),
    Real {
        environment: String,
        base_url: Option<String>,
        refresh_token: String,
        client_secret: String,
    },
}

pub async fn run(env: Env, sdk: &SdkConfig) -> Result<(), DemoError> {
    let broker = Broker::from_env(&env).await?;
    let (environment, grant) = broker.grant();
    let env = broker.point_at(
        env.with("LOCAL_SCHEDULE_SECONDS", "0")
            .with("OAUTH_REDIRECT_URIS", "http://localhost:5173/callback"),
        &environment,
    )?;
    let pool = tastysync_shared::db::pool_from_env(&env, sdk).await?;
    let gateway =
        gateway::start(&env, sdk, std::net::SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    println!(
        "local gateway on {}/api/v1 (the worker polls the queue)\n",
        gateway.url
    );
    let api = Api {
        http: tastysync_shared::tls::http().build()?,
        base: format!("{}/api/v1", gateway.url),
        token: gateway::dev_token(&env, USER, Duration::from_secs(3600)),
    };

    let started = Instant::now();
    let accounts = api.link(&grant).await?;
    for (id, number) in &accounts {
        api.follow_first_sync(*id, number).await?;
    }
    let ids: Vec<Uuid> = accounts.iter().map(|a| a.0).collect();
    print_rows(&row_counts(&pool, &ids).await?, started.elapsed());
    api.print_greeks(accounts[0].0, &accounts[0].1).await?;
    api.print_net_liq(accounts[0].0, &accounts[0].1).await?;

    let (id, number) = &accounts[0];
    if let Broker::Simulated(sim) = &broker {
        add_activity(sim, number).await?;
    }
    api.incremental(*id, number).await?;
    println!("\ndemo complete");
    Ok(())
}

impl Broker {
    /// The grant in the environment if one is given, else a seeded simulator started here.
    async fn from_env(env: &Env) -> Result<Self, DemoError> {
        match (
            env.optional("TASTYTRADE_REFRESH_TOKEN"),
            env.optional("TASTYTRADE_CLIENT_SECRET"),
        ) {
            (Some(refresh_token), Some(client_secret)) => Ok(Broker::Real {
                environment: env
                    .optional("TASTYTRADE_ENV")
                    .unwrap_or("sandbox")
                    .to_owned(),
                base_url: env.optional("TASTYTRADE_API_URL").map(str::to_owned),
                refresh_token: refresh_token.to_owned(),
                client_secret: client_secret.to_owned(),
            }),
            (None, None) => {
                let config = Config {
                    seed: 2026,
                    sizes: Sizes {
                        accounts: 1,
                        transactions: env.parsed_or("DEMO_TRANSACTIONS", 20_000usize)?,
                        orders: env.parsed_or("DEMO_ORDERS", 4_000usize)?,
                        years: 3,
                    },
                    ..Config::default()
                };
                let sim = Simulator::spawn(config)
                    .await
                    .map_err(DemoError::Simulator)?;
                Ok(Broker::Simulated(sim))
            }
            _ => Err(DemoError::Usage(
                "set both TASTYTRADE_REFRESH_TOKEN and TASTYTRADE_CLIENT_SECRET, or neither",
            )),
        }
    }

    /// The environment and the personal grant's `POST /link` body.
    fn grant(&self) -> (String, Value) {
        let (environment, refresh_token, client_secret) = match self {
            Broker::Simulated(sim) => {
                println!(
                    "tastytrade simulator on {} (seeded; {} account)",
                    sim.credentials.base_url,
                    sim.credentials.account_numbers.len()
                );
                (
                    "sandbox",
                    sim.credentials.refresh_token.as_str(),
                    sim.credentials.client_secret.as_str(),
                )
            }
            Broker::Real {
                environment,
                refresh_token,
                client_secret,
                base_url,
            } => {
                println!(
                    "tastytrade {environment} at {}",
                    base_url.as_deref().unwrap_or("its default URL")
                );
                (
                    environment.as_str(),
                    refresh_token.as_str(),
                    client_secret.as_str(),
                )
            }
        };
        let grant = json!({
            "environment": environment,
            "refresh_token": refresh_token,
            "client_secret": client_secret,
        });
        (environment.to_owned(), grant)
    }

    /// Points the environment's broker URL at the simulator or the given URL, if any.
    fn point_at(&self, env: Env, environment: &str) -> Result<Env, DemoError> {
        let base_url = match self {
            Broker::Simulated(sim) => Some(sim.credentials.base_url.clone()),
            Broker::Real { base_url, .. } => base_url.clone(),
        };
        let Some(url) = base_url else {
            return Ok(env);
        };
        let name = match Environment::parse(environment) {
            Some(Environment::Production) => "TASTYTRADE_PRODUCTION_URL",
            Some(Environment::Sandbox) => "TASTYTRADE_SANDBOX_URL",
            None => {
                return Err(DemoError::Api(format!(
                    "TASTYTRADE_ENV must be production or sandbox, not {environment}"
                )));
            }
        };
        Ok(env.with(name, url))
    }
}

/// New trades, fills, reversals and a closed position at the simulated broker, for the
/// incremental sync to find.
async fn add_activity(
    sim: &tastytrade_sim::server::Running,
    number: &str,
) -> Result<(), DemoError> {
    let added: Value = tastysync_shared::tls::http().build()?
        .post(format!("{}/__sim/accounts/{number}/activity", sim.credentials.base_url))
        .json(&json!({"transactions": 25, "days_back": 2, "finalize_fees": true, "reversals": 2, "fills": 5, "close_positions": 1, "net_liq_bars": 1}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    println!("\nnew activity at tastytrade: {added}");
    Ok(())
}

fn print_rows(rows: &[(&'static str, i64)], elapsed: Duration) {
    let total: i64 = rows.iter().map(|r| r.1).sum();
    println!("\nrows in Postgres after the full sync:");
    for (table, count) in rows {
        println!("  {table:<28} {count:>9}");
    }
    println!("  {:<28} {total:>9}", "total");
    println!(
        "elapsed {:.1} s from link to completion: {:.0} rows/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64().max(0.001)
    );
}

struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        expect: u16,
    ) -> Result<Value, DemoError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        if status != expect {
            return Err(DemoError::Api(format!("{path} answered {status}: {text}")));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The account's option positions with their greeks, as the read API serves them.
    async fn print_greeks(&self, id: Uuid, number: &str) -> Result<(), DemoError> {
        let path = format!("/tastytrade-accounts/{id}/positions");
        let positions = self.call(reqwest::Method::GET, &path, None, 200).await?;
        println!(
            "
option positions of {number} with their greeks (GET {path}):"
        );
        println!(
            "  {:<22} {:>6} {:>10} {:>10} {:>10} {:>10} {:>8}  as of",
            "symbol", "qty", "delta", "gamma", "theta", "vega", "IV"
        );
        let options =
            (positions.as_array().into_iter().flatten()).filter(|p| p["option"].is_object());
        for p in options {
            let g = &p["greeks"];
            let text = |v: &Value| v.as_str().unwrap_or("-").to_owned();
            println!(
                "  {:<22} {:>6} {:>10} {:>10} {:>10} {:>10} {:>8}  {}",
                text(&p["symbol"]),
                text(&p["quantity"]),
                text(&g["delta"]),
                text(&g["gamma"]),
                text(&g["theta"]),
                text(&g["vega"]),
                text(&g["implied_volatility"]),
                text(&g["as_of"])
            );
        }
        Ok(())
    }

    /// The account's last net-liq bars, as the read API serves them to a chart.
    async fn print_net_liq(&self, id: Uuid, number: &str) -> Result<(), DemoError> {
        let path = format!("/tastytrade-accounts/{id}/balance-history?points=1000");
        let history = self.call(reqwest::Method::GET, &path, None, 200).await?;
        let bars = history["net_liq"].as_array().cloned().unwrap_or_default();
        println!(
            "
last net-liq bars of {number} (GET {path}):"
        );
        println!(
            "  {:<22} {:>14} {:>14} {:>14}",
            "time", "close", "pending cash", "total"
        );
        for bar in bars.iter().rev().take(5).rev() {
            let text = |key: &str| bar[key].as_str().unwrap_or("-").to_owned();
            println!(
                "  {:<22} {:>14} {:>14} {:>14}",
                text("time"),
                text("close"),
                text("pending_cash_close"),
                text("total_close")
            );
        }
        Ok(())
    }

    /// Links the grant; returns the accounts it reached, as (id, account number).
    async fn link(&self, grant: &Value) -> Result<Vec<(Uuid, String)>, DemoError> {
        let linked = self
            .call(
                reqwest::Method::POST,
                "/tastytrade-accounts/link",
                Some(grant),
                201,
            )
            .await?;
        let accounts: Vec<(Uuid, String)> = linked
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| {
                Some((
                    a["id"].as_str()?.parse().ok()?,
                    a["account_number"].as_str()?.to_owned(),
                ))
            })
            .collect();
        if accounts.is_empty() {
            return Err(DemoError::Api("the grant reached no account".into()));
        }
        let numbers: Vec<&str> = accounts.iter().map(|a| a.1.as_str()).collect();
        println!(
            "linked {} account(s) with a personal grant: {}",
            accounts.len(),
            numbers.join(", ")
        );
        Ok(accounts)
    }

    /// Follows the full sync that linking queued for the account.
    async fn follow_first_sync(&self, id: Uuid, number: &str) -> Result<(), DemoError> {
        let tasks = self
            .call(
                reqwest::Method::GET,
                &format!("/tastytrade-accounts/{id}/sync-tasks"),
                None,
                200,
            )
            .await?;
        let Some(task) = tasks.get(0).and_then(|t| t["task_id"].as_str()) else {
            return Err(DemoError::Api(format!(
                "no sync task was queued for {number}"
            )));
        };
        println!("\nfull sync of {number} (task {task})");
        self.follow(task).await?;
        Ok(())
    }

    /// Triggers a manual (incremental) sync, follows it and prints what it wrote.
    async fn incremental(&self, id: Uuid, number: &str) -> Result<(), DemoError> {
        let triggered = self
            .call(
                reqwest::Method::POST,
                &format!("/sync/tastytrade/{id}/trigger"),
                None,
                202,
            )
            .await?;
        let Some(task) = triggered["task_id"].as_str() else {
            return Err(DemoError::Api(format!("the trigger answered {triggered}")));
        };
        println!("incremental sync of {number} triggered (task {task})");
        let started = Instant::now();
        let done = self.follow(task).await?;
        println!(
            "rows written per entity (inserted or changed; unchanged rows are not rewritten):"
        );
        if let Some(written) = done["counts"]["written"].as_object() {
            for (entity, count) in written {
                println!("  {entity:<28} {count:>9}");
            }
        }
        println!("elapsed {:.1} s", started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Polls the task's status, drawing a progress bar, until it ends; fails unless completed.
    async fn follow(&self, task: &str) -> Result<Value, DemoError> {
        let started = Instant::now();
        loop {
            let status = self
                .call(
                    reqwest::Method::GET,
                    &format!("/sync/status/{task}"),
                    None,
                    200,
                )
                .await?;
            let percent = status["progress_percentage"].as_u64().unwrap_or(0).min(100);
            let filled = usize::try_from(percent / 5).unwrap_or(0);
            let read: u64 = status["counts"]["read"]
                .as_object()
                .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
            print!(
                "\r  [{}{}] {percent:>3}% {:<18} {read:>9} rows read   ",
                "#".repeat(filled),
                " ".repeat(20 - filled),
                status["stage"].as_str().unwrap_or("queued"),
            );
            let _ = std::io::stdout().flush();
            match status["status"].as_str() {
                Some("completed") => {
                    println!("\n  completed in {:.1} s", started.elapsed().as_secs_f64());
                    return Ok(status);
                }
                Some("failed" | "needs_reauth") => {
                    println!();
                    return Err(DemoError::Api(format!(
                        "the sync ended {}: {}",
                        status["status"], status["details"]
                    )));
                }
                _ => {}
            }
            if started.elapsed() > PATIENCE {
                return Err(DemoError::Api("the sync did not finish in time".into()));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Rows per synced table for the accounts.
async fn row_counts(
    pool: &tastysync_shared::db::PgPool,
    ids: &[Uuid],
) -> Result<Vec<(&'static str, i64)>, DemoError> {
    const TABLES: [&str; 8] = [
        "transactions",
        "orders",
        "order_legs",
        "order_fills",
        "positions",
        "account_balances",
        "account_balance_snapshots",
        "net_liq_history",
    ];
    let client = pool
        .get()
        .await
        .map_err(tastysync_shared::db::DbError::from)?;
    let mut counts = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        // The names are this list's own, never input.
        let sql = format!("SELECT count(*) FROM {table} WHERE account_id = ANY($1)");
        let row = client
            .query_one(&sql, &[&ids])
            .await
            .map_err(tastysync_shared::db::DbError::from)?;
        counts.push((table, row.get::<_, i64>(0)));
    }
    Ok(counts)
}
