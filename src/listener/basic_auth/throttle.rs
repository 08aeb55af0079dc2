//! The login throttle: how many argon2 checks a guesser gets, counted before they run.
//!
//! Two sliding windows hold at once (defaults in [`ThrottleLimits::default`]):
//! - per (address, user name as sent): [`ThrottleLimits::per_user`] checks per
//!   [`ThrottleLimits::window`], so one host cannot guess one user's password faster;
//! - per address across every name: [`ThrottleLimits::per_address`] checks, so a host cannot
//!   spread its guesses over many names (or spend the CPU on unknown names).
//!
//! Why a slot is *reserved* before the check runs rather than counted after it fails: argon2
//! takes tens of milliseconds, and counting afterwards let 200 concurrent requests all pass the
//! "fewer than ten failures?" test before the first one failed (issue 12). A reservation is a
//! timestamp in both windows; a failed check leaves it there, a successful one clears the
//! (address, user) window (the right password ends a typo streak) and gives the address slot
//! back, and a check that never ran (the queue was full) gives both back.
//!
//! Checks of one (address, user) also take turns ([`Throttle::turn`]): the same credential
//! sent by 50 sessions at once is checked once and then found in the verification cache.
//!
//! Only checks count, never refusals: a client retrying while throttled does not extend its
//! own lockout, so the right password is refused only until the window has moved past the
//! failures, and the refusal says how long that is.
//!
//! Addresses are keyed per IPv4 address and per IPv6 /64 (the smallest block a host is
//! usually given; per-/128 keys would give an IPv6 host 2^64 fresh budgets). User names are
//! kept as a keyed hash, so a name of any length costs 32 bytes. Both maps hold at most
//! [`ThrottleLimits::capacity`] keys and evict the least recently used: a flood of names or
//! addresses costs bounded memory. Evicting a key forgets its failures, so an attacker
//! needs that many fresh keys within one window to reset one, which the per-address ceiling
//! makes a many-address effort.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lru::LruCache;
use tokio::time::Instant;

/// The throttle's limits.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleLimits {
    /// Checks per (address, user) per window: a person mistyping gets ten tries a minute.
    pub per_user: u32,
    /// Checks per address per window across every user name (a shared jump host with a
    /// few admins stays well under it).
    pub per_address: u32,
    /// The sliding window.
    pub window: Duration,
    /// Keys kept per map (least recently used evicted first).
    pub capacity: NonZeroUsize,
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        Self {
            per_user: 10,
            per_address: 30,
            window: Duration::from_secs(60),
            capacity: NonZeroUsize::new(16 * 1024).expect("non-zero"),
        }
    }
}

/// Where attempts come from, as the throttle counts them: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressKey(IpAddr);

impl AddressKey {
    /// The key of `client`: IPv4 as is (IPv4-mapped IPv6 too), IPv6 cut to its /64.
    pub fn of(client: IpAddr) -> Self {
        match client {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Self(IpAddr::V6(prefix.into()))
                }
            },
        }
    }
}

/// A user name as the throttle keys it (a keyed hash of the name as sent).
pub type UserKey = [u8; 32];

/// Checks in the window, oldest first, and refusals since the last admitted check.
#[derive(Debug, Default)]
struct Window {
    checks: VecDeque<Instant>,
    refused: u64,
}

impl Window {
    fn prune(&mut self, now: Instant, window: Duration) {
        while self.checks.front().is_some_and(|t| *t + window <= now) {
            self.checks.pop_front();
        }
    }

    /// `Some(wait)` when `limit` checks are already in the window.
    fn full(&self, limit: u32, now: Instant, window: Duration) -> Option<Duration> {
        let oldest = self.checks.front()?;
        (self.checks.len() >= limit as usize)
            .then(|| (*oldest + window).saturating_duration_since(now))
    }

    fn remove(&mut self, at: Instant) {
        if let Some(i) = self.checks.iter().position(|t| *t == at) {
            self.checks.remove(i);
        }
    }
}

struct State {
    users: LruCache<(AddressKey, UserKey), Window>,
    addresses: LruCache<AddressKey, Window>,
    /// One check at a time per (address, user): see [`Throttle::turn`].
    turns: LruCache<(AddressKey, UserKey), Arc<tokio::sync::Mutex<()>>>,
}

