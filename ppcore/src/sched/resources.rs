//! What a job asks for and what a machine offers: cpus, memory, named
//! amounts (`gpu`, `licence`) and tags, and a ledger per machine that says
//! whether a request fits now, holds it while the job runs and releases it.
//!
//! Named amounts are counted in thousandths ([`MILLI`] to one), in
//! integers: `gpu = 0.5` is 500. A named resource is offered as whole
//! instances (`gpu=2` is gpu 0 and gpu 1, 1000 each); a request of one or
//! more takes that many whole instances, a request under one takes that
//! part of one instance (the most used one it fits in, so that whole
//! instances stay free for whole requests). The job learns which instances
//! it holds ([`Ledger::instances`]).
//!
//! The fit test costs O(kinds asked for + their instances), never
//! O(machines × jobs): the ledger keeps its free counts, and a request and
//! an offer both keep their named kinds sorted, so that they are matched in
//! one merge. [`Turns`] keeps the waiters in order and reserves the machine
//! for the oldest once it has waited long enough, so that a stream of small
//! requests cannot starve a large one.
//!
//! Pure: no clock (times are passed in), no I/O.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

/// Thousandths in one unit of a named amount.
pub const MILLI: u64 = 1000;

/// The longest name a named resource or a tag may have.
pub const MAX_NAME: usize = 64;

/// The most named kinds (or tags) a request or an offer may name.
pub const MAX_KINDS: usize = 64;

/// The most instances a named resource may be offered in.
pub const MAX_INSTANCES: u32 = 4096;

/// A request or an offer that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceError {
    /// A name that is empty, too long, or has characters other than
    /// letters, digits, `_`, `-`, `.`.
    #[error("bad resource or tag name {0:?} (letters, digits, '_', '-', '.'; at most 64)")]
    BadName(String),
    /// An amount that is not a positive number with at most three
    /// decimals, or one above one that is not whole.
    #[error("bad amount {amount:?} of {name}: {why}")]
    BadAmount {
        /// The resource.
        name: String,
        /// The amount as given.
        amount: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// More kinds or tags than [`MAX_KINDS`].
    #[error("more than {MAX_KINDS} resource kinds or tags")]
    TooMany,
    /// An offer list that is not `name=count,...`.
    #[error("bad resource list {0:?}: expected name=count,name=count")]
    BadList(String),
}

/// Checks a resource or tag name.
fn check_name(name: &str) -> Result<(), ResourceError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    match ok {
        true => Ok(()),
        false => Err(ResourceError::BadName(name.to_owned())),
    }
}

/// `units` (a user's number, such as 0.5) in thousandths.
pub fn millis(name: &str, units: f64) -> Result<u64, ResourceError> {
    let bad = |why| ResourceError::BadAmount {
        name: name.to_owned(),
        amount: units.to_string(),
        why,
    };
    if !units.is_finite() || units <= 0.0 {
        return Err(bad("not a positive number"));
    }
    let scaled = units * MILLI as f64;
    let rounded = scaled.round();
    if (scaled - rounded).abs() > 1e-6 * scaled.max(1.0) {
        return Err(bad("more than three decimals"));
    }
    if rounded > (MAX_INSTANCES as u64 * MILLI) as f64 {
        return Err(bad("more than 4096"));
    }
    let m = rounded as u64;
    if m > MILLI && !m.is_multiple_of(MILLI) {
        return Err(bad(
            "above 1, amounts are whole (instances are not split across)",
        ));
    }
    Ok(m)
}

/// Thousandths as a number: 500 is "0.5", 2000 is "2".
fn units(m: u64) -> String {
    match m % MILLI {
        0 => (m / MILLI).to_string(),
        r => format!("{}.{}", m / MILLI, format!("{r:03}").trim_end_matches('0')),
    }
}

/// Bytes for people: "512 MiB".
pub fn bytes_text(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    match u {
        0 => format!("{b} B"),
        _ => format!("{v:.1} {}", UNITS[u]),
    }
}

/// Inserts `item` into the sorted `list`, or updates it where its key is.
fn upsert<V>(list: &mut Vec<(String, V)>, name: &str, value: V) -> Result<(), ResourceError> {
    match list.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
        Ok(i) => list[i].1 = value,
        Err(i) => {
            if list.len() >= MAX_KINDS {
                return Err(ResourceError::TooMany);
            }
            list.insert(i, (name.to_owned(), value));
        }
    }
    Ok(())
}

