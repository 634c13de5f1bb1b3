//! A slab of values addressed by `u32` ids plus a hash index over a key each value carries.
//!
//! The index stores only the 4-byte id per slot (`hashbrown::HashTable`); hashing and equality
//! go through the value in the slab, so a key is stored once. Freed ids are reused. This is what
//! keeps an entry of the presence model near 200 bytes (see `docs/benchmarks.md`).

use std::hash::{BuildHasher, Hash};

use hashbrown::{DefaultHashBuilder, HashTable};

/// Values that carry their own key: the hash of that key, with the interner's hasher.
pub(crate) trait Keyed {
    fn hash_with(&self, hasher: &DefaultHashBuilder) -> u64;
}

/// Values whose key can be compared with a `Q` (the same hash as [`Keyed::hash_with`]).
pub(crate) trait Matches<Q: ?Sized> {
    fn matches(&self, key: &Q) -> bool;
}

#[derive(Debug)]
pub(crate) struct Interner<T> {
    slots: Vec<Option<T>>,
    free: Vec<u32>,
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    len: usize,
}

impl<T> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            len: 0,
        }
    }
}

impl<T: Keyed> Interner<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The id of the value whose key equals `key`.
    pub(crate) fn find<Q: Hash + ?Sized>(&self, key: &Q) -> Option<u32>
    where
        T: Matches<Q>,
    {
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        let key_eq = |id: &u32| {
            slots
                .get(*id as usize)
                .and_then(Option::as_ref)
                .is_some_and(|v| v.matches(key))
        };
        self.index.find(hash, key_eq).copied()
    }

    /// Stores a value whose key is not present yet and returns its id.
    pub(crate) fn insert_new(&mut self, value: T) -> u32 {
        let hash = value.hash_with(&self.hasher);
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(value);
                id
            }
            None => {
                self.slots.push(Some(value));
                // More than 4 billion live values cannot fit the memory of one process.
                (self.slots.len() - 1) as u32
            }
        };
        let Interner {
            slots,
            index,
            hasher,
            ..
        } = self;
        index.insert_unique(hash, id, |id| {
            slots
                .get(*id as usize)
                .and_then(Option::as_ref)
                .map_or(0, |v| v.hash_with(hasher))
        });
        self.len += 1;
        id
    }

    /// Removes the value with this id (which must be live) and frees the id.
    pub(crate) fn remove(&mut self, id: u32) -> Option<T> {
        let hash = self.get(id)?.hash_with(&self.hasher);
        if let Ok(found) = self.index.find_entry(hash, |other| *other == id) {
            found.remove();
        }
        let value = self.slots.get_mut(id as usize)?.take()?;
        self.free.push(id);
        self.len -= 1;
        if self.len == 0 {
            // Give the memory back after a mass expiry.
            self.slots = Vec::new();
            self.free = Vec::new();
            self.index = HashTable::new();
        }
        Some(value)
    }

    pub(crate) fn get(&self, id: u32) -> Option<&T> {
        self.slots.get(id as usize).and_then(Option::as_ref)
    }

    pub(crate) fn get_mut(&mut self, id: u32) -> Option<&mut T> {
        self.slots.get_mut(id as usize).and_then(Option::as_mut)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(id, v)| v.as_ref().map(|v| (id as u32, v)))
    }
}
