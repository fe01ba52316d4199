use super::*;

#[test]
fn patterns_match_like_pp() {
    let ip: IpAddr = "192.168.1.7".parse().unwrap();
    assert!(matches("*", ip));
    assert!(matches("192.168.1.*", ip));
    assert!(matches("192.*.1.7", ip));
    assert!(!matches("192.168.2.*", ip));
    assert!(!matches("192.168.*", ip));
}

#[test]
fn a_flood_of_answers_gets_at_most_the_cap_of_links() {
    let mut d = Discovered::new(MAX_DISCOVERED);
    let started = (0..10_000)
        .filter(|i| d.admit(&format!("10.0.0.{}:{}", i % 250, 1000 + i)))
        .count();
    assert_eq!(started, MAX_DISCOVERED);
    assert_eq!(d.live(), MAX_DISCOVERED);
}

#[test]
fn a_node_is_linked_once_and_again_after_it_was_dropped() {
    let mut d = Discovered::new(2);
    assert!(d.admit("a:1"));
    assert!(!d.admit("a:1"), "a second link to the same node");
    assert!(d.admit("b:1"));
    assert!(!d.admit("c:1"), "over the cap");
    d.dropped("a:1");
    assert!(d.admit("c:1"), "the dropped node's slot is free");
    d.dropped("c:1");
    assert!(d.admit("a:1"), "a dropped node may come back");
}

#[test]
fn distinct_names_ever_linked_are_bounded_too() {
    let mut d = Discovered::new(2);
    let mut linked = 0;
    for i in 0..100 {
        let name = format!("n:{i}");
        if d.admit(&name) {
            linked += 1;
            d.dropped(&name);
        }
    }
    assert_eq!(linked, 8);
    d.dropped("n:0");
    assert!(d.admit("n:0"), "a node seen before may always come back");
}

#[test]
fn the_probe_period_does_not_shrink_on_other_wake_ups() {
    let t0 = Instant::now();
    let every = Duration::from_secs(5);
    let mut clock = ProbeClock::new(t0, every);
    // Woken early many times (node news, first contacts): no probe.
    for ms in [1, 20, 400, 2500, 4999] {
        let left = clock.poll(t0 + Duration::from_millis(ms)).unwrap();
        assert_eq!(left, every - Duration::from_millis(ms));
    }
    assert_eq!(clock.poll(t0 + every), None, "due");
    assert!(clock.poll(t0 + every + Duration::from_millis(1)).is_some());
    assert_eq!(clock.poll(t0 + 2 * every), None);
}