fn add_tag(tags: &mut Vec<String>, tag: &str) -> Result<(), ResourceError> {
    check_name(tag)?;
    if let Err(i) = tags.binary_search_by(|t| t.as_str().cmp(tag)) {
        if tags.len() >= MAX_KINDS {
            return Err(ResourceError::TooMany);
        }
        tags.insert(i, tag.to_owned());
    }
    Ok(())
}

/// What one job needs: cpus, memory, named amounts and tags. The default
/// is one cpu and nothing else (what every job took before requests).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Request {
    cpus: u32,
    memory: u64,
    /// Sorted by name; amounts in thousandths, none zero.
    named: Vec<(String, u64)>,
    /// Sorted, no repeats.
    tags: Vec<String>,
}

impl Default for Request {
    fn default() -> Self {
        Request {
            cpus: 1,
            memory: 0,
            named: Vec::new(),
            tags: Vec::new(),
        }
    }
}

impl Request {
    /// One cpu, nothing else.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether this is the default request (one cpu, nothing else).
    pub fn is_plain(&self) -> bool {
        *self == Self::default()
    }

    /// Asks for `n` cpus (0: the job takes no cpu of its own, for jobs that
    /// only wait).
    pub fn set_cpus(&mut self, n: u32) {
        self.cpus = n;
    }

    /// Asks for `bytes` of memory (0: none counted).
    pub fn set_memory(&mut self, bytes: u64) {
        self.memory = bytes;
    }

    /// Asks for `millis` thousandths of resource `name` (replacing an
    /// earlier amount of it; 0 removes it).
    pub fn set_named(&mut self, name: &str, millis: u64) -> Result<(), ResourceError> {
        check_name(name)?;
        if millis > MILLI && !millis.is_multiple_of(MILLI) {
            return Err(ResourceError::BadAmount {
                name: name.to_owned(),
                amount: units(millis),
                why: "above 1, amounts are whole (instances are not split across)",
            });
        }
        if millis == 0 {
            self.named.retain(|(n, _)| n != name);
            return Ok(());
        }
        upsert(&mut self.named, name, millis)
    }

    /// Asks for a node with tag `tag`.
    pub fn add_tag(&mut self, tag: &str) -> Result<(), ResourceError> {
        add_tag(&mut self.tags, tag)
    }

    /// The cpus asked for.
    pub fn cpus(&self) -> u32 {
        self.cpus
    }

    /// The memory asked for, in bytes (0: none).
    pub fn memory(&self) -> u64 {
        self.memory
    }

    /// The named amounts, sorted by name, in thousandths.
    pub fn named(&self) -> &[(String, u64)] {
        &self.named
    }

    /// The tags asked for, sorted.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// Checks a request that came from elsewhere (a peer): names, amounts,
    /// order and sizes as [`set_named`](Self::set_named) and
    /// [`add_tag`](Self::add_tag) would have made them.
    pub fn check(&self) -> Result<(), ResourceError> {
        if self.named.len() > MAX_KINDS || self.tags.len() > MAX_KINDS {
            return Err(ResourceError::TooMany);
        }
        for (i, (name, m)) in self.named.iter().enumerate() {
            check_name(name)?;
            let sorted = i == 0 || self.named[i - 1].0 < *name;
            if *m == 0
                || (*m > MILLI && !m.is_multiple_of(MILLI))
                || *m > MAX_INSTANCES as u64 * MILLI
            {
                return Err(ResourceError::BadAmount {
                    name: name.clone(),
                    amount: units(*m),
                    why: "zero, or above 1 and not whole",
                });
            }
            if !sorted {
                return Err(ResourceError::BadList(name.clone()));
            }
        }
        for (i, tag) in self.tags.iter().enumerate() {
            check_name(tag)?;
            if i > 0 && self.tags[i - 1] >= *tag {
                return Err(ResourceError::BadList(tag.clone()));
            }
        }
        Ok(())
    }
}

impl fmt::Display for Request {
    /// `cpus=4 memory=1.0 GiB gpu=0.5 tags=ssd`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cpus={}", self.cpus)?;
        if self.memory > 0 {
            write!(f, " memory={}", bytes_text(self.memory))?;
        }
        for (name, m) in &self.named {
            write!(f, " {name}={}", units(*m))?;
        }
        if !self.tags.is_empty() {
            write!(f, " tags={}", self.tags.join(","))?;
        }
        Ok(())
    }
}

/// What one machine (a node, or the client's local pool) offers its jobs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Offer {
    cpus: u32,
    /// `None`: memory is not counted (any request fits).
    memory: Option<u64>,
    /// Sorted by name: how many instances of each.
    named: Vec<(String, u32)>,
    /// Sorted, no repeats.
    tags: Vec<String>,
}

