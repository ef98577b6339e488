//! The order tables are loaded in when their foreign keys already exist in
//! PostgreSQL (`--data-only`, `--truncate`): a table after the tables it
//! refers to, and the tables of a cycle together, in one transaction with
//! their (deferrable) keys checked at its commit. Pure.

/// Tables that load together, and the units each one waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadUnits {
    /// Each unit: table indices, in the order they load.
    pub units: Vec<Vec<usize>>,
    /// Per unit: the units it waits for.
    pub waits_for: Vec<Vec<usize>>,
}

/// Groups `n` tables into units from `edges` (child, parent): the strongly
/// connected components of the foreign-key graph (Tarjan). Self-references
/// need no order: PostgreSQL checks a key at the end of the COPY statement,
/// or at commit when it is deferred.
pub fn load_units(n: usize, edges: &[(usize, usize)]) -> LoadUnits {
    let mut out_edges = vec![vec![]; n];
    for &(c, p) in edges {
        if c != p && c < n && p < n {
            out_edges[c].push(p);
        }
    }
    let comp = tarjan(&out_edges);
    let count = comp.iter().copied().max().map_or(0, |m| m + 1);
    let mut units = vec![vec![]; count];
    for (t, &c) in comp.iter().enumerate() {
        units[c].push(t);
    }
    let mut waits_for = vec![vec![]; count];
    for (c, parents) in out_edges.iter().enumerate() {
        for &p in parents {
            let (uc, up) = (comp[c], comp[p]);
            if uc != up && !waits_for[uc].contains(&up) {
                waits_for[uc].push(up);
            }
        }
    }
    LoadUnits { units, waits_for }
}

/// The component of each node (iterative Tarjan, so a deep chain of keys
/// cannot overflow the stack).
fn tarjan(g: &[Vec<usize>]) -> Vec<usize> {
    const NONE: usize = usize::MAX;
    let n = g.len();
    let (mut index, mut low, mut comp) = (vec![NONE; n], vec![0; n], vec![NONE; n]);
    let (mut on_stack, mut stack) = (vec![false; n], vec![]);
    let (mut next_index, mut next_comp) = (0, 0);
    for root in 0..n {
        if index[root] != NONE {
            continue;
        }
        // (node, next edge to look at)
        let mut work = vec![(root, 0usize)];
        while let Some(top) = work.last_mut() {
            let (v, e) = *top;
            if e == 0 && index[v] == NONE {
                index[v] = next_index;
                low[v] = next_index;
                next_index += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&w) = g[v].get(e) {
                top.1 += 1;
                if index[w] == NONE {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            work.pop();
            if let Some(&(u, _)) = work.last() {
                low[u] = low[u].min(low[v]);
            }
            if low[v] == index[v] {
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    comp[w] = next_comp;
                    if w == v {
                        break;
                    }
                }
                next_comp += 1;
            }
        }
    }
    comp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit_of(u: &LoadUnits, t: usize) -> usize {
        u.units.iter().position(|x| x.contains(&t)).unwrap()
    }

    #[test]
    fn children_wait_for_parents_and_cycles_load_together() {
        // 0 <- 1 <- 2, 3 <-> 4 (a cycle) -> 0, 5 alone, 2 refers to itself.
        let u = load_units(6, &[(1, 0), (2, 1), (2, 2), (3, 4), (4, 3), (4, 0)]);
        assert_eq!(u.units.len(), 5);
        let (u0, u1, u2, u34, u5) = (
            unit_of(&u, 0),
            unit_of(&u, 1),
            unit_of(&u, 2),
            unit_of(&u, 3),
            unit_of(&u, 5),
        );
        assert_eq!(unit_of(&u, 4), u34);
        assert_eq!(u.units[u34].len(), 2);
        assert_eq!(u.waits_for[u1], vec![u0]);
        assert_eq!(u.waits_for[u2], vec![u1]);
        assert_eq!(u.waits_for[u34], vec![u0]);
        assert!(u.waits_for[u0].is_empty() && u.waits_for[u5].is_empty());
    }

    #[test]
    fn a_long_chain_does_not_overflow() {
        let n = 100_000;
        let edges: Vec<(usize, usize)> = (1..n).map(|i| (i, i - 1)).collect();
        let u = load_units(n, &edges);
        assert_eq!(u.units.len(), n);
        let big = load_units(n, &[edges.clone(), vec![(0, n - 1)]].concat());
        assert_eq!(big.units.len(), 1, "one cycle through every table");
    }
}
