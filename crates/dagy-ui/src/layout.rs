//! Where each task of a DAG is drawn: one horizontal band per dependency level, top to bottom,
//! a wide level wrapped into rows, each row centred.

use dagy_core::FlowSpec;

/// A flow as the DAG view needs it: tasks by index (declaration order), grouped by level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Graph {
    /// Level k lists the tasks whose deepest dependency is in level k-1, in declaration order.
    pub levels: Vec<Vec<usize>>,
    /// `(dependency, dependent)` pairs.
    pub edges: Vec<(usize, usize)>,
    /// Why the flow is not laid out by levels, when it cannot be.
    pub problem: Option<String>,
}

/// The graph of a stored flow, by the levels dagy-core works out when it validates the flow. A
/// stored flow was valid when its run was created; one that no longer validates (written by
/// another version) is drawn as a single level without edges, with the reason.
pub(crate) fn graph_of(spec: &FlowSpec) -> Graph {
    match spec.clone().validate(None) {
        Ok(flow) => {
            let edges = (0..flow.tasks().len())
                .flat_map(|i| flow.dependencies(i).iter().map(move |&d| (d, i)))
                .collect();
            Graph {
                levels: flow.levels().iter().map(<[usize]>::to_vec).collect(),
                edges,
                problem: None,
            }
        }
        Err(e) => Graph {
            levels: vec![(0..spec.tasks.len()).collect()],
            edges: Vec::new(),
            problem: Some(e.to_string()),
        },
    }
}

/// The DAG view's measures, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Nodes in one row of a level before it wraps.
    pub per_row: usize,
    /// A node's width.
    pub node_w: u32,
    /// A node's height.
    pub node_h: u32,
    /// Between two nodes of a row.
    pub gap_x: u32,
    /// Between two rows of one level.
    pub gap_y: u32,
    /// Between two levels: room for the edges.
    pub level_gap: u32,
    /// Left of the nodes: room for the level labels.
    pub margin_left: u32,
    /// Around the drawing.
    pub margin: u32,
}

/// The measures the run page uses: six 136-pixel nodes a row, about 900 pixels wide.
pub(crate) const DAG_GEOMETRY: Geometry = Geometry {
    per_row: 6,
    node_w: 136,
    node_h: 24,
    gap_x: 8,
    gap_y: 8,
    level_gap: 36,
    margin_left: 40,
    margin: 8,
};

/// One level's band.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Band {
    /// Its top.
    pub y: u32,
    /// Its height: its rows and the gaps between them.
    pub height: u32,
    /// How many tasks it holds.
    pub tasks: usize,
}

/// Where everything goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DagLayout {
    /// The top-left corner of each task's node, by task index.
    pub positions: Vec<(u32, u32)>,
    /// Each task's level, by task index.
    pub level_of: Vec<usize>,
    /// One band per level.
    pub bands: Vec<Band>,
    /// The drawing's width.
    pub width: u32,
    /// The drawing's height.
    pub height: u32,
}

