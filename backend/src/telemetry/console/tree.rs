//! A trace's spans as the tree they form: each span under its parent,
//! children in the order they started. Spans whose parent is not among
//! them (the local root, or parts of a trace printed apart) are the roots.

use std::borrow::Borrow;
use std::collections::HashMap;

use opentelemetry::trace::SpanId;
use opentelemetry_sdk::trace::SpanData;

/// A span (its index in the trace's spans) and the spans it contains.
#[derive(Debug, PartialEq, Eq)]
pub struct Node {
    pub span: usize,
    pub children: Vec<Node>,
}

/// The trees `spans` form, roots and children each in start order (ties in
/// the order the spans arrived).
pub fn forest<S: Borrow<SpanData>>(spans: &[S]) -> Vec<Node> {
    let spans: Vec<&SpanData> = spans.iter().map(Borrow::borrow).collect();
    let index: HashMap<SpanId, usize> = spans
        .iter()
        .enumerate()
        .map(|(at, span)| (span.span_context.span_id(), at))
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
    let mut roots = Vec::new();
    for (at, span) in spans.iter().enumerate() {
        match index.get(&span.parent_span_id) {
            // A span cannot contain itself; ids are unique within a trace.
            Some(&parent) if parent != at => children[parent].push(at),
            _ => roots.push(at),
        }
    }
    let by_start = |list: &mut Vec<usize>| list.sort_by_key(|&at| spans[at].start_time);
    by_start(&mut roots);
    children.iter_mut().for_each(by_start);
    roots
        .into_iter()
        .map(|root| grow(root, &mut children))
        .collect()
}

fn grow(span: usize, children: &mut [Vec<usize>]) -> Node {
    let below = std::mem::take(&mut children[span]);
    Node {
        span,
        children: below
            .into_iter()
            .map(|child| grow(child, children))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::test_span::span;

    fn leaf(span: usize) -> Node {
        Node {
            span,
            children: Vec::new(),
        }
    }

    #[test]
    fn spans_arriving_children_first_form_their_tree_root_first() {
        // As they end: the queries, the service, then the request.
        let spans = [
            span(1, 4, 2, "SELECT replies", 3, 1),
            span(1, 3, 2, "SELECT activities", 2, 1),
            span(1, 2, 1, "home_activities", 1, 4),
            span(1, 1, 0, "GET /api/activities/home", 0, 6),
        ];
        assert_eq!(
            forest(&spans),
            [Node {
                span: 3,
                children: vec![Node {
                    span: 2,
                    children: vec![leaf(1), leaf(0)],
                }],
            }]
        );
    }

    #[test]
    fn deep_nesting_and_siblings_keep_their_places() {
        let spans = [
            span(1, 1, 0, "root", 0, 20),
            span(1, 5, 4, "d", 4, 1),
            span(1, 4, 3, "c", 3, 2),
            span(1, 3, 2, "b", 2, 4),
            span(1, 2, 1, "a", 1, 6),
            span(1, 6, 1, "e", 9, 1),
        ];
        let tree = forest(&spans);
        assert_eq!(tree.len(), 1);
        let root = &tree[0];
        assert_eq!(
            root.children.iter().map(|n| n.span).collect::<Vec<_>>(),
            [4, 5]
        );
        let d = &root.children[0].children[0].children[0].children[0];
        assert_eq!(spans[d.span].name, "d");
    }

    mod properties {
        use proptest::collection::vec;
        use proptest::prelude::*;

        use super::super::super::traces::{Ending, Limits, Traces};
        use super::*;

        /// A span id and the shapes below it, by id.
        #[derive(Debug, PartialEq, Eq)]
        struct Shape(u64, Vec<Shape>);

        fn shape(spans: &[crate::telemetry::sink::SharedSpan], node: &Node) -> Shape {
            let id = u64::from_be_bytes(spans[node.span].span_context.span_id().to_bytes());
            Shape(id, node.children.iter().map(|c| shape(spans, c)).collect())
        }

        /// Span `k` has id `k + 1` and starts at `k` ms; `parents[k - 1]` is an earlier span.
        fn expected(parents: &[usize], k: usize) -> Shape {
            let children = (1..=parents.len())
                .filter(|&child| parents[child - 1] == k)
                .map(|child| expected(parents, child))
                .collect();
            Shape(k as u64 + 1, children)
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Whatever order a trace's spans arrive in before its root,
            /// the root's arrival hands over all of them, once, and they
            /// form the tree they were, children in start order.
            #[test]
            fn any_arrival_order_prints_the_tree_once_whole(
                picks in vec(any::<prop::sample::Index>(), 1..24),
                order in vec(any::<u32>(), 24),
            ) {
                let parents: Vec<usize> = picks
                    .iter()
                    .enumerate()
                    .map(|(k, pick)| pick.index(k + 1))
                    .collect();
                let mut arrival: Vec<usize> = (1..=parents.len()).collect();
                arrival.sort_by_key(|&k| order[k - 1]);
                let mut traces = Traces::new(Limits { spans: 100, bytes: usize::MAX });
                for &k in &arrival {
                    let parent = parents[k - 1] as u64 + 1;
                    let held = traces.add(span(7, k as u64 + 1, parent, "s", k as u64, 1));
                    prop_assert!(held.is_empty());
                }
                let ready = traces.add(span(7, 1, 0, "root", 0, 100));
                prop_assert_eq!(ready.len(), 1);
                prop_assert_eq!(ready[0].ending, Ending::Whole);
                prop_assert_eq!(ready[0].spans.len(), parents.len() + 1);
                let tree = forest(&ready[0].spans);
                prop_assert_eq!(tree.len(), 1);
                prop_assert_eq!(shape(&ready[0].spans, &tree[0]), expected(&parents, 0));
                prop_assert!(traces.drain().is_empty());
            }
        }
    }

    #[test]
    fn spans_whose_parent_is_missing_are_roots_in_start_order() {
        let spans = [span(1, 3, 8, "later", 5, 1), span(1, 2, 9, "earlier", 1, 1)];
        assert_eq!(forest(&spans), [leaf(1), leaf(0)]);
    }
}
