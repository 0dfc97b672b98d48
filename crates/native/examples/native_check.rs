//! `native_check NODE_DIR CAP...`: checks each cap straight against the
//! storage servers of NODE_DIR's grid and prints Tahoe's check JSON.
//! With `--add-lease` first, renews the leases too.
use steward_backend::{Backend, CheckOptions};
use steward_cap::Cap;
use steward_native::{NativeBackend, NativeOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let add_lease = args.first().is_some_and(|a| a == "--add-lease");
    if add_lease {
        args.remove(0);
    }
    let Some(dir) = args.first().cloned() else {
        eprintln!("usage: native_check [--add-lease] NODE_DIR CAP...");
        std::process::exit(2);
    };
    let b = NativeBackend::from_node_dir(dir.as_ref(), NativeOptions::default(), &sched())?;
    for c in &args[1..] {
        let cap = Cap::parse(c)?;
        let opts = CheckOptions {
            verify: false,
            add_lease,
        };
        match b.check(&cap, opts).await {
            Ok(v) => println!("{}", serde_json::to_string_pretty(&v)?),
            Err(e) => println!("error: {e}"),
        }
    }
    Ok(())
}

/// A scheduler of its own for each backend a test makes.
fn sched() -> std::sync::Arc<steward_backend::Scheduler> {
    steward_backend::Scheduler::new(4096)
}
