use super::*;

fn offer(cpus: u32, list: &str) -> Offer {
    let mut o = Offer::new(cpus);
    o.add_list(list).unwrap();
    o
}

fn named(name: &str, units: f64) -> Request {
    let mut r = Request::new();
    r.set_named(name, millis(name, units).unwrap()).unwrap();
    r
}

#[test]
fn the_default_request_is_one_cpu_and_nothing_else() {
    let r = Request::new();
    assert!(r.is_plain());
    assert_eq!((r.cpus(), r.memory()), (1, 0));
    assert_eq!(r.to_string(), "cpus=1");
    let mut four = Request::new();
    four.set_cpus(4);
    assert!(!four.is_plain());
}

#[test]
fn amounts_are_thousandths_and_above_one_must_be_whole() {
    assert_eq!(millis("gpu", 0.5), Ok(500));
    assert_eq!(millis("gpu", 2.0), Ok(2000));
    assert_eq!(millis("gpu", 0.001), Ok(1));
    assert!(millis("gpu", 0.0001).is_err());
    assert!(millis("gpu", 1.5).is_err());
    assert!(millis("gpu", -1.0).is_err());
    assert!(millis("gpu", f64::NAN).is_err());
    assert!(millis("gpu", 0.0).is_err());
    assert_eq!(named("gpu", 0.25).to_string(), "cpus=1 gpu=0.25");
}

#[test]
fn names_are_checked() {
    let mut r = Request::new();
    assert!(r.set_named("", 1000).is_err());
    assert!(r.set_named("a b", 1000).is_err());
    assert!(r.add_tag("eu-west").is_ok());
    assert!(r.add_tag(&"x".repeat(65)).is_err());
    assert!(Offer::new(1).add_list("gpu").is_err());
    assert!(Offer::new(1).add_list("gpu=0.5").is_err());
    assert!(Offer::new(1).add_list("gpu=5000").is_err());
}

#[test]
fn an_offer_parses_a_list_and_keeps_it_sorted() {
    let o = offer(8, "licence=4, gpu=2");
    assert_eq!(
        o.named(),
        [("gpu".to_owned(), 2), ("licence".to_owned(), 4)]
    );
    assert_eq!(o.to_string(), "cpus=8 gpu=2 licence=4");
}

#[test]
fn covers_names_the_part_that_does_not_fit() {
    let mut o = offer(4, "gpu=1");
    o.set_memory(Some(1 << 30));
    o.add_tag("ssd").unwrap();
    let mut r = named("gpu", 2.0);
    assert_eq!(o.covers(&r), Err("gpu=2 (offers 1)".to_owned()));
    r = Request::new();
    r.set_cpus(8);
    assert_eq!(o.covers(&r), Err("cpus=8 (offers 4)".to_owned()));
    r = Request::new();
    r.set_memory(2 << 30);
    assert_eq!(
        o.covers(&r),
        Err("memory=2.0 GiB (offers 1.0 GiB)".to_owned())
    );
    r = Request::new();
    r.add_tag("nvme").unwrap();
    assert_eq!(o.covers(&r), Err("tag nvme (not offered)".to_owned()));
    r = named("gpu", 0.5);
    r.add_tag("ssd").unwrap();
    assert_eq!(o.covers(&r), Ok(()));
}

#[test]
fn cpus_are_held_and_released() {
    let mut l = Ledger::new(offer(4, ""));
    let mut four = Request::new();
    four.set_cpus(4);
    let one = Request::new();
    let a = l.hold(&one).unwrap();
    assert!(!l.fits(&four, 0));
    l.release(a);
    let b = l.hold(&four).unwrap();
    assert!(l.hold(&one).is_none());
    l.release(b);
    assert_eq!(l.free_cpus(), 4);
    // A pool shrunk under a running job: nothing free until it ends.
    let c = l.hold(&four).unwrap();
    l.set_cpus(2);
    assert_eq!(l.free_cpus(), 0);
    l.release(c);
    assert_eq!(l.free_cpus(), 2);
    l.set_cpus(4);
    // Cpus taken by jobs the ledger does not count.
    assert!(!l.fits(&four, 1));
    assert!(l.fits(&one, 3));
}

#[test]
fn whole_instances_are_handed_out_once_each_and_come_back() {
    let mut l = Ledger::new(offer(8, "gpu=2"));
    let r = named("gpu", 1.0);
    let a = l.hold(&r).unwrap();
    let b = l.hold(&r).unwrap();
    assert!(l.hold(&r).is_none(), "never more than offered");
    let (ia, ib) = (l.instances(&a), l.instances(&b));
    assert_eq!(ia, [("gpu".to_owned(), vec![0])]);
    assert_eq!(ib, [("gpu".to_owned(), vec![1])]);
    l.release(a);
    let c = l.hold(&r).unwrap();
    assert_eq!(l.instances(&c), [("gpu".to_owned(), vec![0])]);
    l.release(b);
    l.release(c);
    let two = l.hold(&named("gpu", 2.0)).unwrap();
    assert_eq!(l.instances(&two), [("gpu".to_owned(), vec![0, 1])]);
}

