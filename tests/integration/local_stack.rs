//! The local stack's scripts, run as a newcomer would run them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

#[tokio::test]
async fn the_stacks_postgres_starts_from_a_checkout_behind_a_private_directory() {
    // As a clone under /root: the checkout sits behind a directory only its owner may enter,
    // while Postgres (when we are root) runs as `postgres`.
    let private = std::env::temp_dir().join(format!("tastysync-home-{}", uuid::Uuid::new_v4()));
    let scripts = private.join("checkout/infra/local");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let stack = scripts.join("stack.sh");
    std::fs::copy(root.join("infra/local/stack.sh"), &stack).unwrap();
    let run = |args: &[&str]| {
        Command::new("bash")
            .arg(&stack)
            .args(args)
            .output()
            .unwrap()
    };

    let up = run(&["pg", "private"]);

    let stdout = String::from_utf8_lossy(&up.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&up.stderr).into_owned();
    let connected = match stdout.parse::<u16>() {
        Ok(port) => {
            let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
            match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                Ok((client, connection)) => {
                    tokio::spawn(connection);
                    client.query_one("SELECT 1", &[]).await.is_ok()
                }
                Err(_) => false,
            }
        }
        Err(_) => false,
    };
    let down = run(&["down", "private", "--purge"]);
    std::fs::remove_dir_all(&private).unwrap();
    assert!(up.status.success(), "stack.sh pg failed: {stderr}");
    assert!(connected, "no cluster answered on {stdout:?}: {stderr}");
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
}
