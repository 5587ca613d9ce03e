//! Compact tables over a flow's tasks, which are addressed by position (declaration order):
//! an id index that keeps positions only, and lists of positions kept in one buffer. A
//! 100,000-task flow is held by every tier, so a task's share of the graph counts.

use std::hash::{BuildHasher, RandomState};
use std::ops::Index;

use hashbrown::HashTable;

/// Task positions by id. The ids stay where they already live (a flow's tasks, a store's
/// records) and are read back through `id_at`, so an entry is four bytes and no id is copied.
///
/// ```
/// use dagy_core::positions::IdIndex;
///
/// let ids = ["extract", "load"];
/// let id_at = |i: usize| ids[i];
/// let mut index = IdIndex::with_capacity(ids.len());
/// for (i, id) in ids.iter().enumerate() {
///     index.insert(id, i, id_at).expect("ids are unique");
/// }
/// assert_eq!(index.get("load", id_at), Some(1));
/// assert_eq!(index.insert("extract", 2, id_at), Err(0));
/// ```
#[derive(Clone, Default)]
pub struct IdIndex {
    table: HashTable<u32>,
    hasher: RandomState,
}

impl IdIndex {
    /// An empty index with room for `tasks` ids.
    pub fn with_capacity(tasks: usize) -> IdIndex {
        IdIndex {
            table: HashTable::with_capacity(tasks),
            hasher: RandomState::new(),
        }
    }

    /// Files `position` under `id` (`id_at` reads the id at any position already filed). When
    /// another position holds `id`, files nothing and returns that position.
    ///
    /// # Panics
    /// When `position` does not fit in 32 bits: no flow has four billion tasks.
    pub fn insert<'a>(
        &mut self,
        id: &str,
        position: usize,
        id_at: impl Fn(usize) -> &'a str,
    ) -> Result<(), usize> {
        let hash = self.hasher.hash_one(id);
        let hasher = &self.hasher;
        match self.table.entry(
            hash,
            |&p| id_at(p as usize) == id,
            |&p| hasher.hash_one(id_at(p as usize)),
        ) {
            hashbrown::hash_table::Entry::Occupied(held) => Err(*held.get() as usize),
            hashbrown::hash_table::Entry::Vacant(slot) => {
                let position = u32::try_from(position).expect("a flow has fewer than 2^32 tasks");
                slot.insert(position);
                Ok(())
            }
        }
    }

    /// The position filed under `id`.
    pub fn get<'a>(&self, id: &str, id_at: impl Fn(usize) -> &'a str) -> Option<usize> {
        let hash = self.hasher.hash_one(id);
        self.table
            .find(hash, |&p| id_at(p as usize) == id)
            .map(|&p| p as usize)
    }

    /// How many ids are filed.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no id is filed.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

impl std::fmt::Debug for IdIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdIndex").field("len", &self.len()).finish()
    }
}

/// Lists of task positions in one buffer: list `i` is `items[starts[i]..starts[i + 1]]`. A
/// `Vec` per list costs 24 bytes and an allocation even when it holds one position.
///
/// ```
/// use dagy_core::positions::PositionLists;
///
/// let mut lists = PositionLists::default();
/// lists.push([2, 3]);
/// lists.push([]);
/// assert_eq!(lists.len(), 2);
/// assert_eq!(&lists[0], &[2, 3]);
/// assert!(lists[1].is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionLists {
    starts: Vec<usize>,
    items: Vec<usize>,
}

impl Default for PositionLists {
    fn default() -> Self {
        PositionLists::with_capacity(0, 0)
    }
}

impl PositionLists {
    /// No lists yet, with room for `lists` lists of `items` positions in all.
    pub fn with_capacity(lists: usize, items: usize) -> PositionLists {
        let mut starts = Vec::with_capacity(lists + 1);
        starts.push(0);
        PositionLists {
            starts,
            items: Vec::with_capacity(items),
        }
    }

    /// `lists` lists where list `key` holds each `item` of a `(key, item)` pair, in the pairs'
    /// order. `pairs` is walked twice: once to count, once to fill.
    ///
    /// # Panics
    /// When a key is not below `lists`.
    pub fn grouped<I>(lists: usize, pairs: I) -> PositionLists
    where
        I: Iterator<Item = (usize, usize)> + Clone,
    {
        let mut starts = vec![0usize; lists + 1];
        for (key, _) in pairs.clone() {
            starts[key + 1] += 1;
        }
        for i in 0..lists {
            starts[i + 1] += starts[i];
        }
        let mut items = vec![0usize; starts[lists]];
        let mut next = starts.clone();
        for (key, item) in pairs {
            items[next[key]] = item;
            next[key] += 1;
        }
        PositionLists { starts, items }
    }

    /// Adds a list after the last one.
    pub fn push(&mut self, list: impl IntoIterator<Item = usize>) {
        self.items.extend(list);
        self.starts.push(self.items.len());
    }

    /// How many lists there are.
    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// Whether there are no lists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The lists, first to last.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[usize]> + Clone + '_ {
        self.starts
            .windows(2)
            .map(|bounds| &self.items[bounds[0]..bounds[1]])
    }
}

impl Index<usize> for PositionLists {
    type Output = [usize];

    fn index(&self, list: usize) -> &[usize] {
        &self.items[self.starts[list]..self.starts[list + 1]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The index answers what a map from id to first position answers.
        #[test]
        fn the_index_agrees_with_a_map(ids in proptest::collection::vec("[a-d]{1,2}", 0..40)) {
            let id_at = |i: usize| ids[i].as_str();
            let mut index = IdIndex::with_capacity(2);
            let mut map = std::collections::HashMap::new();
            for (i, id) in ids.iter().enumerate() {
                let expected = map.get(id.as_str()).copied();
                match index.insert(id, i, id_at) {
                    Ok(()) => prop_assert_eq!(expected, None),
                    Err(first) => prop_assert_eq!(expected, Some(first)),
                }
                map.entry(id.as_str()).or_insert(i);
            }
            prop_assert_eq!(index.len(), map.len());
            for probe in ["a", "b", "ab", "dd", "e"] {
                prop_assert_eq!(index.get(probe, id_at), map.get(probe).copied());
            }
        }

        /// Grouping pairs gives each key its items in order, as a Vec per key would.
        #[test]
        fn grouped_lists_agree_with_a_vec_per_list(
            pairs in proptest::collection::vec((0usize..6, 0usize..100), 0..60),
        ) {
            let lists = PositionLists::grouped(6, pairs.iter().copied());
            let mut expected = vec![Vec::new(); 6];
            for &(key, item) in &pairs {
                expected[key].push(item);
            }
            prop_assert_eq!(lists.len(), 6);
            let got: Vec<Vec<usize>> = lists.iter().map(<[usize]>::to_vec).collect();
            prop_assert_eq!(&got, &expected);
            for (key, list) in expected.iter().enumerate() {
                prop_assert_eq!(&lists[key], list.as_slice());
            }
        }
    }
}
