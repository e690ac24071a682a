//! Groups findings into requests Security Hub accepts: at most `max_findings` (≤ 100), a body of
//! at most 6 MB, and no Id twice in one request (the response reports failures by Id).

use std::collections::HashSet;

use bytes::{BufMut, Bytes, BytesMut};

/// Security Hub's request body limit (6 MB, counted in decimal to stay on the safe side).
pub const MAX_BODY_BYTES: usize = 6_000_000;
const PREFIX: &[u8] = b"{\"Findings\":[";
const SUFFIX: &[u8] = b"]}";

/// What the batcher needs to know of an item.
pub trait Batchable {
    /// The finding's Id.
    fn id(&self) -> &str;
    /// The finding's JSON.
    fn json(&self) -> &[u8];
}

impl Batchable for super::queue::Queued {
    fn id(&self) -> &str {
        &self.finding.id
    }
    fn json(&self) -> &[u8] {
        &self.finding.json
    }
}

impl Batchable for crate::finding::Finding {
    fn id(&self) -> &str {
        &self.id
    }
    fn json(&self) -> &[u8] {
        &self.json
    }
}

/// Splits findings into requests; see the module docs.
#[derive(Debug)]
pub struct Batcher<T> {
    items: Vec<T>,
    ids: HashSet<String>,
    body_len: usize,
    max_findings: usize,
    max_body: usize,
}

impl<T: Batchable> Batcher<T> {
    /// A batcher for requests of at most `max_findings` findings and `max_body` bytes.
    pub fn new(max_findings: usize, max_body: usize) -> Self {
        Self {
            items: Vec::with_capacity(max_findings),
            ids: HashSet::with_capacity(max_findings),
            body_len: PREFIX.len() + SUFFIX.len(),
            max_findings,
            max_body,
        }
    }

    /// Adds a finding; returns the requests it completed (none, one, or two when the pending one
    /// had no room for it and it alone fills the next).
    pub fn push(&mut self, item: T) -> Vec<Vec<T>> {
        let mut done = Vec::new();
        let added = item.json().len() + usize::from(!self.items.is_empty());
        if !self.items.is_empty() && (self.body_len + added > self.max_body || self.ids.contains(item.id())) {
            done.extend(self.flush());
        }
        self.body_len += item.json().len() + usize::from(!self.items.is_empty());
        self.ids.insert(item.id().to_owned());
        self.items.push(item);
        if self.items.len() >= self.max_findings {
            done.extend(self.flush());
        }
        done
    }

    /// The pending request, if any.
    pub fn flush(&mut self) -> Option<Vec<T>> {
        if self.items.is_empty() {
            return None;
        }
        self.ids.clear();
        self.body_len = PREFIX.len() + SUFFIX.len();
        Some(std::mem::replace(&mut self.items, Vec::with_capacity(self.max_findings)))
    }

    /// Findings waiting for their request to fill.
    pub fn pending(&self) -> usize {
        self.items.len()
    }
}

/// The request body for `items`: `{"Findings":[...]}`.
pub fn body<T: Batchable>(items: &[T]) -> Bytes {
    let len = PREFIX.len() + SUFFIX.len() + items.iter().map(|i| i.json().len() + 1).sum::<usize>();
    let mut out = BytesMut::with_capacity(len);
    out.put_slice(PREFIX);
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(item.json());
    }
    out.put_slice(SUFFIX);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Item(String, Vec<u8>);
    impl Batchable for Item {
        fn id(&self) -> &str {
            &self.0
        }
        fn json(&self) -> &[u8] {
            &self.1
        }
    }

    fn item(id: usize, len: usize) -> Item {
        Item(format!("id-{id}"), vec![b'x'; len])
    }

    #[test]
    fn splits_at_100_findings() {
        let mut b = Batcher::new(100, MAX_BODY_BYTES);
        let mut done = vec![];
        for i in 0..101 {
            done.extend(b.push(item(i, 10)));
        }
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].len(), 100);
        assert_eq!(b.flush().unwrap().len(), 1);
        assert!(b.flush().is_none());
    }

    #[test]
    fn splits_before_body_exceeds_limit() {
        let mut b = Batcher::new(100, MAX_BODY_BYTES);
        let mut done = vec![];
        for i in 0..30 {
            done.extend(b.push(item(i, 239_000)));
        }
        done.extend(b.flush());
        assert_eq!(done.iter().map(Vec::len).collect::<Vec<_>>(), [25, 5]);
        for batch in &done {
            assert!(body(batch).len() <= MAX_BODY_BYTES);
        }
    }

    #[test]
    fn repeated_id_starts_a_new_request() {
        let mut b = Batcher::new(100, MAX_BODY_BYTES);
        assert!(b.push(item(1, 5)).is_empty());
        assert!(b.push(item(2, 5)).is_empty());
        let done = b.push(item(1, 5));
        assert_eq!(done, vec![vec![item(1, 5), item(2, 5)]]);
        assert_eq!(b.pending(), 1);
    }

    #[test]
    fn body_is_the_findings_envelope() {
        let items =
            [Item("a".into(), b"{\"Id\":\"a\"}".to_vec()), Item("b".into(), b"{\"Id\":\"b\"}".to_vec())];
        assert_eq!(&body(&items)[..], b"{\"Findings\":[{\"Id\":\"a\"},{\"Id\":\"b\"}]}");
        assert_eq!(&body::<Item>(&[])[..], b"{\"Findings\":[]}");
    }

    #[test]
    fn one_finding_per_request_emits_both_when_needed() {
        let mut b = Batcher::new(1, MAX_BODY_BYTES);
        assert_eq!(b.push(item(1, 5)).len(), 1);
        assert_eq!(b.push(item(2, 5)).len(), 1);
    }

    proptest! {
        /// Nothing lost, nothing duplicated, no request over a limit, no Id twice in a request.
        #[test]
        fn batches_hold_every_limit(
            sizes in prop::collection::vec((0usize..40, 1usize..300_000), 0..200),
            max in 1usize..=100,
        ) {
            let mut b = Batcher::new(max, MAX_BODY_BYTES);
            let items: Vec<Item> = sizes.iter().map(|&(id, len)| item(id, len.min(239_000))).collect();
            let mut out = vec![];
            for it in items.clone() {
                out.extend(b.push(it));
            }
            out.extend(b.flush());
            for batch in &out {
                prop_assert!(!batch.is_empty() && batch.len() <= max);
                prop_assert!(body(batch).len() <= MAX_BODY_BYTES);
                let ids: HashSet<&str> = batch.iter().map(|i| i.id()).collect();
                prop_assert_eq!(ids.len(), batch.len());
            }
            let flat: Vec<Item> = out.into_iter().flatten().collect();
            prop_assert_eq!(flat, items);
        }
    }
}