impl Offer {
    /// `cpus` cpus, memory not counted, nothing named, no tags.
    pub fn new(cpus: u32) -> Self {
        Offer {
            cpus,
            ..Self::default()
        }
    }

    /// The same offer with `cpus` cpus.
    pub fn set_cpus(&mut self, cpus: u32) {
        self.cpus = cpus;
    }

    /// Offers `bytes` of memory (`None`: not counted).
    pub fn set_memory(&mut self, bytes: Option<u64>) {
        self.memory = bytes;
    }

    /// Offers `count` instances of `name` (0 removes it).
    pub fn set_named(&mut self, name: &str, count: u32) -> Result<(), ResourceError> {
        check_name(name)?;
        if count > MAX_INSTANCES {
            return Err(ResourceError::BadAmount {
                name: name.to_owned(),
                amount: count.to_string(),
                why: "more than 4096 instances",
            });
        }
        if count == 0 {
            self.named.retain(|(n, _)| n != name);
            return Ok(());
        }
        upsert(&mut self.named, name, count)
    }

    /// Offers tag `tag`.
    pub fn add_tag(&mut self, tag: &str) -> Result<(), ResourceError> {
        add_tag(&mut self.tags, tag)
    }

    /// Adds a list such as `gpu=2,licence=4` (whole counts; a name
    /// without `=` is refused).
    pub fn add_list(&mut self, list: &str) -> Result<(), ResourceError> {
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, count) = item
                .split_once('=')
                .ok_or_else(|| ResourceError::BadList(list.to_owned()))?;
            let count: u32 = count.trim().parse().map_err(|_| ResourceError::BadAmount {
                name: name.trim().to_owned(),
                amount: count.to_owned(),
                why: "offers are whole counts of instances",
            })?;
            self.set_named(name.trim(), count)?;
        }
        Ok(())
    }

    /// Checks an offer that came from a peer: names, counts (at most
    /// [`MAX_INSTANCES`] each, so a ledger of it stays small), order and
    /// sizes as [`set_named`](Self::set_named) and
    /// [`add_tag`](Self::add_tag) would have made them.
    pub fn check(&self) -> Result<(), ResourceError> {
        if self.named.len() > MAX_KINDS || self.tags.len() > MAX_KINDS {
            return Err(ResourceError::TooMany);
        }
        for (i, (name, count)) in self.named.iter().enumerate() {
            check_name(name)?;
            if *count == 0 || *count > MAX_INSTANCES {
                return Err(ResourceError::BadAmount {
                    name: name.clone(),
                    amount: count.to_string(),
                    why: "not 1 to 4096 instances",
                });
            }
            if i > 0 && self.named[i - 1].0 >= *name {
                return Err(ResourceError::BadList(name.clone()));
            }
        }
        for (i, tag) in self.tags.iter().enumerate() {
            check_name(tag)?;
            if i > 0 && self.tags[i - 1] >= *tag {
                return Err(ResourceError::BadList(tag.clone()));
            }
        }
        Ok(())
    }

    /// The cpus offered.
    pub fn cpus(&self) -> u32 {
        self.cpus
    }

    /// The memory offered (`None`: not counted).
    pub fn memory(&self) -> Option<u64> {
        self.memory
    }

    /// The named resources, sorted, with their instance counts.
    pub fn named(&self) -> &[(String, u32)] {
        &self.named
    }

    /// The tags offered, sorted.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// Whether `request` fits this offer when nothing else runs; if not,
    /// the first part that does not (`"gpu=2 (offers 1)"`).
    pub fn covers(&self, request: &Request) -> Result<(), String> {
        if request.cpus > self.cpus {
            return Err(format!("cpus={} (offers {})", request.cpus, self.cpus));
        }
        if let Some(mem) = self.memory {
            if request.memory > mem {
                return Err(format!(
                    "memory={} (offers {})",
                    bytes_text(request.memory),
                    bytes_text(mem)
                ));
            }
        }
        for (name, m) in &request.named {
            let have = self
                .named
                .binary_search_by(|(n, _)| n.as_str().cmp(name))
                .map_or(0, |i| self.named[i].1);
            if m.div_ceil(MILLI) > u64::from(have) {
                return Err(format!("{name}={} (offers {have})", units(*m)));
            }
        }
        for tag in &request.tags {
            if self.tags.binary_search(tag).is_err() {
                return Err(format!("tag {tag} (not offered)"));
            }
        }
        Ok(())
    }

    /// How much larger than `other` this offer is, for naming "the largest
    /// offer" in an error: cpus first, then named instances, then memory.
    pub fn size_key(&self) -> (u32, u64, u64) {
        let named = self.named.iter().map(|(_, c)| u64::from(*c)).sum();
        (self.cpus, named, self.memory.unwrap_or(u64::MAX))
    }
}

