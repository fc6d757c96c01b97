//! The consistent-hash ring over a backend's endpoint addresses, shared by balanced cookie
//! affinity and `upstream-hash-by`: a key keeps its endpoint while that endpoint exists, and
//! adding or removing one of n endpoints moves about 1/n of the keys.

use std::net::SocketAddr;

/// A stable 64-bit hash (FNV-1a with a final mix): the same on every replica and every
/// version, so that replicas agree on where a key goes.
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64 finalizer: FNV alone spreads short, similar keys poorly.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// Points per endpoint on the ring: enough that each endpoint's share is within a few
/// percent of 1/n.
const RING_POINTS: usize = 160;

/// A consistent-hash ring. Endpoint `i` owns the positions in the arc `(previous point,
/// point]` below each of its points (the arc below the first point wraps around from the
/// last). A point's position depends on its endpoint's address only, never on the index, so
/// the ring of a scaled backend keeps every other endpoint's arcs.
pub struct Ring {
    /// `(position, endpoint index)`, sorted.
    points: Vec<(u64, u32)>,
    /// Where each endpoint's points are in `points`: endpoint `i`'s `RING_POINTS` slots are
    /// `owned[i * RING_POINTS..][..RING_POINTS]` (4 bytes a point, for re-pinning).
    owned: Vec<u32>,
}