/// A refusal: how long until a check is allowed again, and how many refusals this key has
/// collected since its last admitted check (the audit trail logs the 1st, 2nd, 4th, 8th …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Until the oldest counted check leaves the window.
    pub retry_after: Duration,
    /// Refusals of this key so far (1 for the first).
    pub refused: u64,
}

/// A reserved check: counted in both windows until [`Throttle::succeeded`] or
/// [`Throttle::cancel`] says otherwise. Dropping it keeps it counted (a failure, or a client
/// that went away while its check ran).
#[derive(Debug)]
#[must_use = "a reservation is a counted check; settle it once the check is done"]
pub struct Slot {
    address: AddressKey,
    user: UserKey,
    at: Instant,
}

/// The login throttle. Every method takes the lock briefly and never across an `.await`.
pub struct Throttle {
    limits: ThrottleLimits,
    state: Mutex<State>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Throttle {
    /// An empty throttle.
    pub fn new(limits: ThrottleLimits) -> Self {
        Self {
            limits,
            state: Mutex::new(State {
                users: LruCache::new(limits.capacity),
                addresses: LruCache::new(limits.capacity),
                turns: LruCache::new(limits.capacity),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is consistent after every statement; a panic elsewhere cannot break it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until no other check of `(address, user)` runs, and holds that turn until the
    /// guard is dropped.
    ///
    /// Why: a script opening 50 sessions at once sends the same credential 50 times before
    /// any is verified. Taking turns, the first checks and caches it and the other 49 find it
    /// in the cache, instead of 50 checks racing for 10 slots. A guesser gets one check at a
    /// time per key, too. (If a key's turn is evicted from the bounded map while in use, two
    /// checks of it may overlap; the reservations still bound how many there are.)
    pub async fn turn(
        &self,
        address: AddressKey,
        user: UserKey,
    ) -> tokio::sync::OwnedMutexGuard<()> {
        let turn = self
            .lock()
            .turns
            .get_or_insert((address, user), || Arc::new(tokio::sync::Mutex::new(())))
            .clone();
        turn.lock_owned().await
    }

    /// Whether `(address, user)` is throttled now, without reserving anything (a cached
    /// success asks this first: the cache must not answer guesses the throttle refuses).
    ///
    /// # Errors
    /// A [`Refusal`] while either window is full.
    pub fn check(&self, address: AddressKey, user: UserKey, now: Instant) -> Result<(), Refusal> {
        let mut state = self.lock();
        self.refusal(&mut state, address, user, now)
            .map_or(Ok(()), Err)
    }

    /// Reserves one check in both windows.
    ///
    /// # Errors
    /// A [`Refusal`] while either window is full; nothing is reserved then.
    pub fn reserve(
        &self,
        address: AddressKey,
        user: UserKey,
        now: Instant,
    ) -> Result<Slot, Refusal> {
        let mut state = self.lock();
        if let Some(refusal) = self.refusal(&mut state, address, user, now) {
            return Err(refusal);
        }
        let window = state
            .users
            .get_or_insert_mut((address, user), Window::default);
        window.checks.push_back(now);
        window.refused = 0;
        let window = state.addresses.get_or_insert_mut(address, Window::default);
        window.checks.push_back(now);
        window.refused = 0;
        Ok(Slot {
            address,
            user,
            at: now,
        })
    }

    /// The check behind `slot` found the right password: the (address, user) window starts
    /// over and the address gets its slot back.
    pub fn succeeded(&self, slot: Slot) {
        let mut state = self.lock();
        state.users.pop(&(slot.address, slot.user));
        if let Some(window) = state.addresses.peek_mut(&slot.address) {
            window.remove(slot.at);
        }
    }

    /// A success that needed no check (a cached credential): the (address, user) window
    /// starts over.
    pub fn reset(&self, address: AddressKey, user: UserKey) {
        self.lock().users.pop(&(address, user));
    }

    /// The check behind `slot` never ran: both windows get their slot back.
    pub fn cancel(&self, slot: Slot) {
        let mut state = self.lock();
        if let Some(window) = state.users.peek_mut(&(slot.address, slot.user)) {
            window.remove(slot.at);
        }
        if let Some(window) = state.addresses.peek_mut(&slot.address) {
            window.remove(slot.at);
        }
    }

    fn refusal(
        &self,
        state: &mut State,
        address: AddressKey,
        user: UserKey,
        now: Instant,
    ) -> Option<Refusal> {
        let limits = &self.limits;
        for (window, limit) in [
            (state.users.get_mut(&(address, user)), limits.per_user),
            (state.addresses.get_mut(&address), limits.per_address),
        ] {
            let Some(window) = window else { continue };
            window.prune(now, limits.window);
            if let Some(retry_after) = window.full(limit, now, limits.window) {
                window.refused += 1;
                return Some(Refusal {
                    retry_after,
                    refused: window.refused,
                });
            }
        }
        None
    }

    /// Keys held (tests assert the bound).
    #[cfg(test)]
    pub fn len(&self) -> (usize, usize) {
        let state = self.lock();
        (state.users.len(), state.addresses.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn limits() -> ThrottleLimits {
        ThrottleLimits {
            per_user: 3,
            per_address: 5,
            window: MINUTE,
            capacity: NonZeroUsize::new(8).unwrap(),
        }
    }

    fn addr(last: u8) -> AddressKey {
        AddressKey::of(IpAddr::from([192, 0, 2, last]))
    }

    fn user(n: u8) -> UserKey {
        [n; 32]
    }

    #[test]
    fn ipv6_is_keyed_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(AddressKey::of(a), AddressKey::of(b));
        assert_ne!(AddressKey::of(a), AddressKey::of(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(AddressKey::of(mapped), addr(7));
    }

    #[test]
    fn reservations_count_before_any_result_and_the_window_slides() {
        let t = Throttle::new(limits());
        let now = Instant::now();
        let slots: Vec<_> = (0..3)
            .map(|_| t.reserve(addr(1), user(1), now).unwrap())
            .collect();
        let refusal = t.reserve(addr(1), user(1), now).unwrap_err();
        assert_eq!(
            refusal,
            Refusal {
                retry_after: MINUTE,
                refused: 1
            }
        );
        assert_eq!(t.check(addr(1), user(1), now).unwrap_err().refused, 2);
        // Another user from the same address, and the same user from another address, are free.
        assert!(t.check(addr(1), user(2), now).is_ok());
        assert!(t.check(addr(2), user(1), now).is_ok());
        drop(slots); // three failures
        let later = now + Duration::from_secs(59);
        assert_eq!(
            t.check(addr(1), user(1), later).unwrap_err().retry_after,
            Duration::from_secs(1)
        );
        assert!(t.check(addr(1), user(1), now + MINUTE).is_ok());
    }

    #[test]
    fn the_address_ceiling_holds_across_user_names() {
        let t = Throttle::new(limits());
        let now = Instant::now();
        for n in 0..5 {
            let _ = t.reserve(addr(1), user(n), now).unwrap();
        }
        assert!(t.reserve(addr(1), user(9), now).is_err());
        assert!(t.reserve(addr(2), user(9), now).is_ok());
    }

    #[test]
    fn success_resets_the_user_window_and_refunds_the_address() {
        let t = Throttle::new(limits());
        let now = Instant::now();
        let _ = t.reserve(addr(1), user(1), now).unwrap();
        let _ = t.reserve(addr(1), user(1), now).unwrap();
        let right = t.reserve(addr(1), user(1), now).unwrap();
        t.succeeded(right);
        for _ in 0..3 {
            let _ = t.reserve(addr(1), user(1), now).unwrap();
        }
        // 2 + 3 failures fill the address (5); the success did not count.
        assert!(t.reserve(addr(1), user(2), now).is_err());
    }

    #[test]
    fn a_cancelled_check_gives_both_slots_back() {
        let t = Throttle::new(limits());
        let now = Instant::now();
        for _ in 0..10 {
            let slot = t.reserve(addr(1), user(1), now).unwrap();
            t.cancel(slot);
        }
        assert!(t.check(addr(1), user(1), now).is_ok());
    }

    #[test]
    fn maps_are_bounded_by_entries() {
        let t = Throttle::new(limits());
        let now = Instant::now();
        for a in 0..=255u8 {
            for u in 0..4 {
                let _ = t.reserve(addr(a), user(u), now);
            }
        }
        let (users, addresses) = t.len();
        assert!(users <= 8 && addresses <= 8, "{users} {addresses}");
    }
}