/// Places `task_count` tasks grouped by `levels`. A task in no level (there is none in a valid
/// flow) stays at the origin.
pub(crate) fn lay_out(levels: &[Vec<usize>], task_count: usize, g: &Geometry) -> DagLayout {
    let per_row = g.per_row.max(1);
    let step_x = g.node_w + g.gap_x;
    let widest = levels
        .iter()
        .map(|l| l.len().min(per_row))
        .max()
        .unwrap_or(0) as u32;
    let inner = (widest * step_x).saturating_sub(g.gap_x);
    let mut positions = vec![(0, 0); task_count];
    let mut level_of = vec![0; task_count];
    let mut bands = Vec::with_capacity(levels.len());
    let mut y = g.margin;
    for (l, level) in levels.iter().enumerate() {
        let rows = level.len().div_ceil(per_row).max(1) as u32;
        let height = rows * g.node_h + (rows - 1) * g.gap_y;
        bands.push(Band {
            y,
            height,
            tasks: level.len(),
        });
        for (r, row) in level.chunks(per_row).enumerate() {
            let row_width = (row.len() as u32 * step_x).saturating_sub(g.gap_x);
            let x0 = g.margin_left + (inner - row_width) / 2;
            let row_y = y + r as u32 * (g.node_h + g.gap_y);
            for (c, &task) in row.iter().enumerate() {
                if let (Some(p), Some(lv)) = (positions.get_mut(task), level_of.get_mut(task)) {
                    *p = (x0 + c as u32 * step_x, row_y);
                    *lv = l;
                }
            }
        }
        y += height + g.level_gap;
    }
    let height = if levels.is_empty() {
        2 * g.margin
    } else {
        y - g.level_gap + g.margin
    };
    DagLayout {
        positions,
        level_of,
        bands,
        width: g.margin_left + inner + g.margin,
        height,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dagy_core::FlowBuilder;

    const G: Geometry = Geometry {
        per_row: 3,
        node_w: 100,
        node_h: 20,
        gap_x: 10,
        gap_y: 5,
        level_gap: 30,
        margin_left: 40,
        margin: 8,
    };

    #[test]
    fn a_tasks_level_is_one_more_than_its_deepest_dependency() {
        // a -> b -> c, and a -> c: c sits below b, not beside it.
        let spec = FlowBuilder::new("f")
            .task("a", "h", |t| t)
            .task("b", "h", |t| t.depends_on(["a"]))
            .task("c", "h", |t| t.depends_on(["a", "b"]))
            .task("d", "h", |t| t)
            .build();
        let graph = graph_of(&spec);
        assert_eq!(graph.levels, vec![vec![0, 3], vec![1], vec![2]]);
        assert_eq!(graph.edges, vec![(0, 1), (0, 2), (1, 2)]);
        assert_eq!(graph.problem, None);
    }

    #[test]
    fn a_flow_that_no_longer_validates_is_drawn_as_one_level_with_the_reason() {
        let spec = FlowBuilder::new("f")
            .task("a", "h", |t| t.depends_on(["b"]))
            .task("b", "h", |t| t.depends_on(["a"]))
            .build();
        let graph = graph_of(&spec);
        assert_eq!(graph.levels, vec![vec![0, 1]]);
        assert!(graph.edges.is_empty());
        assert!(graph.problem.is_some());
    }

    #[test]
    fn levels_stack_top_to_bottom_and_a_narrow_level_is_centred() {
        let layout = lay_out(&[vec![0, 1, 2], vec![3]], 4, &G);
        assert_eq!(layout.positions[0], (40, 8));
        assert_eq!(layout.positions[1], (150, 8));
        assert_eq!(layout.positions[2], (260, 8));
        // The single task of level 1 is under the middle one, one row and a level gap down.
        assert_eq!(layout.positions[3], (150, 8 + 20 + 30));
        assert_eq!(layout.width, 40 + 320 + 8);
        assert_eq!(layout.height, 8 + 20 + 30 + 20 + 8);
        assert_eq!(
            layout.bands,
            vec![
                Band {
                    y: 8,
                    height: 20,
                    tasks: 3
                },
                Band {
                    y: 58,
                    height: 20,
                    tasks: 1
                }
            ]
        );
    }

    #[test]
    fn a_wide_level_wraps_into_rows() {
        let layout = lay_out(&[(0..7).collect()], 7, &G);
        let rows: Vec<u32> = layout.positions.iter().map(|p| p.1).collect();
        assert_eq!(rows, vec![8, 8, 8, 33, 33, 33, 58]);
        assert_eq!(layout.positions[6].0, 150, "the last row is centred too");
        assert_eq!(layout.bands[0].height, 3 * 20 + 2 * 5);
        assert_eq!(layout.height, 8 + 3 * 20 + 2 * 5 + 8);
    }

    #[test]
    fn an_empty_flow_has_an_empty_drawing() {
        let layout = lay_out(&[], 0, &G);
        assert!(layout.positions.is_empty());
        assert_eq!(layout.height, 16);
    }
}