impl Ring {
    /// The ring of the endpoints at `addrs`; endpoint indexes count them in order.
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self::of(addrs)
    }

    /// The ring of members named `ids` (an endpoint's address, a subset's name); indexes
    /// count them in order.
    pub fn of<T: std::fmt::Display>(ids: impl IntoIterator<Item = T>) -> Self {
        let mut points = Vec::new();
        let mut n = 0usize;
        for (i, id) in ids.into_iter().enumerate() {
            let id = id.to_string();
            for p in 0..RING_POINTS {
                points.push((hash64(format!("{id}#{p}").as_bytes()), i as u32));
            }
            n = i + 1;
        }
        points.sort_unstable();
        let mut owned = vec![0u32; points.len()];
        let mut filled = vec![0usize; n];
        for (slot, &(_, i)) in points.iter().enumerate() {
            let i = i as usize;
            owned[i * RING_POINTS + filled[i]] = slot as u32;
            filled[i] += 1;
        }
        Ring { points, owned }
    }

    /// The endpoint owning a position.
    pub fn at(&self, position: u64) -> Option<usize> {
        self.from(position).next()
    }

    /// The owners of the points from `position` on, once round the ring: the owner of
    /// `position` first, then where the key would go if that endpoint were gone, and so on
    /// (an endpoint shows up once for each of its points).
    pub fn from(&self, position: u64) -> impl Iterator<Item = usize> + '_ {
        let n = self.points.len();
        let at = self.points.partition_point(|(p, _)| *p < position);
        (0..n).map(move |k| self.points[(at + k) % n].1 as usize)
    }

    /// The arc below the point in `slot`: its first position and its length (0 when another
    /// point sits at the same position first; 2^64 for a ring of one point).
    fn arc(&self, slot: u32) -> (u64, u128) {
        let n = self.points.len();
        let s = slot as usize;
        let end = self.points[s].0;
        let prev = self.points[(s + n - 1) % n].0;
        let len = if n == 1 {
            1u128 << 64
        } else {
            u128::from(end.wrapping_sub(prev))
        };
        (prev.wrapping_add(1), len)
    }

    /// A position owned by endpoint `i`, uniform over all it owns, from the random `r`: the
    /// position a random key has when it happens to land on `i`. Work: `RING_POINTS` arcs,
    /// whatever the number of endpoints.
    pub fn position_of(&self, i: usize, r: u64) -> Option<u64> {
        let owned = self.owned.get(i * RING_POINTS..)?.get(..RING_POINTS)?;
        let total: u128 = owned.iter().map(|&s| self.arc(s).1).sum();
        // Uniform in [0, total): total <= 2^64, so the product fits in 128 bits.
        let mut offset = (u128::from(r) * total) >> 64;
        for &s in owned {
            let (start, len) = self.arc(s);
            if offset < len {
                return Some(start.wrapping_add(offset as u64));
            }
            offset -= len;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: usize) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([10, 1, (i / 250) as u8, (i % 250) as u8], 8080)))
            .collect()
    }

    fn owners(ring: &Ring, keys: usize) -> Vec<usize> {
        (0..keys)
            .map(|k| ring.at(hash64(format!("/item/{k}").as_bytes())).unwrap())
            .collect()
    }

    #[test]
    fn an_empty_ring_owns_nothing() {
        let ring = Ring::new([]);
        assert_eq!(ring.at(42), None);
        assert_eq!(ring.from(42).count(), 0);
        assert_eq!(ring.position_of(0, 1), None);
    }

    #[test]
    fn keys_spread_within_a_few_percent_of_one_in_n() {
        let n = 10;
        let ring = Ring::new(addrs(n));
        let keys = 100_000;
        let mut count = vec![0usize; n];
        for o in owners(&ring, keys) {
            count[o] += 1;
        }
        for c in count {
            let share = c as f64 / keys as f64;
            assert!((0.07..=0.13).contains(&share), "share {share}");
        }
    }

    #[test]
    fn removing_one_of_n_moves_only_its_keys_and_adding_one_moves_about_one_in_n() {
        let n = 8;
        let all = addrs(n + 1);
        let before = Ring::new(all[..n].iter().copied());
        let keys = 20_000;
        let was = owners(&before, keys);
        // Endpoint 3 goes: the others keep their indexes shifted down by one past it.
        let without: Vec<SocketAddr> = all[..n].iter().copied().filter(|a| *a != all[3]).collect();
        let after = Ring::new(without.iter().copied());
        let now = owners(&after, keys);
        let mut moved = 0;
        for (w, x) in was.iter().zip(&now) {
            if *w == 3 {
                moved += 1;
            } else {
                assert_eq!(without[*x], all[*w], "a key not on the removed endpoint stays");
            }
        }
        let frac = moved as f64 / keys as f64;
        assert!(frac <= 1.0 / n as f64 + 0.03, "{frac}");
        // A new endpoint takes about 1/(n+1) of the keys, from every other one.
        let grown = Ring::new(all.iter().copied());
        let now = owners(&grown, keys);
        let moved = was.iter().zip(&now).filter(|(w, x)| w != x).count();
        assert!(now.iter().zip(&was).all(|(x, w)| x == w || *x == n));
        let frac = moved as f64 / keys as f64;
        assert!((0.07..=0.16).contains(&frac), "{frac}");
    }

    #[test]
    fn walking_from_a_position_gives_the_next_owner_when_the_first_is_gone() {
        let all = addrs(5);
        let ring = Ring::new(all.iter().copied());
        for k in 0..100u64 {
            let p = hash64(&k.to_le_bytes());
            let first = ring.at(p).unwrap();
            let next = ring.from(p).find(|&i| i != first).unwrap();
            // The ring without `first` sends the key exactly there.
            let rest: Vec<SocketAddr> = all.iter().copied().filter(|a| *a != all[first]).collect();
            let smaller = Ring::new(rest.iter().copied());
            assert_eq!(rest[smaller.at(p).unwrap()], all[next]);
        }
    }

    #[test]
    fn a_position_drawn_for_an_endpoint_is_owned_by_it() {
        let ring = Ring::new(addrs(7));
        for i in 0..7 {
            for r in [0, 1, u64::MAX / 3, u64::MAX] {
                let p = ring.position_of(i, r).unwrap();
                assert_eq!(ring.at(p), Some(i));
            }
        }
        assert_eq!(ring.position_of(7, 0), None);
    }
}