impl fmt::Display for Offer {
    /// `cpus=4 memory=64.0 GiB gpu=2 licence=4 tags=ssd`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cpus={}", self.cpus)?;
        if let Some(mem) = self.memory {
            write!(f, " memory={}", bytes_text(mem))?;
        }
        for (name, count) in &self.named {
            write!(f, " {name}={count}")?;
        }
        if !self.tags.is_empty() {
            write!(f, " tags={}", self.tags.join(","))?;
        }
        Ok(())
    }
}

/// One named resource's instances in a ledger.
#[derive(Debug, Clone)]
struct Instances {
    /// Free thousandths of each instance.
    free: Vec<u16>,
    /// How many instances are wholly free.
    whole: u32,
}

/// What one running job holds; give it back with [`Ledger::release`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Held {
    cpus: u32,
    memory: u64,
    /// (kind in the offer, instance, thousandths).
    parts: Vec<(u16, u32, u16)>,
}

impl Held {
    /// Whether it holds any named instance.
    pub fn has_instances(&self) -> bool {
        !self.parts.is_empty()
    }
}

/// What is free on one machine now: the fit test, holding and releasing.
#[derive(Debug, Clone)]
pub struct Ledger {
    offer: Offer,
    /// Cpus held (may pass the offer for a moment after it shrank).
    cpus_held: u32,
    memory: u64,
    named: Vec<Instances>,
}

impl Ledger {
    /// Everything in `offer` free.
    pub fn new(offer: Offer) -> Self {
        let named = offer
            .named
            .iter()
            .map(|(_, count)| Instances {
                free: vec![MILLI as u16; *count as usize],
                whole: *count,
            })
            .collect();
        Ledger {
            cpus_held: 0,
            memory: offer.memory.unwrap_or(u64::MAX),
            named,
            offer,
        }
    }

    /// Cpus held now.
    pub fn held_cpus(&self) -> u32 {
        self.cpus_held
    }

    /// The offer this ledger counts.
    pub fn offer(&self) -> &Offer {
        &self.offer
    }

    /// Offers `cpus` cpus from now on (a pool resized): the free count
    /// moves by the difference, never below zero (jobs holding more than
    /// the new offer give them back as they end).
    pub fn set_cpus(&mut self, cpus: u32) {
        self.offer.cpus = cpus;
    }

    /// Cpus free now.
    pub fn free_cpus(&self) -> u32 {
        self.offer.cpus.saturating_sub(self.cpus_held)
    }

    /// Instances of `name` wholly free now, and thousandths free in all.
    pub fn free_named(&self, name: &str) -> Option<(u32, u64)> {
        let i = self.kind(name)?;
        let inst = &self.named[i];
        Some((inst.whole, inst.free.iter().map(|f| u64::from(*f)).sum()))
    }

    fn kind(&self, name: &str) -> Option<usize> {
        self.offer
            .named
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
    }

    /// Whether `request` fits in what is free now, `spare_cpus` fewer cpus
    /// (those taken by jobs the ledger does not count).
    pub fn fits(&self, request: &Request, spare_cpus: u32) -> bool {
        if request.cpus.saturating_add(spare_cpus) > self.free_cpus()
            || request.memory > self.memory
        {
            return false;
        }
        // Both lists are sorted: one merge.
        let mut at = 0;
        for (name, m) in &request.named {
            while at < self.offer.named.len() && self.offer.named[at].0 < *name {
                at += 1;
            }
            match self.offer.named.get(at) {
                Some((n, _)) if n == name => {}
                _ => return false,
            }
            let inst = &self.named[at];
            let ok = match *m >= MILLI {
                true => u64::from(inst.whole) >= m / MILLI,
                false => inst.free.iter().any(|f| u64::from(*f) >= *m),
            };
            if !ok {
                return false;
            }
        }
        request
            .tags
            .iter()
            .all(|t| self.offer.tags.binary_search(t).is_ok())
    }

    /// Holds `request` if it fits now (as [`fits`](Self::fits) with no
    /// spare cpus), handing out instances.
    pub fn hold(&mut self, request: &Request) -> Option<Held> {
        self.hold_beside(request, 0)
    }

