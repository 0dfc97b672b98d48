//! Gateways that fail: 5xx, transient errors, several gateways, a gateway
//! that goes away (issue 2's gateway client).

use crate::common::*;
use crate::proxy::Proxy;

#[test]
fn a_500_on_one_object_is_a_unit_error_and_the_run_goes_on() {
    let g = grid();
    let tree = build_tree(g, "fault-500");
    let p = Proxy::start(&g.gateway_url());
    let si_cap = tree.cap("a/chk1");
    let readcap = steward_cap::Cap::parse(si_cap)
        .unwrap()
        .to_read_cap()
        .unwrap();
    p.fail(500, -1, Some(&readcap.expose()[..20]));
    let (code, out, err) = run({
        let mut c = steward();
        c.args(["deep-check", "--raw", &tree.root, "--gateway", &p.url]);
        c
    });
    assert_eq!(code, 1, "{err}");
    let objs = objects(&units(&out));
    assert_eq!(objs.len(), tree.caps.len(), "every object has its unit");
    let o = &by_path(&objs)["a/chk1"];
    let e = o.error.as_ref().expect("an error unit");
    assert_eq!(e.code, "gateway-http-5xx");
    assert!(
        !e.message.contains(readcap.expose()),
        "no cap in messages: {}",
        e.message
    );
    assert_eq!(objs.iter().filter(|o| o.error.is_some()).count(), 1);
}

#[test]
fn transient_failures_are_retried() {
    let g = grid();
    let tree = build_tree(g, "fault-503");
    let p = Proxy::start(&g.gateway_url());
    let (code, _, _) = run({
        let mut c = steward();
        c.args(["manifest", &tree.root, "--gateway", &p.url]);
        c
    });
    assert_eq!(code, 0);
    let base = p.requests();
    p.fail(503, 3, Some("t=json"));
    let (code, out, err) = run({
        let mut c = steward();
        c.args(["manifest", "-j", "1", &tree.root, "--gateway", &p.url]);
        c
    });
    assert_eq!(code, 0, "{err}");
    assert_eq!(objects(&units(&out)).len(), tree.caps.len());
    assert!(p.requests() - base >= 3 + 6, "the three 503s were retried");
    // A 4xx is not retried: one request, then an error in the unit.
    p.fail(404, -1, Some("/uri/"));
    let before = p.requests();
    let (code, out, _) = run({
        let mut c = steward();
        c.args(["manifest", &tree.root, "--gateway", &p.url]);
        c
    });
    assert_eq!(code, 1);
    assert_eq!(
        p.requests() - before,
        2,
        "the probe and one listing, no retry"
    );
    let objs = objects(&units(&out));
    assert_eq!(objs.len(), 1);
    assert_eq!(objs[0].error.as_ref().unwrap().code, "gateway-http-4xx");
}

#[test]
fn requests_are_spread_over_gateways_and_a_dead_one_is_set_aside() {
    let g = grid();
    let tree = build_tree(g, "fault-two");
    let urls = g.gateway_urls();
    let p0 = Proxy::start(&urls[0]);
    let p1 = Proxy::start(&urls[1]);
    let (code, out, err) = run({
        let mut c = steward();
        c.args([
            "deep-check",
            "--raw",
            &tree.root,
            "--gateway",
            &format!("{},{}", p0.url, p1.url),
        ]);
        c
    });
    assert_eq!(code, 0, "{err}");
    assert_eq!(objects(&units(&out)).len(), tree.caps.len());
    assert!(
        p0.requests() > 3 && p1.requests() > 3,
        "both gateways used: {} {}",
        p0.requests(),
        p1.requests()
    );
    // One gateway down: everything still checked, through the other.
    p0.faults
        .down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let (code, out, err) = run({
        let mut c = steward();
        c.args([
            "deep-check",
            "--raw",
            &tree.root,
            "--gateway",
            &p0.url,
            "--gateway",
            &p1.url,
        ]);
        c
    });
    assert_eq!(code, 0, "{err}");
    let objs = objects(&units(&out));
    assert_eq!(objs.len(), tree.caps.len());
    assert!(objs.iter().all(|o| o.error.is_none()));
}

#[test]
fn a_slow_gateway_times_out_into_the_unit() {
    let g = grid();
    let tree = build_tree(g, "fault-slow");
    let p = Proxy::start(&g.gateway_url());
    p.delay(2500);
    let t0 = std::time::Instant::now();
    let (code, out, err) = run({
        let mut c = steward();
        c.args([
            "manifest",
            &tree.root,
            "--gateway",
            &p.url,
            "--timeout",
            "1",
            "--retries",
            "1",
        ]);
        c
    });
    assert_eq!(code, 1, "{err}");
    let objs = objects(&units(&out));
    assert_eq!(objs.len(), 1, "the root could not be listed");
    assert_eq!(objs[0].error.as_ref().unwrap().code, "gateway-timeout");
    assert!(t0.elapsed().as_secs() < 30);
}

/// Issue 10: a password in a gateway URL was printed in error messages.
#[test]
fn a_password_in_a_gateway_url_is_never_printed() {
    for url in [
        // Nothing listens there: the connection is refused.
        "http://alice:hunter2secret@127.0.0.1:9/",
        // Not a web port of a Tahoe node, and not a URL steward can use.
        "ftp://alice:hunter2secret@127.0.0.1:9/",
    ] {
        let mut c = steward();
        c.args(["manifest", "URI:DIR2:aaaaaaaaaaaaaaaaaaaaaaaaaa:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"])
            .args(["--gateway", url]);
        let (code, out, err) = run(c);
        assert_eq!(code, 2, "{err}");
        assert!(!err.contains("hunter2secret"), "{err}");
        assert!(!out.contains("hunter2secret"), "{out}");
        assert!(
            err.contains("alice:***@"),
            "the URL is named, without its password: {err}"
        );
    }
}

/// Issue 10 (and its timeout defaults): a gateway that hangs on a request
/// costs one retry after a timeout, not six, and the unit says
/// `gateway-timeout`; the run does not stay silent for an hour.
#[test]
fn a_hanging_request_is_retried_once_then_reported() {
    let g = grid();
    let tree = build_tree(g, "fault-hang");
    let p = Proxy::start(&g.gateway_url());
    let (code, _, err) = run(stw(&["manifest", "-q", &tree.root]));
    assert!(code <= 1, "{err}");
    p.delay(4000);
    let t0 = std::time::Instant::now();
    let (code, out, err) = run({
        let mut c = steward();
        c.args([
            "manifest",
            &tree.root,
            "--gateway",
            &p.url,
            "--timeout",
            "1",
        ]);
        c
    });
    let took = t0.elapsed();
    assert_eq!(code, 1, "{err}");
    let objs = objects(&units(&out));
    assert_eq!(objs[0].error.as_ref().unwrap().code, "gateway-timeout");
    assert!(
        objs[0]
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("2 attempts"),
        "{:?}",
        objs[0].error
    );
    // The probe (4 s) + two attempts of 1 s and a backoff; never six.
    assert!(took.as_secs() < 15, "{took:?}");
}
