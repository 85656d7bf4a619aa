//! `tastytrade-sim --listen 127.0.0.1:PORT [--seed N] [--accounts N] [--transactions N]
//! [--orders N] [--years N] [--token-seconds N] [--client-id ID --client-secret SECRET]`
//!
//! Serves the simulator and prints one JSON line on stdout with `base_url`, `client_id`,
//! `client_secret`, `refresh_token` and `account_numbers`, so scripts can link against it.

use std::process::ExitCode;

use tastytrade_sim::Simulator;
use tastytrade_sim::server::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let mut config = Config::default();
    let mut listen = "127.0.0.1:0".to_owned();
    let (mut client_id, mut client_secret) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else {
            eprintln!("{flag} needs a value");
            return ExitCode::from(2);
        };
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag} takes a number, not {value:?}"))
        };
        let applied = match flag.as_str() {
            "--listen" => {
                listen = value.clone();
                Ok(())
            }
            "--client-id" => {
                client_id = Some(value.clone());
                Ok(())
            }
            "--client-secret" => {
                client_secret = Some(value.clone());
                Ok(())
            }
            "--seed" => number().map(|n| config.seed = n),
            "--accounts" => number().map(|n| config.sizes.accounts = n as usize),
            "--transactions" => number().map(|n| config.sizes.transactions = n as usize),
            "--orders" => number().map(|n| config.sizes.orders = n as usize),
            "--years" => number().map(|n| config.sizes.years = n as i64),
            "--token-seconds" => number().map(|n| config.token_seconds = n as i64),
            other => Err(format!("unknown flag {other}")),
        };
        if let Err(message) = applied {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    }
    let Ok(addr) = listen.parse() else {
        eprintln!("--listen takes host:port, not {listen:?}");
        return ExitCode::from(2);
    };
    let running = match Simulator::serve(config, addr).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let credentials = match (client_id, client_secret) {
        (Some(id), Some(secret)) => {
            running.simulator.register_client(&id, &secret);
            running.simulator.credentials(&running.credentials.base_url)
        }
        (None, None) => running.credentials,
        _ => {
            eprintln!("--client-id and --client-secret go together");
            return ExitCode::from(2);
        }
    };
    match serde_json::to_string(&credentials) {
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
    // Serve until killed.
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}