    /// [`hold`](Self::hold) with `spare_cpus` taken by jobs not counted here.
    pub fn hold_beside(&mut self, request: &Request, spare_cpus: u32) -> Option<Held> {
        if !self.fits(request, spare_cpus) {
            return None;
        }
        let mut held = Held {
            cpus: request.cpus,
            memory: request.memory,
            parts: Vec::new(),
        };
        self.cpus_held += request.cpus;
        self.memory -= request.memory;
        for (name, m) in &request.named {
            // Present: `fits` said so.
            let Some(k) = self.kind(name) else { continue };
            let inst = &mut self.named[k];
            if *m >= MILLI {
                let mut want = m / MILLI;
                for (i, f) in inst.free.iter_mut().enumerate() {
                    if want == 0 {
                        break;
                    }
                    if u64::from(*f) == MILLI {
                        *f = 0;
                        inst.whole -= 1;
                        want -= 1;
                        held.parts.push((k as u16, i as u32, MILLI as u16));
                    }
                }
            } else {
                // The most used instance it fits in: whole ones stay whole.
                let pick = inst
                    .free
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| u64::from(**f) >= *m)
                    .min_by_key(|(_, f)| **f)
                    .map(|(i, _)| i);
                if let Some(i) = pick {
                    if u64::from(inst.free[i]) == MILLI {
                        inst.whole -= 1;
                    }
                    inst.free[i] -= *m as u16;
                    held.parts.push((k as u16, i as u32, *m as u16));
                }
            }
        }
        Some(held)
    }

    /// Gives back what a job held.
    pub fn release(&mut self, held: Held) {
        self.cpus_held = self.cpus_held.saturating_sub(held.cpus);
        let cap = self.offer.memory.unwrap_or(u64::MAX);
        self.memory = self.memory.saturating_add(held.memory).min(cap);
        for (k, i, m) in held.parts {
            let Some(inst) = self.named.get_mut(usize::from(k)) else {
                continue;
            };
            let Some(f) = inst.free.get_mut(i as usize) else {
                continue;
            };
            *f = (*f + m).min(MILLI as u16);
            if u64::from(*f) == MILLI {
                inst.whole += 1;
            }
        }
    }

    /// The instances `held` holds, by resource name, in order:
    /// `[("gpu", [1])]`.
    pub fn instances(&self, held: &Held) -> Vec<(String, Vec<u32>)> {
        let mut out: Vec<(String, Vec<u32>)> = Vec::new();
        for (k, i, _) in &held.parts {
            let Some((name, _)) = self.offer.named.get(usize::from(*k)) else {
                continue;
            };
            match out.last_mut() {
                Some((n, list)) if n == name => list.push(*i),
                _ => out.push((name.clone(), vec![*i])),
            }
        }
        out
    }

    /// What is in use now: cpus, memory and, per named resource, the
    /// thousandths held.
    pub fn in_use(&self) -> (u32, u64, Vec<(String, u64)>) {
        let named = self
            .offer
            .named
            .iter()
            .zip(&self.named)
            .map(|((name, count), inst)| {
                let free: u64 = inst.free.iter().map(|f| u64::from(*f)).sum();
                (name.clone(), u64::from(*count) * MILLI - free)
            })
            .collect();
        let memory = self.offer.memory.map_or(0, |m| m - self.memory);
        (self.cpus_held, memory, named)
    }
}

/// The jobs waiting to hold something on one machine, in the order they
/// came: anyone whose request fits may take it, until the oldest waiter
/// has waited `reserve_after`; from then on only the oldest may, so what
/// is released collects for it (a large request is not starved by a
/// stream of small ones).
#[derive(Debug)]
pub struct Turns {
    waiting: VecDeque<(u64, Instant)>,
    next: u64,
    reserve_after: Duration,
}

impl Turns {
    /// Nobody waiting; the machine is reserved for a waiter once it has
    /// waited `reserve_after`.
    pub fn new(reserve_after: Duration) -> Self {
        Turns {
            waiting: VecDeque::new(),
            next: 0,
            reserve_after,
        }
    }

    /// A new waiter, come at `now`: its ticket.
    pub fn join(&mut self, now: Instant) -> u64 {
        let ticket = self.next;
        self.next += 1;
        self.waiting.push_back((ticket, now));
        ticket
    }

    /// Waiter `ticket` took what it waited for, or gave up.
    pub fn leave(&mut self, ticket: u64) {
        if let Some(i) = self.waiting.iter().position(|(t, _)| *t == ticket) {
            self.waiting.remove(i);
        }
    }

    /// Whether waiter `ticket` may take what it asks for at `now` (if it fits).
    pub fn may_take(&self, ticket: u64, now: Instant) -> bool {
        match self.waiting.front() {
            None => true,
            Some((t, _)) if *t == ticket => true,
            Some((_, since)) => now.saturating_duration_since(*since) < self.reserve_after,
        }
    }

    /// How many wait.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests;
