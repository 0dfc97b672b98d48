//! The harness against the machine's real PostgreSQL: a server comes up on
//! loopback, keeps data across a restart, and leaves nothing behind
//! (dropped, or killed with its test process).

use std::process::Command;
use std::time::{Duration, Instant};
use steward_testpg::TestPg;

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

fn postmaster_pid(pg: &TestPg) -> i32 {
    let text = std::fs::read_to_string(pg.data_dir().join("postmaster.pid")).unwrap();
    text.lines().next().unwrap().trim().parse().unwrap()
}

fn wait_gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        // A zombie of another parent still answers kill(0); /proc says.
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if !alive(pid) || state.split_whitespace().nth(2) == Some("Z") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn a_server_comes_up_keeps_data_across_a_restart_and_is_removed_on_drop() {
    let pg = TestPg::start().unwrap_or_else(|e| panic!("{e:#}"));
    let url = pg.fresh_database().unwrap();
    let db = url.rsplit('/').next().unwrap().to_string();
    assert!(url.starts_with("postgres://steward@127.0.0.1:"), "{url}");
    pg.psql(&db, "CREATE TABLE t (x int); INSERT INTO t VALUES (42)")
        .unwrap();
    // Loopback only, on the port it says.
    let addr = pg.psql(&db, "SELECT inet_server_addr()").unwrap();
    assert_eq!(addr.trim(), "127.0.0.1");
    // Not run as root (initdb refuses it).
    {
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata(pg.data_dir()).unwrap().uid();
        assert_ne!(uid, 0, "the data directory belongs to an unprivileged user");
    }
    let first = postmaster_pid(&pg);
    pg.stop().unwrap();
    assert!(wait_gone(first));
    assert!(pg.psql(&db, "SELECT 1").is_err(), "stopped means stopped");
    pg.start_again().unwrap();
    assert_eq!(pg.psql(&db, "SELECT x FROM t").unwrap().trim(), "42");
    pg.restart().unwrap();
    assert_eq!(pg.psql(&db, "SELECT x FROM t").unwrap().trim(), "42");
    let second = postmaster_pid(&pg);
    let base = pg.data_dir().parent().unwrap().to_path_buf();
    drop(pg);
    assert!(wait_gone(second), "the server stops with its TestPg");
    assert!(!base.exists(), "{} removed", base.display());
}

/// Run by the test below in a child process: starts a server, says where,
/// and waits to be killed (ignored: not a test of its own).
#[test]
#[ignore = "run by a_test_killed_with_sigkill_leaves_no_server_and_its_directory_is_swept"]
fn child_holding_a_server() {
    let pg = TestPg::start().unwrap_or_else(|e| panic!("{e:#}"));
    println!("PID {}", postmaster_pid(&pg));
    println!("DIR {}", pg.data_dir().parent().unwrap().display());
    std::thread::sleep(Duration::from_secs(600));
}

#[test]
fn a_test_killed_with_sigkill_leaves_no_server_and_its_directory_is_swept() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_holding_a_server",
            "--ignored",
            "--nocapture",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let (mut pid, mut dir) = (None, None);
    let mut line = String::new();
    while pid.is_none() || dir.is_none() {
        line.clear();
        let n = std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert!(n > 0, "the child ended before starting its server");
        if let Some(p) = line.trim().strip_prefix("PID ") {
            pid = Some(p.parse::<i32>().unwrap());
        }
        if let Some(d) = line.trim().strip_prefix("DIR ") {
            dir = Some(std::path::PathBuf::from(d));
        }
    }
    let (pid, dir) = (pid.unwrap(), dir.unwrap());
    assert!(alive(pid));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(wait_gone(pid), "the server died with its test process");
    assert!(dir.exists(), "a killed process cannot clean up");
    // The next start sweeps what the dead process left.
    let pg = TestPg::start().unwrap_or_else(|e| panic!("{e:#}"));
    assert!(!dir.exists(), "{} swept", dir.display());
    drop(pg);
}
