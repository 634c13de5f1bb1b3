//! The connections of one user, as the hub's user index keeps them.
//!
//! Most users hold one connection, so that case is inline in the index's entry: no
//! allocation. A `HashSet` of one id allocated a 4-bucket table (~84 B, jemalloc's 96 B class)
//! per user, and made every entry 48 B; this is 16 B and allocates only from the second
//! connection of a user on (heaptrack of 5,000 idle single-connection users: the user index
//! was ~190 B per connection before).

use std::collections::HashSet;
use std::sync::Arc;

/// A user's connection ids on this node (never empty: the hub drops the entry instead).
#[derive(Debug)]
pub(crate) enum UserConns {
    One(Arc<str>),
    /// Boxed so an entry stays 16 B (the pointers' niche holds the tag; an unboxed set makes
    /// every entry 48 B).
    #[allow(clippy::box_collection)]
    Many(Box<HashSet<Arc<str>>>),
}

impl UserConns {
    pub(crate) fn new(id: Arc<str>) -> Self {
        UserConns::One(id)
    }

    pub(crate) fn insert(&mut self, id: Arc<str>) {
        match self {
            UserConns::One(first) if *first == id => {}
            UserConns::One(first) => {
                let mut set = HashSet::with_capacity(2);
                set.insert(first.clone());
                set.insert(id);
                *self = UserConns::Many(Box::new(set));
            }
            UserConns::Many(set) => {
                set.insert(id);
            }
        }
    }

    /// Removes `id`; true when no connection is left (the caller drops the entry). A set
    /// back to one id goes inline again.
    pub(crate) fn remove(&mut self, id: &str) -> bool {
        match self {
            UserConns::One(only) => &**only == id,
            UserConns::Many(set) => {
                set.remove(id);
                if set.len() == 1 {
                    if let Some(last) = set.iter().next().cloned() {
                        *self = UserConns::One(last);
                    }
                    return false;
                }
                set.is_empty()
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            UserConns::One(_) => 1,
            UserConns::Many(set) => set.len(),
        }
    }

    pub(crate) fn ids(&self) -> Vec<Arc<str>> {
        match self {
            UserConns::One(id) => vec![id.clone()],
            UserConns::Many(set) => set.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(c: &UserConns) -> Vec<String> {
        let mut v: Vec<String> = c.ids().iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn one_many_and_back() {
        let mut c = UserConns::new("a".into());
        assert!(matches!(c, UserConns::One(_)));
        c.insert("a".into());
        assert_eq!(c.len(), 1, "the same id twice is one connection");
        c.insert("b".into());
        c.insert("c".into());
        assert_eq!(sorted(&c), ["a", "b", "c"]);
        assert!(!c.remove("x"), "an unknown id changes nothing");
        assert_eq!(c.len(), 3);
        assert!(!c.remove("b"));
        assert!(!c.remove("a"));
        assert!(matches!(c, UserConns::One(_)), "back inline at one id");
        assert_eq!(sorted(&c), ["c"]);
        assert!(!c.remove("a"), "not the remaining id: not empty");
        assert!(c.remove("c"));
    }

    #[test]
    fn an_entry_is_small() {
        assert_eq!(std::mem::size_of::<UserConns>(), 16);
    }
}