#[test]
fn fractions_share_an_instance_and_keep_whole_ones_free() {
    let mut l = Ledger::new(offer(8, "gpu=2"));
    let half = named("gpu", 0.5);
    let a = l.hold(&half).unwrap();
    let b = l.hold(&half).unwrap();
    // Both halves on the same instance: gpu 1 is still whole.
    assert_eq!(l.instances(&a), l.instances(&b));
    assert_eq!(l.free_named("gpu"), Some((1, 1000)));
    assert!(l.fits(&named("gpu", 1.0), 0));
    assert!(!l.fits(&named("gpu", 2.0), 0));
    let quarter = named("gpu", 0.25);
    let c = l.hold(&quarter).unwrap();
    assert_eq!(l.instances(&c), [("gpu".to_owned(), vec![1])]);
    assert_eq!(l.free_named("gpu"), Some((0, 750)));
    l.release(a);
    l.release(b);
    l.release(c);
    assert_eq!(l.free_named("gpu"), Some((2, 2000)));
    assert_eq!(l.in_use(), (0, 0, vec![("gpu".to_owned(), 0)]));
}

#[test]
fn memory_and_tags_must_fit_too() {
    let mut o = offer(4, "");
    o.set_memory(Some(1000));
    o.add_tag("ssd").unwrap();
    let mut l = Ledger::new(o);
    let mut big = Request::new();
    big.set_memory(600);
    let a = l.hold(&big).unwrap();
    assert!(l.hold(&big).is_none());
    assert_eq!(l.in_use().1, 600);
    l.release(a);
    let mut tagged = Request::new();
    tagged.add_tag("ssd").unwrap();
    assert!(l.fits(&tagged, 0));
    tagged.add_tag("gpu-node").unwrap();
    assert!(!l.fits(&tagged, 0));
    // Memory not counted: any amount fits.
    let mut free = Ledger::new(Offer::new(1));
    big.set_memory(u64::MAX / 2);
    assert!(free.hold(&big).is_some());
}

#[test]
fn a_resource_the_machine_lacks_never_fits() {
    let l = Ledger::new(offer(4, "licence=1"));
    assert!(!l.fits(&named("gpu", 0.5), 0));
    assert!(l.fits(&named("licence", 1.0), 0));
    let mut both = named("gpu", 1.0);
    both.set_named("licence", 1000).unwrap();
    assert!(!l.fits(&both, 0));
}

#[test]
fn a_peer_request_out_of_order_or_split_is_refused() {
    let mut r = Request::new();
    r.named = vec![("b".into(), 1000), ("a".into(), 1000)];
    assert!(r.check().is_err());
    r.named = vec![("a".into(), 1500)];
    assert!(r.check().is_err());
    r.named = vec![("a".into(), 500), ("b".into(), 3000)];
    assert!(r.check().is_ok());
    r.tags = vec!["x".into(), "x".into()];
    assert!(r.check().is_err());
}

#[test]
fn the_oldest_waiter_gets_the_machine_after_the_bounded_wait() {
    let t0 = Instant::now();
    let mut turns = Turns::new(Duration::from_millis(100));
    let big = turns.join(t0);
    let small = turns.join(t0 + Duration::from_millis(10));
    // Before the bound anyone whose request fits may go first.
    assert!(turns.may_take(small, t0 + Duration::from_millis(50)));
    // After it, only the oldest.
    assert!(!turns.may_take(small, t0 + Duration::from_millis(100)));
    assert!(turns.may_take(big, t0 + Duration::from_millis(100)));
    turns.leave(big);
    assert!(turns.may_take(small, t0 + Duration::from_millis(500)));
    turns.leave(small);
    assert!(turns.is_empty());
}

#[test]
fn a_stream_of_small_jobs_does_not_starve_a_large_one() {
    // A 4-cpu machine; 1-cpu jobs keep coming, each running 3 ticks; a
    // 4-cpu job waits. Simulated ticks of 10 ms.
    let t0 = Instant::now();
    let tick = Duration::from_millis(10);
    let mut l = Ledger::new(Offer::new(4));
    let mut turns = Turns::new(Duration::from_millis(100));
    let mut big = Request::new();
    big.set_cpus(4);
    let small = Request::new();
    let big_ticket = turns.join(t0);
    let mut running: Vec<(u32, Held)> = Vec::new();
    let mut big_started = None;
    for n in 0..200u32 {
        let now = t0 + tick * n;
        let (ended, still): (Vec<_>, Vec<_>) = running.drain(..).partition(|(end, _)| *end <= n);
        running = still;
        for (_, h) in ended {
            l.release(h);
        }
        if big_started.is_none() && turns.may_take(big_ticket, now) {
            if let Some(h) = l.hold(&big) {
                turns.leave(big_ticket);
                big_started = Some(n);
                running.push((n + 3, h));
            }
        }
        // Two small jobs arrive per tick.
        for _ in 0..2 {
            let t = turns.join(now);
            if turns.may_take(t, now) {
                if let Some(h) = l.hold(&small) {
                    running.push((n + 3, h));
                }
            }
            turns.leave(t);
        }
    }
    let started = big_started.expect("the large job ran");
    // Reserved after 100 ms (10 ticks), then the running small ones end
    // within 3 ticks.
    assert!(started <= 14, "started at tick {started}");
}

#[test]
fn a_peer_offer_too_large_or_out_of_order_is_refused() {
    let mut o = Offer::new(2);
    o.named = vec![("gpu".into(), MAX_INSTANCES + 1)];
    assert!(o.check().is_err());
    o.named = vec![("b".into(), 1), ("a".into(), 1)];
    assert!(o.check().is_err());
    o.named = vec![("a".into(), 1), ("b".into(), 4096)];
    assert!(o.check().is_ok());
}
